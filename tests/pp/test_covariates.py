from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import scxl as xl


def test_append_covariates(adata):
    adata.obs["batch"] = ["a", "b", "c", "d"] * 100
    adata.layers["sp"] = sparse.csr_matrix(adata.X)
    out = xl.pp.append_covariates(adata, "batch")
    assert out.n_vars == adata.n_vars + 4
    assert out.var["xl_block"].tolist()[-4:] == ["batch"] * 4
    block = out[:, out.var["xl_block"] == "batch"].X
    np.testing.assert_array_equal(block.sum(1), 1)
    assert sparse.issparse(out.layers["sp"]) and out.layers["sp"].shape == out.shape
    np.testing.assert_array_equal(out.X[:, : adata.n_vars], adata.X)


def test_append_covariates_errors(adata):
    adata.obs["nan"] = ["a", None] * 200
    with pytest.raises(ValueError, match="missing values"):
        xl.pp.append_covariates(adata, "nan")
    with pytest.raises(KeyError, match="not a column"):
        xl.pp.append_covariates(adata, "nope")
