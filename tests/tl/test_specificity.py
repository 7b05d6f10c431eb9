from __future__ import annotations

import numpy as np
import pytest

import scxl as xl


def test_specificity_on_synthetic_truth(adata):
    xl.tl.specificity(adata, "group", min_expr=0.5)
    var = adata.var
    up = var["marker_direction"] == "up"
    # planted up-markers are specific to their own group
    assert (var.loc[up, "xl_tau"] > var.loc[var["role"] == "noise", "xl_tau"].median()).mean() > 0.9
    called = var.loc[up & var["xl_enriched_in"].ne(""), ["marker_of", "xl_enriched_in"]]
    assert len(called) > 0
    assert (called["marker_of"].astype(str) == called["xl_enriched_in"].str.split(";").str[0]).all()
    assert var.loc[var["housekeeping"], "xl_housekeeping"].mean() > 0.8
    assert list(adata.uns["xl_specificity"]["profile"].index) == ["group_0", "group_1", "group_2"]


def test_reproduces_tissueenrich_on_hpa_v18():
    hpa = xl.datasets.hpa_tissue_profiles(version="v18")
    xl.tl.specificity(hpa, "tissue", values="linear")
    official = xl.datasets.tissue_specific_genes().drop_duplicates("symbol").set_index("symbol")["group"]
    ours = hpa.var["xl_specificity"].astype(str)
    common = ours.index.intersection(official.index)
    assert len(common) > 19000
    # measured 0.9991: the loader's float32 values differ from the published decimals for a few
    # genes sitting exactly on a threshold (scxl.metrics.hpa_categories on rounded values: 1.0)
    assert (ours[common] == official[common]).mean() > 0.998
    assert hpa.var.loc["ALB", "xl_enriched_in"] == "Liver"
    assert hpa.var.loc["INS", "xl_enriched_in"] == "Pancreas"
    assert hpa.var.loc[["PSMB2", "VCP", "RAB7A"], "xl_housekeeping"].all()


def test_specificity_errors(adata):
    with pytest.raises(ValueError, match="values='tpm' is not valid"):
        xl.tl.specificity(adata, "group", values="tpm")
    adata.obs["one"] = "a"
    with pytest.raises(ValueError, match="at least two groups"):
        xl.tl.specificity(adata, "one")
    adata.X = adata.X - 5
    with pytest.warns(UserWarning, match="negative values"), pytest.raises(ValueError, match="negative group means"):
        xl.tl.specificity(adata, "group", values="linear")
    assert "xl_tau" not in adata.var


def test_gtex_tissue_markers():
    g = xl.datasets.gtex26()
    xl.tl.specificity(g, "tissue", values="log2p")
    assert g.var.loc["HNF1A", "xl_enriched_in"].split(";")[0] == "Liver"
    assert np.isfinite(g.var["xl_tau"]).mean() > 0.8
