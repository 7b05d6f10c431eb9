"""``xl.pl.reproducibility``: agreement between replicates against the number aggregated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._docs import doc_params, doc_return_fig

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

import numpy as np
import pandas as pd

from ._utils import finish, palette, panels, result, style

_VARY_ORDER = ("models", "baselines", "repeats", "smoothgrad")
_XLABEL = {
    "models": "models aggregated (n)",
    "baselines": "references per cell (n)",
    "repeats": "repeats averaged (n)",
    "smoothgrad": "SmoothGrad noisy copies (n)",
}


def _converged_at(d: pd.DataFrame, metric: str, target: float) -> float:
    indep = d[d["disjoint"]] if "disjoint" in d else d  # shared members agree by construction
    ok = indep.loc[indep[metric] >= target, "n"]
    return float(ok.iloc[0]) if len(ok) else np.nan


@doc_params(return_fig=doc_return_fig)
def reproducibility(
    adata: AnnData,
    key: str = "xl_reproducibility",
    *,
    metric: str = "spearman",
    level: str = "group",
    vary: str | Sequence[str] | None = None,
    target: float | None = None,
    ax: Any = None,
    return_fig: bool = False,
    show: bool | None = None,
):
    """Plot how reproducible contributions become as more models (references, ...) are aggregated.

    One panel per varied quantity (``vary``). In each, the median agreement between independent
    replicates (Spearman correlation of all genes, or overlap of the top genes) is drawn against
    ``n`` (log2 axis, one tick per ``n`` tried), one line per explainer, with a band from the
    first to the third quartile over replicate pairs (and groups, at the group level). A dashed
    line marks the target and a star the smallest ``n`` whose median reaches it with independent
    (member-disjoint) replicates; hollow markers flag ``n`` whose replicates share members, which
    agree by construction and are never called converged (also named in
    the legend), as in the simulations of Zhao, Shao & Asmann.

    Parameters
    ----------
    adata
        Annotated data matrix with results of :func:`scxl.tl.reproducibility`.
    key
        ``key_added`` of :func:`scxl.tl.reproducibility`.
    metric
        ``"spearman"`` (rank correlation over all genes) or ``"topk_overlap"`` (overlap of the
        top-``top_k`` gene lists).
    level
        ``"group"`` (agreement of the group mean contributions) or ``"cell"`` (median over cells
        of the per-cell agreement).
    vary
        What was varied (``"models"``, ``"baselines"``, ``"repeats"``, ``"smoothgrad"``), or a
        list of these; default: every one stored, one panel each.
    target
        Target line. Default: the tool's ``target_spearman`` for ``metric="spearman"``, none for
        ``"topk_overlap"``. For the stored target and metric, the convergence ``n`` is read from
        ``uns[key]["convergence"]``; otherwise it is the smallest ``n`` whose median reaches
        ``target``.
    ax
        Axes to draw into (one per panel); a new figure if ``None``.
    {return_fig}

    Returns
    -------
    The Axes (a list of Axes for several panels), or the Figure if ``return_fig``.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, n_markers=5, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=4, max_epochs=5)
    >>> xl.tl.reproducibility(adata, method=["deeplift", "saliency"], n_values=(1, 2), n_replicates=2, top_k=10)
    >>> ax = xl.pl.reproducibility(adata)
    >>> ax = xl.pl.reproducibility(adata, metric="topk_overlap", level="cell", target=0.8)
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    entry = result(adata, key, "reproducibility results", "xl.tl.reproducibility", ("summary", "params"))
    if metric not in ("spearman", "topk_overlap"):
        raise ValueError(f"metric must be 'spearman' or 'topk_overlap', got {metric!r}")
    if level not in ("group", "cell"):
        raise ValueError(f"level must be 'group' or 'cell', got {level!r}")
    summary = entry["summary"]
    summary = summary[summary["level"] == level]
    stored = [v for v in _VARY_ORDER if v in set(summary["vary"])] + sorted(
        set(summary["vary"]) - set(_VARY_ORDER)
    )
    if vary is None:
        varies = stored
    else:
        varies = [vary] if isinstance(vary, str) else list(vary)
        absent = [v for v in varies if v not in stored]
        if absent:
            raise ValueError(
                f"no results for vary={absent} in uns[{key!r}] (stored: {stored}); "
                f"run xl.tl.reproducibility(adata, vary={absent[0]!r}, ...) first"
            )
    if not varies:
        raise ValueError(f"uns[{key!r}] holds no {level}-level results")
    params = entry["params"]
    stored_target = float(params.get("target_spearman", np.nan))
    if target is None and metric == "spearman":
        target = stored_target
    top_k = int(params.get("top_k", 0))
    conv = entry.get("convergence")
    use_table = conv is not None and metric == "spearman" and target is not None and np.isclose(target, stored_target)

    methods = list(dict.fromkeys(summary["method"]))
    colors = dict(zip(methods, palette(len(methods)), strict=True))
    fig, axs, created = panels(len(varies), ax, size=(4.6, 3.8))
    for a, v in zip(axs, varies, strict=True):
        d_vary = summary[summary["vary"] == v]
        handles = []
        any_shared = False
        for m in methods:
            d = d_vary[d_vary["method"] == m].sort_values("n")
            if d.empty:
                continue
            c = colors[m]
            a.fill_between(d["n"], d[f"{metric}_q25"], d[f"{metric}_q75"], color=c, alpha=0.2, lw=0)
            a.plot(d["n"], d[metric], color=c, lw=1.8, marker="o", ms=4, label=m)
            shared = d[~d["disjoint"]] if "disjoint" in d else d.iloc[:0]
            if len(shared):  # replicates sharing members: hollow markers, never "converged"
                a.plot(shared["n"], shared[metric], ls="none", marker="o", ms=7, mfc="white", mec=c, mew=1.5, zorder=3)
                any_shared = True
            label = m
            if target is not None:
                if use_table:
                    row = conv[(conv["method"] == m) & (conv["vary"] == v) & (conv["level"] == level)]
                    n_conv = float(row["n_converged"].iloc[0]) if len(row) else np.nan
                else:
                    n_conv = _converged_at(d, metric, target)
                if np.isfinite(n_conv):
                    y = float(d.loc[d["n"] == n_conv, metric].iloc[0])
                    a.plot([n_conv], [y], marker="*", ms=13, color=c, mec="black", mew=0.8, ls="none", zorder=4)
                    label = f"{m}: reaches target at n = {n_conv:g}"
            handles.append(Line2D([], [], color=c, lw=1.8, marker="o", ms=4, label=label))
        if any_shared:
            handles.append(Line2D([], [], ls="none", marker="o", ms=7, mfc="white", mec="0.3",
                                  label="replicates share members (not independent)"))
        if target is not None:
            a.axhline(target, ls="--", lw=1, color="0.35", zorder=1)
            handles.append(Line2D([], [], ls="--", lw=1, color="0.35", label=f"target {target:g}"))
        ns = np.sort(d_vary["n"].unique())
        a.set_xscale("log", base=2)
        a.set_xticks(ns, [f"{n:g}" for n in ns])
        a.xaxis.set_minor_locator(NullLocator())
        if len(ns) > 1:
            pad = (np.log2(ns[-1]) - np.log2(ns[0])) * 0.06
            a.set_xlim(2 ** (np.log2(ns[0]) - pad), 2 ** (np.log2(ns[-1]) + pad))
        low = float(np.nanmin(d_vary[f"{metric}_q25"])) if len(d_vary) else 0.0
        a.set_ylim(min(0.0, low - 0.05), 1.05)
        ylabel = "Spearman ρ" if metric == "spearman" else f"top-{top_k} overlap" if top_k else "top-k overlap"
        a.set(
            xlabel=_XLABEL.get(v, f"{v} (n)"),
            ylabel=f"median {ylabel} between replicates",
            title=f"vary {v}, {level} level",
        )
        a.legend(handles=handles, fontsize="small", frameon=False, loc="best")
        style(a)
    return finish(fig, axs, created=created, return_fig=return_fig, show=show)
