from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import scxl as xl

FAST = {"n_models": 2, "max_epochs": 4}


def _weights(a, key="xl"):
    return a.uns[key]["weights"]


def test_train_writes_everything(adata):
    xl.tl.train_classifier(adata, "group", **FAST)
    ens = adata.uns["xl"]
    for k in ("spec", "classes", "var_names", "weights", "params", "preprocessing", "versions", "history",
              "metrics", "recall", "confusion"):
        assert k in ens, k
    assert list(ens["classes"]) == ["group_0", "group_1", "group_2"]
    assert set(ens["weights"]) == {"model_0", "model_1"}
    assert isinstance(ens["weights"]["model_0"]["net.0.weight"], np.ndarray)
    m = ens["metrics"]
    assert list(m.index) == ["model_0", "model_1", "ensemble"]
    assert ens["confusion"].sum() == len(ens["extra"]["validation_obs"])
    assert ens["history"]["model"].unique().tolist() == ["model_0", "model_1"]


def test_extend_trains_only_missing_members(synth):
    """extend=True keeps the stored members; the result equals training all members at once."""
    full, part = synth.copy(), synth.copy()
    xl.tl.train_classifier(full, "group", n_models=3, max_epochs=3)
    xl.tl.train_classifier(part, "group", n_models=2, max_epochs=3)
    kept = _weights(part)["model_1"]["net.0.weight"].copy()
    xl.tl.train_classifier(part, "group", n_models=3, max_epochs=3, extend=True)
    np.testing.assert_array_equal(_weights(part)["model_1"]["net.0.weight"], kept)
    for i in range(3):
        for k, v in _weights(full)[f"model_{i}"].items():
            np.testing.assert_array_equal(v, _weights(part)[f"model_{i}"][k])
    pd.testing.assert_frame_equal(xl.get.training_metrics(full), xl.get.training_metrics(part))
    with pytest.raises(ValueError, match="they differ: max_epochs: stored 3, now 4"):
        xl.tl.train_classifier(part, "group", n_models=4, max_epochs=4, extend=True)
    with pytest.raises(ValueError, match="they differ: min_delta: stored 0.0, now 0.01"):
        xl.tl.train_classifier(part, "group", n_models=4, max_epochs=3, min_delta=0.01, extend=True)
    with pytest.raises(ValueError, match=r"they differ: min_delta_chance: stored 0.003, now 0.0 \(pass min_delta_chance=0.003 to extend it\)"):
        xl.tl.train_classifier(part, "group", n_models=4, max_epochs=3, min_delta_chance=0.0, extend=True)
    with pytest.raises(ValueError, match=r"epoch_size: stored 100000, now 0 \(pass epoch_size=100000 to extend it\)"):
        xl.tl.train_classifier(part, "group", n_models=4, max_epochs=3, epoch_size=None, extend=True)
    with pytest.raises(ValueError, match=r"they differ: min_delta: stored 0.0, now 0.01; architecture: stored .*\}$"):  # no hint:
        xl.tl.train_classifier(part, "group", n_models=4, max_epochs=3, hidden=(8,), min_delta=0.01, extend=True)  # not enough
    whole = synth.copy()
    xl.tl.train_classifier(whole, "group", n_models=1, max_epochs=2, epoch_size=None)
    with pytest.raises(ValueError, match=r"epoch_size: stored 0, now 100000 \(pass epoch_size=None to extend it\)"):
        xl.tl.train_classifier(whole, "group", n_models=2, max_epochs=2, extend=True)
    del part.uns["xl"]["params"]["min_delta"]  # an ensemble stored before min_delta existed: it stopped with 0
    del part.uns["xl"]["params"]["min_delta_chance"]  # ... and before min_delta_chance: 0 too (the default since is 0.003)
    old = part.copy()
    xl.tl.train_classifier(old, "group", n_models=4, max_epochs=3, extend=True)  # the default keeps the stored rule
    assert old.uns["xl"]["params"]["min_delta_chance"] == 0.0
    with pytest.raises(ValueError, match=r"min_delta_chance: not recorded \(so 0.0\), now 0.003 \(pass min_delta_chance=0.0 to extend it\)"):
        xl.tl.train_classifier(part.copy(), "group", n_models=4, max_epochs=3, min_delta_chance=0.003, extend=True)
    with pytest.raises(ValueError, match=r"min_delta: not recorded \(so 0.0\), now 0.01"):
        xl.tl.train_classifier(part.copy(), "group", n_models=4, max_epochs=3, min_delta=0.01, extend=True)
    fresh = synth.copy()
    xl.tl.train_classifier(fresh, "group", n_models=1, max_epochs=2)
    assert fresh.uns["xl"]["params"]["min_delta_chance"] == 0.003  # the default without extend
    with pytest.raises(ValueError, match="already has 3 members"):
        xl.tl.train_classifier(part, "group", n_models=3, max_epochs=3, extend=True)
    with pytest.raises(ValueError, match="needs an ensemble in uns"):
        xl.tl.train_classifier(synth.copy(), "group", n_models=3, extend=True)


