"""Input checks and matrix extraction shared by every AnnData-facing function.

Everything here raises real exceptions with messages that say what was found and what to do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._logging import logger, warn


def is_mudata(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`mudata.MuData` (without importing mudata)."""
    return type(obj).__name__ == "MuData" and hasattr(obj, "mod")


def check_adata(adata: Any, *, allow_mudata: bool = True) -> None:
    """Raise if ``adata`` is not a usable, non-empty AnnData (or MuData)."""
    if is_mudata(adata):
        if not allow_mudata:
            raise TypeError("this function takes an AnnData; pass one modality, e.g. mdata['rna']")
        if adata.n_obs == 0 or len(adata.mod) == 0:
            raise ValueError("the MuData is empty (no observations or no modalities)")
        return
    if not isinstance(adata, AnnData):
        raise TypeError(f"expected an AnnData, got {type(adata).__name__}")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"the AnnData is empty ({adata.n_obs} observations × {adata.n_vars} variables)")


def view_to_actual(adata: AnnData) -> None:
    """Turn a view into an actual AnnData in place (Scanpy's behaviour), with a log line."""
    if getattr(adata, "is_view", False):
        logger.warning("received a view of an AnnData; making a copy so results can be written")
        adata._init_as_actual(adata.copy())


def check_groupby(obs: pd.DataFrame, groupby: str, *, where: str = "adata.obs") -> pd.Series:
    """Return ``obs[groupby]`` as a categorical Series, or raise a clear error."""
    if not isinstance(groupby, str):
        raise TypeError(f"groupby must be the name of a column of {where}, got {type(groupby).__name__}")
    if groupby not in obs.columns:
        cols = ", ".join(map(repr, list(obs.columns)[:20])) or "none"
        raise KeyError(f"groupby={groupby!r} is not a column of {where} (columns: {cols})")
    col = obs[groupby]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.remove_unused_categories()
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_string_dtype(col) or col.dtype == object:
        if col.dtype == object and not all(isinstance(v, str) for v in col.dropna()):
            raise TypeError(
                f"{where}[{groupby!r}] has dtype object with non-string values; it must be "
                "categorical or string. Convert it with .astype(str).astype('category')"
            )
        return col.astype("category")
    raise TypeError(
        f"{where}[{groupby!r}] has dtype {col.dtype}; it must be categorical or string to define "
        f"groups. If the values are labels, convert it: {where}[{groupby!r}] = "
        f"{where}[{groupby!r}].astype(str).astype('category')"
    )


def check_unique_var_names(var_names: pd.Index, *, where: str = "adata") -> None:
    """Raise if variable names are duplicated."""
    if not var_names.is_unique:
        dup = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"{where}.var_names are not unique (e.g. {dup}); run {where}.var_names_make_unique() first"
        )


class RowChunks:
    """Mixin: ``chunks`` for any row reader with ``rows(idx)`` and ``n_obs``."""

    def chunks(self, chunk_size: int = 4096) -> Iterator[tuple[slice, np.ndarray]]:
        """Iterate over ``(slice, dense float32 block)`` in row order."""
        for start in range(0, self.n_obs, chunk_size):
            sl = slice(start, min(start + chunk_size, self.n_obs))
            yield sl, self.rows(sl)


@dataclass
class Matrix(RowChunks):
    """A row-readable expression matrix (dense, sparse or backed) with its feature names.

    Kernels read rows through :meth:`rows` and :meth:`chunks`, so a backed or sparse matrix is
    never densified as a whole.
    """

    data: Any
    var_names: pd.Index
    source: str

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)

    @property
    def n_obs(self) -> int:
        return self.data.shape[0]

    @property
    def n_vars(self) -> int:
        return self.data.shape[1]

    def rows(self, idx: np.ndarray | slice, cols: np.ndarray | None = None) -> np.ndarray:
        """Dense float32 rows ``idx`` (optionally only columns ``cols``)."""
        data = self.data
        if isinstance(idx, slice):
            block = data[idx]
        elif _is_backed(data):
            idx = np.asarray(idx)
            order = np.argsort(idx, kind="stable")
            sorted_idx = idx[order]
            uniq, inverse = np.unique(sorted_idx, return_inverse=True)
            block = data[uniq]
            block = block[inverse] if uniq.size != sorted_idx.size else block
            undo = np.empty_like(order)
            undo[order] = np.arange(order.size)
            block = block[undo]
        else:
            block = data[idx]
        if sparse.issparse(block):
            if cols is not None:
                block = block[:, cols]
            return np.asarray(block.toarray(), dtype=np.float32)
        block = np.asarray(block, dtype=np.float32)
        return block[:, cols] if cols is not None else block


