"""Faithfulness of gene rankings: deletion and insertion curves (pure kernel)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse
from scipy.integrate import trapezoid

from ._utils import as_float_array

PredictFn = Callable[[np.ndarray], np.ndarray]


def _prepare(x, rankings, reference, targets, steps):
    if sparse.issparse(x):
        x = x.tocsr()
        if x.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {x.shape}")
    else:
        x = as_float_array(x, "X", ndim=(2,))
    n, g = x.shape
    steps = np.asarray(steps)
    if steps.ndim != 1 or steps.size == 0 or not np.issubdtype(steps.dtype, np.integer):
        raise ValueError(f"steps must be a non-empty 1-D array of integers, got {steps!r}")
    if steps.min() < 0 or steps.max() > g:
        raise ValueError(f"steps must be between 0 and the number of genes ({g})")
    k_max = int(steps.max())

    r = np.asarray(rankings)
    if not np.issubdtype(r.dtype, np.integer):
        raise TypeError(
            f"rankings must hold integer gene indices (most important first), got dtype {r.dtype}; "
            "turn scores into rankings with np.argsort(-scores, axis=-1)"
        )
    if r.ndim == 1:
        r = np.broadcast_to(r, (n, r.size))
    if r.ndim != 2 or r.shape[0] != n:
        raise ValueError(f"rankings must have shape (G,) or ({n}, K), got {np.shape(rankings)}")
    if r.shape[1] < k_max:
        raise ValueError(f"rankings list {r.shape[1]} genes per cell but steps go up to {k_max}")
    r = r[:, :k_max]
    if r.size and (r.min() < 0 or r.max() >= g):
        raise ValueError(f"rankings contain gene indices outside [0, {g})")
    if k_max > 1:
        srt = np.sort(r, axis=1)
        if (srt[:, 1:] == srt[:, :-1]).any():
            raise ValueError(
                "rankings repeat a gene within a cell; each row must list distinct genes"
            )

    ref = as_float_array(reference, "reference", ndim=(0, 1, 2))
    if ref.ndim == 0:
        ref = np.full(g, float(ref))
    if ref.shape not in ((g,), (n, g)):
        raise ValueError(
            f"reference must be a scalar or have shape ({g},) or ({n}, {g}), got {ref.shape}"
        )

    t = np.asarray(targets)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"targets must be integer class indices, got dtype {t.dtype}")
    t = np.broadcast_to(t, (n,)) if t.ndim == 0 else t
    if t.shape != (n,):
        raise ValueError(f"targets must be an int or have shape ({n},), got {t.shape}")
    return x, r, ref, t, steps


def _rows(x, sl):
    block = x[sl]
    return block.toarray() if sparse.issparse(block) else np.array(block)


def _curve(predict_fn, x, rankings, reference, targets, steps, batch_size, *, insert):
    x, r, ref, t, steps = _prepare(x, rankings, reference, targets, steps)
    n = x.shape[0]
    order = np.argsort(steps, kind="stable")
    out = np.empty((steps.size, n), dtype=np.float64)
    if not (isinstance(batch_size, int | np.integer) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        xb = _rows(x, sl).astype(np.float64)
        rb = ref[sl] if ref.ndim == 2 else np.broadcast_to(ref, xb.shape)
        cur = (rb if insert else xb).astype(np.float32, copy=True)
        src = (xb if insert else rb).astype(np.float32)
        rows = np.arange(xb.shape[0])[:, None]
        tb = t[sl]
        done = 0
        for i in order:
            k = int(steps[i])
            if k > done:
                cols = r[sl, done:k]
                cur[rows, cols] = src[rows, cols]
                done = k
            proba = np.asarray(predict_fn(cur.copy()))
            if proba.ndim != 2 or proba.shape[0] != cur.shape[0]:
                raise ValueError(
                    f"predict_fn must return an array of shape (n, n_classes); got {proba.shape} "
                    f"for an input of {cur.shape[0]} rows"
                )
            if tb.max() >= proba.shape[1] or tb.min() < 0:
                raise ValueError(f"targets must be class indices in [0, {proba.shape[1]})")
            out[i, sl] = proba[np.arange(cur.shape[0]), tb]
    return out


def deletion_curve(
    predict_fn: PredictFn,
    X: np.ndarray | sparse.spmatrix,
    rankings: np.ndarray,
    reference: np.ndarray | float,
    targets: np.ndarray | int,
    steps: np.ndarray,
    *,
    batch_size: int = 256,
) -> np.ndarray:
    """Deletion curve: target-class probability as the top-ranked genes are removed.

    For each ``k`` in ``steps``, the ``k`` most important genes of each cell are replaced by the
    reference value and the model's probability of the target class is recorded. A faithful
    ranking makes the probability fall fast (a small area under the curve, :func:`curve_auc`).

    Parameters
    ----------
    predict_fn
        Maps a float32 array ``(n, G)`` to class probabilities ``(n, C)`` (e.g. an ensemble's
        softmax output). Called once per step and batch of cells, with a fresh array.
    X
        Expression ``(cells, G)``, dense or sparse, on the model's input scale.
    rankings
        Integer gene indices, most important first: ``(cells, K)`` per cell (e.g.
        ``np.argsort(-attributions, axis=1)``), or ``(K,)`` shared by all cells; ``K >= max(steps)``
        and no gene repeated within a row.
    reference
        What a removed gene becomes: a scalar, a ``(G,)`` vector (e.g. gene means or zeros), or
        ``(cells, G)``.
    targets
        Class index per cell ``(cells,)``, or one int for all.
    steps
        Non-negative integers ``k <= G`` (any order; ``0`` gives the unperturbed prediction).
    batch_size
        Cells per ``predict_fn`` call; memory is about ``3 × batch_size × G`` floats.

    Returns
    -------
    Probabilities of shape ``(len(steps), cells)``, in the order of ``steps``.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import curve_auc, deletion_curve
    >>> w = np.array([0.4, 0.3, 0.2, 0.1])
    >>> def predict(x):  # a linear "probability" of class 1
    ...     p1 = x @ w
    ...     return np.stack([1 - p1, p1], axis=1)
    >>> X = np.ones((2, 4))
    >>> curve = deletion_curve(predict, X, np.argsort(-w), 0.0, 1, np.arange(5))
    >>> curve[:, 0].round(2).tolist()
    [1.0, 0.6, 0.3, 0.1, 0.0]
    >>> round(float(curve_auc(np.arange(5), curve[:, 0])), 3)
    0.375
    """
    return _curve(predict_fn, X, rankings, reference, targets, steps, batch_size, insert=False)


def insertion_curve(
    predict_fn: PredictFn,
    X: np.ndarray | sparse.spmatrix,
    rankings: np.ndarray,
    reference: np.ndarray | float,
    targets: np.ndarray | int,
    steps: np.ndarray,
    *,
    batch_size: int = 256,
) -> np.ndarray:
    """Insertion curve: target-class probability as the top-ranked genes are put back.

    The mirror of :func:`deletion_curve`: each cell starts from the reference and, for each
    ``k`` in ``steps``, its ``k`` most important genes take their observed values. A faithful
    ranking makes the probability rise fast (a large :func:`curve_auc`). Parameters are those
    of :func:`deletion_curve`.

    Parameters
    ----------
    predict_fn
        Maps a float32 array ``(n, G)`` to class probabilities ``(n, C)``.
    X
        Expression ``(cells, G)``, dense or sparse.
    rankings
        Integer gene indices, most important first, ``(cells, K)`` or ``(K,)``.
    reference
        Starting values: scalar, ``(G,)`` or ``(cells, G)``.
    targets
        Class index per cell, or one int.
    steps
        Non-negative integers ``k <= G``.
    batch_size
        Cells per ``predict_fn`` call.

    Returns
    -------
    Probabilities of shape ``(len(steps), cells)``, in the order of ``steps``.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import insertion_curve
    >>> w = np.array([0.4, 0.3, 0.2, 0.1])
    >>> def predict(x):
    ...     p1 = x @ w
    ...     return np.stack([1 - p1, p1], axis=1)
    >>> curve = insertion_curve(predict, np.ones((1, 4)), np.argsort(-w), 0.0, 1, [0, 1, 2, 4])
    >>> curve[:, 0].round(2).tolist()
    [0.0, 0.4, 0.7, 1.0]
    """
    return _curve(predict_fn, X, rankings, reference, targets, steps, batch_size, insert=True)


def curve_auc(steps: np.ndarray, values: np.ndarray) -> np.ndarray | float:
    """Normalised area under a deletion or insertion curve.

    The trapezoid area over the fraction of genes perturbed, divided by the span of that fraction,
    i.e. ``trapezoid(values, steps) / (max(steps) - min(steps))`` after sorting by ``steps``: the
    mean height of the curve, on the scale of ``values`` (a probability). With ``steps`` from 0
    to ``G`` this is the usual area over ``[0, 1]``; it does not depend on ``G``.

    Parameters
    ----------
    steps
        Numbers of genes perturbed, ``(S,)``, at least two distinct values.
    values
        Curve values ``(S,)`` or ``(S, cells)`` (the output of :func:`deletion_curve`).

    Returns
    -------
    A float for a 1-D curve, otherwise one area per cell, shape ``(cells,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import curve_auc
    >>> curve_auc([0, 50, 100], [1.0, 0.5, 0.0])
    0.5
    """
    s = as_float_array(steps, "steps", ndim=(1,))
    v = as_float_array(values, "values", ndim=(1, 2), finite=False)
    if v.shape[0] != s.size:
        raise ValueError(f"values must have len(steps)={s.size} rows, got shape {v.shape}")
    span = s.max() - s.min()
    if span <= 0:
        raise ValueError("steps must contain at least two distinct values")
    order = np.argsort(s, kind="stable")
    area = trapezoid(v[order], s[order], axis=0) / span
    return float(area) if v.ndim == 1 else area
