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
    """Boolean mask of the ``k`` largest entries of each row (ties: lower column index first)."""
    scores = np.atleast_2d(scores)
    n, g = scores.shape
    mask = np.zeros((n, g), dtype=bool)
    for start in range(0, n, chunk_size):
        block = scores[start : start + chunk_size]
        idx = np.argsort(-block, axis=1, kind="stable")[:, :k]
        np.put_along_axis(mask[start : start + chunk_size], idx, True, axis=1)
    return mask
