from __future__ import annotations

import pytest
import scanpy as sc

import scxl as xl


@pytest.fixture
def ranked(adata):
    xl.tl.specificity(adata, "group", min_expr=0.5)
    sc.tl.rank_genes_groups(adata, "group", method="wilcoxon")
    return adata


def test_overlap_with_specific_and_user_sets(ranked, tmp_path):
    gmt = tmp_path / "sets.gmt"
    up = ranked.var_names[ranked.var["role"] == "marker_up"]
    gmt.write_text("planted\tna\t" + "\t".join(up) + "\n")
    ranked.var["is_hk"] = ranked.var["housekeeping"].astype(bool)
    xl.tl.gene_set_overlap(ranked, "rank_genes_groups", [str(gmt), "is_hk"], top_k=5,
                           de_groups=("group_0", "group_1"), de_fold_change=1.5, de_fdr=0.05)
    res = ranked.uns["rank_genes_groups_overlap"]
    t = res["table"].set_index(["group", "gene_set"])
    assert set(t.index.get_level_values(1)) == {"planted", "is_hk", "specific to group", "housekeeping"}
    assert (t.xs("specific to group", level=1)["fold_enrichment"] > 3).all()
    assert (t.xs("planted", level=1)["pvalue_adj"] < 0.05).all()
    assert (t.xs("is_hk", level=1)["overlap"] == 0).all()
    de = res["de"]
    assert de.loc["group_0", "n_up_in_a"] >= 4 and de.loc["group_1", "n_up_in_b"] >= 4
    assert res["params"]["de_groups"] == ["group_0", "group_1"]


def test_overlap_errors(adata):
    with pytest.raises(KeyError, match="run xl.tl.attribute"):
        xl.tl.gene_set_overlap(adata, "nope")
    sc.tl.rank_genes_groups(adata, "group", method="t-test")
    with pytest.raises(KeyError, match="run xl.tl.specificity"):
        xl.tl.gene_set_overlap(adata, "rank_genes_groups")
    with pytest.raises(FileNotFoundError, match="neither a boolean var column nor an existing GMT"):
        xl.tl.gene_set_overlap(adata, "rank_genes_groups", "missing.gmt", specificity_key=None)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        xl.tl.gene_set_overlap(adata, "rank_genes_groups", {"a": ["x"]}, top_k=0, specificity_key=None)


def test_specificity_of_other_groups_is_refused(ranked):
    """Specific genes called for other groups than the ranking's would read as 'no specific gene':
    an error when no group matches, a warning naming the groups that do not."""
    import numpy as np

    ranked.obs["other"] = np.where(np.arange(ranked.n_obs) % 2, "odd", "even")
    xl.tl.specificity(ranked, "other", min_expr=0.5, key_added="by_other")
    with pytest.raises(ValueError, match=r"are not the groups xl.tl.specificity used for specificity_key='by_other' \(by 'other'\)"):
        xl.tl.gene_set_overlap(ranked, "rank_genes_groups", specificity_key="by_other")
    sub = ranked[ranked.obs["group"] != "group_2"].copy()
    xl.tl.specificity(sub, "group", min_expr=0.5, key_added="two")
    sub.uns["rank_genes_groups"] = ranked.uns["rank_genes_groups"]  # ranked with group_2, specificity without it
    with pytest.warns(xl.ScxlWarning, match=r"group\(s\) \['group_2'\] .* are not among the groups of specificity_key='two'"):
        xl.tl.gene_set_overlap(sub, "rank_genes_groups", specificity_key="two")
    t = sub.uns["rank_genes_groups_overlap"]["table"].set_index(["group", "gene_set"])
    assert t.loc[("group_2", "specific to group"), "set_size"] == 0
