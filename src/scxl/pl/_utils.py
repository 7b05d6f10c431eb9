"""Shared helpers of the plotting functions: palette, panels, result look-ups, group means."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._logging import warn
from .._validation import TOOL_FIELD, is_mudata, to_frame

#: Okabe & Ito (2008) colour-blind-safe palette, ordered so that the first colours contrast most
#: on a white background (yellow, the weakest, comes last but one).
OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)

_MISSING = (None, "None", "none", "")


def palette(n: int) -> list[str]:
    """``n`` colours of the Okabe–Ito palette (cycled beyond eight)."""
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(n)]


def group_colors(adata: Any, groupby: str | None, groups: Sequence[str]) -> list[str]:
    """Colours of ``groups``: ``uns[f"{groupby}_colors"]`` when the user set them, else Okabe–Ito."""
    if groupby and groupby in list(adata.obs.columns) and f"{groupby}_colors" in adata.uns:
        col = to_frame(adata.obs, [groupby])[groupby]  # (a lazy AnnData's obs reads only this column)
        cats = [str(c) for c in col.cat.categories] if isinstance(col.dtype, pd.CategoricalDtype) else []
        colors = list(adata.uns[f"{groupby}_colors"])
        if len(colors) == len(cats) and all(g in cats for g in groups):
            return [str(colors[cats.index(g)]) for g in groups]
    return palette(len(groups))


def style(ax: Any) -> None:
    """Scanpy-like axes: no top/right spines, no grid."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(False)


def panels(n: int, ax: Any, *, size: tuple[float, float] = (4.2, 3.6)):
    """``n`` Axes side by side: new ones, or the user's ``ax`` (one Axes or a sequence of ``n``)."""
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    if ax is None:
        fig, axs = plt.subplots(1, n, figsize=(size[0] * n, size[1]), squeeze=False)
        return fig, list(axs[0]), True
    axs = [ax] if isinstance(ax, Axes) else list(np.ravel(ax))
    if len(axs) != n:
        raise ValueError(f"this plot has {n} panel(s) but ax holds {len(axs)} Axes; pass {n} Axes or ax=None")
    return axs[0].figure, axs, False


def finish(fig: Any, axs: list[Any], *, created: bool, return_fig: bool, show: bool | None = None):
    """Tight layout on figures made here; show; return the Figure, the Axes or the list of Axes.

    As Scanpy's plots: ``return_fig=True`` returns the Figure (not shown); otherwise
    ``show=True`` shows it and returns ``None``.
    """
    if created:
        fig.tight_layout()
    if return_fig:
        return fig
    if show:
        import matplotlib.pyplot as plt

        plt.show()
        return None
    return axs[0] if len(axs) == 1 else axs


def result(adata: Any, key: str, what: str, tool: str, fields: Sequence[str] = ()) -> Any:
    """``adata.uns[key]`` with ``fields``, or an error naming the tool to run first."""
    entry = adata.uns.get(key) if hasattr(adata, "uns") else None
    if entry is None:
        raise KeyError(f"no {what} under uns[{key!r}]: run {tool} first")
    missing = [f for f in fields if f not in entry]
    if missing:
        raise KeyError(f"uns[{key!r}] lacks {missing}: it was not written by {tool}; run {tool} first")
    return entry


def ranking_entry(adata: Any, key: str) -> tuple[dict, list[str]]:
    """A ``rank_genes_groups``-format entry (``names`` and ``scores``) and its groups."""
    entry = result(adata, key, "ranking", "xl.tl.attribute (or sc.tl.rank_genes_groups)", ("names",))
    return entry, [str(g) for g in entry["names"].dtype.names]


def _none(value: Any) -> Any:
    return None if (value is None or (isinstance(value, str) and value in _MISSING)) else value


def input_matrix(adata: Any, key: str):
    """The matrix a ranking's ensemble was trained on (``X``, a layer or ``raw``).

    ``uns[key]["params"]["ensemble_key"]`` names the ensemble, whose ``preprocessing`` says the layer; a
    ranking without an ensemble (e.g. ``sc.tl.rank_genes_groups``) uses its own ``layer`` and
    ``use_raw`` parameters; otherwise ``X``.
    """
    from .._inputs import get_matrix
    from .._keys import ensemble_key_of

    if is_mudata(adata):
        mods = [m for m in adata.mod if key in adata.mod[m].uns]
        raise TypeError(f"this plot draws expression from one AnnData, and a MuData's ranking spans its modalities: pass a "
                        f"modality, e.g. mdata[{(mods or list(adata.mod))[0]!r}], whose uns[{key!r}] holds that modality's "
                        f"ranking" + (f" (written for {mods})" if mods else ""))
    params = dict(adata.uns[key].get("params", {}))
    prep: dict = {}
    ens_key = ensemble_key_of(params) if _none(params.get("ensemble_key", params.get("key"))) is not None else None
    if ens_key is not None and ens_key in adata.uns and isinstance(adata.uns[ens_key], dict):
        prep = dict(adata.uns[ens_key].get("preprocessing", {}) or {})
    # an attribute result records the matrix it read (the ensemble's unless attribute was given another)
    source = params if params.get(TOOL_FIELD) == "attribute" and "layer" in params else prep if prep else params
    layer = _none(source.get("layer"))
    if isinstance(layer, dict):  # a MuData ensemble: per-modality layers
        layer = None
    use_raw = bool(_none(source.get("use_raw")) in (True, "True", "true", 1))
    return get_matrix(adata, layer=layer, use_raw=use_raw)


def group_expression(adata: Any, key: str, groups: Sequence[str], groupby: str | None = None) -> pd.DataFrame:
    """Mean expression (groups × genes) of the ranking's groups on the ensemble's input matrix.

    ``groupby`` defaults to the ranking's ``params["groupby"]``.
    """
    from ..explain import group_means

    params = dict(adata.uns[key].get("params", {}))
    groupby = groupby or _none(params.get("groupby"))
    if groupby is None or groupby not in adata.obs:
        raise KeyError(
            f"uns[{key!r}]['params'] names groupby={groupby!r}, which is not a column of adata.obs; "
            "the expression per group cannot be computed"
        )
    matrix = input_matrix(adata, key)
    column = to_frame(adata.obs, [groupby])[groupby]  # (a lazy obs is read first: its strings may not cast)
    labels = np.array([str(v) for v in column.to_numpy()], dtype=object)
    index = {g: i for i, g in enumerate(groups)}
    codes = np.array([index.get(v, -1) for v in labels], dtype=np.int64)
    empty = [g for g, n in zip(groups, np.bincount(codes[codes >= 0], minlength=len(groups)), strict=True) if n == 0]
    ranked_by = _none(params.get("groupby"))
    if len(empty) == len(groups):
        raise ValueError(f"none of the groups of uns[{key!r}] ({list(groups)[:3]}...) is a value of obs[{groupby!r}], so there "
                         f"is no expression to show" + (f": the ranking's groups are those of obs[{ranked_by!r}]; leave groupby "
                                                         "unset or pass that column" if ranked_by and ranked_by != groupby else ""))
    if empty:
        warn(f"group(s) {empty[:5]} of uns[{key!r}] have no cell in obs[{groupby!r}]: their expression is blank (NaN) in the plot")
    means = group_means(matrix.chunks(4096), codes, len(groups))
    return pd.DataFrame(means, index=list(groups), columns=matrix.var_names)


def text_color(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on ``rgba`` (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"
