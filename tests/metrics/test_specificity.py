import re

import numpy as np
import pandas as pd
import pytest

from scxl.metrics import HPA_CATEGORIES, housekeeping, hpa_categories, tau

# ---------------------------------------------------------------- tau


def test_tau_hand_examples():
    profile = np.array([[3.0, 7.0, 0.0, 4.0], [3.0, 0.0, 0.0, 2.0], [3.0, 0.0, 0.0, 0.0]])
    t = tau(profile, log=False)
    assert t[0] == 0.0  # uniform
    assert t[1] == 1.0  # one group
    assert np.isnan(t[2])  # expressed nowhere
    # (1 - 4/4) + (1 - 2/4) + (1 - 0/4) over n - 1 = 2
    assert t[3] == pytest.approx(0.75)
    # default log2(x + 1): x = [4, 2, 0] -> [log2 5, log2 3, 0]
    lg = np.log2([5.0, 3.0, 1.0])
    assert tau(profile)[3] == pytest.approx(((1 - lg / lg[0]).sum()) / 2)
    assert tau(profile)[0] == 0.0 and tau(profile)[1] == 1.0


def test_tau_nan_propagates_and_errors():
    t = tau(np.array([[1.0, np.nan], [0.0, 2.0]]))
    assert t[0] == 1.0 and np.isnan(t[1])
    with pytest.raises(ValueError, match="negative"):
        tau(np.array([[1.0], [-1.0]]))
    with pytest.raises(ValueError, match="at least 2 groups"):
        tau(np.ones((1, 3)))


def test_tau_real_data_ranks_markers(hpa_v18):
    x, tissues, _, symbols = hpa_v18
    t = pd.Series(tau(x), index=symbols)
    assert t["ALB"] > 0.9 and t["INS"] > 0.8
    assert t["ACTB"] < 0.3 and t["RPLP0"] < 0.3
    assert t.isna().sum() == (x.max(axis=0) == 0).sum()


# ---------------------------------------------------------------- HPA categories

TISSUES = [f"t{i}" for i in range(10)]
HAND = {  # gene -> (profile over 10 tissues, expected category, expected groups)
    "enriched": ([50, 10, 1, 0, 0, 0, 0, 0, 0, 0], "Tissue-Enriched", "t0"),
    "enriched_exact_fold": ([5, 1, 1, 1, 0, 0, 0, 0, 0, 0], "Tissue-Enriched", "t0"),
    "enriched_lone": ([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], "Tissue-Enriched", "t0"),
    "group2": ([40, 30, 2, 1, 0, 0, 0, 0, 0, 0], "Group-Enriched", "t0;t1"),
    "group3_order": ([9, 20, 0, 0, 10, 1, 0, 0, 0, 0], "Group-Enriched", "t1;t4;t0"),
    "not_expressed": ([0.9, 0.5, 0, 0, 0, 0, 0, 0, 0, 0], "Not-Expressed", ""),
    "expressed_in_all": ([10] * 10, "Expressed-In-All", ""),
    "all_but_enhanced": ([24, 6, 4, 4, 1, 1, 1, 1, 1, 1], "Expressed-In-All", ""),
    "enhanced": ([8, 3, 2, 1.5, 1.2, 0, 0, 0, 0, 0], "Tissue-Enhanced", "t0"),
    "mixed": ([3, 3, 3, 3, 1, 1, 1, 1, 0, 0], "Mixed", ""),
    "too_big_group": ([6, 6, 6, 6, 6, 6, 6, 6, 0, 0], "Mixed", ""),
}


def _hand():
    names = list(HAND)
    profile = np.array([HAND[g][0] for g in names], dtype=float).T
    return names, profile


def test_hpa_categories_hand_profiles():
    names, profile = _hand()
    res = hpa_categories(profile, TISSUES, gene_names=names)
    assert list(res.columns) == ["category", "groups", "n_groups", "tau", "max_group", "max_expr"]
    assert list(res.category.cat.categories) == list(HPA_CATEGORIES)
    for g in names:
        _, cat, groups = HAND[g]
        assert res.loc[g, "category"] == cat, g
        assert res.loc[g, "groups"] == groups, g
        assert res.loc[g, "n_groups"] == (len(groups.split(";")) if groups else 0)
    assert res.loc["group3_order", "max_group"] == "t1"
    assert res.loc["expressed_in_all", "tau"] == 0.0
    assert res.loc["enriched_lone", "tau"] == 1.0


def test_hpa_categories_two_enhanced_tissues():
    prof = np.zeros((20, 1))
    prof[:7, 0] = [15, 20, 4, 4, 3, 3, 3]  # mean 2.6 -> threshold 13; no 5-fold group
    res = hpa_categories(prof, [f"t{i}" for i in range(20)]).iloc[0]
    assert (res.category, res.groups, res.n_groups) == ("Tissue-Enhanced", "t1;t0", 2)


