"""xl.pl plots of reproducibility, rankings, gene sets, explainers and faithfulness: artists drawn."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scanpy as sc
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy.stats import spearmanr

import scxl as xl
from scxl.pl._utils import OKABE_ITO

KEYS = ["xl_deeplift", "xl_saliency", "xl_integrated_gradients"]


@pytest.fixture(scope="module")
def res():
    """Every tool's output on one small synthetic data set (read-only)."""
    a = xl.datasets.synthetic(300, 100, 3, n_markers=5, random_state=0)
    xl.tl.train_classifier(a, "group", n_models=4, max_epochs=10, random_state=0)
    for m in ("deeplift", "saliency", "integrated_gradients"):
        xl.tl.attribute(a, method=m)
    xl.tl.reproducibility(a, method=["deeplift", "saliency"], n_values=(1, 2), n_replicates=2, top_k=10,
                          target_spearman=0.4)
    xl.tl.specificity(a, "group", min_expr=0.5)
    xl.tl.gene_set_overlap(a, "xl_deeplift", top_k=10)
    xl.tl.compare_explainers(a, KEYS, top_k=10, n_clusters=2)
    xl.tl.faithfulness(a, "xl_deeplift", steps=[0, 5, 10, 20])
    sc.pp.pca(a, n_comps=10)
    return a


