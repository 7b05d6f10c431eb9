"""The input checks of ``scxl._validation``: scale detection on arrays and on the real data sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scxl as xl
from scxl._validation import COUNTS_MIN_MAX, LOG_MAX, ValueSummary, detect_scale, summarise_values


def _dense(x):
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        (np.array([[0, 3, 250], [1, 0, 7]]), "counts"),
        (np.array([[0.0, 3.0, 21.0]]), "counts"),
        (np.array([[0, 1, 2, 3]]), "log"),  # small whole numbers: binarised or shallow, not called counts
        (np.log1p(np.array([[0.0, 3.0, 2500.0]])), "log"),
        (np.array([[0.0, 12.5, 60.2]]), "linear"),  # TPM-like
        (np.array([[-1.2, 0.0, 3.0]]), "scaled"),
        (np.zeros((2, 2)), "log"),
    ],
)
def test_detect_scale_on_arrays(values, scale):
    assert detect_scale(values) == scale
    assert detect_scale(summarise_values([values[:1], values[1:]])) == scale


def test_thresholds_and_summary():
    assert (COUNTS_MIN_MAX, LOG_MAX) == (20.0, 50.0)
    v = summarise_values(np.array([[0.0, np.nan, 4305.0]]))
    assert v == ValueSummary(0.0, 4305.0, True) and v.scale == "counts"
    assert v.describe() == "integer values from 0 to 4305"


@pytest.mark.parametrize(
    ("load", "scale"),
    [
        (lambda: xl.datasets.synthetic(200, 80, 3, n_markers=5, random_state=0).X, "log"),
        (lambda: xl.datasets.synthetic(200, 80, 3, n_markers=5, random_state=0).layers["counts"], "counts"),
        (lambda: xl.datasets.pbmc68k().X, "log"),
        (lambda: xl.datasets.pancreas().X, "log"),
        (lambda: xl.datasets.pancreas().layers["counts"], "counts"),
        (lambda: xl.datasets.eccite_pbmc()["rna"].X, "counts"),
        (lambda: xl.datasets.tcga6().layers["counts"], "counts"),
        (lambda: xl.datasets.gtex26().X, "log"),
        (lambda: xl.datasets.brca_multiomics()["mrna"].X, "scaled"),
        (lambda: xl.datasets.hpa_tissue_profiles(version="v18").X, "linear"),
    ],
)
def test_detect_scale_on_the_data_sets(load, scale):
    assert detect_scale(_dense(load())) == scale


@pytest.mark.parametrize("density", [0.3, 1.0])
def test_check_values_reads_sparse_data_as_stored(density, monkeypatch):
    """CSR data are checked on their stored values, never densified: the same summary as the dense check,
    the first NaN named at its row and gene, implicit zeros counted in the range."""
    from scxl import _inputs
    from scxl._validation import check_values

    rng = np.random.default_rng(0)
    x = (rng.random((50, 7)) * 30 + 1) * (rng.random((50, 7)) < density)
    x = np.round(x).astype(np.float32)
    names = pd.Index([f"g{j}" for j in range(7)])
    dense = check_values(_inputs.Matrix(x, names, "X"), chunk_size=16)
    csr = _inputs.Matrix(sparse.csr_matrix(x), names, "X")
    monkeypatch.setattr(_inputs.Matrix, "rows", lambda *a, **k: pytest.fail("densified"))
    assert check_values(csr, chunk_size=16) == dense
    assert check_values(csr.select(np.array([2, 0])), chunk_size=16).integer
    bad = x.copy()
    bad[37, 4], bad[41, 2] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"first at row 37, variable 'g4'"):
        check_values(_inputs.Matrix(sparse.csr_matrix(bad), names, "X"), chunk_size=16)
