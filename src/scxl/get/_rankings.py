"""Tidy readers of the rankings scxl stores in ``uns``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._validation import check_adata

_FIELDS = ("scores", "scores_std", "topk_fraction", "logfoldchanges", "pvals", "pvals_adj")


def top_genes(adata: Any, key: str, *, group: str | list[str] | None = None, n: int | None = None) -> pd.DataFrame:
    """Top contributing genes per group as a tidy DataFrame.

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

    Returns
    -------
    DataFrame with columns ``group``, ``rank`` (1 = top), ``gene`` and every per-gene field
    stored (``scores``, ``scores_std``, ``topk_fraction``, ``logfoldchanges``, ``pvals``,
    ``pvals_adj``).

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=5)
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> xl.get.top_genes(adata, "xl_deeplift", n=3).shape
    (9, 9)
    """
    check_adata(adata)
    if key not in adata.uns or "names" not in adata.uns[key]:
        raise KeyError(f"no ranking under uns[{key!r}]: run xl.tl.attribute(adata, method=...) first")
    entry = adata.uns[key]
    names = entry["names"]
    groups = list(names.dtype.names)
    wanted = groups if group is None else [group] if isinstance(group, str) else list(group)
    unknown = [g for g in wanted if g not in groups]
    if unknown:
        raise KeyError(f"groups {unknown} are not in uns[{key!r}] (groups: {groups})")
    if n is not None and (not isinstance(n, int | np.integer) or n < 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    frames = []
    for g in wanted:
        genes = np.asarray(names[g]).astype(str)
        k = len(genes) if n is None else min(n, len(genes))
        d = {"group": g, "rank": np.arange(1, k + 1), "gene": genes[:k]}
        for f in _FIELDS:
            if f in entry:
                d[f] = np.asarray(entry[f][g])[:k]
        frames.append(pd.DataFrame(d))
    out = pd.concat(frames, ignore_index=True)
    out["group"] = pd.Categorical(out["group"], categories=wanted)
    return out