def test_hpa_categories_parameters():
    names, profile = _hand()
    # a looser fold turns the group of 8 equal tissues into nothing special but 4-fold groups
    res = hpa_categories(profile, TISSUES, gene_names=names, fold=2.0)
    assert res.loc["enhanced", "category"] == "Tissue-Enriched"  # 8 / 3 >= 2
    # groups of 8 become allowed
    res = hpa_categories(profile, TISSUES, gene_names=names, max_group_size=8)
    assert res.loc["too_big_group", "category"] == "Group-Enriched"
    assert res.loc["too_big_group", "n_groups"] == 8
    # a lower expression threshold
    res = hpa_categories(profile, TISSUES, gene_names=names, min_expr=0.5)
    assert res.loc["not_expressed", "category"] == "Group-Enriched"  # 0.9 and 0.5 vs 0
    assert res.loc["not_expressed", "groups"] == "t0;t1"


def test_hpa_categories_legacy_ties():
    # mean = 2, fold 5 -> enhanced threshold exactly 10 = the top value; not enriched (10 / 3)
    # and no group. The candidate set {10, 3, 3, 2} has 4 members.
    prof = np.array([10.0, 3.0, 3.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])[:, None]
    assert prof.mean() * 5 == 10.0
    # candidate set size allowed (<= 7): TissueEnrich 1.0 used ">=" -> enhanced either way
    for legacy in (True, False):
        res = hpa_categories(prof, TISSUES, legacy_ties=legacy).iloc[0]
        assert (res.category, res.groups) == ("Tissue-Enhanced", "t0")
    # candidate set too large (> 3): TissueEnrich 1.0 used a strict ">" -> Mixed
    legacy = hpa_categories(prof, TISSUES, max_group_size=3).iloc[0]
    modern = hpa_categories(prof, TISSUES, max_group_size=3, legacy_ties=False).iloc[0]
    assert legacy.category == "Mixed" and legacy.groups == ""
    assert (modern.category, modern.groups) == ("Tissue-Enhanced", "t0")


