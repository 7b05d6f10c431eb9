"""Stratified splits (pure NumPy)."""

from __future__ import annotations

import numpy as np


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, validation), ``fraction`` of every class to validation.

    Each class with at least two members contributes at least one validation and one training
    index (the paper's 9:1 split is ``fraction=0.1``).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation must be in [0, 1), got {fraction}")
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = 0 if fraction == 0 else int(np.clip(round(fraction * idx.size), 1, idx.size - 1))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_kfold(y: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Assign indices to ``k`` folds, stratified by class; returns the test indices of each fold."""
    if k < 2:
        raise ValueError(f"cv must be at least 2 folds, got {k}")
    folds: list[list[np.ndarray]] = [[] for _ in range(k)]
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        for j, part in enumerate(np.array_split(idx, k)):
            folds[(j + offset) % k].append(part)
        offset += 1
    return [np.sort(np.concatenate(f)) for f in folds]


def balanced_epoch(y: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class-balanced up-sampling: every class drawn (with replacement) to the largest class size.

    Each class keeps all of its own samples once, topped up with random repeats.
    """
    counts = np.bincount(y, minlength=n_classes)
    target = counts.max()
    parts = []
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        if idx.size == 0:
            continue
        extra = rng.choice(idx, size=target - idx.size, replace=True) if target > idx.size else idx[:0]
        parts.append(np.concatenate([idx, extra]))
    return rng.permutation(np.concatenate(parts))
