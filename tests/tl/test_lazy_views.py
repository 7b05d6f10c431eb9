"""Lazy AnnData (read_lazy), their row subsets, and views of a backed AnnData: every tool and getter."""

from __future__ import annotations

import re
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scxl as xl
from scxl import _inputs

FAST = {"n_models": 2, "max_epochs": 3, "random_state": 0}


def _write(adata, path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*zarr v2.*", category=UserWarning)
        adata.write_zarr(path) if str(path).endswith(".zarr") else adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """600 cells x 80 genes, 3 groups (one named with a '/'), an ensemble trained on them, and the files."""
    a = xl.datasets.synthetic(600, 80, 3, n_markers=5, random_state=0)
    a.obs["group"] = a.obs["group"].cat.rename_categories({"group_2": "CD4+/CD25 T"})
    del a.layers["counts"]
    xl.tl.train_classifier(a, "group", **FAST)
    folder = tmp_path_factory.mktemp("lazy_views")
    csr = a.copy()
    csr.X = sparse.csr_matrix(csr.X)
    files = {"dense.h5ad": _write(a, folder / "dense.h5ad"), "csr.zarr": _write(csr, folder / "csr.zarr"),
             "csr.h5ad": _write(csr, folder / "csr.h5ad")}
    return a, xl.get.ensemble(a), files


def test_proba_of_a_lazy_anndata(data):
    """obs of a lazy AnnData holds xarray columns: proba reads the prediction's categories through pandas."""
    mem, ens, files = data
    lazy = ad.experimental.read_lazy(files["csr.zarr"])
    ref = mem.copy()
    for a in (lazy, ref):
        xl.tl.predict(a, ensemble=ens)
    got = xl.get.proba(lazy)
    assert "CD4+/CD25 T" in got.columns  # the real name, from the categories of obs["xl_prediction"]
    pd.testing.assert_frame_equal(got, xl.get.proba(ref))


@pytest.mark.parametrize(("name", "rows"), [("csr.zarr", slice(100, 400)), ("csr.zarr", np.arange(0, 600, 2)),
                                            ("dense.h5ad", np.arange(0, 600, 2))])
def test_row_subsets_of_a_lazy_anndata_are_dask(data, name, rows):
    """A row subset of a lazy AnnData (X an anndata DaskArrayView) is read as Dask: the answers of its to_memory()."""
    _, ens, files = data
    sub = ad.experimental.read_lazy(files[name])[rows]
    assert type(sub.X).__module__ == "anndata._core.views" and _inputs._is_dask(sub.X)
    assert not _inputs._is_dask(np.zeros((2, 2)))
    mem = sub.to_memory()
    for a in (sub, mem):
        xl.tl.predict(a, ensemble=ens)
        a.uns["xl"] = ens.to_dict()
        xl.tl.attribute(a, store_layer=False)
    np.testing.assert_array_equal(np.asarray(sub.obs["xl_prediction"]), mem.obs["xl_prediction"].to_numpy())
    assert sub.uns["xl_deeplift"]["params"]["backend"] == "dask"
    assert mem.uns["xl_deeplift"]["params"]["backend"] == "memory"
    for g in mem.uns["xl_deeplift"]["scores"].dtype.names:
        np.testing.assert_allclose(np.asarray(sub.uns["xl_deeplift"]["scores"][g], dtype=float),
                                   np.asarray(mem.uns["xl_deeplift"]["scores"][g], dtype=float), rtol=0, atol=1e-6)
    sub = ad.experimental.read_lazy(files[name])[rows]
    xl.tl.train_classifier(sub, "group", key_added="again", **FAST)
    assert sub.uns["again"]["params"]["streamed"]  # read from disk by blocks, not as in-memory data


def _no_reading(*args, **kwargs):
    raise AssertionError("the tool read the data before refusing the view")


@pytest.mark.parametrize("tool", ["train_classifier", "predict", "attribute", "specificity", "reproducibility"])
def test_views_of_a_backed_anndata_are_refused_up_front(data, tool, monkeypatch, caplog):
    """A view of a backed AnnData cannot hold results: a clear error that says what to do, before any work."""
    _, ens, files = data
    backed = ad.read_h5ad(files["csr.h5ad"], backed="r")
    view = backed[backed.obs["group"].isin(["group_0", "CD4+/CD25 T"])]
    calls = {
        "train_classifier": lambda a: xl.tl.train_classifier(a, "group", key_added="other", **FAST),
        "predict": lambda a: xl.tl.predict(a, ensemble=ens),
        "attribute": lambda a: xl.tl.attribute(a, ensemble=ens),
        "specificity": lambda a: xl.tl.specificity(a, "group"),
        "reproducibility": lambda a: xl.tl.reproducibility(a, n_values=(1,), n_replicates=2),
    }
    for module in (_inputs, xl.tl._train, xl.tl._specificity):
        monkeypatch.setattr(module, "extract", _no_reading)
    who = f"xl.tl.{tool}"
    with pytest.raises(ValueError, match=rf"view of a backed AnnData .*csr\.h5ad.*{re.escape(who)} writes its results"
                                         r".*adata = adata\.to_memory\(\).*adata\.copy\(filename="):
        calls[tool](view)
    assert "received a view" not in caplog.text
    assert view.is_view and "other" not in view.uns
    monkeypatch.undo()
    if tool == "predict":  # what the message says to do works
        sub = view.to_memory()
        xl.tl.predict(sub, ensemble=ens)
        assert sub.obs["xl_prediction"].notna().all()
    backed.file.close()


def test_group_colors_of_a_lazy_anndata(data):
    """The colours a user set in uns are used for a lazy AnnData's groups, as for an in-memory one."""
    from scxl.pl._utils import group_colors

    mem, _, files = data
    lazy = ad.experimental.read_lazy(files["csr.zarr"])
    cats = list(mem.obs["group"].cat.categories)
    colors = ["#111111", "#222222", "#333333"]
    for a in (mem.copy(), lazy):
        a.uns["group_colors"] = colors
        assert group_colors(a, "group", cats[::-1]) == colors[::-1]


def test_training_again_on_a_lazy_anndata_removes_the_previous_predictions(data):
    """Retraining after predict: the lazy obs (a Dataset2D, no __delitem__) loses the stale prediction columns."""
    _, _, files = data
    lazy = ad.experimental.read_lazy(files["csr.zarr"])
    xl.tl.train_classifier(lazy, "group", **FAST)
    xl.tl.predict(lazy)
    with pytest.warns(xl.ScxlWarning, match=r"removed the previous ensemble's predictions \(obs\['xl_prediction'\]"):
        xl.tl.train_classifier(lazy, "group", **{**FAST, "random_state": 1})
    assert lazy.uns["xl"]["params"]["random_state"] == 1
    assert not {"xl_prediction", "xl_confidence", "xl_uncertainty"} & set(lazy.obs.columns)
    assert "xl_proba" not in lazy.obsm
    xl.tl.predict(lazy)
    assert "xl_prediction" in lazy.obs.columns
