"""Plots judging attributions: explainer agreement and faithfulness curves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._docs import doc_params, doc_return_fig

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

import numpy as np

from ._utils import finish, palette, panels, result, style, text_color


@doc_params(return_fig=doc_return_fig)
def explainers(
    adata: AnnData,
    key: str = "xl_explainers",
    *,
    metric: str = "overlap",
    ax: Any = None,
    return_fig: bool = False,
    show: bool | None = None,
):
    """Heatmap of the agreement between explainers, grouped by their clusters.

    Reads :func:`scxl.tl.compare_explainers`: the mean (over groups) top-gene overlap or Spearman
    correlation of every pair of rankings, rows and columns in dendrogram order, each value
    written in its cell. The explainer clusters (I, II, III, ...; Zhao, Shao & Asmann found three)
    are framed on the diagonal and named in a coloured strip left of the rows.

    Parameters
    ----------
    adata
        Annotated data matrix with results of :func:`scxl.tl.compare_explainers`.
    key
        ``key_added`` of :func:`scxl.tl.compare_explainers`.
    metric
        ``"overlap"`` (top-``top_k`` gene overlap, 0 to 1) or ``"spearman"`` (rank correlation of
        the group scores, −1 to 1).
    ax
        Axes of the heatmap (the cluster strip and colour bar are appended next to it); a new
        figure if ``None``.
    {return_fig}

    Returns
    -------
    The Axes of the heatmap, or the Figure if ``return_fig``.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, n_markers=5, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=3, max_epochs=5)
    >>> keys = []
    >>> for m in ("saliency", "deeplift", "input_x_gradient"):
    ...     xl.tl.attribute(adata, method=m)
    ...     keys.append(f"xl_{{m}}")
    >>> xl.tl.compare_explainers(adata, keys, top_k=10, n_clusters=2)
    >>> ax = xl.pl.explainers(adata)
    >>> ax.get_images()[0].get_array().shape
    (3, 3)
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    if metric not in ("overlap", "spearman"):
        raise ValueError(f"metric must be 'overlap' or 'spearman', got {metric!r}")
    entry = result(adata, key, "explainer comparison", "xl.tl.compare_explainers", (metric, "clusters"))
    mat = entry[metric]
    clusters = entry["clusters"]
    keys = [str(k) for k in clusters.sort_values("order").index]
    values = mat.loc[keys, keys].to_numpy(dtype=float)
    n = len(keys)
    created = ax is None
    if created:
        longest = max(map(len, keys))
        side = 1.2 + 0.62 * n
        fig, ax = plt.subplots(figsize=(side + 0.075 * longest + 1.3, side + 0.075 * longest * 0.75))
    fig = ax.figure
    if metric == "overlap":
        im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
        label = f"mean top-{entry.get('params', {}).get('top_k', 'k')} overlap"
    else:
        im = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1)
        label = "mean Spearman ρ"
    fontsize = "small" if n <= 8 else "x-small"
    for i in range(n):
        for j in range(n):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=fontsize,
                        color=text_color(im.cmap(im.norm(values[i, j]))))
    ax.set_xticks(range(n), keys, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    # clusters: frames on the diagonal, named in a strip left of the rows
    names = clusters.loc[keys, "cluster"].astype(str).tolist()
    blocks: list[tuple[str, int, int]] = []
    for i, c in enumerate(names):
        if blocks and blocks[-1][0] == c:
            blocks[-1] = (c, blocks[-1][1], i)
        else:
            blocks.append((c, i, i))
    cluster_ids = list(dict.fromkeys(names))
    colors = dict(zip(cluster_ids, palette(len(cluster_ids)), strict=True))
    divider = make_axes_locatable(ax)
    ax.tick_params(axis="y", left=False, labelleft=False)
    ax_left = divider.append_axes("left", size=0.3, pad=0.05)
    for c, start, stop in blocks:
        ax.add_patch(Rectangle((start - 0.5, start - 0.5), stop - start + 1, stop - start + 1, fill=False,
                               ec="black", lw=2.2, clip_on=False))
        ax_left.add_patch(Rectangle((0, start - 0.45), 1, stop - start + 0.9, color=colors[c], lw=0))
        ax_left.text(0.5, (start + stop) / 2, c, ha="center", va="center", fontsize="small", fontweight="bold",
                     color=text_color(_rgba(colors[c])))
    ax_left.set_xlim(0, 1)
    ax_left.set_ylim(n - 0.5, -0.5)
    ax_left.set_xticks([])
    ax_left.set_yticks(range(n), keys)
    ax_left.tick_params(axis="y", length=0)
    for s in ax_left.spines.values():
        s.set_visible(False)
    ax.set_ylim(n - 0.5, -0.5)
    cax = divider.append_axes("right", size=0.15, pad=0.15)
    fig.colorbar(im, cax=cax, label=label)
    ax.set_title("agreement between explainers\n(framed: clusters)", fontsize="medium")
    return finish(fig, [ax], created=created, return_fig=return_fig, show=show)


def _rgba(color: str) -> tuple[float, ...]:
    from matplotlib.colors import to_rgba

    return to_rgba(color)


_MODE_TEXT = {
    "deletion": ("top genes replaced by the reference (k)", "deletion (faithful: falls fast, low AUC)"),
    "insertion": ("top genes restored from the reference (k)", "insertion (faithful: rises fast, high AUC)"),
}


@doc_params(return_fig=doc_return_fig)
def faithfulness(
    adata: AnnData,
    key: str,
    *,
    mode: str | Sequence[str] = ("deletion", "insertion"),
    ax: Any = None,
    return_fig: bool = False,
    show: bool | None = None,
):
    """Deletion and insertion curves of a ranking and its comparisons.

    Reads :func:`scxl.tl.faithfulness`. One panel per mode: the ensemble's mean probability of
    the target class (band: ± standard error over cells) against the number ``k`` of top genes
    replaced by the reference (deletion) or restored from it (insertion), one line per ranking
    (the attribution, ``"random"``, and any other ranking compared), with the area under each
    curve in the legend. A faithful ranking falls fast under deletion and rises fast under
    insertion.

    Parameters
    ----------
    adata
        Annotated data matrix with results of :func:`scxl.tl.faithfulness`.
    key
        Attribution key passed to :func:`scxl.tl.faithfulness` (e.g. ``"xl_deeplift"``); the
        curves are read from ``uns[f"{{key}}_faithfulness"]`` (or from ``uns[key]`` if that is a
        faithfulness result itself, for a custom ``key_added``).
    mode
        ``"deletion"``, ``"insertion"`` or both (one panel each).
    ax
        Axes to draw into (one per mode); a new figure if ``None``.
    {return_fig}

    Returns
    -------
    The Axes (a list of Axes for both modes), or the Figure if ``return_fig``.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, n_markers=5, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=3, max_epochs=5)
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> xl.tl.faithfulness(adata, "xl_deeplift", steps=[0, 5, 10, 20])
    >>> axes = xl.pl.faithfulness(adata, "xl_deeplift")
    >>> [a.get_title().split()[0] for a in axes]
    ['deletion', 'insertion']
    """
    fkey = f"{key}_faithfulness"
    if fkey not in adata.uns and isinstance(adata.uns.get(key), dict) and "curves" in adata.uns[key]:
        fkey = key
    entry = result(adata, fkey, "faithfulness results", "xl.tl.faithfulness", ("curves", "auc"))
    modes = [mode] if isinstance(mode, str) else list(mode)
    curves, auc = entry["curves"], entry["auc"]
    stored = list(dict.fromkeys(curves["mode"].astype(str)))
    absent = [m for m in modes if m not in stored]
    if absent or not modes:
        raise ValueError(f"mode must be among {stored}, got {modes}")
    rankings = list(dict.fromkeys(curves["ranking"].astype(str)))
    colors = dict(zip(rankings, palette(len(rankings)), strict=True))
    fig, axs, created = panels(len(modes), ax, size=(4.4, 3.7))
    for a, m in zip(axs, modes, strict=True):
        for r in rankings:
            d = curves[(curves["ranking"].astype(str) == r) & (curves["mode"].astype(str) == m)].sort_values("k")
            if d.empty:
                continue
            row = auc[(auc["ranking"].astype(str) == r) & (auc["mode"].astype(str) == m)]
            label = f"{r} (AUC {float(row['auc'].iloc[0]):.2f})" if len(row) else r
            k, p = d["k"].to_numpy(dtype=float), d["probability"].to_numpy(dtype=float)
            sem = np.nan_to_num(d["sem"].to_numpy(dtype=float))
            c = colors[r]
            ls = ":" if r == "random" else "-"
            a.fill_between(k, p - sem, p + sem, color=c, alpha=0.2, lw=0)
            a.plot(k, p, color=c, lw=1.8, ls=ls, marker="o", ms=3.5, label=label)
        xlabel, title = _MODE_TEXT.get(m, ("genes changed (k)", m))
        a.set(xlabel=xlabel, ylabel="probability of the target class", title=title)
        a.set_ylim(0, 1.02)
        a.legend(fontsize="small", frameon=False, loc="best")
        style(a)
    return finish(fig, axs, created=created, return_fig=return_fig, show=show)
