"""Rank agreement and top-k overlap between attribution vectors (pure NumPy/SciPy)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd

from ._utils import (
    as_float_array,
    average_ranks,
    check_choice,
    check_k,
    selection_scores,
    topk_mask,
)

_BY = ("value", "abs")


def _stack(x: np.ndarray | Sequence[np.ndarray], name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return as_float_array(x, name, ndim=(2,))
    vectors = [as_float_array(v, f"{name}[{i}]", ndim=(1,)) for i, v in enumerate(x)]
    if not vectors:
        raise ValueError(f"{name} is empty: pass at least one vector")
    lengths = {v.shape[0] for v in vectors}
    if len(lengths) != 1:
        raise ValueError(
            f"all vectors in {name} must have the same length, got lengths {sorted(lengths)}"
        )
    return np.vstack(vectors)


def _chunk_rows(n_genes: int, n_arrays: int, budget: int = 2**24) -> int:
    """Rows per chunk so that ``n_arrays`` float64 rank blocks hold about ``budget`` values."""
    return max(1, budget // max(1, n_genes * n_arrays))


def _standardised_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks of each row, centred and scaled to unit norm (constant rows: NaN)."""
    r = average_ranks(x)
    r -= r.mean(axis=1, keepdims=True)
    norm = np.sqrt((r * r).sum(axis=1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, r / norm, np.nan)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Spearman rank correlation between matching rows of two matrices.

    Each row is ranked once (ties get their average rank, as in :func:`scipy.stats.spearmanr`) and
    the Pearson correlation of the ranks is computed for all rows at once.

    Parameters
    ----------
    a
        Array of shape ``(n, G)`` (or ``(G,)`` for a single pair of vectors).
    b
        Array of the same shape as ``a``. Both must be finite.

    Returns
    -------
    Correlation of row ``i`` of ``a`` with row ``i`` of ``b``, shape ``(n,)``; a float when both
    inputs are 1-D. A row that is constant in ``a`` or in ``b`` has no defined rank correlation
    and gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import spearman_rows
    >>> a = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    >>> b = np.array([[10.0, 20.0, 40.0, 30.0], [4.0, 3.0, 2.0, 1.0]])
    >>> spearman_rows(a, b).round(2).tolist()
    [0.8, nan]
    """
    a = as_float_array(a, "a", ndim=(1, 2))
    b = as_float_array(b, "b", ndim=(1, 2))
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    scalar = a.ndim == 1
    a2, b2 = np.atleast_2d(a), np.atleast_2d(b)
    rho = np.empty(a2.shape[0])
    step = _chunk_rows(a2.shape[1], 2)
    for start in range(0, a2.shape[0], step):
        sl = slice(start, start + step)
        rho[sl] = (_standardised_ranks(a2[sl]) * _standardised_ranks(b2[sl])).sum(axis=1)
    rho = np.clip(rho, -1.0, 1.0)
    return float(rho[0]) if scalar else rho


def pairwise_spearman(x: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Spearman correlation between every pair of vectors.

    Parameters
    ----------
    x
        ``m`` vectors of length ``G``: a matrix of shape ``(m, G)`` (one vector per row) or a
        sequence of 1-D arrays. Must be finite.

    Returns
    -------
    Symmetric matrix of shape ``(m, m)``; the diagonal is 1. Pairs involving a constant vector are
    NaN (including its diagonal entry).

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import pairwise_spearman
    >>> pairwise_spearman([np.array([1, 2, 3]), np.array([3, 2, 1]), np.array([1, 3, 2])]).round(2)
    array([[ 1. , -1. ,  0.5],
           [-1. ,  1. , -0.5],
           [ 0.5, -0.5,  1. ]])
    """
    r = _standardised_ranks(_stack(x, "x"))
    out = np.clip(r @ r.T, -1.0, 1.0)
    ok = ~np.isnan(r[:, 0])
    out[np.ix_(ok, ok)] = np.where(np.eye(ok.sum(), dtype=bool), 1.0, out[np.ix_(ok, ok)])
    return out


def topk_overlap(
    a: np.ndarray, b: np.ndarray, k: int, *, by: Literal["value", "abs"] = "value"
) -> np.ndarray | float:
    """Fraction of shared genes among the top ``k`` of two vectors: ``|top_k(a) ∩ top_k(b)| / k``.

    Parameters
    ----------
    a
        Scores, shape ``(G,)`` or ``(n, G)`` (then row ``i`` of ``a`` is compared with row ``i``
        of ``b``). Must be finite.
    b
        Scores of the same shape as ``a``.
    k
        Number of top genes, ``1 <= k <= G``.
    by
        ``"value"``: the ``k`` largest values (genes pushing towards the class); ``"abs"``: the ``k``
        largest absolute values (genes with the largest effect of either sign). Ties at the
        ``k``-th place are broken by gene position (lower index first), so results are
        deterministic.

    Returns
    -------
    Overlap in ``[0, 1]``: a float for 1-D input, shape ``(n,)`` for 2-D input.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import topk_overlap
    >>> a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    >>> b = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    >>> topk_overlap(a, b, 2)
    0.5
    >>> topk_overlap(np.array([-9.0, 1.0, 2.0]), np.array([9.0, 1.0, 2.0]), 1, by="abs")
    1.0
    """
    check_choice(by, "by", _BY)
    a = as_float_array(a, "a", ndim=(1, 2))
    b = as_float_array(b, "b", ndim=(1, 2))
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    k = check_k(k, a.shape[-1])
    ma = topk_mask(selection_scores(np.atleast_2d(a), by), k)
    mb = topk_mask(selection_scores(np.atleast_2d(b), by), k)
    frac = (ma & mb).sum(axis=1) / k
    return float(frac[0]) if a.ndim == 1 else frac


def pairwise_topk_overlap(
    x: np.ndarray | Sequence[np.ndarray], k: int, *, by: Literal["value", "abs"] = "value"
) -> np.ndarray:
    """Top-``k`` overlap (see :func:`topk_overlap`) between every pair of vectors.

    Parameters
    ----------
    x
        ``m`` vectors of length ``G``: a matrix ``(m, G)`` or a sequence of 1-D arrays.
    k
        Number of top genes, ``1 <= k <= G``.
    by
        ``"value"`` or ``"abs"``, as in :func:`topk_overlap`.

    Returns
    -------
    Symmetric matrix of shape ``(m, m)`` with values in ``[0, 1]`` and 1 on the diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import pairwise_topk_overlap
    >>> x = np.array([[3.0, 2.0, 1.0, 0.0], [3.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    >>> pairwise_topk_overlap(x, 2)
    array([[1. , 0.5, 0. ],
           [0.5, 1. , 0.5],
           [0. , 0.5, 1. ]])
    """
    check_choice(by, "by", _BY)
    x = _stack(x, "x")
    k = check_k(k, x.shape[1])
    m = topk_mask(selection_scores(x, by), k).astype(np.float64)
    return (m @ m.T) / k


def replicate_agreement(
    replicates: np.ndarray,
    *,
    top_k: int = 100,
    by: Literal["value", "abs"] = "value",
    row_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Pairwise agreement between replicate attributions, row by row.

    Replicates are repeated attribution runs (other seeds, references, models or ensembles); rows
    are cells, samples or groups. For every pair of replicates ``(i, j)`` with ``i < j`` and every
    row, the Spearman correlation (:func:`spearman_rows`) and the top-``k`` overlap
    (:func:`topk_overlap`) of their gene scores are computed.

    Parameters
    ----------
    replicates
        Array of shape ``(n_rep, n_rows, G)``; ``(n_rep, G)`` is read as a single row. At least
        two replicates. Must be finite.
    top_k
        ``k`` of the top-``k`` overlap (clipped to ``G``).
    by
        ``"value"`` or ``"abs"``: how top genes are chosen (see :func:`topk_overlap`).
    row_names
        Names of the rows (default ``"0"``, ``"1"``, ...).

    Returns
    -------
    Tidy DataFrame with one line per (pair, row): ``rep_i``, ``rep_j`` (int), ``row`` (str),
    ``spearman`` (NaN where a row is constant in either replicate) and ``topk_overlap``. Summarise
    it with :func:`agreement_summary`.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import replicate_agreement
    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(4, 50))
    >>> reps = np.stack([base + 0.1 * rng.normal(size=base.shape) for _ in range(3)])
    >>> table = replicate_agreement(reps, top_k=10)
    >>> table.shape
    (12, 5)
    >>> bool(table["spearman"].min() > 0.9)
    True
    """
    check_choice(by, "by", _BY)
    reps = as_float_array(replicates, "replicates", ndim=(2, 3))
    if reps.ndim == 2:
        reps = reps[:, None, :]
    n_rep, n_rows, g = reps.shape
    if n_rep < 2:
        raise ValueError(f"need at least 2 replicates to measure agreement, got {n_rep}")
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    k = min(int(top_k), g)
    if row_names is None:
        names = np.array([str(i) for i in range(n_rows)], dtype=object)
    else:
        names = np.asarray(list(row_names), dtype=object)
        if names.shape != (n_rows,):
            raise ValueError(
                f"row_names has {names.size} entries but replicates have {n_rows} rows"
            )
    pairs = list(combinations(range(n_rep), 2))
    rho = np.empty((len(pairs), n_rows))
    ov = np.empty((len(pairs), n_rows))
    step = _chunk_rows(g, n_rep)
    for start in range(0, n_rows, step):  # bounded memory: n_rep × step × G ranks at a time
        sl = slice(start, start + step)
        ranks = [_standardised_ranks(reps[r, sl]) for r in range(n_rep)]
        masks = [topk_mask(selection_scores(reps[r, sl], by), k) for r in range(n_rep)]
        for p, (i, j) in enumerate(pairs):
            rho[p, sl] = (ranks[i] * ranks[j]).sum(axis=1)
            ov[p, sl] = (masks[i] & masks[j]).sum(axis=1) / k
    rho = np.clip(rho, -1.0, 1.0)
    parts = []
    for p, (i, j) in enumerate(pairs):
        parts.append(
            pd.DataFrame(
                {
                    "rep_i": np.full(n_rows, i),
                    "rep_j": np.full(n_rows, j),
                    "row": names,
                    "spearman": rho[p],
                    "topk_overlap": ov[p],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def agreement_summary(
    table: pd.DataFrame, *, stat: Literal["median", "mean"] = "median", by_pair: bool = True
) -> pd.DataFrame:
    """Summarise a :func:`replicate_agreement` table over rows (cells).

    Parameters
    ----------
    table
        Output of :func:`replicate_agreement`.
    stat
        ``"median"`` or ``"mean"`` over rows; NaN Spearman values (constant rows) are ignored.
    by_pair
        If ``True``, one line per replicate pair; otherwise one line per row (cell), summarised
        over all pairs.

    Returns
    -------
    DataFrame with columns ``spearman``, ``topk_overlap`` (the statistic) and ``n`` (number of
    non-NaN Spearman values), indexed by ``(rep_i, rep_j)`` or by ``row``.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import agreement_summary, replicate_agreement
    >>> reps = np.array([[[1.0, 2.0, 3.0]], [[1.0, 3.0, 2.0]], [[1.0, 2.0, 3.0]]])
    >>> agreement_summary(replicate_agreement(reps, top_k=1))
                 spearman  topk_overlap  n
    rep_i rep_j
    0     1           0.5           0.0  1
          2           1.0           1.0  1
    1     2           0.5           0.0  1
    """
    check_choice(stat, "stat", ("median", "mean"))
    missing = {"rep_i", "rep_j", "row", "spearman", "topk_overlap"} - set(table.columns)
    if missing:
        raise ValueError(
            f"table lacks column(s) {sorted(missing)}; pass the output of replicate_agreement"
        )
    keys = ["rep_i", "rep_j"] if by_pair else ["row"]
    grouped = table.groupby(keys, sort=True, observed=True)
    out = grouped[["spearman", "topk_overlap"]].agg(stat)
    out["n"] = grouped["spearman"].count()
    return out
