from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scxl as xl


def test_predict_writes_slots(trained):
    a = trained.copy()
    xl.tl.predict(a)
    assert isinstance(a.obs["xl_prediction"].dtype, pd.CategoricalDtype)
    assert list(a.obs["xl_prediction"].cat.categories) == ["group_0", "group_1", "group_2"]
    proba = a.obsm["xl_proba"]
    assert list(proba.columns) == ["group_0", "group_1", "group_2"]
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(a.obs["xl_confidence"], proba.max(1), rtol=1e-6)
    assert a.obs["xl_uncertainty"].between(0, 1).all()
    assert (a.obs["xl_prediction"] == a.obs["group"]).mean() > 0.9


def test_key_added_and_copy(trained):
    out = xl.tl.predict(trained, key_added="mine", copy=True)
    assert "mine_prediction" in out.obs and "mine_prediction" not in trained.obs


def test_query_shuffled_genes_and_missing_genes(trained, caplog, tmp_path):
    a = trained.copy()
    xl.tl.predict(a)
    perm = np.random.default_rng(0).permutation(a.n_vars)
    q = ad.AnnData(a.X[:, perm], obs=a.obs[["group"]].copy(), var=pd.DataFrame(index=a.var_names[perm]))
    xl.tl.predict(q, ensemble=xl.get.ensemble(a), layer="X")
    np.testing.assert_allclose(q.obsm["xl_proba"].to_numpy(), a.obsm["xl_proba"].to_numpy(), rtol=1e-5, atol=1e-6)
    drop = ad.AnnData(a.X[:, 5:], obs=a.obs[["group"]].copy(), var=pd.DataFrame(index=a.var_names[5:]))
    xl.get.ensemble(a).save(tmp_path / "ens.npz")
    with caplog.at_level("WARNING", logger="scxl"):
        xl.tl.predict(drop, ensemble=tmp_path / "ens.npz")
    assert "5 of 60 ensemble features (8.3%) are missing" in caplog.text


def test_roundtrip_h5ad_zarr_and_npz(trained, tmp_path):
    a = trained.copy()
    xl.tl.predict(a)
    a.write_h5ad(tmp_path / "a.h5ad")
    b = ad.read_h5ad(tmp_path / "a.h5ad")
    xl.tl.predict(b, key_added="again")
    np.testing.assert_array_equal(b.obsm["again_proba"].to_numpy(), a.obsm["xl_proba"].to_numpy())
    a.write_zarr(tmp_path / "a.zarr")
    z = ad.read_zarr(tmp_path / "a.zarr")
    np.testing.assert_array_equal(xl.get.ensemble(z).predict_proba(a.X), a.obsm["xl_proba"].to_numpy())
    ens = xl.get.ensemble(a)
    path = ens.save(tmp_path / "ens")
    assert path.suffix == ".npz"
    loaded = xl.models.Ensemble.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(a.X), a.obsm["xl_proba"].to_numpy())
    assert loaded.metrics.equals(ens.metrics) or np.allclose(loaded.metrics[["accuracy"]], ens.metrics[["accuracy"]])
    assert list(loaded.classes) == list(ens.classes)
    with np.load(path, allow_pickle=False) as z:  # plain arrays only: nothing to unpickle
        assert all(z[f].dtype != object for f in z.files)


def test_cnn_roundtrip(synth, tmp_path):
    a = synth.copy()
    xl.tl.train_classifier(a, "group", model="cnn", model_kwargs={"channels": (4, 4, 8)}, n_models=2, max_epochs=2)
    xl.tl.predict(a)
    a.write_h5ad(tmp_path / "c.h5ad")
    b = ad.read_h5ad(tmp_path / "c.h5ad")
    np.testing.assert_array_equal(xl.get.ensemble(b).predict_proba(b.X), a.obsm["xl_proba"].to_numpy())


def test_a_query_without_the_training_layer_is_told_how_to_proceed(synth):
    a = synth.copy()
    a.layers["lognorm"] = a.X.copy()
    xl.tl.train_classifier(a, "group", layer="lognorm", n_models=1, max_epochs=1)
    ens = xl.get.ensemble(a)
    q = synth.copy()
    with pytest.raises(KeyError, match=r"trained on layers\['lognorm'\]: pass layer='X' .*adata\.layers\['lognorm'\] = adata\.X"):
        xl.tl.predict(q, ensemble=ens)
    with pytest.raises(KeyError, match=r"trained on layers\['lognorm'\]: pass layer='X'"):
        xl.tl.attribute(q, ensemble=ens)
    xl.tl.predict(q, ensemble=ens, layer="X")
    assert q.obs["xl_prediction"].notna().all()
