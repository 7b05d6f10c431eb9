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
    with pytest.raises(ValueError, match=r"only 20 of the ensemble's 60 features \(33%\)"):
        xl.tl.predict(q)