def test_split_per_model_and_shared(synth):
    """Per-member splits: members hold out different cells, the ensemble is scored out-of-bag."""
    per, shared = synth.copy(), synth.copy()
    xl.tl.train_classifier(per, "group", n_models=3, max_epochs=2)
    xl.tl.train_classifier(shared, "group", n_models=3, max_epochs=2, split="shared")
    n_val = per.uns["xl"]["params"]["n_validation"]
    held_per = per.uns["xl"]["extra"]["validation_obs"]
    held_shared = shared.uns["xl"]["extra"]["validation_obs"]
    assert len(held_shared) == n_val  # one split: exactly the validation cells
    assert n_val < len(held_per) <= 3 * n_val  # three different splits
    m = xl.get.training_metrics(per)
    assert m.loc["ensemble", "evaluated_on"] == "out-of-bag validation"
    assert per.uns["xl"]["params"]["split"] == "per_model"
    members = per.uns["xl"]["extra"]["validation_members"]
    assert members.shape == (3, len(held_per)) and members.dtype == bool
    assert (members.sum(1) == n_val).all() and members.any(0).all()
    assert shared.uns["xl"]["extra"]["validation_members"].all()
    # n_members: how many members predict each held-out cell, on average
    assert m.loc["ensemble", "n_members"] == pytest.approx(members.sum(0).mean())
    assert xl.get.training_metrics(shared).loc["ensemble", "n_members"] == 3
    # the out-of-bag accuracy, recomputed from the members that held each cell out
    ens = xl.get.ensemble(per)
    cells = per[np.asarray(held_per).astype(str)]
    proba = np.stack([ens.predict_proba(cells.X, members=[i]) for i in range(3)])
    oob = (proba * members[..., None]).sum(0) / members.sum(0)[:, None]
    truth = cells.obs["group"].astype(str).to_numpy()
    assert m.loc["ensemble", "accuracy"] == pytest.approx((ens.classes[oob.argmax(1)] == truth).mean())
    with pytest.raises(ValueError, match="split='bagging' is not valid"):
        xl.tl.train_classifier(synth, "group", split="bagging")


def test_learns_planted_signal(trained):
    assert xl.get.training_metrics(trained).loc["ensemble", "accuracy"] >= 0.9


def test_same_seed_identical_weights(synth):
    a, b, c = synth.copy(), synth.copy(), synth.copy()
    xl.tl.train_classifier(a, "group", **FAST, random_state=1)
    xl.tl.train_classifier(b, "group", **FAST, random_state=1)
    xl.tl.train_classifier(c, "group", **FAST, random_state=2)
    for k, v in _weights(a)["model_1"].items():
        np.testing.assert_array_equal(v, _weights(b)["model_1"][k])
    assert not np.array_equal(_weights(a)["model_0"]["net.0.weight"], _weights(c)["model_0"]["net.0.weight"])
    assert not np.array_equal(_weights(a)["model_0"]["net.0.weight"], _weights(a)["model_1"]["net.0.weight"])


