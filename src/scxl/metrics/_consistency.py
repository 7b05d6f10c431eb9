"""Attribution consistency (Majdandzic et al. 2022) and Pareto fronts for model selection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

from ._utils import as_float_array, check_choice, topk_mask

_BY = ("abs", "positive")


def selection_frequency(
    attributions: np.ndarray,
    *,
    top_frac: float = 0.1,
    by: Literal["abs", "positive"] = "abs",
    chunk_size: int = 2048,
) -> np.ndarray:
    """How many cells put each gene among their top attributions.

    For each cell (row) the ``k = ceil(top_frac × G)`` genes with the largest attributions are
    selected; genes whose attribution is exactly 0 (``by="abs"``) or ``<= 0``
    (``by="positive"``) are never selected, so a cell with fewer than ``k`` such genes selects
    fewer. Ties at the ``k``-th place are broken by gene position.

    Parameters
    ----------
    attributions
        Array ``(cells, G)`` of per-gene attributions. Must be finite.
    top_frac
        Fraction of genes selected per cell, in ``(0, 1]``.
    by
        ``"abs"`` (default): largest ``|attribution|``, i.e. genes the prediction depends on in
        either direction; ``"positive"``: largest positive attributions (evidence *for* the
        target class).
    chunk_size
        Cells processed at once (bounds memory).

    Returns
    -------
    Counts of shape ``(G,)`` (int).

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import selection_frequency
    >>> attr = np.array([[0.0, 5.0, -9.0, 1.0], [0.0, 4.0, 0.1, 3.0]])
    >>> selection_frequency(attr, top_frac=0.5).tolist()
    [0, 2, 1, 1]
    >>> selection_frequency(attr, top_frac=0.5, by="positive").tolist()
    [0, 2, 0, 2]
    """
    check_choice(by, "by", _BY)
    a = as_float_array(attributions, "attributions", ndim=(2,))
    if not 0 < top_frac <= 1:
        raise ValueError(f"top_frac must be in (0, 1], got {top_frac}")
    g = a.shape[1]
    k = max(1, int(np.ceil(top_frac * g - 1e-9)))
    counts = np.zeros(g, dtype=np.int64)
    for start in range(0, a.shape[0], chunk_size):
        block = a[start : start + chunk_size]
        score = np.abs(block) if by == "abs" else block
        mask = topk_mask(score, k) & (score > 0)
        counts += mask.sum(axis=0)
    return counts


def _prior(background, n: int, g: int) -> np.ndarray:
    """Normalised prior over genes from an expression matrix, a weight vector, or None."""
    if background is None:
        return np.full(g, 1.0 / g)
    if sparse.issparse(background):
        if tuple(background.shape) != (n, g):
            raise ValueError(
                f"expression must have the shape of attributions ({n} cells × {g} genes), "
                f"got {tuple(background.shape)}"
            )
        w = np.asarray((background > 0).sum(axis=0), dtype=np.float64).ravel() / n
    else:
        b = as_float_array(background, "background", ndim=(1, 2), finite=False)
        if b.ndim == 2:
            if b.shape != (n, g):
                raise ValueError(
                    f"expression must have the shape of attributions ({n} cells × {g} genes), "
                    f"got {b.shape}"
                )
            w = (b > 0).mean(axis=0)
        else:
            if b.shape != (g,):
                raise ValueError(
                    f"a prior vector must have {g} genes like attributions, got {b.shape}"
                )
            if not np.isfinite(b).all() or (b < 0).any():
                raise ValueError("a prior vector must be finite and non-negative")
            w = b
    if w.sum() <= 0:
        raise ValueError("the background gives zero weight to every gene (nothing is expressed)")
    return w / w.sum()


def consistency_kld(
    attributions: np.ndarray,
    background: np.ndarray | sparse.spmatrix | None = None,
    *,
    top_frac: float = 0.1,
    by: Literal["abs", "positive"] = "abs",
    pseudocount: float = 1e-6,
) -> float:
    r"""Attribution consistency: KL divergence of top-attribution genes from a background.

    Adapted from the KLD consistency score of Majdandzic et al. (2022, *PMLR* 200), proposed as a
    model-selection criterion next to accuracy: a model whose attributions point at the same few
    genes across cells is more interpretable than one spreading importance over arbitrary genes.

    1. For each cell, select its top ``top_frac`` genes (:func:`selection_frequency`).
    2. ``P``: the distribution over genes of these selections across all cells (counts
       normalised to sum to 1).
    3. ``Q``: an uninformative prior, the distribution over *expressed* genes: for an expression
       matrix, the fraction of cells in which each gene is ``> 0``, normalised; a 1-D
       ``background`` is used as given (normalised); ``None`` is uniform over genes.
    4. Both are smoothed in probability units, ``p -> (p + ε) / (1 + G ε)`` with
       ``ε = pseudocount``, so genes never expressed or never selected stay finite, and

    .. math:: \mathrm{KLD} = \sum_g P_g \log(P_g / Q_g) \quad \text{(nats)}.

    Higher is more consistent. If every cell selected the same ``k`` genes under a uniform
    prior the score would be ``log(G / k)`` (about ``log(1 / top_frac)``); attributions that
    follow the background give about 0.

    Parameters
    ----------
    attributions
        Array ``(cells, G)`` of attributions (e.g. toward each cell's predicted class). Finite.
    background
        Expression of the same cells, ``(cells, G)`` dense or sparse (only ``> 0`` matters, so
        any scale works); or a prior weight vector ``(G,)``; or ``None`` for a uniform prior.
    top_frac
        Fraction of genes selected per cell.
    by
        ``"abs"`` (default) or ``"positive"``, see :func:`selection_frequency`.
    pseudocount
        The ``ε`` above (default ``1e-6``); must be ``> 0``.

    Returns
    -------
    The KL divergence ``KL(P || Q)`` in nats; NaN if no gene was selected in any cell (all
    attributions zero).

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import consistency_kld
    >>> rng = np.random.default_rng(0)
    >>> expr = rng.poisson(2.0, size=(200, 100)).astype(float)
    >>> focused = rng.normal(size=(200, 100)) * 0.1
    >>> focused[:, :10] += 5.0  # the same 10 genes in every cell
    >>> diffuse = rng.normal(size=(200, 100))
    >>> bool(consistency_kld(focused, expr) > consistency_kld(diffuse, expr))
    True
    >>> round(consistency_kld(focused, expr), 2)
    2.31
    """
    a = as_float_array(attributions, "attributions", ndim=(2,))
    if not pseudocount > 0:
        raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
    g = a.shape[1]
    q = _prior(background, a.shape[0], g)
    counts = selection_frequency(a, top_frac=top_frac, by=by).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts / total
    p = (p + pseudocount) / (1.0 + g * pseudocount)
    q = (q + pseudocount) / (1.0 + g * pseudocount)
    return float(np.sum(p * np.log(p / q)))


def pareto_front(
    scores: pd.DataFrame | np.ndarray,
    columns: Sequence[str] | None = None,
    *,
    maximize: bool | Sequence[bool] = True,
) -> np.ndarray:
    """Pareto-optimal rows: those no other row beats on every criterion.

    Row ``j`` dominates row ``i`` when it is at least as good on every column and strictly
    better on one. Rows not dominated by any other row form the front (e.g. models with the best
    trade-off between accuracy and attribution consistency). Identical rows do not dominate
    each other, so both are kept. Rows with a NaN in a used column are never on the front and
    are ignored as competitors.

    Parameters
    ----------
    scores
        DataFrame (or 2-D array) with one row per candidate.
    columns
        Columns to use; default all numeric columns (all columns of an array).
    maximize
        ``True`` (default) if larger is better for every column; a sequence of booleans, one per
        column, to mix directions (e.g. ``[True, False]`` for accuracy and loss).

    Returns
    -------
    Boolean mask of length ``n_rows``, ``True`` on the front.

    Examples
    --------
    >>> import pandas as pd
    >>> from scxl.metrics import pareto_front
    >>> df = pd.DataFrame({"accuracy": [0.9, 0.8, 0.95, 0.7], "kld": [1.0, 2.0, 0.5, 1.5]})
    >>> pareto_front(df, ["accuracy", "kld"]).tolist()
    [True, True, True, False]
    """
    if isinstance(scores, pd.DataFrame):
        if columns is None:
            columns = list(scores.select_dtypes("number").columns)
        else:
            columns = list(columns)
            missing = [c for c in columns if c not in scores.columns]
            if missing:
                raise KeyError(
                    f"columns {missing} are not in scores (columns: {list(scores.columns)})"
                )
        if not columns:
            raise ValueError("no numeric columns to compare")
        vals = scores[columns].to_numpy(dtype=np.float64)
    else:
        arr = as_float_array(scores, "scores", ndim=(2,), finite=False)
        vals = arr if columns is None else arr[:, list(columns)]
    n, c = vals.shape
    direction = np.asarray(maximize, dtype=bool)
    if direction.ndim == 0:
        direction = np.full(c, bool(direction))
    if direction.shape != (c,):
        raise ValueError(f"maximize must be a bool or {c} bools (one per column), got {maximize!r}")
    v = np.where(direction, vals, -vals)
    ok = ~np.isnan(v).any(axis=1)
    front = np.zeros(n, dtype=bool)
    cand = v[ok]
    ge = (cand[None, :, :] >= cand[:, None, :]).all(axis=2)  # [i, j]: j >= i on every column
    gt = (cand[None, :, :] > cand[:, None, :]).any(axis=2)
    dominated = (ge & gt).any(axis=1)
    front[np.flatnonzero(ok)] = ~dominated
    return front
