"""``xl.pp.append_covariates``: one-hot covariate blocks appended to the expression features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._validation import check_adata, check_groupby


def append_covariates(adata: AnnData, keys: str | Sequence[str], *, block_key: str = "xl_block") -> AnnData:
    """Append one-hot encoded ``obs`` covariates to the features, as blocks a model can use.

    Each categorical column becomes a block of indicator features named ``"key=category"``;
    ``var[block_key]`` names the block of each feature (empty for genes). Attribution with
    ``gradient_correction=True`` uses these blocks: within a one-hot block inputs live on a
    simplex, and the gradient component off the simplex is removed (Majdandzic, Rajesh & Koo).

    AnnData cannot grow features in place, so this returns a new object; ``layers``, ``obsm``
    and ``uns`` are carried over (layers get zeros in the covariate columns).

    Parameters
    ----------
    adata
        Annotated data matrix.
    keys
        ``obs`` column(s), categorical or string.
    block_key
        ``var`` column that records the block of each feature.

    Returns
    -------
    A new AnnData with ``n_vars + sum(n_categories)`` features and ``var[block_key]``.

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.synthetic(100, 100, 2, random_state=0)
    >>> adata.obs["batch"] = ["a", "b"] * 50
    >>> bigger = xl.pp.append_covariates(adata, "batch")
    >>> bigger.var_names[-2:].tolist(), bigger.var["xl_block"].iloc[-1]
    (['batch=a', 'batch=b'], 'batch')
    """
    check_adata(adata, allow_mudata=False)
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise ValueError("give at least one obs column in keys")
    blocks, names, block_of = [], [], []
    for k in keys:
        col = check_groupby(adata.obs, k)
        if col.isna().any():
            raise ValueError(f"obs[{k!r}] has missing values; a one-hot block needs a category for every observation")
        cats = col.cat.categories.astype(str)
        onehot = np.zeros((adata.n_obs, len(cats)), dtype=np.float32)
        onehot[np.arange(adata.n_obs), col.cat.codes.to_numpy()] = 1.0
        blocks.append(onehot)
        names += [f"{k}={c}" for c in cats]
        block_of += [k] * len(cats)
    cov = np.concatenate(blocks, axis=1)
    clash = pd.Index(names).intersection(adata.var_names)
    if len(clash):
        raise ValueError(f"covariate feature names already exist in var_names: {list(clash[:5])}")

    def join(m):
        if sparse.issparse(m):
            return sparse.hstack([m, sparse.csr_matrix(cov)], format="csr")
        return np.hstack([np.asarray(m), cov.astype(np.asarray(m).dtype, copy=False)])

    var = pd.concat([adata.var, pd.DataFrame(index=pd.Index(names))], axis=0)
    var[block_key] = [""] * adata.n_vars + block_of
    layers = {
        name: (sparse.hstack([m, sparse.csr_matrix(cov.shape)], format="csr") if sparse.issparse(m)
               else np.hstack([np.asarray(m), np.zeros(cov.shape, dtype=np.asarray(m).dtype)]))
        for name, m in adata.layers.items()
    }
    return AnnData(join(adata.X), obs=adata.obs.copy(), var=var, layers=layers, obsm=dict(adata.obsm),
                   uns=dict(adata.uns))