def test_members_are_index_stable(synth):
    a, b = synth.copy(), synth.copy()
    xl.tl.train_classifier(a, "group", n_models=1, max_epochs=3)
    xl.tl.train_classifier(b, "group", n_models=2, max_epochs=3)
    np.testing.assert_array_equal(_weights(a)["model_0"]["net.0.weight"], _weights(b)["model_0"]["net.0.weight"])


def test_sparse_float64_integer_input_agree(synth):
    dense = synth.copy()
    sp = synth.copy()
    sp.X = sparse.csr_matrix(sp.X.astype(np.float64))
    xl.tl.train_classifier(dense, "group", **FAST)
    xl.tl.train_classifier(sp, "group", **FAST)
    np.testing.assert_allclose(_weights(dense)["model_0"]["net.0.weight"], _weights(sp)["model_0"]["net.0.weight"], rtol=1e-5, atol=1e-6)
    counts = synth.copy()
    with pytest.warns(xl._logging.ScxlWarning, match="looks like raw counts"):
        xl.tl.train_classifier(counts, "group", layer="counts", **FAST)
    assert counts.uns["xl"]["preprocessing"]["layer"] == "counts"
    assert counts.uns["xl"]["preprocessing"]["scale"] == "counts"


def test_backed_input(synth, tmp_path):
    path = tmp_path / "s.h5ad"
    synth.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    xl.tl.train_classifier(backed, "group", **FAST)
    mem = synth.copy()
    xl.tl.train_classifier(mem, "group", **FAST)
    np.testing.assert_allclose(backed.uns["xl"]["weights"]["model_0"]["net.0.weight"],
                               mem.uns["xl"]["weights"]["model_0"]["net.0.weight"], rtol=1e-5, atol=1e-6)
    backed.file.close()


def test_gene_subset_and_hidden(adata):
    adata.var["use"] = np.arange(adata.n_vars) < 20
    xl.tl.train_classifier(adata, "group", genes="use", hidden=(16, 8), **FAST)
    ens = xl.get.ensemble(adata)
    assert list(ens.var_names) == list(adata.var_names[:20])
    assert ens.spec["hidden"] == [16, 8]


def test_cnn_with_orders(adata):
    xl.tl.train_classifier(adata, "group", model="cnn", model_kwargs={"channels": (4, 8, 8)},
                           gene_order="random_per_model", **FAST)
    ens = xl.get.ensemble(adata)
    assert ens.model_type == "cnn" and ens.orders.shape == (2, adata.n_vars)
    assert not np.array_equal(ens.orders[0], ens.orders[1])
    assert ens.predict_proba(adata.X).shape == (adata.n_obs, 3)


def test_cnn_genomic_order_from_annotation(adata):
    ann = pd.DataFrame({"symbol": adata.var_names, "chrom": ["1", "2"] * 30, "start": np.arange(60)[::-1]})
    xl.tl.train_classifier(adata, "group", model="cnn", model_kwargs={"channels": (4, 4, 4)},
                           gene_order="genomic", gene_annotation=ann, n_models=1, max_epochs=1)
    order = xl.get.ensemble(adata).orders[0]
    assert ann["chrom"].iloc[order[:30]].eq("1").all()


def test_custom_factory(adata):
    def factory(n_features, n_classes):
        return torch.nn.Sequential(torch.nn.Linear(n_features, n_classes))

    xl.tl.train_classifier(adata, "group", model=factory, **FAST)
    spec = adata.uns["xl"]["spec"]
    assert spec["factory"].endswith("test_custom_factory.<locals>.factory")
    # the same session knows the factory: predict, attribute and get.ensemble need no factory=
    assert xl.get.ensemble(adata).predict(adata.X).shape == (adata.n_obs,)
    xl.tl.predict(adata)
    xl.tl.attribute(adata, method="saliency")
    assert "xl_saliency" in adata.uns and adata.obs["xl_prediction"].notna().all()
    assert xl.get.ensemble(adata, factory=factory).predict(adata.X).shape == (adata.n_obs,)


