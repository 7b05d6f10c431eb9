"""Judging attributions: explainer comparison, faithfulness, consistency and model selection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._inputs import Aligned
from .._keys import Key, baseline_of, ensemble_key_of
from .._logging import logger
from .._types import Replace
from .._validation import TOOL_FIELD, check_adata, check_holds_results, check_in, check_writable
from ._attribute import input_of, prepare_targets
from ._gene_sets import ranking
from ._reproducibility import _subsample

_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X")


def _scores_matrix(adata: AnnData, key: str, genes: pd.Index, groups: list[str]) -> np.ndarray:
    """Group scores of a ranking as groups × genes in ``genes`` order (NaN where absent)."""
    entry = adata.uns[key]
    out = np.full((len(groups), len(genes)), np.nan)
    for i, g in enumerate(groups):
        names = pd.Index(np.asarray(entry["names"][g]).astype(str))
        vals = np.asarray(entry["scores"][g], dtype=float)
        pos = genes.get_indexer(names)
        out[i, pos[pos >= 0]] = vals[pos >= 0]
    return out


def _layer_rows(adata: AnnData, key: str, X: Aligned, cells: np.ndarray) -> np.ndarray:
    """Rows ``cells`` of ``layers[key]`` in ensemble feature order (features without a layer column: 0)."""
    col = X.var_positions(adata.var_names)
    out = np.zeros((cells.size, col.size), dtype=np.float32)
    ok = col >= 0
    out[:, ok] = np.asarray(adata.layers[key][cells][:, col[ok]], dtype=np.float32)
    return out


def _ensemble_key(adata: AnnData, key: str) -> str:
    return ensemble_key_of(adata.uns[key].get("params", {}))


def compare_explainers(
    adata: AnnData,
    keys: Sequence[str],
    *,
    top_k: int = 100,
    n_clusters: int = 3,
    key_added: str = Key.uns.explainers,
    overwrite: bool = False,
) -> None:
    """Compare explainers: top-gene overlap, rank correlation, groups, and relation to expression.

    For every pair of rankings (e.g. ``["xl_saliency", "xl_deeplift", ...]``, any
    ``rank_genes_groups``-format key, Scanpy's included) and every group, the overlap of the top
    ``top_k`` genes and the Spearman correlation of the group scores over the shared genes are
    computed, then averaged over groups. Explainers are clustered (average linkage on
    1 − mean overlap) into ``n_clusters`` groups; Zhao, Shao & Asmann found three (I, II, III),
    with DeepLift, DeepLiftShap, InputXGradient and IntegratedGradients together in one. The
    numbering of the clusters here follows the dendrogram's leaf order and is arbitrary; explainers
    with identical rankings (e.g. IntegratedGradients and DeepLift on a one-hidden-layer MLP with
    the same fixed reference) always share a cluster, so fewer clusters may result.

    Per explainer, the relation to expression level is measured per group: the Spearman
    correlation between the group score and the group's mean expression, and the overlap of the
    top contributing genes with the ``top_k`` most expressed genes (medians over groups).

    Parameters
    ----------
    adata
        Annotated data matrix with the rankings.
    keys
        Keys of the rankings in ``uns`` (at least two).
    top_k
        Size of the top-gene lists.
    n_clusters
        Number of explainer groups to cut the dendrogram into.
    key_added
        Key in ``uns``.
    overwrite
        Replace an entry under ``key_added`` that another tool or the user wrote (an entry this
        tool wrote before is always replaced). By default such a key is refused with an error.

    Returns
    -------
    ``None``. Writes ``uns[key_added]`` with ``params``, ``overlap`` and ``spearman`` (keys × keys,
    mean over groups), ``per_group`` (tidy: ``key_i``, ``key_j``, ``group``, ``topk_overlap``,
    ``spearman``), ``clusters`` (per key: ``cluster`` and dendrogram ``order``), ``linkage`` and
    ``expression`` (per key: ``spearman_with_expression``, ``overlap_with_top_expressed``).

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=5)
    >>> for m in ("saliency", "deeplift", "input_x_gradient"):
    ...     xl.tl.attribute(adata, method=m)
    >>> xl.tl.compare_explainers(adata, ["xl_saliency", "xl_deeplift", "xl_input_x_gradient"], top_k=10, n_clusters=2)
    >>> adata.uns["xl_explainers"]["overlap"].shape
    (3, 3)
    """
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
    from scipy.spatial.distance import squareform

    from .. import metrics

    check_adata(adata, allow_mudata=False)
    keys = list(keys)
    if len(keys) < 2:
        raise ValueError("give at least two ranking keys to compare")
    check_writable(adata, key_added, tool="compare_explainers", overwrite=overwrite)
    ranks = {k: ranking(adata, k) for k in keys}
    groups = sorted(set.intersection(*[set(r) for r in ranks.values()]), key=list(ranks[keys[0]]).index)
    if not groups:
        raise ValueError(f"the rankings {keys} share no group")
    genes = pd.Index(sorted(set.intersection(*[set(np.concatenate(list(r.values()))) for r in ranks.values()])))
    S = {k: _scores_matrix(adata, k, genes, groups) for k in keys}
    k_top = min(int(top_k), len(genes))
    n = len(keys)
    ov, rho = np.eye(n), np.eye(n)
    rows = []
    for i in range(n):
        for j in range(i + 1, n):
            o = np.asarray(metrics.topk_overlap(S[keys[i]], S[keys[j]], k_top))
            r = np.asarray(metrics.spearman_rows(S[keys[i]], S[keys[j]]))
            ov[i, j] = ov[j, i] = float(np.nanmean(o))
            rho[i, j] = rho[j, i] = float(np.nanmean(r))
            rows += [{"key_i": keys[i], "key_j": keys[j], "group": g, "topk_overlap": float(o[t]), "spearman": float(r[t])}
                     for t, g in enumerate(groups)]
    dist = squareform(np.clip(1 - ov, 0, None), checks=False)
    Z = linkage(dist, method="average")
    n_distinct = len({tuple(np.round(row, 9)) for row in ov})  # identical explainers cannot be split
    n_clusters = max(1, min(int(n_clusters), n_distinct))
    labels = fcluster(Z, t=n_clusters, criterion="maxclust")
    order = leaves_list(Z)
    first_seen = {}
    for leaf in order:
        first_seen.setdefault(labels[leaf], len(first_seen))
    clusters = pd.DataFrame({"cluster": [_ROMAN[first_seen[labels[i]]] for i in range(n)],
                             "order": [int(np.flatnonzero(order == i)[0]) for i in range(n)]}, index=keys)

    # relation to expression (on the ensemble's input, if an ensemble is known)
    expr_rows = {}
    ens_key = _ensemble_key(adata, keys[0])
    if ens_key in adata.uns:
        from ..get import ensemble as get_ensemble

        p0 = adata.uns[keys[0]]["params"]
        prep = prepare_targets(adata, get_ensemble(adata, ens_key), groupby=p0.get("groupby"), **input_of(adata, p0))
        from ..explain import group_means

        expr = group_means(prep.X.chunks(4096), prep.group_codes, len(prep.group_names))
        ens_genes = pd.Index(np.asarray(adata.uns[ens_key]["var_names"]).astype(str))
        E = np.full((len(groups), len(genes)), np.nan)
        pos = ens_genes.get_indexer(genes)
        for t, g in enumerate(groups):
            if g in prep.group_names:
                row = expr[prep.group_names.index(g)]
                E[t, pos >= 0] = row[pos[pos >= 0]]
        ok = np.isfinite(E).all(1)
        for k in keys:
            if ok.any():
                r = np.asarray(metrics.spearman_rows(S[k][ok], E[ok]))
                o = np.asarray(metrics.topk_overlap(S[k][ok], E[ok], k_top))
                expr_rows[k] = {"spearman_with_expression": float(np.nanmedian(r)), "overlap_with_top_expressed": float(np.median(o))}
    adata.uns[key_added] = {
        "params": {TOOL_FIELD: "compare_explainers", "keys": keys, "top_k": int(k_top), "n_clusters": int(n_clusters), "groups": groups},
        "overlap": pd.DataFrame(ov, index=keys, columns=keys),
        "spearman": pd.DataFrame(rho, index=keys, columns=keys),
        "per_group": pd.DataFrame(rows),
        "clusters": clusters,
        "linkage": Z,
        "expression": pd.DataFrame.from_dict(expr_rows, orient="index"),
    }
    logger.info("finished comparing %d explainers: added uns[%r]; clusters: %s", n, key_added,
                clusters["cluster"].to_dict())


def _predict_fn(ens):
    def predict(x: np.ndarray) -> np.ndarray:
        return ens.predict_proba(x)

    return predict


def faithfulness(
    adata: AnnData,
    key: str,
    *,
    steps: Sequence[int] | None = None,
    replace_with: Replace = "reference",
    compare: Sequence[str] = ("random",),
    max_cells: int = 300,
    random_state: int = 0,
    key_added: str | None = None,
    overwrite: bool = False,
) -> None:
    """Deletion and insertion curves: how fast the prediction changes as top genes are removed.

    For each cell (a stratified subsample of ``max_cells``), its ``k`` top genes by the per-cell
    contributions in ``layers[key]`` are replaced by the reference (**deletion**; a faithful
    ranking makes the ensemble's probability of the target class fall fast), or, starting from
    the reference, only its ``k`` top genes are given their real values (**insertion**; the
    probability should rise fast). The same is done for each ranking in ``compare``:
    ``"random"`` (a random gene order per cell) and any ``rank_genes_groups``-format key (e.g.
    Scanpy's Wilcoxon ranking; a cell uses its group's ranking). Areas under the curves
    (normalised to the range of ``k``) summarise them: low for deletion, high for insertion.

    Parameters
    ----------
    adata
        Annotated data matrix with an attribution (``layers[key]`` and ``uns[key]``).
    key
        Attribution key, e.g. ``"xl_deeplift"``.
    steps
        Numbers of genes replaced (default: a grid from 0 to 200 or all genes).
    replace_with
        ``"reference"`` (zeros if the attribution used the zero reference, else each gene's mean),
        ``"mean"`` or ``"zero"``.
    compare
        Other rankings: ``"random"`` and/or keys of ``rank_genes_groups``-format results.
    max_cells
        Cells used.
    random_state
        Seed of the subsample and of the random ranking.
    key_added
        Key in ``uns`` (default ``f"{key}_faithfulness"``).
    overwrite
        Replace an entry under ``key_added`` that another tool or the user wrote (an entry this
        tool wrote before is always replaced). By default such a key is refused with an error.

    Returns
    -------
    ``None``. Writes ``uns[key_added]`` with ``params``, ``curves`` (tidy: ``ranking``, ``mode``,
    ``k``, ``probability`` (mean over cells), ``sem``) and ``auc`` (``ranking``, ``mode``, ``auc``).

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=5)
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> xl.tl.faithfulness(adata, "xl_deeplift", steps=[0, 5, 10, 20])
    >>> sorted(adata.uns["xl_deeplift_faithfulness"]["auc"]["ranking"].unique())
    ['random', 'xl_deeplift']
    """
    from .. import metrics
    from ..get import ensemble as get_ensemble

    check_adata(adata, allow_mudata=False)
    check_in(replace_with, ("reference", "mean", "zero"), "replace_with")
    if key not in adata.layers or key not in adata.uns:
        raise KeyError(f"faithfulness needs layers[{key!r}]: run xl.tl.attribute(adata, ...) with store_layer=True first")
    key_added = key_added or Key.uns.faithfulness(key)
    check_writable(adata, key_added, tool="faithfulness", overwrite=overwrite)
    params = adata.uns[key]["params"]
    ens = get_ensemble(adata, ensemble_key_of(params))
    prep = prepare_targets(adata, ens, target=str(params.get("target", "label")), groupby=params.get("groupby"),
                           **input_of(adata, params))
    G = len(ens.var_names)
    if steps is None:
        steps = np.unique(np.round(np.geomspace(1, min(G, 200), 12)).astype(int))
        steps = np.concatenate([[0], steps])
    steps = np.unique(np.asarray(steps, dtype=int))
    if steps.min() < 0 or steps.max() > G:
        raise ValueError(f"steps must be between 0 and the number of model genes ({G})")
    rng = np.random.default_rng(random_state)
    cells = _subsample(prep.group_codes, int(max_cells), rng)
    X = prep.X.rows(cells)
    A = _layer_rows(adata, key, prep.X, cells)
    kmax = int(steps.max())
    if key in compare:
        raise ValueError(f"compare must not contain the attribution key itself ({key!r}): it is always included")
    rankings = {key: np.argsort(-A, axis=1, kind="stable")[:, :kmax]}
    for c in compare:
        if c == "random":
            rankings["random"] = np.stack([rng.permutation(G)[:kmax] for _ in range(cells.size)])
        else:
            r = ranking(adata, c)
            pos = {g: ens.var_names.get_indexer(pd.Index(v)) for g, v in r.items()}
            rows = []
            for code in prep.group_codes[cells]:
                name = prep.group_names[code] if code >= 0 else None
                if name not in pos:
                    raise ValueError(f"ranking {c!r} has no group {name!r}")
                p = pos[name][pos[name] >= 0]
                rest = np.setdiff1d(np.arange(G), p)
                rows.append(np.concatenate([p, rest])[:kmax])
            rankings[c] = np.stack(rows)
    if replace_with == "zero" or (replace_with == "reference" and baseline_of(params) == "zero"):
        reference = np.zeros(G, dtype=np.float32)
    else:
        reference = np.zeros(G)
        for _, block in prep.X.chunks(4096):
            reference += block.sum(0)
        reference = (reference / prep.X.shape[0]).astype(np.float32)
    predict = _predict_fn(ens)
    targets = prep.targets[cells]
    curves, aucs = [], []
    for name, rk in rankings.items():
        for mode, fn in (("deletion", metrics.deletion_curve), ("insertion", metrics.insertion_curve)):
            vals = fn(predict, X, rk, reference, targets, steps)
            auc = metrics.curve_auc(steps, vals)
            curves.append(pd.DataFrame({"ranking": name, "mode": mode, "k": steps, "probability": vals.mean(1),
                                        "sem": vals.std(1, ddof=1) / np.sqrt(vals.shape[1]) if vals.shape[1] > 1 else 0.0}))
            aucs.append({"ranking": name, "mode": mode, "auc": float(np.mean(auc))})
    adata.uns[key_added] = {
        "params": {TOOL_FIELD: "faithfulness", "key": key, "replace_with": replace_with, "compare": list(compare), "n_cells": int(cells.size),
                   "random_state": int(random_state)},
        "curves": pd.concat(curves, ignore_index=True),
        "auc": pd.DataFrame(aucs),
    }
    logger.info("finished faithfulness: added uns[%r]; AUC %s", key_added,
                ", ".join(f"{a['ranking']} {a['mode']} {a['auc']:.3f}" for a in aucs))


def consistency(
    adata: AnnData,
    key: str,
    *,
    top_frac: float = 0.1,
    max_cells: int = 500,
    random_state: int = 0,
    key_added: str | None = None,
    overwrite: bool = False,
) -> None:
    """Attribution consistency of every ensemble member and of the ensemble (Majdandzic et al.).

    For each member (and for the aggregated attribution in ``layers[key]``), the genes carrying
    each cell's top ``top_frac`` attributions are pooled over cells; the KL divergence of that
    distribution from an uninformative prior, the distribution of expressed genes (fraction of
    cells expressing each gene), measures how consistently the model relies on the same genes.
    Higher is more consistent. Members are re-explained with the settings stored in
    ``uns[key]["params"]`` on a stratified subsample of ``max_cells`` cells.

    Parameters
    ----------
    adata
        Annotated data matrix with an attribution.
    key
        Attribution key, e.g. ``"xl_deeplift"``.
    top_frac
        Fraction of genes selected per cell.
    max_cells
        Cells used.
    random_state
        Seed of the subsample (and of random references, if any).
    key_added
        Key in ``uns`` (default ``f"{key}_consistency"``).
    overwrite
        Replace an entry under ``key_added`` that another tool or the user wrote (an entry this
        tool wrote before is always replaced). By default such a key is refused with an error.

    Returns
    -------
    ``None``. Writes ``uns[key_added]``: a DataFrame indexed by member (``model_0``, ...) and
    ``ensemble`` with ``consistency`` (KLD, nats) and the validation ``accuracy`` and
    ``balanced_accuracy`` from training.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=3, max_epochs=5)
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> xl.tl.consistency(adata, "xl_deeplift")
    >>> adata.uns["xl_deeplift_consistency"].index.tolist()
    ['model_0', 'model_1', 'model_2', 'ensemble']
    """
    from .. import explain, metrics
    from ..get import ensemble as get_ensemble

    check_adata(adata, allow_mudata=False)
    if key not in adata.uns or "params" not in adata.uns[key]:
        raise KeyError(f"no attribution under uns[{key!r}]: run xl.tl.attribute(adata, ...) first")
    key_added = key_added or Key.uns.consistency(key)
    check_writable(adata, key_added, tool="consistency", overwrite=overwrite)
    p = adata.uns[key]["params"]
    ens_key = ensemble_key_of(p)
    ens = get_ensemble(adata, ens_key)
    prep = prepare_targets(adata, ens, target=str(p.get("target", "label")), groupby=p.get("groupby"), **input_of(adata, p))
    cells = _subsample(prep.group_codes, int(max_cells), np.random.default_rng(random_state))
    X = prep.X.rows(cells)
    ref = baseline_of(p)
    spec = explain.get_explainer(str(p["explainer"]))
    kw: dict[str, Any] = {}
    if spec.needs_reference:
        kw["references"] = ref if ref in explain.REFERENCE_KINDS else None
        if p.get("n_baselines"):
            kw["n_baselines"] = int(p["n_baselines"])
    if p.get("n_steps"):
        kw["n_steps"] = int(p["n_steps"])
    rows = {}
    for i, m in enumerate(ens.modules):
        res = explain.attribute_modules([m], X, prep.targets[cells], str(p["explainer"]), groups=prep.group_codes[cells],
                                        n_groups=len(prep.group_names), store_cells=True, progress=False,
                                        random_state=random_state + i, **kw)
        rows[f"model_{i}"] = metrics.consistency_kld(res.attributions, X, top_frac=top_frac)
    if key in adata.layers:
        rows["ensemble"] = metrics.consistency_kld(_layer_rows(adata, key, prep.X, cells), X, top_frac=top_frac)
    table = pd.DataFrame({"consistency": pd.Series(rows)})
    if ens.metrics is not None:
        table = table.join(ens.metrics[["accuracy", "balanced_accuracy"]], how="left")
    adata.uns[key_added] = table
    logger.info("finished consistency: added uns[%r]", key_added)


def select_models(
    adata: AnnData,
    key: str = Key.uns.attribution("deeplift"),
    *,
    ensemble_key: str = Key.uns.ensemble,
    by: Sequence[str] = ("accuracy", "consistency"),
    n_models: int | None = None,
    key_added: str | None = None,
    attribution_key: str | None = None,
) -> None:
    """Rank ensemble members by accuracy and attribution consistency; keep the best.

    Following Majdandzic et al., attribution consistency (:func:`scxl.tl.consistency`) is a
    model-selection criterion next to accuracy: among similarly accurate models, prefer those
    whose explanations are consistent. Members on the Pareto front of ``by`` (no other member is
    at least as good in every criterion and better in one) are kept; with ``n_models``, the
    ``n_models`` members with the best mean rank over ``by`` are kept instead.

    Caveat (from the paper): a model that learns a few features well scores a higher consistency
    than one that learns many; consistency rewards concentration, not correctness. Check
    accuracy and the biology of the top genes before trusting a selection.

    Parameters
    ----------
    adata
        Annotated data matrix with an ensemble and a consistency table (computed here if missing).
    key
        Attribution whose consistency is used (``key_added`` of :func:`scxl.tl.attribute`).
    ensemble_key
        Key of the ensemble.
    by
        Criteria (columns of the consistency table), all maximised.
    n_models
        Keep this many members instead of the Pareto front.
    key_added
        If given, also store the selected members as a new ensemble under ``uns[key_added]``.
    attribution_key
        Deprecated name of ``key`` (before scxl 0.2, ``key`` named the ensemble).

    Returns
    -------
    ``None``. Writes ``uns[ensemble_key]["selection"]`` (``members``: the kept member indices,
    ``by``, ``table`` with ranks and the Pareto flag) and, with ``key_added``, the sub-ensemble.
    Use ``xl.tl.attribute(adata, models=adata.uns[ensemble_key]["selection"]["members"])``.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=4, max_epochs=5)
    >>> xl.tl.attribute(adata, method="deeplift")
    >>> xl.tl.select_models(adata, n_models=2)
    >>> len(adata.uns["xl"]["selection"]["members"])
    2
    """
    import warnings

    from .. import metrics
    from ..get import ensemble as get_ensemble

    check_adata(adata, allow_mudata=False)
    if attribution_key is not None:
        warnings.warn("select_models(attribution_key=...) is deprecated since scxl 0.2: pass the attribution as key=",
                      FutureWarning, stacklevel=2)
        if isinstance(adata.uns.get(key), dict) and "weights" in adata.uns[key]:
            ensemble_key = key  # the old meaning of key=
        key = attribution_key
    elif isinstance(adata.uns.get(key), dict) and "weights" in adata.uns[key]:
        warnings.warn(f"select_models(key={key!r}) names an ensemble: since scxl 0.2 key= is the attribution and "
                      "the ensemble is ensemble_key=; using the default attribution 'xl_deeplift'", FutureWarning, stacklevel=2)
        ensemble_key, key = key, Key.uns.attribution("deeplift")
    check_holds_results(adata, tool="select_models")
    ens = get_ensemble(adata, ensemble_key)
    if key_added is not None:
        if key_added == ensemble_key:
            raise ValueError(f"key_added={key_added!r} is the ensemble the members are selected from; choose another key")
        check_writable(adata, key_added, tool="train_classifier")
    known = {"consistency", "accuracy", "balanced_accuracy"}
    missing = [b for b in by if b not in known]
    if missing or not len(by):
        raise KeyError(f"criteria {missing or list(by)} are not available; choose from {sorted(known)}")
    if n_models is not None and not 1 <= int(n_models) <= ens.n_models:
        raise ValueError(f"n_models must be between 1 and {ens.n_models}, got {n_models}")
    ckey = Key.uns.consistency(key)
    if ckey not in adata.uns:
        consistency(adata, key)
    table = adata.uns[ckey].copy()
    table = table.loc[[i for i in table.index if str(i).startswith("model_")]]
    missing = [b for b in by if b not in table.columns]
    if missing:
        raise KeyError(f"criteria {missing} are not available (the ensemble has no validation metrics); choose from {list(table.columns)}")
    table["pareto"] = metrics.pareto_front(table, list(by))
    table["mean_rank"] = table[list(by)].rank(ascending=False).mean(1)
    if n_models is None:
        chosen = table.index[table["pareto"]]
    else:
        chosen = table.sort_values(["mean_rank"]).index[: int(n_models)]
    members = sorted(int(str(i).split("_")[1]) for i in chosen)
    table["selected"] = table.index.isin(chosen)
    adata.uns[ensemble_key][Key.uns.selection] = {"members": np.asarray(members), "by": list(by), "attribution_key": key,
                                                  "table": table}
    if key_added is not None:
        from ..models import Ensemble

        sub = Ensemble([ens.modules[i] for i in members], classes=ens.classes, var_names=ens.var_names, spec=ens.spec,
                       orders=None if ens.orders is None else ens.orders[members],
                       params=ens.params | {"n_models": len(members), "n_models_requested": len(members),
                                            "selected_from": ensemble_key, "selected_members": members,
                                            "finished": [ens.finished[i] for i in members],
                                            "interrupted": not all(ens.finished[i] for i in members)},
                       preprocessing=ens.preprocessing, history=ens.history, metrics=ens.metrics, recall=ens.recall,
                       confusion=ens.confusion)
        adata.uns[key_added] = sub.to_dict()
    logger.info("selected members %s of uns[%r] by %s", members, ensemble_key, list(by))