def _is_backed(data: Any) -> bool:
    mod = type(data).__module__
    return mod.startswith("h5py") or "backed" in mod or "_core.sparse_dataset" in mod or type(
        data
    ).__name__ in ("Dataset", "_CSRDataset", "_CSCDataset", "CSRDataset", "CSCDataset")


def get_matrix(adata: AnnData, *, layer: str | None = None, use_raw: bool = False) -> Matrix:
    """Return the matrix a tool works on: ``X``, ``layers[layer]`` or ``raw.X`` (never inferred)."""
    if use_raw and layer is not None:
        raise ValueError("use_raw=True and layer are mutually exclusive: choose one")
    if use_raw:
        if adata.raw is None:
            raise ValueError("use_raw=True but adata.raw is None; use adata.X or a layer instead")
        return Matrix(adata.raw.X, adata.raw.var_names, "raw.X")
    if layer is not None:
        if layer not in adata.layers:
            avail = ", ".join(map(repr, adata.layers.keys())) or "none"
            raise KeyError(f"layer={layer!r} is not in adata.layers (available: {avail})")
        return Matrix(adata.layers[layer], adata.var_names, f"layers[{layer!r}]")
    if adata.X is None:
        raise ValueError("adata.X is None; pass layer= to use a layer")
    return Matrix(adata.X, adata.var_names, "X")


def check_values(matrix: Matrix, *, expect_nonnegative: bool = True, chunk_size: int = 8192) -> None:
    """Raise on NaN/inf; warn on negative values when log-expression is expected. Streams chunks."""
    negative = False
    for sl, block in matrix.chunks(chunk_size):
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(
                f"{matrix.source} contains NaN or infinite values (first at row {sl.start + bad[0]}, "
                f"variable {matrix.var_names[bad[1]]!r}); impute or drop them first"
            )
        negative = negative or bool((block < 0).any())
    if negative and expect_nonnegative:
        warn(
            f"{matrix.source} contains negative values; scxl expects log-normalised, non-negative "
            "expression (e.g. sc.pp.normalize_total + sc.pp.log1p). Scaled data works for training, "
            "but references such as 'universal' are truncated at 0.",
            stacklevel=4,
        )


def resolve_genes(var: pd.DataFrame, var_names: pd.Index, genes: Any) -> np.ndarray:
    """Integer indices of the selected features.

    ``genes`` may be ``None`` (all), the name of a boolean ``var`` column (e.g.
    ``"highly_variable"``), a boolean mask, or a sequence of names.
    """
    n = len(var_names)
    if genes is None:
        return np.arange(n)
    if isinstance(genes, str):
        if genes not in var.columns:
            raise KeyError(f"genes={genes!r} is not a boolean column of var (columns: {list(var.columns)[:20]})")
        mask = var[genes].to_numpy()
        if mask.dtype != bool:
            raise TypeError(f"var[{genes!r}] must be boolean to select genes, found dtype {mask.dtype}")
        idx = np.flatnonzero(mask)
    else:
        arr = np.asarray(genes)
        if arr.dtype == bool:
            if arr.size != n:
                raise ValueError(f"boolean gene mask has length {arr.size}, expected {n}")
            idx = np.flatnonzero(arr)
        else:
            names = pd.Index(np.asarray(arr, dtype=str))
            missing = names[~names.isin(var_names)]
            if len(missing):
                raise KeyError(f"{len(missing)} requested genes are not in var_names, e.g. {missing[:5].tolist()}")
            idx = var_names.get_indexer(names)
    if idx.size == 0:
        raise ValueError("the gene selection is empty")
    return idx


def check_in(value: Any, options: Sequence[Any], name: str) -> None:
    """Raise a ValueError listing the valid options."""
    if value not in options:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(options)}")


def resolve_device(device: str | None):
    """Return a ``torch.device``; ``"auto"`` picks CUDA when available."""
    import torch

    from ._settings import settings

    device = settings.device if device is None else device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) and not isinstance(device, torch.device):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but CUDA is not available; use device='cpu' or 'auto'")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise RuntimeError("device='mps' was requested but MPS is not available; use device='cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    return dev
