"""Every bad input gets a clear error and leaves the AnnData unchanged."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import scxl as xl
from scxl._logging import ScxlWarning

FAST = {"n_models": 1, "max_epochs": 2}


def _unchanged(a, b):
    assert a.obs.equals(b.obs) and a.var.equals(b.var)
    assert set(a.uns) == set(b.uns) and set(a.layers) == set(b.layers) and set(a.obsm) == set(b.obsm)


@pytest.mark.parametrize(
    ("mutate", "kwargs", "exc", "match"),
    [
        (None, {"groupby": "nope"}, KeyError, "groupby='nope' is not a column of adata.obs"),
        (lambda a: a.obs.__setitem__("num", np.arange(a.n_obs) * 0.5), {"groupby": "num"}, TypeError, "dtype float64; it must be categorical or string"),
        (lambda a: a.obs.__setitem__("one", "x"), {"groupby": "one"}, ValueError, "single class"),
        (lambda a: a.obs.__setitem__("tiny", ["a"] * (a.n_obs - 1) + ["b"]), {"groupby": "tiny"}, ValueError, r"fewer than 2 cells.*'b' \(1\)"),
        (lambda a: a.X.__setitem__((0, 0), np.nan), {}, ValueError, "contains NaN or infinite values"),
        (lambda a: a.X.__setitem__((3, 1), np.inf), {}, ValueError, "NaN or infinite"),
        (None, {"layer": "missing"}, KeyError, "layer='missing' is not in adata.layers"),
        (None, {"use_raw": True}, ValueError, "adata.raw is None"),
        (None, {"model": "rnn"}, ValueError, "model='rnn' is not valid"),
        (None, {"n_models": 0}, ValueError, "n_models must be a positive integer"),
        (None, {"balance": "smote"}, ValueError, "balance='smote' is not valid"),
        (None, {"genes": "nope"}, KeyError, "genes='nope' is not a boolean column"),
        (None, {"cv": 1}, ValueError, "cv must be None or an integer >= 2"),
        (None, {"hidden": 0}, ValueError, r"hidden=0 is not valid: give the hidden layer size\(s\) as positive integers"),
        (None, {"hidden": (64, 0)}, ValueError, r"hidden=\(64, 0\) is not valid"),
        (None, {"hidden": -8}, ValueError, "hidden=-8 is not valid"),
        (None, {"hidden": 1.5}, ValueError, "hidden=1.5 is not valid"),
        (None, {"hidden": "128"}, ValueError, "hidden='128' is not valid"),
        (None, {"hidden": ()}, ValueError, r"hidden=\(\) is not valid"),
        (None, {"dropout": 1.0}, ValueError, r"dropout=1.0 is not valid: it is a probability in \[0, 1\)"),
        (None, {"dropout": -0.1}, ValueError, "dropout=-0.1 is not valid"),
        (None, {"model_kwargs": {"dropout": 2}}, ValueError, "dropout=2 is not valid"),
        (None, {"model": "cnn", "model_kwargs": {"channels": (4, 0, 4)}}, ValueError, r"model_kwargs\['channels'\]=\(4, 0, 4\) is not valid"),
        (None, {"model": "cnn", "model_kwargs": {"channels": (4, 4)}}, ValueError, "must have the same length"),
        (None, {"model_kwargs": "batchnorm"}, TypeError, "model_kwargs must be a dict"),
        (None, {"max_epochs": 0}, ValueError, "max_epochs must be a positive integer"),
        (None, {"batch_size": 2.5}, ValueError, "batch_size must be a positive integer"),
        (None, {"lr": 0}, ValueError, "lr must be a positive number"),
        (None, {"lr": float("nan")}, ValueError, "lr must be a positive number"),
        (None, {"weight_decay": -1}, ValueError, "weight_decay must be a non-negative number"),
        (None, {"validation": 1.0}, ValueError, r"validation must be a fraction in \[0, 1\)"),
        (None, {"min_delta": 1.0}, ValueError, r"min_delta must be a fraction in \[0, 1\), e.g. min_delta=0.01"),
        (None, {"min_delta": -0.01}, ValueError, r"min_delta must be a fraction in \[0, 1\)"),
        (None, {"min_delta": "1%"}, ValueError, r"min_delta must be a fraction in \[0, 1\).*got '1%'"),
        (None, {"min_delta_chance": 1.0}, ValueError, r"min_delta_chance must be a fraction in \[0, 1\) of the chance loss ln K"),
        (None, {"min_delta_chance": "0.003"}, ValueError, r"min_delta_chance must be a fraction.*got '0.003'"),
        (None, {"n_models": 2.0}, ValueError, "n_models must be a positive integer"),
        (None, {"n_models": True}, ValueError, "n_models must be a positive integer"),
        (None, {"layer": 3}, TypeError, "layer must be the name of a layer"),
        (lambda a: a.__setattr__("X", a.X.astype(object)), {}, TypeError,
         r"adata.X has dtype object \(e.g. .* at row 0, column 0\); scxl needs numeric expression values.*adata.X = adata.X.astype\(np.float32\)"),
        (lambda a: a.layers.__setitem__("txt", a.X.astype(str)), {"layer": "txt"}, TypeError,
         r"adata.layers\['txt'\] has dtype <U\d+ .*astype\(np.float32\)"),
    ],
)
def test_train_bad_input(synth, mutate, kwargs, exc, match):
    a = synth.copy()
    if mutate is not None:
        mutate(a)
    before = a.copy()
    kwargs = {"groupby": "group", **FAST, **kwargs}
    with pytest.raises(exc, match=match):
        xl.tl.train_classifier(a, **kwargs)
    _unchanged(a, before)


def test_duplicated_var_names(synth):
    a = synth.copy()
    a.var_names = ["g"] * a.n_vars
    with pytest.raises(ValueError, match="var_names are not unique.*var_names_make_unique"):
        xl.tl.train_classifier(a, "group", **FAST)


def test_empty_anndata():
    with pytest.raises(ValueError, match="the AnnData is empty"):
        xl.tl.train_classifier(ad.AnnData(np.zeros((0, 3), dtype=np.float32)), "group")


def test_not_anndata():
    with pytest.raises(TypeError, match="expected an AnnData"):
        xl.tl.train_classifier(np.zeros((3, 3)), "group")


def test_negative_values_warn(synth):
    a = synth.copy()
    a.X = a.X - 1.0
    with pytest.warns(ScxlWarning, match="negative values"):
        xl.tl.train_classifier(a, "group", **FAST)


def test_cuda_without_cuda(synth):
    import torch

    if torch.cuda.is_available():  # the error path only exists without CUDA
        xl.tl.train_classifier(synth.copy(), "group", device="cuda", **FAST)
        return
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        xl.tl.train_classifier(synth.copy(), "group", device="cuda", **FAST)


def test_predict_before_training(synth):
    with pytest.raises(KeyError, match=r"run xl.tl.train_classifier first"):
        xl.tl.predict(synth.copy())


def test_query_without_shared_genes(trained):
    q = trained.copy()
    q.var_names = [f"other{i}" for i in range(q.n_vars)]
    before = q.copy()
    with pytest.raises(ValueError, match="none of the ensemble's 60 features are in this data"):
        xl.tl.predict(q)
    _unchanged(q, before)


def test_query_with_too_few_genes(trained):
    q = trained[:, :20].copy()
    with pytest.raises(ValueError, match=r"only 20 of the ensemble's 60 features \(33%\).*lower min_gene_fraction"):
        xl.tl.predict(q)
    with pytest.raises(ValueError, match=r"\(33%\).*fewer than the 50% needed to attribute") as err:
        xl.tl.attribute(q)
    assert "min_gene_fraction" not in str(err.value)  # (attribute has no such option)


def test_attribute_copy_returns_a_copy(trained):
    a = trained.copy()
    out = xl.tl.attribute(a, copy=True)
    assert out is not a and "xl_deeplift" in out.uns and "xl_deeplift" in out.layers
    assert "xl_deeplift" not in a.uns and "xl_deeplift" not in a.layers


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a: xl.tl.attribute(a, key_added="xl"), r"uns\['xl'\] already holds the trained ensemble"),
        (lambda a: xl.tl.attribute(a, key_added="source"), r"uns\['source'\] already holds an entry that scxl did not write"),
        (lambda a: xl.tl.attribute(a, key_added="counts"), r"layers\['counts'\] already exists"),
        (lambda a: xl.tl.train_classifier(a, "group", key_added="source", **FAST), r"uns\['source'\] already holds"),
        (lambda a: xl.tl.train_classifier(a, "group", key_added="xl_deeplift", **FAST), r"a result of xl.tl.attribute"),
        (lambda a: xl.tl.reproducibility(a, n_values=(1,), n_replicates=2, key_added="source"), "overwrite=True"),
        (lambda a: xl.tl.specificity(a, "group", key_added="user"), r"var already has columns \['user_tau'\]"),
        (lambda a: xl.tl.consistency(a, "xl_deeplift", key_added="source"), "already holds"),
        (lambda a: xl.tl.faithfulness(a, "xl_deeplift", key_added="source"), "already holds"),
        (lambda a: xl.tl.gene_set_overlap(a, "xl_deeplift", {"s": ["gene_0001"]}, key_added="source"), "already holds"),
        (lambda a: xl.tl.select_models(a, "xl_deeplift", key_added="xl"), "is the ensemble the members are selected from"),
    ],
)
def test_key_added_never_destroys_another_result(trained, call, match):
    a = trained.copy()
    xl.tl.attribute(a)
    a.uns["source"] = {"note": "the user's"}
    a.layers["counts"] = a.X.copy()
    a.var["user_tau"] = 1.0
    before = a.copy()
    with pytest.raises(ValueError, match=match):
        call(a)
    _unchanged(a, before)
    assert a.uns["source"] == {"note": "the user's"} and "weights" in a.uns["xl"]


def test_overwrite_true_replaces_and_same_tool_reruns(trained):
    a = trained.copy()
    a.uns["source"] = {"note": "the user's"}
    xl.tl.attribute(a, key_added="source", overwrite=True)
    assert "names" in a.uns["source"]
    xl.tl.attribute(a, key_added="source")  # written by attribute: re-running replaces it
    with pytest.warns(xl.ScxlWarning, match=r"uns\['source'\] was computed with the previous ensemble"):
        xl.tl.train_classifier(a, "group", **FAST)  # re-training over the ensemble is allowed (and says what is stale)


def test_select_models_bad_criteria_write_nothing(trained):
    a = trained.copy()
    xl.tl.attribute(a)
    before = a.copy()
    with pytest.raises(KeyError, match=r"criteria \['bogus'\] are not available"):
        xl.tl.select_models(a, "xl_deeplift", by=["bogus"])
    _unchanged(a, before)
    assert "xl_deeplift_consistency" not in a.uns


def test_duplicated_models_are_refused(trained):
    a = trained.copy()
    with pytest.raises(ValueError, match=r"models lists member\(s\) \[0\] more than once"):
        xl.tl.attribute(a, models=[0, 0])
    assert "xl_deeplift" not in a.uns


def test_use_raw_with_more_genes_in_raw(synth):
    """Scanpy's usual layout: raw holds all genes, X a subset. Training on raw, the layer lives on X's genes."""
    full = synth.copy()
    a = full[:, :40].copy()
    a.raw = full
    xl.tl.train_classifier(a, "group", use_raw=True, **FAST)
    for store in (True, False):
        xl.tl.attribute(a, store_layer=store, key_added=f"raw_{store}")
        names = a.uns[f"raw_{store}"]["names"]
        assert len(names) == full.n_vars  # every gene the models saw is ranked
    assert a.layers["raw_True"].shape == a.shape
    ens = xl.get.ensemble(a)
    col = ens.var_names.get_indexer(a.var_names)
    ranked = {g: s for g, s in zip(a.uns["raw_True"]["names"]["group_0"], a.uns["raw_True"]["contribution"]["group_0"], strict=True)}
    grp = (a.obs["group"] == "group_0").to_numpy()
    np.testing.assert_allclose(a.layers["raw_True"][grp].mean(0), [ranked[g] for g in a.var_names], rtol=1e-4, atol=1e-6)
    assert (col >= 0).all()


def test_object_matrix_in_predict_and_attribute(trained):
    a = trained.copy()
    a.X = a.X.astype(object)
    before = a.copy()
    with pytest.raises(TypeError, match=r"adata.X has dtype object .*astype\(np.float32\)"):
        xl.tl.predict(a)
    with pytest.raises(TypeError, match=r"adata.X has dtype object"):
        xl.tl.attribute(a)
    _unchanged(a, before)


def test_gene_set_without_shared_genes_warns_and_keeps_its_row(trained):
    a = trained.copy()
    xl.tl.attribute(a)
    sets = {"planted": list(a.var_names[:10]), "ensembl": ["ENSG00000141510", "ENSG00000012048"]}
    with pytest.warns(ScxlWarning, match=r"gene set\(s\) \['ensembl'\] share no gene with the 60 genes ranked in uns\['xl_deeplift'\]"):
        xl.tl.gene_set_overlap(a, "xl_deeplift", sets, top_k=10, specificity_key=None)
    res = a.uns["xl_deeplift_overlap"]
    assert res["params"]["gene_sets"] == ["planted", "ensembl"]
    t = res["table"]
    empty = t[t["gene_set"] == "ensembl"]
    assert len(empty) == 3 and (empty["set_size"] == 0).all() and (empty["overlap"] == 0).all()
    assert empty["pvalue"].isna().all() and empty["pvalue_adj"].isna().all()
    planted = t[t["gene_set"] == "planted"]
    assert planted["pvalue"].notna().all() and (planted["set_size"] == 10).all()


# ---------------------------------------------------------------------------- input scale


def test_train_on_counts_warns_and_records_the_scale(synth):
    a = synth.copy()
    with pytest.warns(ScxlWarning, match=r"adata.layers\['counts'\] looks like raw counts \(integer values from 0 to \d+\).*"
                                         r"sc.pp.normalize_total\(adata, target_sum=1e4\); sc.pp.log1p\(adata\)"):
        xl.tl.train_classifier(a, "group", layer="counts", **FAST)
    prep = a.uns["xl"]["preprocessing"]
    assert prep["scale"] == "counts" and prep["integer_values"] and prep["value_range"][1] > 100
    b = synth.copy()
    xl.tl.train_classifier(b, "group", **FAST)  # log1p data: no warning (warnings are errors here)
    assert b.uns["xl"]["preprocessing"]["scale"] == "log"


@pytest.mark.parametrize("top", [1, 16, 20, 21])
def test_train_on_shallow_integers_warns(synth, top):
    """Whole numbers up to 20 are called log-scale (binarised data are legitimate) but may be shallow counts: say so."""
    a = synth.copy()
    rng = np.random.default_rng(0)
    a.X = np.minimum(rng.poisson(2.0, size=a.shape), top).astype(np.float32)
    a.X[0, 0] = top
    if top == 1:  # binarised: no warning (warnings are errors here)
        xl.tl.train_classifier(a, "group", **FAST)
    elif top <= 20:
        with pytest.warns(ScxlWarning, match=rf"adata.X holds only integer values from 0 to {top}: too small to be sure these are raw "
                                             r"counts.*sc.pp.normalize_total.*copy numbers or genotypes\), ignore this warning"):
            xl.tl.train_classifier(a, "group", **FAST)
    else:
        with pytest.warns(ScxlWarning, match="looks like raw counts"):
            xl.tl.train_classifier(a, "group", **FAST)
    assert a.uns["xl"]["preprocessing"]["scale"] == ("counts" if top > 20 else "log")
    if 1 < top <= 20:  # the documented way to silence it
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*too small to be sure these are raw counts")
            xl.tl.train_classifier(a, "group", overwrite=True, **FAST)


def test_train_on_real_counts_warns():
    p = xl.datasets.pancreas()
    with pytest.warns(ScxlWarning, match="looks like raw counts"):
        xl.tl.train_classifier(p, "clusters", layer="counts", **FAST)
    assert p.uns["xl"]["preprocessing"]["scale"] == "counts"


def test_train_on_linear_values_warns(synth):
    a = synth.copy()
    a.X = np.expm1(a.X) + 0.5  # normalised but not log-transformed
    with pytest.warns(ScxlWarning, match=r"implausible on a log scale .*sc.pp.log1p"):
        xl.tl.train_classifier(a, "group", **FAST)
    assert a.uns["xl"]["preprocessing"]["scale"] == "linear"


def test_predict_flags_a_query_on_another_scale(trained):
    q = trained.copy()
    with pytest.warns(ScxlWarning, match=r"the query is on another scale than the ensemble's training data: "
                                         r"adata.layers\['counts'\] looks like raw counts.*trained on 'log' data.*sc.pp.log1p"):
        xl.tl.predict(q, layer="counts")
    xl.tl.predict(trained.copy())  # same scale: no warning


def test_specificity_on_counts_names_values_linear(synth):
    a = synth.copy()
    before = a.copy()
    with pytest.raises(ValueError, match=r"values='log1p' says adata.layers\['counts'\] is log-transformed, but it holds "
                                         r"integer values .*raw counts.*Pass values='linear'"):
        xl.tl.specificity(a, "group", layer="counts")
    _unchanged(a, before)
    xl.tl.specificity(a, "group", layer="counts", values="linear")
    assert np.isfinite(a.var["xl_tau"]).all()


def test_specificity_on_real_counts():
    p = xl.datasets.pancreas()
    with pytest.raises(ValueError, match="Pass values='linear'"):
        xl.tl.specificity(p, "clusters", layer="counts")
    xl.tl.specificity(p, "clusters", layer="counts", values="linear")
    assert p.var["xl_tau"].notna().mean() > 0.9


def test_specificity_linear_on_log_data_warns(synth):
    a = synth.copy()
    with pytest.warns(ScxlWarning, match=r"values='linear' but adata.X holds values from 0 to .*looks log-transformed.*values='log1p'"):
        xl.tl.specificity(a, "group", values="linear", min_expr=0.5)


def test_logfoldchanges_on_counts_do_not_overflow(synth):
    import warnings

    a = synth.copy()
    with pytest.warns(ScxlWarning, match="raw counts"):
        xl.tl.train_classifier(a, "group", layer="counts", **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow in expm1
        xl.tl.attribute(a, method="saliency")
    lfc = np.concatenate([np.asarray(a.uns["xl_saliency"]["logfoldchanges"][g]) for g in ("group_0", "group_1", "group_2")])
    assert np.isfinite(lfc).all() and np.abs(lfc).max() < 40
    # the planted up-markers of group_0 are up in group_0, on the counts' own scale
    up = a.var_names[(a.var["marker_of"] == "group_0") & (a.var["marker_direction"] == "up")]
    df = xl.get.top_genes(a, "xl_saliency", group="group_0").set_index("gene")
    assert (df.loc[up, "logfoldchanges"] > 0.5).all()


# ---------------------------------------------------------------------------- the other tools


def _explained(trained):
    a = trained.copy()
    xl.tl.attribute(a, method="saliency")
    return a


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda a: xl.tl.train_classifier(a, "group", random_state=None, **FAST), TypeError, "random_state must be an integer seed"),
        (lambda a: xl.tl.train_classifier(a, "group", random_state="0", **FAST), TypeError, "random_state must be an integer seed"),
        (lambda a: xl.tl.train_classifier(a, "group", key_added=3, **FAST), TypeError, "key_added must be a non-empty string"),
        (lambda a: xl.tl.train_classifier(a, "group", key_added="run/1", **FAST), ValueError, r"key_added='run/1' contains '/'"),
        (lambda a: xl.tl.train_classifier(a, "group", device="tpu", **FAST), ValueError, "unsupported device 'tpu'"),
        (lambda a: xl.tl.train_classifier(a, "group", genes="gene_0001", **FAST), KeyError, r"pass a list: genes=\['gene_0001'\]"),
        (lambda a: xl.tl.predict(a, batch_size=0), ValueError, "batch_size must be a positive integer"),
        (lambda a: xl.tl.predict(a, min_gene_fraction=2), ValueError, r"min_gene_fraction must be a fraction in \[0, 1\]"),
        (lambda a: xl.tl.predict(a, key_added="a/b"), ValueError, "contains '/'"),
        (lambda a: xl.tl.predict(a, ensemble=dict(a.uns["xl"])), TypeError, "ensemble must be an xl.models.Ensemble or a path"),
        (lambda a: xl.tl.attribute(a, key_added="x/y"), ValueError, "contains '/'"),
        (lambda a: xl.tl.reproducibility(a, n_values="10"), TypeError, "n_values must be a list of positive integers"),
        (lambda a: xl.tl.reproducibility(a, n_values=(1,), n_replicates=2, max_cells=0), ValueError, "max_cells must be a positive integer"),
        (lambda a: xl.tl.reproducibility(a, n_values=(1,), n_replicates=2, target_spearman=2), ValueError, r"target_spearman must be a correlation in \(0, 1\]"),
        (lambda a: xl.tl.reproducibility(a, n_values=(1,), n_replicates=2, random_state=None), TypeError, "random_state must be an integer"),
        (lambda a: xl.tl.specificity(a, "group", layer=3), TypeError, "layer must be the name of a layer"),
        (lambda a: xl.tl.specificity(a, "group", use_raw=True), ValueError, "adata.raw is None"),
        (lambda a: xl.tl.gene_set_overlap(a, "xl_saliency", {"s": "gene_0001"}, specificity_key=None), TypeError,
         r"gene set 's' must be a list of gene names, got str 'gene_0001'; for one gene pass \['gene_0001'\]"),
        (lambda a: xl.tl.gene_set_overlap(a, "xl_saliency", "gene_0001", specificity_key=None), FileNotFoundError,
         r"to test a list of genes, pass a dict"),
        (lambda a: xl.tl.gene_set_overlap(a, "xl_saliency", {"s": ["gene_0001"]}, specificity_key=None, de_groups=("group_0",)),
         ValueError, "de_groups must be two groups to compare"),
        (lambda a: xl.tl.gene_set_overlap(a, "xl_saliency", {"s": ["gene_0001"]}, specificity_key=None, de_groups=("group_0", "group_0")),
         ValueError, "de_groups must be two different groups"),
        (lambda a: xl.tl.gene_set_overlap(a, "xl_saliency", {"s": ["gene_0001"]}, specificity_key=None, de_groups=("group_0", "group_1"),
                                          de_fdr=2), ValueError, r"de_fdr must be a false discovery rate in \(0, 1\]"),
        (lambda a: xl.tl.gene_set_overlap(a, "source", {"s": ["gene_0001"]}, specificity_key=None), TypeError,
         r"uns\['source'\]\['names'\] is a int, not the record array"),
    ],
)
def test_tools_bad_input(trained, call, exc, match):
    a = _explained(trained)
    a.uns["source"] = {"names": 3}
    before = a.copy()
    with pytest.raises(exc, match=match):
        call(a)
    _unchanged(a, before)


def test_reproducibility_needs_two_members(synth):
    a = synth.copy()
    xl.tl.train_classifier(a, "group", **FAST)
    before = a.copy()
    with pytest.raises(ValueError, match=r"vary='models' compares replicates made of different members, but the ensemble "
                                         r"under uns\['xl'\] has 1 member: train more .*extend=True.*train_missing=True"):
        xl.tl.reproducibility(a, n_values=(1,), n_replicates=2)
    _unchanged(a, before)


@pytest.mark.filterwarnings("ignore:From 0.4 .update():FutureWarning")  # mudata's own, on building a MuData
def test_mudata_around_an_anndata_points_at_the_modality(trained):
    import mudata as md

    mdata = md.MuData({"rna": trained.copy()})
    with pytest.raises(KeyError, match=r"the modality 'rna' holds one: use it \(xl.tl.predict\(mdata\['rna'\]\)\)"):
        xl.tl.predict(mdata)
    with pytest.raises(TypeError, match=r"this function takes an AnnData; pass one modality, e.g. mdata\['rna'\]"):
        xl.tl.specificity(mdata, "group")


def test_backed_and_view_inputs(trained, tmp_path):
    """Backed AnnData: read in row blocks, results in memory; a view is made actual (Scanpy's behaviour)."""
    path = tmp_path / "t.h5ad"
    trained.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    xl.tl.predict(backed)
    assert backed.obs["xl_prediction"].notna().all()
    view = trained[:100]
    xl.tl.predict(view)
    assert not view.is_view and "xl_prediction" in view.obs


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("backed", [False, True])
def test_attribute_refuses_non_finite_values(trained, tmp_path, value, backed):
    """One NaN made every contribution and score NaN, and the ranking fell back to gene order
    (review): attribution names the first bad value, as training and predict do, and writes nothing."""
    import anndata as ad

    a = trained.copy()
    a.X = np.asarray(a.X, dtype=np.float32)
    a.X[a.n_obs - 3, 4] = value
    if backed:
        a.write_h5ad(tmp_path / "bad.h5ad")
        a = ad.read_h5ad(tmp_path / "bad.h5ad", backed="r")
    before = set(a.uns)
    with pytest.raises(ValueError, match=rf"contains NaN or infinite values \(first at row {a.n_obs - 3}, variable "
                                         rf"'{a.var_names[4]}'\)"):
        xl.tl.attribute(a, store_layer=not backed)
    assert set(a.uns) == before and "xl_deeplift" not in a.layers


@pytest.mark.parametrize("tool", ["train_classifier", "predict", "attribute", "specificity"])
def test_copy_of_a_backed_anndata_says_what_to_do(synth, tmp_path, tool):
    """anndata asks for a file name to copy a backed AnnData; scxl says that copy=False is safe (the file is not written)."""
    synth.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    args = {"train_classifier": ("group",), "specificity": ("group",)}.get(tool, ())
    with pytest.raises(ValueError, match=rf"xl.tl.{tool}\(copy=True\) cannot copy a backed AnnData .* so use copy=False; or "
                                         r"adata.to_memory\(\) first"):
        getattr(xl.tl, tool)(backed, *args, copy=True)
    with pytest.raises(ValueError, match=r"adata is a view of a backed AnnData"):  # a view can hold no results at all
        getattr(xl.tl, tool)(backed[:50], *args, copy=True)
    backed.file.close()


def test_labels_that_are_missing_values_written_as_text_warn_and_the_fixes_offered_work(synth):
    """'nan' from .astype(str) of a column with NaN was trained as a class without a word; the offered fixes run."""
    import pandas as pd

    a = synth.copy()
    lab = a.obs["group"].astype(str).to_numpy().copy()
    lab[:30] = "nan"
    a.obs["lab"] = lab
    with pytest.warns(xl.ScxlWarning, match=r"class\(es\) \['nan'\], which look like missing labels written as text"):
        xl.tl.train_classifier(a, "lab", n_models=1, max_epochs=1)
    a.obs["lab"] = a.obs["lab"].astype("category").cat.remove_categories(["nan"])  # the fix the warning gives
    xl.tl.train_classifier(a, "lab", n_models=1, max_epochs=1, overwrite=True)
    assert "nan" not in list(xl.get.ensemble(a).classes)
    a.obs["num"] = np.where(np.arange(a.n_obs) < 30, np.nan, a.obs["group"].cat.codes.to_numpy().astype(float))
    with pytest.raises(TypeError, match=r"convert it \(missing values stay missing\): adata.obs\['num'\] = pd.Categorical"):
        xl.tl.train_classifier(a, "num", n_models=1, max_epochs=1, overwrite=True)
    a.obs["num"] = pd.Categorical(a.obs["num"])  # the fix the error gives
    xl.tl.train_classifier(a, "num", n_models=1, max_epochs=1, overwrite=True)
    assert len(xl.get.ensemble(a).classes) == 3 and "nan" not in list(xl.get.ensemble(a).classes)


@pytest.mark.parametrize("backed", [False, True])
def test_a_class_too_small_to_split_is_named_in_a_fix_that_runs(synth, tmp_path, backed):
    a = synth.copy()
    a.obs["tiny"] = ["a"] * (a.n_obs - 1) + ["b"]
    if backed:
        a.write_h5ad(tmp_path / "a.h5ad")
        a = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    with pytest.raises(ValueError, match="fewer than 2 cells") as err:
        xl.tl.train_classifier(a, "tiny", n_models=1, max_epochs=1)
    import re

    fix = re.search(r"e\.g\. (adata = .*?)\) or merge them", str(err.value))[1]
    names = {"adata": a}
    exec(fix, names)  # the fix as printed
    assert names["adata"].obs["tiny"].tolist().count("b") == 0 and not names["adata"].is_view
