import numpy as np
import pandas as pd
import pytest
from scipy import stats

import scxl as xl


@pytest.fixture(scope="module")
def sc_data():
    return xl.datasets.synthetic(random_state=0)


@pytest.fixture(scope="module")
def bulk_data():
    return xl.datasets.synthetic(kind="bulk", random_state=0)


def _group_means(adata):
    return (
        pd.DataFrame(adata.X, columns=adata.var_names)
        .groupby(adata.obs["group"].to_numpy(), observed=True)
        .mean()
    )


def test_shapes_dtypes_and_columns(sc_data):
    a = sc_data
    assert a.shape == (1000, 500)
    assert isinstance(a.X, np.ndarray) and a.X.dtype == np.float32
    counts = a.layers["counts"]
    assert counts.shape == a.shape
    assert np.array_equal(counts, np.round(counts)) and counts.min() >= 0
    assert isinstance(a.obs["group"].dtype, pd.CategoricalDtype)
    assert a.obs["group"].cat.categories.tolist() == ["group_0", "group_1", "group_2", "group_3"]
    assert a.obs["group"].value_counts().tolist() == [250] * 4
    for col in ("marker_of", "marker_direction", "role"):
        assert isinstance(a.var[col].dtype, pd.CategoricalDtype), col
    assert a.var["housekeeping"].dtype == bool
    assert a.var_names.is_unique and a.obs_names.is_unique
    roles = a.var["role"].value_counts()
    assert roles["marker_up"] == 40
    assert roles["marker_down"] == 20
    assert roles["housekeeping"] == 20
    assert roles["noise"] == 420
    np.testing.assert_allclose(a.obs["total_counts"], counts.sum(1), rtol=1e-6)
    params = a.uns["synthetic"]
    assert params["kind"] == "single_cell"
    assert params["n_markers_down"] == 5
    assert list(params["group_sizes"]) == [250] * 4


def test_x_is_log_normalised(sc_data, bulk_data):
    np.testing.assert_allclose(np.expm1(sc_data.X).sum(1), 1e4, rtol=1e-3)
    np.testing.assert_allclose(np.expm1(bulk_data.X).sum(1), 1e6, rtol=1e-3)


def test_ground_truth_columns_are_consistent(sc_data):
    var = sc_data.var
    marker = var["role"].isin(["marker_up", "marker_down"])
    assert (var.loc[marker, "marker_of"] != "none").all()
    assert (var.loc[~marker, "marker_of"] == "none").all()
    assert (var.loc[var["role"] == "marker_up", "marker_direction"] == "up").all()
    assert (var.loc[var["role"] == "marker_down", "marker_direction"] == "down").all()
    assert (var.loc[~marker, "marker_direction"] == "none").all()
    assert (var["housekeeping"] == (var["role"] == "housekeeping")).all()
    assert (
        np.sign(var["true_log_fold"])
        == var["marker_direction"].map({"up": 1, "down": -1, "none": 0}).astype(float)
    ).all()
    # each group owns exactly n_markers up and n_markers // 2 down genes
    per_group = var[marker].groupby(["marker_of", "marker_direction"], observed=True).size()
    assert per_group.xs("up", level=1).tolist() == [10] * 4
    assert per_group.xs("down", level=1).tolist() == [5] * 4
    # markers are shuffled among the genes, not the first columns
    assert not marker.iloc[:60].all()


@pytest.mark.parametrize("kind", ["single_cell", "bulk"])
def test_markers_are_extreme_in_their_own_group(kind, sc_data, bulk_data):
    a = sc_data if kind == "single_cell" else bulk_data
    means = _group_means(a)
    up = a.var_names[a.var["marker_direction"] == "up"]
    down = a.var_names[a.var["marker_direction"] == "down"]
    assert (means[up].idxmax() == a.var.loc[up, "marker_of"].astype(str)).all()
    assert (means[down].idxmin() == a.var.loc[down, "marker_of"].astype(str)).all()


@pytest.mark.parametrize("kind", ["single_cell", "bulk"])
def test_housekeeping_and_noise_genes(kind, sc_data, bulk_data):
    a = sc_data if kind == "single_cell" else bulk_data
    hk = a.var["housekeeping"].to_numpy()
    noise = (a.var["role"] == "noise").to_numpy()
    groups = a.obs["group"].to_numpy()
    detected = pd.DataFrame(a.layers["counts"][:, hk] > 0).groupby(groups).mean()
    assert (detected.to_numpy() >= 0.95).all()  # expressed in every group
    means = _group_means(a)
    assert means.loc[:, hk].min().min() > np.median(means.loc[:, noise])  # high
    cv = lambda m: a.X[:, m].std(0) / a.X[:, m].mean(0)  # noqa: E731
    assert np.median(cv(hk)) < 0.5 * np.median(cv(noise))  # stable
    # noise genes do not depend on the group in the counts: about the nominal 1 % reach p < 0.01
    counts = a.layers["counts"]
    labels = np.unique(groups)
    p = stats.f_oneway(*[counts[groups == g][:, noise] for g in labels]).pvalue
    assert (p[np.isfinite(p)] < 0.01).mean() < 0.04
    up = (a.var["role"] == "marker_up").to_numpy()
    assert (stats.f_oneway(*[a.X[groups == g][:, up] for g in labels]).pvalue < 1e-6).all()
    # after library-size normalisation only a small compositional shift remains in X
    shift = (means.loc[:, noise] - means.loc[:, noise].mean()).abs().max()
    marker_shift = (means.loc[:, up] - means.loc[:, up].mean()).abs().max()
    assert shift.median() < 0.1
    assert marker_shift.min() > 2 * shift.quantile(0.95)


