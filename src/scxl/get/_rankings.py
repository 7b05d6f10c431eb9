"""Tidy readers of the rankings scxl stores in ``uns``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._types import Direction
from .._validation import check_adata, check_in

_FIELDS = ("scores", "scores_std", "topk_fraction", "contribution", "presence", "absence", "logfoldchanges",
           "logfoldchanges_linear", "pvals", "pvals_adj")


def evidence(entry: dict, group: str) -> np.ndarray:
    """Per gene of a group's ranking (in stored order): ``"presence"``, ``"absence"``, ``"pattern"`` or ``"against"``.

    ``"presence"``: the gene's expression above the reference supports the group (presence part
    positive and at least the supporting absence part); ``"absence"``: its lack supports the group
    and the group expresses it less than the rest (an absence marker); ``"pattern"``: its lack in
    some of the group's cells supports the group although the group does not express it less
    overall (genes that act in combination); ``"against"``: it counts against the group. For
    rankings without presence/absence fields (Scanpy's, or explainers without a direction), the
    sign of the score decides (``"presence"`` if positive, ``"absence"`` if negative).
    """
    if "presence" in entry and "absence" in entry:
        p = np.asarray(entry["presence"][group], dtype=float)
        a = np.asarray(entry["absence"][group], dtype=float)
        # "lower in the group" as the ranking decides it (rank_by="up"): on the linear mean where stored
        lfc = next((f for f in ("logfoldchanges_linear", "logfoldchanges") if f in entry), None)
        lower = np.asarray(entry[lfc][group], dtype=float) < 0 if lfc is not None else np.ones(p.size, bool)
        by_absence = (a > 0) & (a > np.maximum(p, 0))
        return np.where((p > 0) & ~by_absence, "presence",
                        np.where(by_absence, np.where(lower, "absence", "pattern"), "against")).astype(object)
    s = np.asarray(entry["scores"][group], dtype=float)
    return np.where(s > 0, "presence", np.where(s < 0, "absence", "against")).astype(object)


def top_genes(
    adata: Any,
    key: str,
    *,
    group: str | list[str] | None = None,
    n: int | None = None,
    direction: Direction = "up",
) -> pd.DataFrame:
    """Top genes per group as a tidy DataFrame, from either end of the ranking.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a ranking from :func:`scxl.tl.attribute` (any
        ``rank_genes_groups``-format key works).
    key
        Key of the ranking, e.g. ``"xl_deeplift"``.
    group
        One group or a list (default: all).
    n
        Genes per group (default: all).
    direction
        ``"up"`` (default): the top of the ranking — with scxl's default ``rank_by="up"``, genes
        whose *expression* supports the group. ``"down"``: genes whose *absence* supports the
        group (absence markers: genes the group expresses less than the rest), by decreasing
        absence part (for explainers with a direction; otherwise, and for
        Scanpy's rankings, the bottom of the ranking, most negative first — the down-regulated
        genes of ``rank_genes_groups``). ``"all"``: the whole ranking in stored order.

    Returns
    -------
    DataFrame with columns ``group``, ``rank`` (1 = first in the chosen direction), ``gene``,
    ``evidence`` (``"presence"``, ``"absence"``, ``"pattern"`` or ``"against"``, see below) and every per-gene
    field stored (``scores``, ``scores_std``, ``topk_fraction``, ``contribution``, ``presence``,
    ``absence``, ``logfoldchanges``, ``logfoldchanges_linear``, ``pvals``, ``pvals_adj``).
    ``evidence`` is ``"presence"``
    when the gene's expression above the reference supports the group, ``"absence"`` when its
    lack does and the group expresses it less than the rest, ``"pattern"`` when its lack in some
    of the group's cells supports the group without the group expressing it less (genes acting in
    combination), ``"against"`` when it counts against the group.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=5)
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> xl.get.top_genes(adata, "xl_deeplift", n=3).shape
    (9, 14)
    >>> down = xl.get.top_genes(adata, "xl_deeplift", n=3, direction="down")
    """
    check_adata(adata)
    check_in(direction, ("up", "down", "all"), "direction")
    if key not in adata.uns or "names" not in adata.uns[key]:
        raise KeyError(f"no ranking under uns[{key!r}]: run xl.tl.attribute(adata, method=...) first")
    entry = adata.uns[key]
    names = entry["names"]
    if not hasattr(names, "dtype") or names.dtype.names is None:
        raise TypeError(f"uns[{key!r}]['names'] is not a record array with one field per group (rank_genes_groups format)")
    groups = list(names.dtype.names)
    wanted = groups if group is None else [group] if isinstance(group, str) else list(group)
    if not wanted:
        raise ValueError(f"group= is empty; pass a group of uns[{key!r}] (groups: {groups}) or None for all")
    unknown = [g for g in wanted if g not in groups]
    if unknown:
        raise KeyError(f"groups {unknown} are not in uns[{key!r}] (groups: {groups})")
    if n is not None and (not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    frames = []
    for g in wanted:
        genes = np.asarray(names[g]).astype(str)
        order = np.arange(genes.size)
        if direction == "down":
            if "absence" in entry:
                absence = np.asarray(entry["absence"][g], dtype=float)
                order = np.argsort(-absence, kind="stable")
                order = order[evidence(entry, g)[order] == "absence"]  # absence markers only
            else:
                order = order[::-1]
        k = order.size if n is None else min(n, order.size)
        order = order[:k]
        d = {"group": g, "rank": np.arange(1, k + 1), "gene": genes[order], "evidence": evidence(entry, g)[order]}
        for f in _FIELDS:
            if f in entry:
                d[f] = np.asarray(entry[f][g])[order]
        frames.append(pd.DataFrame(d))
    out = pd.concat(frames, ignore_index=True)
    out["group"] = pd.Categorical(out["group"], categories=wanted)
    return out