def test_custom_factory_in_a_new_session(adata, monkeypatch):
    """A new session does not know the factory: the error says how to give it; register_factory fixes it."""
    from scxl.models import _modules

    def factory(n_features, n_classes):
        return torch.nn.Sequential(torch.nn.Linear(n_features, n_classes))

    xl.tl.train_classifier(adata, "group", model=factory, **FAST)
    monkeypatch.setattr(_modules, "_FACTORIES", {})  # what a fresh interpreter knows
    before = adata.copy()
    for call in (xl.get.ensemble, xl.tl.predict, lambda a: xl.tl.attribute(a, method="saliency")):
        with pytest.raises(ValueError, match=r"not known in this session.*xl.models.register_factory\(factory\).*factory="):
            call(adata)
    assert set(adata.obs) == set(before.obs) and set(adata.uns) == set(before.uns)
    assert xl.models.register_factory(factory) == adata.uns["xl"]["spec"]["factory"]
    xl.tl.predict(adata)
    assert adata.obs["xl_prediction"].notna().all()


def test_custom_factory_that_builds_another_module(adata):
    """A factory registered under the recorded name but building a different module is caught by the weight check."""
    def factory(n_features, n_classes):
        return torch.nn.Sequential(torch.nn.Linear(n_features, n_classes))

    def other(n_features, n_classes):
        return torch.nn.Sequential(torch.nn.Linear(n_features, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_classes))

    xl.tl.train_classifier(adata, "group", model=factory, **FAST)
    with pytest.raises(xl.models.EnsembleFormatError, match=r"member model_0 lacks weight\(s\) \['2.weight', '2.bias'\].*does not build the module the ensemble was trained with: pass the same factory"):
        xl.get.ensemble(adata, factory=other)
    with pytest.raises(TypeError, match="factory must be a callable"):
        xl.models.register_factory("factory")


def test_cross_validation(adata):
    xl.tl.train_classifier(adata, "group", n_models=1, max_epochs=3, cv=3)
    m = xl.get.training_metrics(adata)
    assert {"cv_fold_1", "cv_fold_2", "cv_fold_3", "cv"} <= set(m.index)
    assert m.loc["cv", "evaluated_on"] == "out-of-fold"


def test_nan_labels_are_left_out(adata):
    adata.obs["group"] = adata.obs["group"].astype(object)
    adata.obs.iloc[:10, adata.obs.columns.get_loc("group")] = np.nan
    xl.tl.train_classifier(adata, "group", **FAST)
    p = adata.uns["xl"]["params"]
    assert p["n_train"] + p["n_validation"] == adata.n_obs - 10
    xl.tl.predict(adata)
    assert adata.obs["xl_prediction"].notna().all()


def test_copy_returns_and_leaves_original(synth):
    a = synth.copy()
    out = xl.tl.train_classifier(a, "group", copy=True, **FAST)
    assert "xl" in out.uns and "xl" not in a.uns


def test_view_is_made_actual(synth):
    view = synth[:300]
    xl.tl.train_classifier(view, "group", **FAST)
    assert not view.is_view and "xl" in view.uns


def test_epoch_size_options(synth):
    """'auto' caps epochs at 100,000 samples (small data: whole passes, as before); None and integers work;
    anything else is refused with the valid choices."""
    auto, whole, capped = synth.copy(), synth.copy(), synth.copy()
    xl.tl.train_classifier(auto, "group", n_models=2, max_epochs=3)
    xl.tl.train_classifier(whole, "group", n_models=2, max_epochs=3, epoch_size=None)
    xl.tl.train_classifier(capped, "group", n_models=2, max_epochs=3, epoch_size=50)
    assert auto.uns["xl"]["params"]["epoch_size"] == 100_000 and whole.uns["xl"]["params"]["epoch_size"] == 0
    for i in range(2):  # 400 cells: an auto epoch is the whole pass
        for k, v in auto.uns["xl"]["weights"][f"model_{i}"].items():
            np.testing.assert_array_equal(v, whole.uns["xl"]["weights"][f"model_{i}"][k])
    assert not np.array_equal(capped.uns["xl"]["weights"]["model_0"]["net.0.weight"],
                              whole.uns["xl"]["weights"]["model_0"]["net.0.weight"])
    for bad in (1, 0, 2.5, "big", True):
        with pytest.raises((ValueError, TypeError), match="epoch_size"):
            xl.tl.train_classifier(synth.copy(), "group", n_models=2, max_epochs=2, epoch_size=bad)


