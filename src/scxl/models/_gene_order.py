"""Gene orders for the grid CNN: which gene sits at which grid position.

Every function returns a permutation ``order`` of ``range(n_genes)``; ``order[p]`` is the gene at
grid position ``p`` (row-major). They are pure: arrays and tables in, an integer array out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Names of the built-in CNN gene orders (``gene_order=`` of :func:`scxl.tl.train_classifier`).
GENE_ORDERS = ("variance", "correlation", "random", "random_per_model", "genomic")

_CHROM_RANK = {str(i): i for i in range(1, 23)} | {"X": 23, "Y": 24, "M": 25, "MT": 25}


def order_by_variance(mean: np.ndarray, sq_mean: np.ndarray) -> np.ndarray:
    """Genes by decreasing variance (ties broken by gene index)."""
    var = np.asarray(sq_mean) - np.asarray(mean) ** 2
    return np.lexsort((np.arange(var.size), -var))


def order_by_correlation(X: np.ndarray) -> np.ndarray:
    """Leaf order of an average-linkage clustering of genes on ``1 - Pearson correlation``.

    Correlated genes end up next to each other on the grid, so the convolutions see co-expressed
    neighbourhoods. Constant genes are placed at the end. Costs O(G²) memory.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    X = np.asarray(X, dtype=np.float64)
    sd = X.std(axis=0)
    varying = np.flatnonzero(sd > 0)
    constant = np.flatnonzero(sd == 0)
    if varying.size < 3:
        return np.concatenate([varying, constant])
    corr = np.corrcoef(X[:, varying], rowvar=False)
    dist = np.clip(1.0 - corr, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    leaves = leaves_list(linkage(squareform(dist, checks=False), method="average"))
    return np.concatenate([varying[leaves], constant])


def order_random(n_genes: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation."""
    return rng.permutation(n_genes)


def _chrom_rank(chrom: Any) -> float:
    c = str(chrom).removeprefix("chr")
    return float(_CHROM_RANK.get(c, 26))


def order_genomic(var_names: Sequence[str], positions: pd.DataFrame) -> np.ndarray:
    """Genes by chromosome (1–22, X, Y, MT, others) and start; genes without a position last.

    Parameters
    ----------
    var_names
        The genes to order.
    positions
        Indexed by gene name (or with a ``symbol`` column), with columns ``chrom``/``chromosome``
        and ``start``.
    """
    pos = positions
    if "symbol" in pos.columns and not pos.index.isin(var_names).any():
        pos = pos.dropna(subset=["symbol"]).drop_duplicates("symbol").set_index("symbol")
    chrom_col = next((c for c in ("chrom", "chromosome", "chr", "seqname") if c in pos.columns), None)
    if chrom_col is None or "start" not in pos.columns:
        raise ValueError(
            "genomic gene order needs chromosome and start positions: columns 'chrom' (or "
            "'chromosome') and 'start' in var or in the annotation table"
        )
    pos = pos[~pos.index.duplicated()]
    names = pd.Index(var_names)
    found = names.isin(pos.index)
    if not found.any():
        raise ValueError("none of the genes has a genomic position in the annotation table")
    sub = pos.reindex(names)
    rank = np.array([_chrom_rank(c) if f else np.inf for c, f in zip(sub[chrom_col], found, strict=True)])
    start = pd.to_numeric(sub["start"], errors="coerce").fillna(np.inf).to_numpy()
    return np.lexsort((np.arange(len(names)), start, rank))


def resolve_gene_order(
    gene_order: str | Sequence[Any] | np.ndarray,
    *,
    var_names: pd.Index,
    n_models: int,
    rng: np.random.Generator,
    stats: Callable[[], tuple[np.ndarray, np.ndarray]],
    sample: Callable[[], np.ndarray],
    positions: pd.DataFrame | None,
) -> np.ndarray:
    """Gene orders for every member, shape ``(n_models, n_genes)``.

    ``stats`` returns per-gene (mean, mean of squares); ``sample`` returns a dense cell × gene
    matrix for the correlation order; both are called only when needed.
    """
    n = len(var_names)
    if isinstance(gene_order, str):
        if gene_order == "variance":
            order = order_by_variance(*stats())
        elif gene_order == "correlation":
            order = order_by_correlation(sample())
        elif gene_order == "random":
            order = order_random(n, rng)
        elif gene_order == "random_per_model":
            return np.stack([order_random(n, rng) for _ in range(n_models)])
        elif gene_order == "genomic":
            if positions is None:
                raise ValueError(
                    "gene_order='genomic' needs positions: 'chrom'/'start' columns in var, or "
                    "gene_annotation= (e.g. xl.datasets.gene_annotation())"
                )
            order = order_genomic(var_names, positions)
        else:
            raise ValueError(f"gene_order={gene_order!r} is not valid; choose one of {list(GENE_ORDERS)} or pass gene names")
    else:
        arr = np.asarray(gene_order)
        if arr.dtype.kind in "iu":
            order = arr.astype(np.int64)
        else:
            idx = var_names.get_indexer(pd.Index(arr.astype(str)))
            if (idx < 0).any():
                raise ValueError(f"gene_order names genes that are not among the model's genes, e.g. {arr[idx < 0][:5].tolist()}")
            order = idx
        if order.size != n or not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError(f"an explicit gene_order must list each of the {n} model genes exactly once")
    return np.tile(order, (n_models, 1))