@pytest.fixture(scope="module")
def figdir(tmp_path_factory) -> Path:
    """Where figures are written: ``$SCXL_FIGDIR`` (to look at them) or a temporary folder."""
    path = Path(os.environ.get("SCXL_FIGDIR") or tmp_path_factory.mktemp("figs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def save(obj, figdir: Path, name: str) -> None:
    fig = obj if isinstance(obj, Figure) else np.ravel(obj)[0].figure
    fig.savefig(figdir / f"{name}.png", dpi=60)


def texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts]


def legend(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def ticklabels(ax: Axes, axis: str = "x") -> list[str]:
    return [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()]


def star_markers(ax: Axes) -> list:
    return [ln for ln in ax.get_lines() if ln.get_marker() == "*"]


# reproducibility ----------------------------------------------------------------------------------


def test_reproducibility_lines_band_target_and_convergence(res, figdir):
    ax = xl.pl.reproducibility(res)
    save(ax, figdir, "reproducibility")
    summary = res.uns["xl_reproducibility"]["summary"]
    conv = res.uns["xl_reproducibility"]["convergence"]
    conv = conv[conv["level"] == "group"].set_index("method")["n_converged"]
    methods = ["deeplift", "saliency"]
    curves = [ln for ln in ax.get_lines() if ln.get_label() in methods]
    assert [ln.get_label() for ln in curves] == methods
    for ln, m in zip(curves, methods, strict=True):
        d = summary[(summary["method"] == m) & (summary["level"] == "group")].sort_values("n")
        np.testing.assert_allclose(ln.get_ydata(), d["spearman"])
        np.testing.assert_array_equal(ln.get_xdata(), [1, 2])
    assert len(ax.collections) == 2  # one interquartile band per method
    target = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(target) == 1 and target[0].get_ydata()[0] == pytest.approx(0.4)
    # the convergence table is what is marked
    assert len(star_markers(ax)) == int(conv.notna().sum())
    labels = legend(ax)
    assert labels[-1] == "target 0.4"
    for m in methods:
        expect = f"{m}: reaches target at n = {conv[m]:g}" if np.isfinite(conv[m]) else m
        assert expect in labels
    assert ax.get_xscale() == "log"
    assert ticklabels(ax) == ["1", "2"]
    assert "Spearman" in ax.get_ylabel() and ax.get_xlabel() == "models aggregated (n)"
    assert ax.get_title() == "vary models, group level"
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
    assert curves[0].get_color() == OKABE_ITO[0]


def test_reproducibility_topk_cell_level_own_target(res, figdir):
    fig = xl.pl.reproducibility(res, metric="topk_overlap", level="cell", target=0.0, return_fig=True)
    save(fig, figdir, "reproducibility_topk_cell")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "median top-10 overlap between replicates"
    # every median is >= 0: both methods reach the target at the smallest n
    assert len(star_markers(ax)) == 2
    assert legend(ax) == ["deeplift: reaches target at n = 1", "saliency: reaches target at n = 1", "target 0"]
    # no default target for the overlap
    ax2 = xl.pl.reproducibility(res, metric="topk_overlap")
    assert not [ln for ln in ax2.get_lines() if ln.get_linestyle() == "--"] and not star_markers(ax2)


def test_reproducibility_into_given_axes(res):
    fig, axs = plt.subplots(1, 2)
    out = xl.pl.reproducibility(res, vary=["models"], ax=axs[1])
    assert out is axs[1] and len(axs[0].get_lines()) == 0
    with pytest.raises(ValueError, match="1 panel"):
        xl.pl.reproducibility(res, ax=axs)


def test_reproducibility_errors(res, adata):
    with pytest.raises(KeyError, match=r"no reproducibility results under uns\['xl_reproducibility'\]: run xl.tl.reproducibility first"):
        xl.pl.reproducibility(adata)
    with pytest.raises(ValueError, match="metric must be"):
        xl.pl.reproducibility(res, metric="pearson")
    with pytest.raises(ValueError, match="level must be"):
        xl.pl.reproducibility(res, level="gene")
    with pytest.raises(ValueError, match=r"no results for vary=\['baselines'\].*xl.tl.reproducibility\(adata, vary='baselines'"):
        xl.pl.reproducibility(res, vary="baselines")


# top genes -----------------------------------------------------------------------------------------


def expected_columns(adata, key, groups, n):
    names = adata.uns[key]["names"]
    genes, owner = [], []
    for g in groups:
        for name in list(names[g])[:n]:
            if name not in genes:
                genes.append(name)
                owner.append(g)
    return genes, owner


def group_mean(adata, genes, groups, layer=None):
    X = adata.X if layer is None else adata.layers[layer]
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X)
    cols = adata.var_names.get_indexer(genes)
    return np.stack([X[(adata.obs["group"] == g).to_numpy()][:, cols].mean(0) for g in groups])


def test_top_genes_heatmap(res, figdir):
    ax = xl.pl.top_genes(res, "xl_deeplift", n_genes=5)
    save(ax, figdir, "top_genes")
    groups = ["group_0", "group_1", "group_2"]
    genes, owner = expected_columns(res, "xl_deeplift", groups, 5)
    img = np.asarray(ax.get_images()[0].get_array())
    assert img.shape == (3, len(genes))
    assert ticklabels(ax) == genes
    # standard-scaled per gene: each column spans [0, 1]
    np.testing.assert_allclose(img.min(0), 0, atol=1e-9)
    np.testing.assert_allclose(img.max(0), 1, atol=1e-9)
    raw = group_mean(res, genes, groups)
    scaled = (raw - raw.min(0)) / (raw.max(0) - raw.min(0))
    np.testing.assert_allclose(img, scaled, rtol=1e-5, atol=1e-6)
    # the diagonal blocks light up for the planted markers
    own = np.array([[o == g for o in owner] for g in groups])
    assert img[own].mean() > img[~own].mean() + 0.3
    fig = ax.figure
    top = [a for a in fig.axes if a is not ax and len([p for p in a.patches if isinstance(p, Rectangle)]) == 3
           and texts(a) == groups]
    assert len(top) == 1  # the bars above the columns, named by group
    bars = sorted(top[0].patches, key=lambda p: p.get_x())
    for p, g in zip(bars, groups, strict=True):
        idx = [i for i, o in enumerate(owner) if o == g]
        assert p.get_x() < idx[0] and p.get_x() + p.get_width() > idx[-1]
    left = [a for a in fig.axes if ticklabels(a, "y") == groups]
    assert len(left) == 1  # row labels on the colour strip
    assert not [t for t in ax.get_yticklabels() if t.get_visible() and t.get_text()]  # no duplicate labels
    assert any(a.get_ylabel() == "mean expression\n(scaled per gene)" for a in fig.axes)


def test_top_genes_dendrogram_unscaled(res, figdir):
    from scipy.cluster.hierarchy import leaves_list, linkage

    fig = xl.pl.top_genes(res, "xl_deeplift", n_genes=8, dendrogram=True, standard_scale=None, return_fig=True)
    save(fig, figdir, "top_genes_dendrogram")
    ax = fig.axes[0]
    X = np.asarray(res.X)
    prof = np.stack([X[(res.obs["group"] == g).to_numpy()].mean(0) for g in ["group_0", "group_1", "group_2"]])
    order = [f"group_{i}" for i in leaves_list(linkage(prof, method="average", metric="correlation"))]
    genes, _ = expected_columns(res, "xl_deeplift", order, 8)
    assert ticklabels(ax) == genes
    np.testing.assert_allclose(ax.get_images()[0].get_array(), group_mean(res, genes, order), rtol=1e-5)
    dendro = [a for a in fig.axes if a.collections and a is not ax and not a.get_ylabel()]
    assert len(dendro) == 1 and sum(len(c.get_paths()) for c in dendro[0].collections) == 2  # 3 leaves: 2 links


def test_top_genes_uses_the_matrix_the_ranking_read(res):
    """The ranking's params['layer'] (what attribute read); without it, as results written before, the ensemble's."""
    groups = ["group_0", "group_1", "group_2"]
    a = res.copy()
    a.uns["xl_deeplift"]["params"]["layer"] = "counts"
    ax = xl.pl.top_genes(a, "xl_deeplift", n_genes=2, standard_scale=None)
    genes, _ = expected_columns(a, "xl_deeplift", groups, 2)
    np.testing.assert_allclose(ax.get_images()[0].get_array(), group_mean(a, genes, groups, "counts"), rtol=1e-5)
    b = res.copy()
    del b.uns["xl_deeplift"]["params"]["layer"]
    b.uns["xl"]["preprocessing"]["layer"] = "counts"
    ax = xl.pl.top_genes(b, "xl_deeplift", n_genes=2, standard_scale=None)
    np.testing.assert_allclose(ax.get_images()[0].get_array(), group_mean(b, genes, groups, "counts"), rtol=1e-5)


def test_top_genes_groupby_of_other_groups(res):
    """A groupby whose values are not the ranking's groups would draw a blank heatmap: an error
    when no group has a cell, a warning naming the groups that have none."""
    a = res.copy()
    a.obs["other"] = np.where(np.arange(a.n_obs) % 2, "odd", "even")
    with pytest.raises(ValueError, match=r"is a value of obs\['other'\].*groups are those of obs\['group'\]"):
        xl.pl.top_genes(a, "xl_deeplift", groupby="other")
    a.obs["partial"] = a.obs["group"].astype(str).replace({"group_2": "elsewhere"})
    with pytest.warns(xl.ScxlWarning, match=r"group\(s\) \['group_2'\] .* have no cell in obs\['partial'\]"):
        xl.pl.top_genes(a, "xl_deeplift", groupby="partial")


def test_top_genes_absence_markers(res, figdir):
    """direction='down': each group's own last genes with negative scores (repeated where groups share them),
    lower in the group than elsewhere."""
    ax = xl.pl.top_genes(res, "xl_deeplift", n_genes=3, direction="down", standard_scale=None)
    save(ax, figdir, "top_genes_down")
    entry = res.uns["xl_deeplift"]
    groups = ["group_0", "group_1", "group_2"]
    per_group = {g: [n for n in np.asarray(entry["names"][g])[::-1][np.asarray(entry["scores"][g])[::-1] < 0][:3]]
                 for g in groups}
    want = [n for g in groups for n in per_group[g]]
    assert want and ticklabels(ax) == want  # in group order, a shared gene in every group whose absence marker it is
    assert "absence markers" in ax.get_xlabel() and "absence-marker" in ax.figure.axes[1].get_title()
    img = np.asarray(ax.get_images()[0].get_array())
    owners = [g for g in groups for _ in per_group[g]]
    assert all(img[groups.index(g), j] <= img[:, j].mean() for j, g in enumerate(owners))  # expressed less in its group
    with pytest.raises(ValueError, match="direction must be 'up' or 'down'"):
        xl.pl.top_genes(res, "xl_deeplift", direction="both")


def test_top_genes_down_repeats_shared_absence_markers(res):
    """A gene that only one group expresses is an absence marker of all the others: every such group gets its block."""
    a = res.copy()
    entry = a.uns["xl_deeplift"]
    names = {g: np.asarray(entry["names"][g]).copy() for g in entry["names"].dtype.names}
    scores = {g: np.asarray(entry["scores"][g]).copy() for g in entry["names"].dtype.names}
    shared = names["group_0"][-1]
    for g in ("group_1", "group_2"):  # make group_0's last gene the last of the others too, with a negative score
        i = int(np.flatnonzero(names[g] == shared)[0])
        names[g] = np.append(np.delete(names[g], i), shared)
        scores[g] = np.append(np.delete(scores[g], i), -1.0)
    a.uns["xl_deeplift"] = dict(entry)
    a.uns["xl_deeplift"]["names"] = np.rec.fromarrays([names[g] for g in names], names=list(names))
    a.uns["xl_deeplift"]["scores"] = np.rec.fromarrays([scores[g] for g in scores], names=list(scores))
    ax = xl.pl.top_genes(a, "xl_deeplift", n_genes=1, direction="down")
    assert ticklabels(ax) == [shared] * 3
    assert [t.get_text() for t in ax.figure.axes[1].texts] == ["group_0", "group_1", "group_2"]  # a block per group


def test_top_genes_errors(res, adata):
    with pytest.raises(KeyError, match=r"no ranking under uns\['xl_deeplift'\]: run xl.tl.attribute"):
        xl.pl.top_genes(adata, "xl_deeplift")
    with pytest.raises(ValueError, match="n_genes must be a positive integer"):
        xl.pl.top_genes(res, "xl_deeplift", n_genes=0)
    with pytest.raises(ValueError, match="standard_scale must be"):
        xl.pl.top_genes(res, "xl_deeplift", standard_scale="obs")
    with pytest.raises(KeyError, match="groupby='tissue' is not a column"):
        xl.pl.top_genes(res, "xl_deeplift", groupby="tissue")


# gene-set specificity ------------------------------------------------------------------------------


def test_specificity_bars_expectation_and_stars(res, figdir):
    ax = xl.pl.specificity(res, "xl_deeplift")
    save(ax, figdir, "specificity")
    table = res.uns["xl_deeplift_overlap"]["table"]
    sets = ["specific to group", "housekeeping"]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 3 * len(sets)
    want = {(r.group, r.gene_set): (r.overlap / r.n_selected, r.expected / r.n_selected, r.pvalue_adj)
            for r in table.itertuples()}
    got = sorted(b.get_height() for b in bars)
    np.testing.assert_allclose(got, sorted(v[0] for v in want.values()))
    ticks = [ln for ln in ax.get_lines() if ln.get_color() == "black"]
    np.testing.assert_allclose(sorted(ln.get_ydata()[0] for ln in ticks), sorted(v[1] for v in want.values()))
    n_sig = sum(v[2] < 0.05 for v in want.values())
    assert n_sig >= 1 and len(ax.texts) == n_sig
    assert all(set(t) == {"*"} for t in texts(ax))
    assert ticklabels(ax) == ["group_0", "group_1", "group_2"]
    assert legend(ax) == [*sets, "random expectation"]
    assert ax.get_ylabel() == "fraction of the top 10 genes"
    # "specific to group" is drawn first, in the first palette colour
    first = min(bars, key=lambda b: b.get_x())
    assert matplotlib.colors.to_hex(first.get_facecolor()).lower() == OKABE_ITO[0].lower()


def test_specificity_subset_and_errors(res, adata):
    ax = xl.pl.specificity(res, "xl_deeplift", sets=["housekeeping"])
    assert len([p for p in ax.patches if isinstance(p, Rectangle)]) == 3
    assert legend(ax) == ["housekeeping", "random expectation"]
    with pytest.raises(ValueError, match=r"gene sets \['TFs'\] are not in"):
        xl.pl.specificity(res, "xl_deeplift", sets=["TFs"])
    with pytest.raises(KeyError, match=r"no gene-set overlap results under uns\['xl_saliency_overlap'\]: run xl.tl.gene_set_overlap first"):
        xl.pl.specificity(res, "xl_saliency")
    with pytest.raises(KeyError, match="run xl.tl.gene_set_overlap first"):
        xl.pl.specificity(adata, "xl_deeplift")


# explainers ----------------------------------------------------------------------------------------


def test_explainers_heatmap_clusters(res, figdir):
    ax = xl.pl.explainers(res)
    save(ax, figdir, "explainers")
    entry = res.uns["xl_explainers"]
    order = entry["clusters"].sort_values("order").index.tolist()
    img = np.asarray(ax.get_images()[0].get_array())
    np.testing.assert_allclose(img, entry["overlap"].loc[order, order].to_numpy())
    assert ticklabels(ax) == order
    assert texts(ax) == [f"{v:.2f}" for v in img.ravel()]
    fig = ax.figure
    strip = [a for a in fig.axes if ticklabels(a, "y") == order]
    assert len(strip) == 1
    clusters = entry["clusters"].loc[order, "cluster"].tolist()
    assert texts(strip[0]) == list(dict.fromkeys(clusters))  # one roman numeral per cluster
    assert set(clusters) == {"I", "II"}
    frames = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert len(frames) == 2
    # DeepLift and IntegratedGradients agree exactly (same closed form): one cluster
    assert entry["clusters"].loc["xl_deeplift", "cluster"] == entry["clusters"].loc["xl_integrated_gradients", "cluster"]


def test_explainers_spearman(res, figdir):
    fig = xl.pl.explainers(res, metric="spearman", return_fig=True)
    save(fig, figdir, "explainers_spearman")
    im = fig.axes[0].get_images()[0]
    assert im.get_clim() == (-1, 1) and im.get_cmap().name == "RdBu_r"
    assert any(a.get_ylabel() == "mean Spearman ρ" for a in fig.axes)


def test_explainers_errors(res, adata):
    with pytest.raises(KeyError, match=r"no explainer comparison under uns\['xl_explainers'\]: run xl.tl.compare_explainers first"):
        xl.pl.explainers(adata)
    with pytest.raises(ValueError, match="metric must be"):
        xl.pl.explainers(res, metric="jaccard")


# contribution against expression -------------------------------------------------------------------


def test_contribution_vs_expression(res, figdir):
    axes = xl.pl.contribution_vs_expression(res, ["xl_deeplift", "xl_saliency"])
    save(axes, figdir, "contribution_vs_expression")
    assert isinstance(axes, list) and len(axes) == 2
    X = np.asarray(res.X)
    expr = X[(res.obs["group"] == "group_0").to_numpy()].mean(0)
    for ax, key in zip(axes, ["xl_deeplift", "xl_saliency"], strict=True):
        names = list(res.uns[key]["names"]["group_0"])
        scores = np.asarray(res.uns[key]["scores"]["group_0"], dtype=float)
        x = expr[res.var_names.get_indexer(names)]
        pts = ax.collections[0].get_offsets()
        assert pts.shape == (100, 2)
        np.testing.assert_allclose(pts[:, 0], x, rtol=1e-5)
        np.testing.assert_allclose(pts[:, 1], scores, rtol=1e-5)
        rho = spearmanr(x, scores).statistic
        assert ax.get_title() == f"{key}\nSpearman ρ = {rho:.2f}"
        assert ax.get_xlabel() == "mean expression in group_0"


def test_contribution_vs_expression_one_key_and_errors(res, adata):
    ax = xl.pl.contribution_vs_expression(res, "xl_deeplift", group="group_2")
    assert isinstance(ax, Axes) and ax.get_ylabel() == "group score (group_2)"
    with pytest.raises(ValueError, match="group 'group_9' is not in"):
        xl.pl.contribution_vs_expression(res, "xl_deeplift", group="group_9")
    with pytest.raises(KeyError, match="run xl.tl.attribute"):
        xl.pl.contribution_vs_expression(adata, ["xl_deeplift"])


# faithfulness ---------------------------------------------------------------------------------------


def test_faithfulness_curves(res, figdir):
    axes = xl.pl.faithfulness(res, "xl_deeplift")
    save(axes, figdir, "faithfulness")
    auc = res.uns["xl_deeplift_faithfulness"]["auc"].set_index(["ranking", "mode"])["auc"]
    curves = res.uns["xl_deeplift_faithfulness"]["curves"]
    for ax, mode in zip(axes, ["deletion", "insertion"], strict=True):
        assert ax.get_title().startswith(mode)
        lines = ax.get_lines()
        assert len(lines) == 2 and len(ax.collections) == 2  # a line and an sem band per ranking
        assert legend(ax) == [f"{r} (AUC {auc[(r, mode)]:.2f})" for r in ("xl_deeplift", "random")]
        d = curves[(curves["ranking"] == "xl_deeplift") & (curves["mode"] == mode)]
        np.testing.assert_allclose(lines[0].get_ydata(), d["probability"])
        np.testing.assert_array_equal(lines[0].get_xdata(), [0, 5, 10, 20])
    # a faithful ranking: deletion falls faster, insertion rises faster than random
    assert auc[("xl_deeplift", "deletion")] < auc[("random", "deletion")]


def test_faithfulness_one_mode_and_errors(res, adata):
    ax = xl.pl.faithfulness(res, "xl_deeplift", mode="insertion")
    assert isinstance(ax, Axes) and ax.get_title().startswith("insertion")
    with pytest.raises(ValueError, match="mode must be among"):
        xl.pl.faithfulness(res, "xl_deeplift", mode="ablation")
    with pytest.raises(KeyError, match=r"no faithfulness results under uns\['xl_saliency_faithfulness'\]: run xl.tl.faithfulness first"):
        xl.pl.faithfulness(res, "xl_saliency")


# contributions on an embedding ----------------------------------------------------------------------


def test_contributions_on_embedding(res, figdir):
    axes = xl.pl.contributions(res, "xl_deeplift", ["gene_0005", "gene_0014"], basis="pca")
    save(axes, figdir, "contributions")
    assert [a.get_title() for a in axes] == ["gene_0005", "gene_0014"]
    col = axes[0].collections[0]
    assert col.get_cmap().name == "RdBu_r"
    for ax, gene in zip(axes, ["gene_0005", "gene_0014"], strict=True):  # limits ± the gene's largest |contribution|
        layer = np.asarray(res.layers["xl_deeplift"][:, res.var_names.get_loc(gene)])
        norm = ax.collections[0].norm
        np.testing.assert_allclose([norm.vmin, norm.vmax], [-np.abs(layer).max(), np.abs(layer).max()], rtol=1e-6)
        assert norm(0.0) == pytest.approx(0.5)
    layer = np.asarray(res.layers["xl_deeplift"][:, res.var_names.get_loc("gene_0005")])
    np.testing.assert_allclose(np.sort(col.get_array()), np.sort(layer), rtol=1e-5)
    ax = xl.pl.contributions(res, "xl_deeplift", "gene_0005", basis="pca", vmax=1.0)  # the user's limits win
    assert ax.collections[0].norm.vmax == 1.0


def test_contributions_of_genes_outside_a_restricted_layer(res, tmp_path):
    """A layer stored for some genes (layer_genes) reads as 0 elsewhere: plotting another gene is an
    error (it drew a uniform 0), the genes it holds are recorded in uns and survive .h5ad."""
    import anndata as ad

    a = res.copy()
    xl.tl.attribute(a, layer_genes=["gene_0005", "gene_0014"], key_added="restricted")
    assert list(a.uns["restricted"]["layer_var_names"]) == ["gene_0005", "gene_0014"]
    with pytest.raises(ValueError, match=r"holds 2 genes only .*not \['gene_0003'\]"):
        xl.pl.contributions(a, "restricted", ["gene_0005", "gene_0003"], basis="pca")
    a.write_h5ad(tmp_path / "a.h5ad")
    b = ad.read_h5ad(tmp_path / "a.h5ad")
    assert len(xl.pl.contributions(b, "restricted", ["gene_0005", "gene_0014"], basis="pca")) == 2
    assert "layer_var_names" not in res.uns["xl_deeplift"]  # a layer of every gene: nothing recorded


def test_contributions_errors(res):
    with pytest.raises(KeyError, match=r"no embedding under obsm\['X_umap'\]: run sc.pp.neighbors and sc.tl.umap first"):
        xl.pl.contributions(res, "xl_deeplift", "gene_0005")
    with pytest.raises(KeyError, match=r"no per-cell contributions under layers\['xl_shap'\]"):
        xl.pl.contributions(res, "xl_shap", "gene_0005", basis="pca")
    with pytest.raises(KeyError, match=r"genes \['CD3E'\] are not in"):
        xl.pl.contributions(res, "xl_deeplift", ["CD3E"], basis="pca")


def test_plot_signatures():
    import inspect

    for name in xl.pl.__all__:
        params = list(inspect.signature(getattr(xl.pl, name)).parameters.values())
        assert params[0].name == "adata"
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert len(positional) <= 3, name
        names = [p.name for p in params]
        assert "save" not in names
        for p in params:
            if isinstance(p.default, bool):
                assert p.kind == p.KEYWORD_ONLY, f"{name}: {p.name}"
        if name != "contributions":  # passes everything on to sc.pl.embedding
            assert {"ax", "return_fig", "show"} <= set(names), name


# show=, as Scanpy's plots ------------------------------------------------------------------------------


@pytest.mark.parametrize("plot, args", [
    ("top_genes", ("xl_deeplift",)), ("reproducibility", ()), ("specificity", ("xl_deeplift",)), ("explainers", ()),
    ("faithfulness", ("xl_deeplift",)), ("contribution_vs_expression", ("xl_deeplift",)), ("training", ()),
])
def test_every_plot_shows_as_scanpys(res, monkeypatch, plot, args):
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(True))
    fn = getattr(xl.pl, plot)
    assert fn(res, *args) is not None and not shown  # by default the Axes come back, nothing is shown
    assert fn(res, *args, show=False) is not None and not shown
    assert fn(res, *args, show=True) is None and shown == [True]
    assert isinstance(fn(res, *args, show=True, return_fig=True), Figure) and shown == [True]  # returned, not shown
