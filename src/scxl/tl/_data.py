"""Pull the expression matrix, observations and features out of an AnnData or MuData.

The kernels downstream see only a row-readable matrix (:class:`~scxl._validation.Matrix` or
:class:`ConcatMatrix`), labels and feature names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._validation import (
    Matrix,
    RowChunks,
    check_adata,
    check_unique_var_names,
    get_matrix,
    is_mudata,
)


@dataclass
class ConcatMatrix(RowChunks):
    """Modalities of a MuData side by side, rows restricted to observations present in all."""

    parts: list[Matrix]
    row_maps: list[np.ndarray]  # for each part: part row of each global row
    source: str

    @property
    def var_names(self) -> pd.Index:
        return pd.Index(np.concatenate([p.var_names.to_numpy() for p in self.parts]))

    @property
    def n_obs(self) -> int:
        return self.row_maps[0].size

    @property
    def n_vars(self) -> int:
        return sum(p.n_vars for p in self.parts)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_obs, self.n_vars)

    def rows(self, idx: np.ndarray | slice, cols: np.ndarray | None = None) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(self.n_obs)[idx]
        blocks = [p.rows(rm[idx]) for p, rm in zip(self.parts, self.row_maps, strict=True)]
        out = np.concatenate(blocks, axis=1)
        return out[:, cols] if cols is not None else out


@dataclass
class Inputs:
    """What a tool reads: the matrix, the observations of its rows, and feature annotations."""

    matrix: Matrix | ConcatMatrix
    obs: pd.DataFrame
    var: pd.DataFrame
    rows: np.ndarray  # position of each matrix row in the container's obs
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def var_names(self) -> pd.Index:
        return self.matrix.var_names


def extract(
    adata: Any,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    mods: Sequence[str] | None = None,
) -> Inputs:
    """Extract the inputs of a tool from an AnnData or a MuData (modalities side by side)."""
    check_adata(adata)
    if not is_mudata(adata):
        if mods is not None:
            raise ValueError("mods= is only for MuData objects")
        matrix = get_matrix(adata, layer=layer, use_raw=use_raw)
        check_unique_var_names(matrix.var_names, where="adata.raw" if use_raw else "adata")
        var = adata.raw.var if use_raw else adata.var
        return Inputs(matrix, adata.obs, var, np.arange(adata.n_obs), {"layer": layer, "use_raw": bool(use_raw), "source": matrix.source})
    mdata = adata
    names = list(mdata.mod) if mods is None else list(mods)
    unknown = [m for m in names if m not in mdata.mod]
    if unknown or not names:
        raise KeyError(f"modalities {unknown} are not in the MuData (available: {list(mdata.mod)})")
    layers = layer if isinstance(layer, dict) else dict.fromkeys(names, layer)
    parts, vars_ = [], []
    present = np.ones(mdata.n_obs, dtype=bool)
    positions = []
    for m in names:
        mod = mdata.mod[m]
        mat = get_matrix(mod, layer=layers.get(m), use_raw=use_raw)
        check_unique_var_names(mat.var_names, where=f"mdata[{m!r}]")
        pos = pd.Index(mod.obs_names).get_indexer(mdata.obs_names)
        present &= pos >= 0
        positions.append(pos)
        v = (mod.raw.var if use_raw else mod.var).copy()
        mat = Matrix(mat.data, pd.Index([f"{m}:{g}" for g in mat.var_names]), f"{m}.{mat.source}")
        v.index = mat.var_names
        v["modality"] = m
        parts.append(mat)
        vars_.append(v)
    rows = np.flatnonzero(present)
    if rows.size == 0:
        raise ValueError(
            f"no observation is present in all of the modalities {names}; an ensemble needs every modality it "
            "uses (train on fewer with train_classifier(..., mods=[...]))"
        )
    matrix = ConcatMatrix(parts, [p[rows] for p in positions], "+".join(p.source for p in parts))
    var = pd.concat(vars_, axis=0, join="outer")
    obs = mdata.obs.iloc[rows]
    prep = {"layer": layer if not isinstance(layer, dict) else dict(layer), "use_raw": bool(use_raw), "mods": names, "source": matrix.source}
    return Inputs(matrix, obs, var, rows, prep)


def make_fetch(matrix: Matrix | ConcatMatrix, rows: np.ndarray, cols: np.ndarray, device: torch.device, *, budget_bytes: int = 2**31):
    """Row fetcher for training: caches the selected block as one dense tensor when it fits.

    ``rows`` are the matrix rows that will be requested (e.g. labelled cells); the fetcher maps
    positions *within rows* to float32 tensors on ``device``. Backed data and blocks over the
    budget are read batch by batch instead, so the whole matrix is never densified.
    """
    from .._validation import _is_backed

    backed = any(_is_backed(p.data) for p in getattr(matrix, "parts", [matrix]))
    if not backed and rows.size * cols.size * 4 <= budget_bytes:
        dense = np.empty((rows.size, cols.size), dtype=np.float32)
        for start in range(0, rows.size, 8192):
            dense[start : start + 8192] = matrix.rows(rows[start : start + 8192], cols)
        tensor = torch.from_numpy(dense).to(device)

        def fetch(i: np.ndarray) -> torch.Tensor:
            return tensor[torch.as_tensor(i, device=device)]

        return fetch

    def fetch_stream(i: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(matrix.rows(rows[i], cols)).to(device)

    return fetch_stream


def group_means(
    matrix: Matrix | ConcatMatrix,
    codes: np.ndarray,
    n_groups: int,
    *,
    transform: Any = None,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Per-group mean of every column, streaming over row chunks (rows with code -1 ignored).

    ``transform`` (e.g. ``np.expm1``) is applied to each dense chunk before averaging.
    """
    sums = np.zeros((n_groups, matrix.n_vars), dtype=np.float64)
    counts = np.bincount(codes[codes >= 0], minlength=n_groups).astype(np.float64)
    for sl, block in matrix.chunks(chunk_size):
        c = codes[sl]
        keep = c >= 0
        if transform is not None:
            block = transform(block.astype(np.float64))
        np.add.at(sums, c[keep], block[keep])
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]
