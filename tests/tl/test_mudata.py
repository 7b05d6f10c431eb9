from __future__ import annotations

import numpy as np
import pytest

import scxl as xl


@pytest.fixture
def brca():
    return xl.datasets.brca_multiomics()  # fresh each time: MuData.copy() warns in mudata 0.3


def test_train_predict_on_mudata(brca):
    mdata = brca
    with pytest.warns(UserWarning, match="negative values"):  # mixOmics ships centred values
        xl.tl.train_classifier(mdata, "subtype", mods=["mrna", "mirna"], n_models=2, max_epochs=10)
    ens = xl.get.ensemble(mdata)
    assert ens.var_names[0].startswith("mrna:") and ens.var_names[-1].startswith("mirna:")
    assert len(ens.var_names) == mdata["mrna"].n_vars + mdata["mirna"].n_vars
    assert ens.preprocessing["mods"] == ["mrna", "mirna"]
    xl.tl.predict(mdata)
    assert mdata.obs["xl_prediction"].notna().all()
    assert (mdata.obs["xl_prediction"] == mdata.obs["subtype"]).mean() > 0.7


def test_incomplete_modalities_restrict_rows(brca):
    mdata = brca
    with pytest.warns(UserWarning, match="negative values"):
        xl.tl.train_classifier(mdata, "subtype", n_models=1, max_epochs=2)  # protein: 150 of 220 samples
    p = mdata.uns["xl"]["params"]
    assert p["n_train"] + p["n_validation"] == mdata["protein"].n_obs
    with pytest.warns(UserWarning, match="missing from a modality"):
        xl.tl.predict(mdata)
    assert mdata.obs["xl_prediction"].isna().sum() == mdata.n_obs - mdata["protein"].n_obs


def test_unknown_modality(brca):
    with pytest.raises(KeyError, match="modalities \\['rna'\\] are not in the MuData"):
        xl.tl.train_classifier(brca, "subtype", mods=["rna"])


def test_mods_only_for_mudata(synth):
    with pytest.raises(ValueError, match="mods= is only for MuData"):
        xl.tl.train_classifier(synth.copy(), "group", mods=["rna"])


def test_feature_names_are_prefixed(brca):
    mdata = brca
    with pytest.warns(UserWarning, match="negative values"):
        xl.tl.train_classifier(mdata, "subtype", mods=["mirna"], n_models=1, max_epochs=1)
    names = xl.get.ensemble(mdata).var_names
    assert all(n.startswith("mirna:") for n in names)
    assert np.array_equal([n.split(":", 1)[1] for n in names], mdata["mirna"].var_names)


def test_expression_plots_point_to_a_modality(brca):
    """pl.top_genes on a MuData said 'pass layer=', which it has no argument for (review): it now
    names the modalities, whose own rankings it draws."""
    import matplotlib.pyplot as plt

    with pytest.warns(UserWarning, match="negative values"):
        xl.tl.train_classifier(brca, "subtype", mods=["mrna", "mirna"], n_models=2, max_epochs=3)
        xl.tl.attribute(brca, store_layer=False)
    with pytest.raises(TypeError, match=r"pass a modality, e.g. mdata\['mrna'\].*written for \['mrna', 'mirna'\]"):
        xl.pl.top_genes(brca, "xl_deeplift")
    assert xl.pl.top_genes(brca["mrna"], "xl_deeplift", n_genes=2) is not None
    plt.close("all")


def test_duplicated_obs_names_in_a_modality_are_named():
    import warnings

    import mudata as md

    mods = {}
    for name, seed in (("rna", 0), ("prot", 1)):
        a = xl.datasets.synthetic(200, 80, 3, random_state=seed)
        a.obs_names = [f"c{i % 100}" for i in range(200)]
        mods[name] = a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mudata's own warning about the duplicated names
        mdata = md.MuData(mods)
    with pytest.raises(ValueError, match=r"mdata\['rna'\]\.obs_names are not unique \(e\.g\. \['c0'.*obs_names_make_unique"):
        xl.tl.train_classifier(mdata, "rna:group", n_models=1, max_epochs=1)


def test_the_layer_format_and_estimate_count_every_modality(monkeypatch):
    """'auto' compared a MuData's sparse layer with the first modality's dense one only (review); estimate >= stored."""
    import warnings

    import mudata as md
    import scipy.sparse as sp

    import scxl.tl._attribute as attribute_module

    small = xl.datasets.synthetic(200, 80, 3, random_state=0)[:, :5].copy()
    big = xl.datasets.synthetic(200, 300, 3, random_state=0)
    big.obs_names = small.obs_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = md.MuData({"small": small, "big": big})
    m.obs["group"] = small.obs["group"].to_numpy()
    xl.tl.train_classifier(m, "group", n_models=1, max_epochs=1, random_state=0)
    seen = []
    real = attribute_module.check_layer_room
    monkeypatch.setattr(attribute_module, "check_layer_room", lambda need, shape, **kw: (seen.append(need), real(need, shape, **kw)))
    genes = [f"big:{g}" for g in big.var_names[:100]]  # 100 of 305 genes: sparse (200 × 100 × 8) < dense (200 × 305 × 4)
    xl.tl.attribute(m, layer_genes=genes)
    layers = [m["small"].layers["xl_deeplift"], m["big"].layers["xl_deeplift"]]
    assert all(sp.issparse(x) for x in layers)
    stored = sum(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes for x in layers)
    assert seen[-1] >= stored
