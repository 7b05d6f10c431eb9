"""Small array checks shared by the metrics kernels (private)."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_float_array(x: Any, name: str, *, ndim: tuple[int, ...], finite: bool = True) -> np.ndarray:
    """Return ``x`` as a float64 array with one of the allowed dimensionalities, or raise."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numeric, got {type(x).__name__}") from err
    if arr.ndim not in ndim:
        allowed = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be {allowed}, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if finite and not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s); remove or fill them first"
        )
    return arr


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Raise if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_k(k: Any, n: int, name: str = "k") -> int:
    """Return ``k`` as an int in ``[1, n]`` or raise."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(k).__name__}")
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"{name} must be between 1 and the number of genes ({n}), got {k}")
    return k


def selection_scores(x: np.ndarray, by: str) -> np.ndarray:
    """The values whose largest entries are "top": ``x`` itself or ``|x|``."""
    return np.abs(x) if by == "abs" else x


def topk_mask(scores: np.ndarray, k: int, *, chunk_size: int = 2048) -> np.ndarray:
    """Boolean mask of the ``k`` largest entries of each row (ties: lower column index first).

    The same selection as ``np.argsort(-scores, kind="stable")[:, :k]`` (NaN counts as smallest),
    in linear time: a partition finds each row's ``k``-th largest value, everything above it is
    in, and the tied values at it are taken in column order until there are ``k``.
    """
    scores = np.atleast_2d(scores)
    n, g = scores.shape
    mask = np.zeros((n, g), dtype=bool)
    if k <= 0:
        return mask
    if k >= g:
        mask[:] = True
        return mask
    for start in range(0, n, chunk_size):
        neg = -np.asarray(scores[start : start + chunk_size], dtype=np.float64)
        kth = np.partition(neg, k - 1, axis=1)[:, k - 1 : k]  # k-th smallest of -scores (NaN sort last)
        nan, nan_kth = np.isnan(neg), np.isnan(kth)
        above = (neg < kth) | (nan_kth & ~nan)  # a NaN k-th value: every number is above it
        tied = (neg == kth) | (nan & nan_kth)
        need = k - above.sum(axis=1, keepdims=True)
        mask[start : start + chunk_size] = above | (tied & (np.cumsum(tied, axis=1) <= need))
    return mask


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks ``1..G`` of each row of a finite ``(n, G)`` array, ties getting their average rank.

    As ``scipy.stats.rankdata(x, method="average", axis=1)``, about three times faster: one
    unstable sort per row (the average rank of a tie does not depend on the order within it)
    and the runs of equal sorted values found with running maxima.
    """
    x = np.asarray(x, dtype=np.float64)
    n, g = x.shape
    order = np.argsort(x, axis=1)
    xs = np.take_along_axis(x, order, axis=1)
    pos = np.arange(g)
    ties = xs[:, 1:] == xs[:, :-1]
    if not ties.any():  # the common case for real-valued scores: the rank is the sorted position
        sorted_ranks = np.broadcast_to(pos + 1.0, (n, g))
    else:
        first = np.ones((n, g), dtype=bool)  # a run of equal values starts here
        first[:, 1:] = ~ties
        last = np.ones((n, g), dtype=bool)  # ... and ends here
        last[:, :-1] = first[:, 1:]
        start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
        end = np.minimum.accumulate(np.where(last, pos, g)[:, ::-1], axis=1)[:, ::-1]
        sorted_ranks = (start + end) / 2.0 + 1.0
    ranks = np.empty((n, g), dtype=np.float64)
    np.put_along_axis(ranks, order, sorted_ranks, axis=1)
    return ranks
