"""``xl.pl.specificity``: how many of each group's top genes fall in specific/housekeeping/user sets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._docs import doc_params, doc_return_fig

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

import numpy as np

from ._utils import finish, palette, panels, result, style

_FIRST = ("specific to group", "housekeeping")


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


@doc_params(return_fig=doc_return_fig)
def specificity(
    adata: AnnData,
    key: str,
    *,
    sets: Sequence[str] | None = None,
    ax: Any = None,
    return_fig: bool = False,
    show: bool | None = None,
):
    """Bar plot of the fraction of each group's top genes in each gene set, against chance.

    Reads the table of :func:`scxl.tl.gene_set_overlap`. For every group, one bar per gene set
    gives the fraction of the group's top genes in the set (``overlap / n_selected``); a black
    tick on each bar marks the fraction expected for a random selection of as many genes
    (``expected / n_selected``). Stars mark a significant enrichment (Benjamini–Hochberg
    adjusted hypergeometric p-value: ``*`` < 0.05, ``**`` < 0.01, ``***`` < 0.001). When the
    contributions find group-specific biology, the "specific to group" bars rise far above
    their ticks and the "housekeeping" bars stay at or below theirs.

    Parameters
    ----------
    adata
        Annotated data matrix with results of :func:`scxl.tl.gene_set_overlap`.
    key
        The ranking passed to :func:`scxl.tl.gene_set_overlap` (e.g. ``"xl_deeplift"``); the
        table is read from ``uns[f"{{key}}_overlap"]`` (or from ``uns[key]`` if that is an overlap
        result itself, for a custom ``key_added``).
    sets
        Gene sets to show, in this order; default: all (``"specific to group"``, ``"housekeeping"``,
        then the user's sets).
    ax
        Axes to draw into; a new figure if ``None``.
    {return_fig}

    Returns
    -------
    The Axes, or the Figure if ``return_fig``.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, n_markers=5, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=3, max_epochs=5)
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> xl.tl.specificity(adata, "group", min_expr=0.5)
    >>> xl.tl.gene_set_overlap(adata, "xl_deeplift", top_k=10)
    >>> ax = xl.pl.specificity(adata, "xl_deeplift")
    >>> ax = xl.pl.specificity(adata, "xl_deeplift", sets=["specific to group"])
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    okey = f"{key}_overlap"
    if okey not in adata.uns and isinstance(adata.uns.get(key), dict) and "table" in adata.uns[key]:
        okey = key
    entry = result(adata, okey, "gene-set overlap results", "xl.tl.gene_set_overlap", ("table",))
    table = entry["table"]
    needed = ["group", "gene_set", "overlap", "expected", "n_selected", "pvalue_adj"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise KeyError(f"uns[{okey!r}]['table'] lacks columns {missing}: run xl.tl.gene_set_overlap first")
    stored = list(dict.fromkeys(table["gene_set"].astype(str)))
    stored = [s for s in _FIRST if s in stored] + [s for s in stored if s not in _FIRST]
    if sets is None:
        sets = stored
    else:
        sets = [sets] if isinstance(sets, str) else list(sets)
        absent = [s for s in sets if s not in stored]
        if absent:
            raise ValueError(f"gene sets {absent} are not in uns[{okey!r}]['table'] (available: {stored})")
    if not sets:
        raise ValueError(f"uns[{okey!r}]['table'] is empty")
    groups = list(dict.fromkeys(table["group"].astype(str)))
    ranked = adata.uns.get(str(entry.get("params", {}).get("key", "")))
    if isinstance(ranked, dict) and "names" in ranked:  # the ranking's group order
        order = [str(g) for g in ranked["names"].dtype.names]
        groups = [g for g in order if g in groups] + [g for g in groups if g not in order]
    colors = dict(zip(sets, palette(len(sets)), strict=True))
    n_sets = len(sets)
    width = 0.8 / n_sets
    longest = max(map(len, groups))
    rotate = longest * len(groups) > 40 or len(groups) > 12
    height = 3.4 + (0.055 * longest if rotate else 0)
    fig, axs, created = panels(1, ax, size=(min(14.0, max(3.6, 2.8 + 0.32 * len(groups) * n_sets + 0.25 * len(groups))), height))
    a = axs[0]
    tab = table.assign(group=table["group"].astype(str), gene_set=table["gene_set"].astype(str)).set_index(
        ["group", "gene_set"]
    )
    top = 0.0
    for j, s in enumerate(sets):
        for i, g in enumerate(groups):
            if (g, s) not in tab.index:
                continue
            row = tab.loc[(g, s)]
            n_sel = max(float(row["n_selected"]), 1.0)
            frac, exp = float(row["overlap"]) / n_sel, float(row["expected"]) / n_sel
            x = i - 0.4 + width * (j + 0.5)
            a.bar(x, frac, width=width * 0.9, color=colors[s], lw=0)
            a.plot([x - width * 0.45, x + width * 0.45], [exp, exp], color="black", lw=1.6, solid_capstyle="butt")
            star = _stars(float(row["pvalue_adj"]))
            if star:
                a.text(x, max(frac, exp) + 0.01, star, ha="center", va="bottom", fontsize="medium")
            top = max(top, frac, exp)
    a.set_xticks(range(len(groups)), groups, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                 rotation_mode="anchor" if rotate else "default")
    a.set_xlim(-0.6, len(groups) - 0.4)
    a.set_ylim(0, min(1.0, top) * 1.18 + 0.04)
    params = entry.get("params", {})
    k = params.get("top_k")
    a.set(ylabel=f"fraction of the top {k} genes" if k else "fraction of the top genes",
          title=f"gene sets among the top genes of {params.get('key', key)}")
    handles = [Patch(color=colors[s], label=s) for s in sets]
    handles.append(Line2D([], [], color="black", lw=1.6, label="random expectation"))
    a.legend(handles=handles, fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    style(a)
    return finish(fig, axs, created=created, return_fig=return_fig, show=show)
