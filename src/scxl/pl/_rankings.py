"""Plots of rankings: top-gene heatmap, contribution against expression, contributions on embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .._docs import doc_params, doc_return_fig

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

import numpy as np
import pandas as pd

from ._utils import finish, group_colors, group_expression, panels, ranking_entry, style


@doc_params(return_fig=doc_return_fig)
def top_genes(
    adata: AnnData,
    key: str,
    *,
    n_genes: int = 5,
    direction: Literal["up", "down"] = "up",
    groupby: str | None = None,
    dendrogram: bool = False,
    standard_scale: str | None = "var",
    cmap: str = "viridis",
    ax: Any = None,
    return_fig: bool = False,
    show: bool | None = None,
):
    """Heatmap of each group's top genes against the mean expression of every group.

    The "tissue-specific manifestation" figure of Zhao, Shao & Asmann: rows are the groups,
    columns the top ``n_genes`` of each group of the ranking ``uns[key]``, in group order (a gene
    already shown for an earlier group is not repeated; with ``direction="down"`` it is, since a
    gene that only one group expresses is an absence marker of every other group). The colour is the mean expression of the
    gene in the group, on the matrix the ensemble was trained on (``X`` or the layer in the
    ensemble's ``preprocessing``), scaled per gene by default. Coloured bars above the columns
    say which group each gene was selected for, and a strip left of the rows gives each group's
    colour, so when the contributions are group-specific the diagonal blocks light up.

    Scanpy's dot and matrix plots read the same rankings directly:
    ``sc.pl.rank_genes_groups_dotplot(adata, key=key)`` and
    ``sc.pl.rank_genes_groups_matrixplot(adata, key=key)``.

    Parameters
    ----------
    adata
        Annotated data matrix with a ranking in ``uns[key]``.
    key
        Key of the ranking: ``key_added`` of :func:`scxl.tl.attribute` (e.g. ``"xl_deeplift"``),
        or any ``rank_genes_groups``-format key.
    n_genes
        Top genes taken from each group.
    direction
        ``"up"``: the top of each group's ranking (with scxl's default ``rank_by="up"``, genes
        whose expression supports the group; for Scanpy's rankings, up-regulated genes).
        ``"down"``: the bottom, genes with negative scores taken from the last one up — the
        absence markers (genes the group does not express that the others do; down-regulated
        genes in Scanpy's rankings). The title says which.
    groupby
        ``obs`` column of the groups; default: the ranking's ``params["groupby"]``.
    dendrogram
        Order the groups by hierarchical clustering (average linkage, correlation distance of
        the groups' mean expression over all genes) and draw the dendrogram right of the rows;
        the column blocks follow the row order.
    standard_scale
        ``"var"``: scale each gene to [0, 1] over the groups; ``"group"``: scale each group;
        ``None``: the mean expression itself.
    cmap
        Colour map of the heatmap.
    ax
        Axes of the heatmap; the group bars, colour strip, dendrogram and colour bar are appended
        next to it (they are in ``ax.figure.axes``). A new figure if ``None``.
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
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> ax = xl.pl.top_genes(adata, "xl_deeplift", n_genes=5)
    >>> ax.get_images()[0].get_array().shape[0]
    3
    >>> ax = xl.pl.top_genes(adata, "xl_deeplift", dendrogram=True, standard_scale=None)
    >>> ax = xl.pl.top_genes(adata, "xl_deeplift", direction="down")  # absence markers
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    entry, groups = ranking_entry(adata, key)
    if not (isinstance(n_genes, int | np.integer) and n_genes >= 1):
        raise ValueError(f"n_genes must be a positive integer, got {n_genes!r}")
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    if standard_scale not in (None, "var", "group"):
        raise ValueError(f"standard_scale must be 'var', 'group' or None, got {standard_scale!r}")
    if groupby is not None and groupby not in adata.obs:
        raise KeyError(f"groupby={groupby!r} is not a column of adata.obs")
    expr = group_expression(adata, key, groups, groupby)
    if len(groups) < 2 and dendrogram:
        raise ValueError("dendrogram=True needs at least two groups")
    d_link = None
    if dendrogram:
        from scipy.cluster.hierarchy import leaves_list, linkage

        profile = expr.to_numpy(dtype=float)
        profile = profile[:, np.isfinite(profile).all(0) & (profile.std(0) > 0)]
        d_link = linkage(profile, method="average", metric="correlation")
        groups = [groups[i] for i in leaves_list(d_link)]
    names = entry["names"]
    scores = entry.get("scores")
    genes: list[str] = []
    owner: list[str] = []
    for g in groups:
        taken = 0
        order = np.asarray(names[g]).astype(str)
        score = None if scores is None else np.asarray(scores[g], dtype=float)
        if direction == "down":
            order = order[::-1]
            score = None if score is None else score[::-1]
        for i, name in enumerate(order):
            if taken == n_genes:
                break
            if direction == "down" and score is not None and not score[i] < 0:
                break  # only genes with negative scores are absence evidence
            if name in ("", "nan") or name not in expr.columns:
                continue
            taken += 1
            if name not in genes or direction == "down":  # absence markers are shared: each group shows its own
                genes.append(name)
                owner.append(g)
    if not genes:
        if direction == "down":
            raise ValueError(f"no group of uns[{key!r}] has genes with negative scores (absence markers); "
                             "rankings with rank_by='up' (the default) or Scanpy's have them")
        raise ValueError(f"none of the top genes of uns[{key!r}] is in the expression matrix's var_names")
    M = expr.loc[groups, genes].to_numpy(dtype=float)
    if standard_scale == "var":
        M = M - np.nanmin(M, 0, keepdims=True)
        M = M / np.where(np.nanmax(M, 0, keepdims=True) > 0, np.nanmax(M, 0, keepdims=True), 1)
    elif standard_scale == "group":
        M = M - np.nanmin(M, 1, keepdims=True)
        M = M / np.where(np.nanmax(M, 1, keepdims=True) > 0, np.nanmax(M, 1, keepdims=True), 1)

    created = ax is None
    if created:
        width = min(2.6 + 0.28 * len(genes), 24)
        height = min(1.9 + 0.34 * len(groups) + 0.075 * max(map(len, genes)), 20)
        fig, ax = plt.subplots(figsize=(width, height))
    fig = ax.figure
    im = ax.imshow(M, aspect="auto", cmap=cmap, interpolation="nearest",
                   vmin=0 if standard_scale else None, vmax=1 if standard_scale else None)
    ax.set_xticks(range(len(genes)), genes, rotation=90, fontsize="small")
    ax.set_yticks([])
    what = f"top {n_genes} genes per group" if direction == "up" else \
        f"top {n_genes} absence markers per group (genes the group lacks)"
    ax.set_xlabel(f"{what} ({key})")
    for s in ax.spines.values():
        s.set_visible(False)
    colors = dict(zip(groups, group_colors(adata, groupby or entry.get("params", {}).get("groupby"), groups), strict=True))

    divider = make_axes_locatable(ax)
    # bars above the columns: which group each gene was selected for
    blocks = []
    for g in groups:
        idx = [i for i, o in enumerate(owner) if o == g]
        if idx:
            blocks.append((g, idx[0], idx[-1]))
    rotate = any(len(g) > 3.2 * (stop - start + 1) for g, start, stop in blocks)
    label_h = (0.07 * max(len(g) for g, _, _ in blocks) + 0.1) if rotate else 0.22
    ax_top = divider.append_axes("top", size=0.12 + label_h, pad=0.04, sharex=ax)
    ax_top.set_ylim(0, 0.12 + label_h)
    for g, start, stop in blocks:
        ax_top.add_patch(Rectangle((start - 0.42, 0), stop - start + 0.84, 0.12, color=colors[g], lw=0))
        ax_top.text((start + stop) / 2, 0.16, g, ha="left" if rotate else "center", va="bottom",
                    rotation=90 if rotate else 0, rotation_mode="anchor", fontsize="small")
    ax_top.set_axis_off()
    ax_top.set_title(f"mean expression of the {'top' if direction == 'up' else 'absence-marker'} genes of {key}",
                     fontsize="medium")
    # colour strip and labels of the rows
    ax.tick_params(axis="y", left=False, labelleft=False)
    ax_left = divider.append_axes("left", size=0.14, pad=0.04)
    for i, g in enumerate(groups):
        ax_left.add_patch(Rectangle((0, i - 0.42), 1, 0.84, color=colors[g], lw=0))
    ax_left.set_xlim(0, 1)
    ax_left.set_ylim(len(groups) - 0.5, -0.5)
    ax_left.set_xticks([])
    ax_left.set_yticks(range(len(groups)), groups)
    ax_left.tick_params(axis="y", length=0)
    for s in ax_left.spines.values():
        s.set_visible(False)
    if d_link is not None:
        from scipy.cluster.hierarchy import dendrogram as draw_dendrogram

        ax_d = divider.append_axes("right", size=0.6, pad=0.05)
        draw_dendrogram(d_link, ax=ax_d, orientation="right", link_color_func=lambda _: "black",
                        no_labels=True)
        ax_d.set_ylim(10 * len(groups), 0)  # leaves at 5, 15, ...: row i at the centre of row i
        ax_d.set_axis_off()
    cax = divider.append_axes("right", size=0.12, pad=0.12)
    label = {"var": "mean expression\n(scaled per gene)", "group": "mean expression\n(scaled per group)",
             None: "mean expression"}[standard_scale]
    fig.colorbar(im, cax=cax, label=label)
    ax.set_ylim(len(groups) - 0.5, -0.5)
    return finish(fig, [ax], created=created, return_fig=return_fig, show=show)


@doc_params(return_fig=doc_return_fig)
def contribution_vs_expression(
    adata: AnnData,
    keys: str | Sequence[str],
    *,
    group: str | None = None,
    ax: Any = None,
    return_fig: bool = False,
    show: bool | None = None,
):
    """Scatter each gene's group score against its mean expression in the group, per explainer.

    One panel per ranking: x is the mean expression of each gene in ``group`` (on the matrix the
    ensemble was trained on), y its group score (``uns[key]["scores"][group]``, the mean
    contribution over the group's cells). The panel title gives the Spearman correlation: some
    explainers (Zhao, Shao & Asmann's groups I and III) mostly follow expression, while the
    others pick genes that separate the groups.

    Parameters
    ----------
    adata
        Annotated data matrix with the rankings.
    keys
        One ranking key or a list, e.g. ``["xl_saliency", "xl_deeplift"]``.
    group
        Group shown; default: the first group of the first ranking.
    ax
        Axes to draw into (one per key); a new figure if ``None``.
    {return_fig}

    Returns
    -------
    The Axes (a list of Axes for several keys), or the Figure if ``return_fig``.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, n_markers=5, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=3, max_epochs=5)
    >>> for m in ("saliency", "deeplift"):
    ...     xl.tl.attribute(adata, method=m)
    >>> axes = xl.pl.contribution_vs_expression(adata, ["xl_saliency", "xl_deeplift"], group="group_1")
    >>> len(axes)
    2
    """
    from scipy.stats import spearmanr

    from ._utils import OKABE_ITO

    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise ValueError("give at least one ranking key")
    entries = {}
    for k in keys:
        entries[k] = ranking_entry(adata, k)
        if "scores" not in entries[k][0]:
            raise KeyError(f"uns[{k!r}] has no 'scores': run xl.tl.attribute (or sc.tl.rank_genes_groups) first")
    if group is None:
        group = entries[keys[0]][1][0]
    group = str(group)
    for k in keys:
        if group not in entries[k][1]:
            raise ValueError(f"group {group!r} is not in uns[{k!r}] (groups: {entries[k][1]})")
    fig, axs, created = panels(len(keys), ax, size=(3.8, 3.6))
    for a, k in zip(axs, keys, strict=True):
        entry, groups = entries[k]
        expr = group_expression(adata, k, groups).loc[group]
        names = pd.Index(np.asarray(entry["names"][group]).astype(str))
        scores = pd.Series(np.asarray(entry["scores"][group], dtype=float), index=names)
        scores = scores[scores.index.isin(expr.index) & np.isfinite(scores.to_numpy())]
        x = expr.reindex(scores.index).to_numpy(dtype=float)
        y = scores.to_numpy()
        ok = np.isfinite(x)
        x, y = x[ok], y[ok]
        rho = spearmanr(x, y).statistic if x.size > 2 else np.nan
        a.axhline(0, color="0.6", lw=0.8, zorder=0)
        a.scatter(x, y, s=12, color=OKABE_ITO[0], alpha=0.75, lw=0)
        a.set(xlabel=f"mean expression in {group}", ylabel=f"group score ({group})",
              title=f"{k}\nSpearman ρ = {rho:.2f}")
        style(a)
    return finish(fig, axs, created=created, return_fig=return_fig, show=show)


def contributions(
    adata: AnnData,
    key: str,
    genes: str | Sequence[str],
    *,
    basis: str = "umap",
    **kwargs: Any,
):
    """Per-cell contributions of genes on an embedding (a thin wrapper of ``sc.pl.embedding``).

    Calls ``sc.pl.embedding(adata, basis, layer=key, color=genes, cmap="RdBu_r", show=False,
    **kwargs)`` with colour limits symmetric about 0 for every gene (``±`` its largest absolute
    contribution, unless ``vmin``, ``vmax``, ``vcenter`` or ``norm`` is given): red cells are
    pushed towards their target class by the gene, blue ones away from it, white ones not at
    all, and equal shades mean equal magnitudes either way.

    Parameters
    ----------
    adata
        Annotated data matrix with per-cell contributions in ``layers[key]`` and an embedding in
        ``obsm[f"X_{basis}"]``.
    key
        Attribution key (``key_added`` of :func:`scxl.tl.attribute`, stored with
        ``store_layer=True``).
    genes
        Gene(s) to colour by.
    basis
        Embedding, e.g. ``"umap"``, ``"pca"`` or ``"tsne"`` (``obsm[f"X_{basis}"]``).
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (e.g. ``ncols``, ``vmax``, ``ax``, ``return_fig``,
        or another ``cmap``).

    Returns
    -------
    What :func:`scanpy.pl.embedding` returns with ``show=False``: the Axes, a list of Axes for
    several genes, or the Figure with ``return_fig=True``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, n_markers=5, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=3, max_epochs=5)
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> sc.pp.pca(adata, n_comps=10)
    >>> axes = xl.pl.contributions(adata, "xl_deeplift", ["gene_0005", "gene_0014"], basis="pca")
    """
    import scanpy as sc

    if key not in adata.layers:
        raise KeyError(
            f"no per-cell contributions under layers[{key!r}]: run xl.tl.attribute(adata, ...) "
            "with store_layer=True first"
        )
    if f"X_{basis}" not in adata.obsm:
        hint = {"umap": "sc.pp.neighbors and sc.tl.umap", "pca": "sc.pp.pca", "tsne": "sc.tl.tsne"}.get(
            basis, "an embedding tool"
        )
        raise KeyError(f"no embedding under obsm['X_{basis}']: run {hint} first, or choose another basis=")
    genes_list = [genes] if isinstance(genes, str) else list(genes)
    missing = [g for g in genes_list if g not in adata.var_names]
    if missing:
        raise KeyError(f"genes {missing} are not in adata.var_names")
    entry = adata.uns.get(key)
    held = entry.get("layer_var_names") if isinstance(entry, Mapping) else None
    if held is not None:
        held = {str(g) for g in np.asarray(held.compute() if hasattr(held, "compute") else held).tolist()}
        absent = [g for g in genes_list if g not in held]
        if absent:
            raise ValueError(f"layers[{key!r}] holds {len(held)} genes only (xl.tl.attribute's layer_genes), not {absent[:5]}: "
                             "they would be drawn as 0; choose among uns[key]['layer_var_names'], or rerun attribute "
                             "with layer_genes including them")
    lazy_obs = not isinstance(adata.obs, pd.DataFrame)  # (read_lazy: scanpy's sanitize_anndata fails on it)
    if lazy_obs or hasattr(adata.obsm[f"X_{basis}"], "compute"):  # (read_lazy; scanpy failed deep in dask's slicing)
        what = "obs is a lazy (xarray) table" if lazy_obs else f"obsm['X_{basis}'] is a lazy (dask) array"
        raise TypeError(f"{what}, which scanpy's plots cannot draw: plot an AnnData "
                        "read into memory, e.g. xl.pl.contributions(adata[cells].to_memory(), ...)")
    opts = {"cmap": "RdBu_r", "show": False} | kwargs
    if not {"vmin", "vmax", "vcenter", "norm"} & set(kwargs):  # limits symmetric about 0, gene by gene
        limits = [_max_abs(adata.layers[key], int(adata.var_names.get_loc(g))) for g in genes_list]
        opts |= {"vmin": [-m for m in limits], "vmax": limits} if len(limits) > 1 else {"vmin": -limits[0], "vmax": limits[0]}
    return sc.pl.embedding(adata, basis, layer=key, color=genes, **opts)


def _max_abs(layer: Any, j: int) -> float:
    """The largest absolute value of column ``j`` of a layer (dense, sparse or dask), 1 where all are 0."""
    col = layer[:, [j]]
    if hasattr(col, "compute"):
        col = col.compute()
    col = col.toarray() if hasattr(col, "toarray") else np.asarray(col)
    m = float(np.nanmax(np.abs(col))) if col.size else 0.0
    return m if np.isfinite(m) and m > 0 else 1.0