def test_min_delta_stored_and_large_values_warn(synth):
    """-0.0 is stored as 0.0; a min_delta above 0.1 warns (it would stop training after the first epochs)."""
    a = synth.copy()
    xl.tl.train_classifier(a, "group", n_models=1, max_epochs=2, min_delta=-0.0)
    stored = a.uns["xl"]["params"]["min_delta"]
    assert stored == 0.0 and np.copysign(1.0, stored) == 1.0
    from scxl._logging import ScxlWarning

    with pytest.warns(ScxlWarning, match=r"min_delta=0.5 counts an epoch as an improvement only if it lowers the validation loss by more than 50%"):
        xl.tl.train_classifier(synth.copy(), "group", n_models=1, max_epochs=2, min_delta=0.5)
    with pytest.warns(ScxlWarning, match=r"min_delta_chance=0.2 counts an epoch as an improvement only if .* 20% of the chance loss"):
        xl.tl.train_classifier(synth.copy(), "group", n_models=1, max_epochs=2, min_delta_chance=0.2)


def test_retraining_drops_the_previous_ensembles_predictions():
    """A new ensemble under the same key left the old predictions in obs/obsm, which get.proba then
    returned under the new ensemble's classes (review): they are removed, and the rankings of the
    previous ensemble are named in a warning (kept)."""
    a = xl.datasets.synthetic(200, 100, 3, random_state=0)
    a.obs["other"] = np.where(np.arange(a.n_obs) % 2, "odd", "even")
    xl.tl.train_classifier(a, "group", n_models=2, max_epochs=2)
    xl.tl.predict(a)
    xl.tl.attribute(a, store_layer=False)
    with pytest.warns(xl.ScxlWarning, match=r"replaced the ensemble in uns\['xl'\]: removed the previous ensemble's "
                                             r"predictions .*uns\['xl_deeplift'\] was computed with the previous ensemble"):
        xl.tl.train_classifier(a, "other", n_models=2, max_epochs=2)
    assert "xl_prediction" not in a.obs and "xl_proba" not in a.obsm and "xl_deeplift" in a.uns
    xl.tl.predict(a)
    assert list(xl.get.proba(a).columns) == ["even", "odd"]


def test_scaled_x_with_a_raw_points_at_use_raw(synth):
    import scanpy as sc

    a = synth.copy()
    a.raw = a
    sc.pp.scale(a)
    with pytest.warns(xl.ScxlWarning, match=r"looks centred or scaled.*adata\.raw is set: .*use_raw=True"):
        xl.tl.train_classifier(a, "group", n_models=1, max_epochs=1)


def test_use_raw_with_a_gene_column_of_var_only_says_how_to_select_raw_genes(synth):
    a = synth.copy()
    a.raw = a
    a.var["highly_variable"] = np.arange(a.n_vars) < 10  # set on var after raw, as scanpy's workflow does
    with pytest.raises(KeyError, match=r"raw\.var has no column 'highly_variable' \(adata\.var has it\): pass the "
                                       r"genes by name, genes=adata\.var_names\[adata\.var\['highly_variable'\]\]"):
        xl.tl.train_classifier(a, "group", use_raw=True, genes="highly_variable", n_models=1, max_epochs=1)
    with pytest.raises(KeyError, match=r"genes='nope' is not a boolean column of raw\.var"):
        xl.tl.train_classifier(a, "group", use_raw=True, genes="nope", n_models=1, max_epochs=1)
    xl.tl.train_classifier(a, "group", use_raw=True, genes=a.var_names[a.var["highly_variable"]], n_models=1,
                           max_epochs=1)  # the fix it gives
    assert len(xl.get.ensemble(a).var_names) == 10