def test_hpa_categories_errors():
    with pytest.raises(ValueError, match="group_names has 2 entries"):
        hpa_categories(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="negative"):
        hpa_categories(-np.ones((3, 2)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        hpa_categories(np.array([[1.0], [np.nan]]), ["a", "b"])
    with pytest.raises(ValueError, match="max_group_size must be >= 2"):
        hpa_categories(np.ones((3, 2)), ["a", "b", "c"], max_group_size=1)
    with pytest.raises(ValueError, match="fold must be >= 1"):
        hpa_categories(np.ones((3, 2)), ["a", "b", "c"], fold=0.5)


def test_hpa_categories_reproduce_tissueenrich_hpa_v18(hpa_v18, shared_data):
    """Every gene of HPA v18 gets TissueEnrich's published category and tissues."""
    x, tissues, gene_ids, _ = hpa_v18
    res = hpa_categories(x, tissues, gene_names=gene_ids)
    official = pd.read_csv(
        shared_data / "tissue_specific_genes_hpa_v18_tissueenrich.tsv.gz",
        sep="\t",
        keep_default_na=False,
    )
    official = official[official.gene_id.isin(gene_ids)]
    off = official.groupby("gene_id").agg(
        category=("group", "first"), tissues=("tissue", lambda s: ";".join(sorted(set(s) - {""})))
    )
    assert len(off) == len(gene_ids) == 19332
    mine = res.loc[off.index]
    mine_tissues = mine.groups.map(lambda s: ";".join(sorted(s.split(";"))) if s else "")
    for cat in HPA_CATEGORIES:
        o = (off.category == cat).to_numpy()
        p = (mine.category == cat).to_numpy()
        assert p[o].mean() == 1.0, f"recall {cat}"
        assert o[p].mean() == 1.0, f"precision {cat}"
    assert (mine_tissues == off.tissues).all()
    counts = mine.category.value_counts()
    assert counts["Tissue-Enriched"] == 2578 and counts["Expressed-In-All"] == 7345
    # the rule without TissueEnrich 1.0's tie quirk differs on exactly one gene's tissues
    modern = hpa_categories(x, tissues, gene_names=gene_ids, legacy_ties=False).loc[off.index]
    assert (modern.category == mine.category).all()
    assert (modern.groups != mine.groups).sum() == 1


def test_hpa_categories_unrounded_float32_close(hpa_v18, shared_data):
    """Straight from float32 the agreement is still > 99.9 % (15 genes at a threshold)."""
    import anndata as ad

    a = ad.read_h5ad(shared_data / "tissueenrich_hpa_v18_tpm.h5ad")
    _, tissues, gene_ids, _ = hpa_v18
    rounded = hpa_categories(hpa_v18[0], tissues)
    raw = hpa_categories(a.X, tissues)
    diff = (raw.category != rounded.category).sum()
    assert diff == 15


# ---------------------------------------------------------------- housekeeping


def test_housekeeping_hand_examples():
    prof = np.array(
        [
            [10.0, 10.0, 50.0, 1.0, 10.0],
            [12.0, 30.0, 0.0, 1.0, 100.0],
            [9.0, 15.0, 0.0, 0.5, 10.0],
            [11.0, 11.0, 0.0, 1.0, 10.0],
        ]
    )
    res = housekeeping(prof, trim=0.0)
    assert list(res.columns) == ["expressed_in_all", "fold", "housekeeping"]
    # gene 0: median 10.5, max 12 -> 12 / 10.5; min 9 -> 10.5 / 9
    assert res.fold[0] == pytest.approx(10.5 / 9)
    assert res.housekeeping.tolist() == [True, False, False, False, False]
    assert res.expressed_in_all.tolist() == [True, True, False, False, True]
    # gene 1: median 13, 30 / 13 > 2
    assert res.fold[1] == pytest.approx(30 / 13)
    # trimming one group at each end (4 groups * 0.25) ignores the outlier of gene 4
    trimmed = housekeeping(prof, trim=0.25)
    assert trimmed.housekeeping[4]
    # range statistic
    rng_res = housekeeping(prof, trim=0.0, stat="range", max_fold=1.5)
    assert rng_res.fold[0] == pytest.approx(12 / 9) and rng_res.housekeeping[0]
    # log input: log2(x + 1) mapped back
    logged = housekeeping(np.log2(prof + 1), trim=0.0, log_base=2)
    np.testing.assert_allclose(logged.fold[:2], res.fold[:2])
    assert logged.housekeeping.tolist() == res.housekeeping.tolist()


def test_housekeeping_errors():
    with pytest.raises(ValueError, match="stat must be one of"):
        housekeeping(np.ones((2, 2)), stat="max")
    with pytest.raises(ValueError, match="trim"):
        housekeeping(np.ones((2, 2)), trim=0.5)
    with pytest.raises(ValueError, match="log_base"):
        housekeeping(np.ones((2, 2)), log_base=1)


def _eisenberg(shared_data):
    path = shared_data / "housekeeping_eisenberg2013_HK_genes.txt"
    return {line.split("\t")[0].strip() for line in path.read_text().splitlines() if line.strip()}


def test_housekeeping_real_hpa(hpa_v18, shared_data):
    x, _, _, symbols = hpa_v18
    hk_list = _eisenberg(shared_data)
    assert len(hk_list) == 3804
    in_list = np.isin(symbols, list(hk_list))
    res = housekeeping(x)
    res.index = symbols
    called = res.housekeeping.to_numpy()
    assert called.sum() == 1798
    # strong enrichment for the Eisenberg & Levanon list: 69 % of calls vs 18 % of all genes
    precision = in_list[called].mean()
    assert precision > 0.68 and in_list.mean() < 0.19
    most_stable = "C1orf43 CHMP2A EMC7 GPI PSMB2 PSMB4 RAB7A REEP5 SNRPD3 VCP VPS29".split()
    assert res.loc[most_stable, "housekeeping"].sum() == 10
    # classic genes are expressed in every tissue; ACTB and GAPDH vary too much across tissues
    classic = ["ACTB", "GAPDH", "RPLP0", "RPL13A", "RPS18", "B2M", "PPIA"]
    assert res.loc[classic, "expressed_in_all"].all()
    assert res.loc["GAPDH", "fold"] == pytest.approx(2.135, abs=1e-3)
    assert not res.loc["ACTB", "housekeeping"]
    # a looser fold calls GAPDH, all 11 stable genes and ~all ribosomal proteins
    loose = housekeeping(x, max_fold=3.0)
    loose.index = symbols
    assert loose.loc[["GAPDH", "RPLP0", "RPL13A", "RPS18"], "housekeeping"].all()
    assert loose.loc[most_stable, "housekeeping"].all()
    ribo = [s for s in symbols if re.fullmatch(r"RP[LS]\d+[AX]?|RPLP[012]|RPSA", s)]
    assert len(ribo) == 77
    assert loose.loc[ribo, "housekeeping"].sum() == 75
    # tissue-specific genes never are
    assert not loose.loc[["ALB", "INS", "MYH6", "SFTPC"], "housekeeping"].any()


def test_hpa_categories_two_groups_only():
    # with 2 rows a "group" would span every row: never Group-Enriched
    prof = np.array([[10.0, 10.0, 10.0, 0.5], [1.0, 8.0, 0.0, 0.0]])
    res = hpa_categories(prof, ["a", "b"])
    assert res.category.tolist() == [
        "Tissue-Enriched",
        "Expressed-In-All",
        "Tissue-Enriched",
        "Not-Expressed",
    ]
    assert res.max_group.tolist() == ["a", "a", "a", "a"]
    assert res.max_expr.tolist() == [10.0, 10.0, 10.0, 0.5]


def test_housekeeping_gene_names():
    res = housekeeping(np.ones((3, 2)), gene_names=["A", "B"])
    assert list(res.index) == ["A", "B"] and res.housekeeping.all()
    with pytest.raises(ValueError, match="gene_names has 1"):
        housekeeping(np.ones((3, 2)), gene_names=["A"])
