import numpy as np
import pytest
from scipy.stats import hypergeom

from scxl.metrics import bh_adjust, enrichment_table, overlap_enrichment, read_gmt

UNIVERSE = [f"g{i}" for i in range(200)]


def test_overlap_enrichment_vs_scipy():
    selected = [f"g{i}" for i in range(0, 30)] + ["not_in_universe"]
    gene_set = [f"g{i}" for i in range(20, 60)] + ["also_outside"]
    res = overlap_enrichment(selected, gene_set, UNIVERSE)
    # M = 200, n = 40, N = 30, k = 10
    assert (res.overlap, res.set_size, res.n_selected, res.n_universe) == (10, 40, 30, 200)
    assert res.expected == pytest.approx(30 * 40 / 200)
    assert res.fold_enrichment == pytest.approx(10 / 6)
    assert res.pvalue == pytest.approx(hypergeom.sf(9, 200, 40, 30), rel=1e-12)
    # the same as summing the pmf over k..min(n, N)
    assert res.pvalue == pytest.approx(sum(hypergeom.pmf(j, 200, 40, 30) for j in range(10, 31)))
    assert res.genes == sorted(f"g{i}" for i in range(20, 30))


def test_overlap_enrichment_edge_cases():
    res = overlap_enrichment(["g1"], ["g2"], UNIVERSE)
    assert res.overlap == 0 and res.pvalue == 1.0 and res.fold_enrichment == 0.0
    res = overlap_enrichment([], ["g2"], UNIVERSE)
    assert res.pvalue == 1.0 and np.isnan(res.fold_enrichment)
    with pytest.raises(ValueError, match="universe is empty"):
        overlap_enrichment(["a"], ["a"], [])
    with pytest.raises(TypeError, match="single string"):
        overlap_enrichment("ALB", ["ALB"], UNIVERSE)


def test_bh_adjust_hand_computation():
    p = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.5])
    # m = 6: p * m / rank = [0.06, 0.06, 0.06, 0.06, 0.06, 0.5]
    np.testing.assert_allclose(bh_adjust(p), [0.06, 0.06, 0.06, 0.06, 0.06, 0.5])
    p = np.array([0.04, 0.001, 0.03, 0.9])
    # sorted: 0.001*4/1 = 0.004, 0.03*4/2 = 0.06, 0.04*4/3 = 0.0533, 0.9*4/4 = 0.9
    # cumulative minimum from the top: 0.004, 0.0533, 0.0533, 0.9
    np.testing.assert_allclose(bh_adjust(p), [0.04 * 4 / 3, 0.004, 0.04 * 4 / 3, 0.9])


def test_bh_adjust_matches_scipy_and_nan():
    from scipy.stats import false_discovery_control

    rng = np.random.default_rng(0)
    p = rng.uniform(size=50) ** 3
    np.testing.assert_allclose(bh_adjust(p), false_discovery_control(p), rtol=1e-12)
    with_nan = np.array([0.01, np.nan, 0.02])
    out = bh_adjust(with_nan)
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])
    assert bh_adjust(p.reshape(5, 10)).shape == (5, 10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bh_adjust(np.array([1.5]))


def test_read_gmt(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_text(
        "# comment\n"
        "LIVER\tliver genes\tALB\tAPOA1\t\tALB\n"
        "\n"
        "EMPTY\tnothing\n"
        "HEART\thttp://example.org\tMYH6\tNPPA \r\n"
    )
    sets = read_gmt(path)
    assert sets == {"LIVER": ["ALB", "APOA1"], "EMPTY": [], "HEART": ["MYH6", "NPPA"]}
    assert list(sets) == ["LIVER", "EMPTY", "HEART"]


def test_read_gmt_errors(tmp_path):
    dup = tmp_path / "dup.gmt"
    dup.write_text("A\tx\tg1\nA\tx\tg2\n")
    with pytest.raises(ValueError, match="more than once"):
        read_gmt(dup)
    bad = tmp_path / "bad.gmt"
    bad.write_text("only_a_name\n")
    with pytest.raises(ValueError, match="bad.gmt:1"):
        read_gmt(bad)


def test_enrichment_table_matches_single_tests():
    rng = np.random.default_rng(1)
    selected = {f"type{i}": list(rng.choice(UNIVERSE, 25, replace=False)) for i in range(3)}
    selected["type0"] = [f"g{i}" for i in range(15)] + selected["type0"][:10]
    sets = {f"set{j}": list(rng.choice(UNIVERSE, 30, replace=False)) for j in range(4)}
    sets["liver"] = [f"g{i}" for i in range(20)]
    sets["tiny"] = ["g0", "outside"]
    table = enrichment_table(selected, sets, UNIVERSE, min_set_size=2)
    assert "tiny" not in set(table.gene_set)  # only 1 gene in the universe
    assert len(table) == 3 * 5
    assert list(table.columns) == [
        "group",
        "gene_set",
        "n_selected",
        "set_size",
        "n_universe",
        "overlap",
        "expected",
        "fold_enrichment",
        "pvalue",
        "pvalue_adj",
        "genes",
    ]
    for row in table.itertuples():
        ref = overlap_enrichment(selected[row.group], sets[row.gene_set], UNIVERSE)
        assert row.overlap == ref.overlap and row.set_size == ref.set_size
        assert row.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
        assert row.expected == pytest.approx(ref.expected)
        assert row.genes == ";".join(ref.genes)
    # per-group BH
    for _, sub in table.groupby("group"):
        np.testing.assert_allclose(sub.pvalue_adj, bh_adjust(sub.pvalue.to_numpy()))
    # ordering: groups in input order, then by p-value
    assert table.group.iloc[0] == "type0" and table.gene_set.iloc[0] == "liver"
    assert table.pvalue_adj.iloc[0] < 1e-6
    everything = enrichment_table(selected, sets, UNIVERSE, adjust="all")
    np.testing.assert_allclose(everything.pvalue_adj, bh_adjust(everything.pvalue.to_numpy()))


def test_enrichment_table_errors():
    with pytest.raises(TypeError, match="mappings"):
        enrichment_table(["a"], {"s": ["a"]}, UNIVERSE)
    with pytest.raises(ValueError, match="adjust"):
        enrichment_table({"a": ["g1"]}, {"s": ["g1"]}, UNIVERSE, adjust="none")