def test_wilcoxon_ranks_planted_markers_first(sc_data):
    import scanpy as sc

    a = sc_data.copy()
    sc.tl.rank_genes_groups(a, "group", method="wilcoxon")
    names = a.uns["rank_genes_groups"]["names"]
    for g in a.obs["group"].cat.categories:
        ranked = [str(n) for n in names[g]]
        up = set(a.var_names[(a.var["marker_of"] == g) & (a.var["marker_direction"] == "up")])
        down = set(a.var_names[(a.var["marker_of"] == g) & (a.var["marker_direction"] == "down")])
        assert len(up & set(ranked[:10])) >= 8, g
        assert len(up & set(ranked[:20])) == 10, g
        assert down <= set(ranked[-10:]), g


@pytest.mark.parametrize(("kind", "low", "high"), [("single_cell", 0.9, 0.99), ("bulk", 0.8, 0.97)])
def test_classification_is_good_but_not_perfect(kind, low, high, sc_data, bulk_data):
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import NearestCentroid
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a = sc_data if kind == "single_cell" else bulk_data
    clf = make_pipeline(StandardScaler(), NearestCentroid())
    acc = cross_val_score(clf, a.X, a.obs["group"].cat.codes.to_numpy(), cv=4).mean()
    assert low < acc < high


def test_deterministic_per_seed():
    a = xl.datasets.synthetic(300, 120, 3, random_state=7)
    b = xl.datasets.synthetic(300, 120, 3, random_state=7)
    c = xl.datasets.synthetic(300, 120, 3, random_state=8)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.layers["counts"], b.layers["counts"])
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert not np.array_equal(a.layers["counts"], c.layers["counts"])
    assert not a.var["role"].equals(c.var["role"])
    g1 = xl.datasets.synthetic(300, 120, 3, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(g1.X, a.X)
    assert g1.uns["synthetic"]["random_state"] == "Generator"


def test_bulk_kind():
    a = xl.datasets.synthetic(120, 300, 3, kind="bulk", random_state=1)
    assert a.shape == (120, 300)
    assert a.X.dtype == np.float32
    assert a.obs_names[0].startswith("sample_")
    assert a.uns["synthetic"]["kind"] == "bulk"
    # bulk depth: about 2 million reads per sample
    assert 1e6 < np.median(a.obs["total_counts"]) < 4e6
    assert not np.array_equal(a.X, xl.datasets.synthetic(120, 300, 3, random_state=1).X)


def test_group_sizes_and_edge_sizes(tmp_path):
    a = xl.datasets.synthetic(100, 60, 3, group_sizes=[2, 1, 1], n_markers=4, n_housekeeping=5)
    assert a.obs["group"].value_counts().sort_index().tolist() == [50, 25, 25]
    b = xl.datasets.synthetic(10, 30, 3, group_sizes=[0.5, 0.3, 0.2], n_markers=2, n_housekeeping=0)
    assert b.obs["group"].value_counts().sort_index().tolist() == [5, 3, 2]
    c = xl.datasets.synthetic(50, 8, 2, n_markers=1, n_housekeeping=0)  # no down markers
    assert set(c.var["role"]) == {"marker_up", "noise"}
    d = xl.datasets.synthetic(40, 20, 2, n_markers=0, n_housekeeping=0)
    assert set(d.var["role"]) == {"noise"}
    e = xl.datasets.synthetic(40, 30, 2, n_markers=10, n_housekeeping=0)  # no noise genes at all
    assert "noise" not in set(e.var["role"])
    a.write_h5ad(tmp_path / "syn.h5ad")
    import anndata as ad

    back = ad.read_h5ad(tmp_path / "syn.h5ad")
    pd.testing.assert_frame_equal(back.var, a.var)
    assert back.uns["synthetic"]["effect"] == 2.0


def test_fast():
    import time

    t0 = time.perf_counter()
    xl.datasets.synthetic(1000, 500)
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_vars": 50}, ValueError, r"n_vars=50 is too small: 80 genes are needed"),
        ({"n_vars": 100, "n_groups": 5, "n_markers": 20}, ValueError, r"170 genes are needed"),
        ({"kind": "spatial"}, ValueError, r"kind='spatial' is not valid.*single_cell.*bulk"),
        ({"effect": 0}, ValueError, r"effect must be positive"),
        ({"effect": float("nan")}, TypeError, r"effect must be a finite number"),
        ({"n_groups": 1}, ValueError, r"n_groups must be >= 2, got 1"),
        ({"n_obs": 3}, ValueError, r"n_obs=3 is smaller than n_groups=4"),
        ({"n_obs": 10.5}, TypeError, r"n_obs must be an integer, got float"),
        ({"n_markers": -1}, ValueError, r"n_markers must be >= 0"),
        ({"group_sizes": [1, 1]}, ValueError, r"one entry per group \(n_groups=4\), got 2"),
        ({"group_sizes": [1, -1, 1, 1]}, ValueError, r"non-negative"),
        (
            {"n_obs": 20, "group_sizes": [100, 100, 1, 1]},
            ValueError,
            r"leaves group_2, group_3 without observations",
        ),
        (
            {"random_state": "seed"},
            TypeError,
            r"random_state must be an int, None or a numpy Generator",
        ),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        xl.datasets.synthetic(**kwargs)


def test_gene_names_do_not_depend_on_the_number_of_cells():
    """An ensemble trained on one simulated set predicts another of the same genes (the names once followed n_obs)."""
    small, large = xl.datasets.synthetic(100, 60, 2, random_state=0), xl.datasets.synthetic(12_000, 60, 2, random_state=0)
    assert list(small.var_names[:2]) == ["gene_0000", "gene_0001"]
    assert list(small.var_names) == list(large.var_names)
    assert xl.datasets.synthetic(100, 12_000, 2, random_state=0).var_names[0] == "gene_00000"
