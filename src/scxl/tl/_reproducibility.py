"""``xl.tl.reproducibility``: how reproducible are the contributions, against n models/references/..."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_device, doc_key, doc_params, doc_random_state
from .._inputs import FROM_TRAINING
from .._keys import Key
from .._logging import ScxlWarning, logger, progress, renamed_kwarg, warn
from .._types import Method, ReferenceKindName, Vary
from .._validation import (
    TOOL_FIELD,
    check_in,
    check_random_state,
    check_writable,
    is_mudata,
    resolve_device,
)
from ._attribute import _layer_param, prepare_targets
from ._predict import resolve_ensemble, warn_if_cut_short

VARY = ("models", "baselines", "repeats", "smoothgrad")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _subsample(codes: np.ndarray, max_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``max_cells`` cells, stratified by group (every group keeps at least one cell)."""
    n = codes.size
    if n <= max_cells:
        return np.arange(n)
    picked = []
    groups = np.unique(codes[codes >= 0])
    for g in groups:
        idx = np.flatnonzero(codes == g)
        take = max(1, round(max_cells * idx.size / n))
        picked.append(rng.choice(idx, size=min(take, idx.size), replace=False))
    return np.sort(np.concatenate(picked))


@renamed_kwarg("key", "ensemble_key")
@doc_params(key=doc_key, random_state=doc_random_state, device=doc_device)
def reproducibility(
    adata: AnnData,
    *,
    method: Method | str | Sequence[str] = "deeplift",
    vary: Vary = "models",
    n_values: Sequence[int] = (1, 2, 5, 10, 20),
    n_replicates: int = 5,
    top_k: int = 100,
    ensemble_key: str = Key.uns.ensemble,
    ensemble: Any = None,
    baseline: ReferenceKindName | str | None = None,
    n_baselines: int | None = None,
    smoothgrad_noise: float = 0.1,
    target: str = "label",
    groupby: str | None = None,
    layer: str | None = FROM_TRAINING,
    use_raw: bool | None = None,
    max_cells: int = 500,
    target_spearman: float = 0.9,
    train_missing: bool = False,
    random_state: int = 0,
    device: str | None = None,
    key_added: str = Key.uns.reproducibility,
    overwrite: bool = False,
) -> None:
    """Measure how reproducible contributions are as more models, references, repeats or noisy copies are aggregated.

    This redoes the simulations of Zhao, Shao & Asmann. For each ``n`` in ``n_values``,
    ``n_replicates`` independent estimates are formed and compared pairwise:

    - ``vary="models"``: each replicate aggregates (mean) the contributions of ``n`` ensemble
      members; replicates use **disjoint** members when the ensemble has at least
      ``n × n_replicates`` of them (otherwise members are drawn independently per replicate and
      may be shared: the table says so in ``disjoint``). With ``train_missing=True`` missing
      members are trained first (same settings and seeds, so existing members are unchanged).
    - ``vary="baselines"``: all members, ``n`` references per cell, new draws per replicate.
    - ``vary="repeats"``: all members, ``n`` repeats averaged (stochastic settings only).
    - ``vary="smoothgrad"``: all members, SmoothGrad with ``n`` noisy copies
      (noise sd ``smoothgrad_noise`` × each gene's sd).

    Agreement is computed **per group** (the group's mean contribution; one value per group and
    replicate pair) and **per cell** (the median over cells of the per-cell agreement), as the
    Spearman correlation of all genes and the overlap of the top ``top_k`` genes. A random cell
    subsample (``max_cells``, stratified by group) keeps this affordable.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a trained ensemble.
    method
        One explainer or a list (see :func:`scxl.tl.explainers`).
    vary
        What is varied: ``"models"``, ``"baselines"``, ``"repeats"`` or ``"smoothgrad"``.
    n_values
        Numbers of models / references / repeats / noisy copies to try.
    n_replicates
        Independent estimates per ``n`` (at least 2).
    top_k
        Size of the top-gene lists compared.
    {key}
    ensemble
        Use this :class:`~scxl.models.Ensemble` (or saved ``.npz`` path) instead of
        ``uns[ensemble_key]``, as in :func:`scxl.tl.attribute` (e.g. for a lazy AnnData or a
        query); ``train_missing`` then cannot grow it.
    baseline, n_baselines
        Reference kind and count, with the defaults of :func:`scxl.tl.attribute` (20 references
        per cell for random kinds); ``vary="baselines"`` varies ``n_baselines`` and needs a random
        kind (default ``"universal"`` there).
    smoothgrad_noise
        Noise level for ``vary="smoothgrad"``.
    target, groupby
        As in :func:`scxl.tl.attribute`.
    layer, use_raw
        Where to read the expression, as in :func:`scxl.tl.attribute` (default: what the
        ensemble was trained on); give the same as to the ``attribute`` call whose
        reproducibility is measured. Recorded in ``params``.
    max_cells
        Cells used (stratified subsample).
    target_spearman
        Convergence target: the smallest ``n`` whose median Spearman reaches it is reported.
    train_missing
        Train the members needed for disjoint replicates (``vary="models"``): the ensemble in
        ``uns[ensemble_key]`` is grown with :func:`~scxl.tl.train_classifier` (``extend=True``), its
        existing members kept.
    {random_state}
    {device}
    key_added
        Key in ``uns``; results for other methods or ``vary`` already stored there are kept.
    overwrite
        Replace an entry under ``key_added`` that another tool or the user wrote (an entry this
        tool wrote before is always replaced). By default such a key is refused with an error.

    Returns
    -------
    ``None``. Writes ``uns[key_added]`` with ``params``, ``curves`` (tidy: ``method``, ``vary``,
    ``n``, ``level`` ("group" or "cell"), ``group``, ``rep_i``, ``rep_j``, ``disjoint``,
    ``spearman``, ``topk_overlap``), ``summary`` (median and quartiles per method, vary, n and
    level) and ``convergence`` (per method, vary and level: the smallest ``n`` reaching
    ``target_spearman`` with disjoint replicates, or NaN, the largest median reached among them,
    the largest ``n`` with disjoint replicates and the ``n`` whose replicates share members —
    never reported as converged, since shared members make replicates agree by construction).

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=4, max_epochs=5)
    >>> xl.tl.reproducibility(adata, method="deeplift", n_values=(1, 2), n_replicates=2)
    >>> adata.uns["xl_reproducibility"]["summary"][["n", "level", "spearman"]].shape[0]
    4
    """
    from .. import explain, metrics
    from ..get import ensemble as get_ensemble

    t0 = time.perf_counter()
    methods = [method] if isinstance(method, str) else list(method)
    for m in methods:
        explain.get_explainer(m)
    check_in(vary, VARY, "vary")
    if isinstance(n_values, str | bytes) or not all(_is_int(n) for n in np.atleast_1d(np.asarray(n_values, dtype=object))):
        raise TypeError(f"n_values must be a list of positive integers, e.g. n_values=(1, 2, 5), got {n_values!r}")
    n_values = sorted({int(n) for n in np.atleast_1d(np.asarray(n_values, dtype=object))})
    if not n_values or n_values[0] < 1:
        raise ValueError(f"n_values must be positive integers, got {n_values}")
    if not _is_int(n_replicates) or int(n_replicates) < 2:
        raise ValueError(f"n_replicates must be at least 2 (an integer) to compare replicates, got {n_replicates!r}")
    n_rep = int(n_replicates)
    if not _is_int(max_cells) or max_cells < 1:
        raise ValueError(f"max_cells must be a positive integer, got {max_cells!r}")
    if not _is_int(top_k) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if isinstance(target_spearman, bool) or not isinstance(target_spearman, int | float | np.floating) or not 0 < target_spearman <= 1:
        raise ValueError(f"target_spearman must be a correlation in (0, 1], e.g. 0.9, got {target_spearman!r}")
    random_state = check_random_state(random_state)
    check_writable(adata, key_added, tool="reproducibility", overwrite=overwrite)
    if ensemble is not None and train_missing:
        raise ValueError("train_missing grows the ensemble stored in uns[ensemble_key]; with ensemble= train more members "
                         "yourself (xl.tl.train_classifier(..., extend=True)) and pass the grown ensemble")
    ens = resolve_ensemble(adata, ensemble_key, ensemble, check_finished=False)
    # members cut short by an interrupted training: train_missing trains them again where it can rebuild them
    retrain = (train_missing and vary == "models" and not all(ens.finished) and ens.spec["type"] != "custom"
               and not is_mudata(adata))
    if not retrain:
        warn_if_cut_short(ens, f"uns[{ensemble_key!r}]" if ensemble is None else "the ensemble", stacklevel=5)  # warn → it → here → renamed_kwarg → user
    dev = resolve_device(device)
    if vary == "models":
        if ens.n_models < 2 and not train_missing:
            raise ValueError(
                "vary='models' compares replicates made of different members, but the ensemble "
                + (f"under uns[{ensemble_key!r}]" if ensemble is None else "given") + f" has {ens.n_models} member: train "
                f"more (xl.tl.train_classifier(..., n_models={n_values[-1] * n_rep}, extend=True))"
                + (", or pass train_missing=True" if ensemble is None else ", and pass the grown ensemble")
            )
        needed = n_values[-1] * n_rep
        if retrain:  # members cut short count as missing: extend trains them again
            needed = max(needed, ens.n_models)
        if ens.n_models < needed or retrain:
            if train_missing:
                if is_mudata(adata):
                    raise ValueError("train_missing is not supported for MuData ensembles; train more members with xl.tl.train_classifier")
                _train_more(adata, ens, ensemble_key, needed)
                ens = get_ensemble(adata, ensemble_key)
            else:
                logger.warning(
                    "the ensemble has %d members; disjoint replicates for n=%d need %d (n × n_replicates). "
                    "Replicates with larger n share members; pass train_missing=True to train the %d missing ones",
                    ens.n_models, n_values[-1], needed, needed - ens.n_models,
                )
        too_big = [n for n in n_values if n > ens.n_models]
        if too_big:
            logger.warning("n=%s exceed the %d members and are skipped", too_big, ens.n_models)
            n_values = [n for n in n_values if n <= ens.n_models]
            if not n_values:
                raise ValueError(f"every n in n_values exceeds the ensemble's {ens.n_models} members")

    from ..explain._distributed import refuse_small_workers

    refuse_small_workers("reproducibility", adata)  # before anything of Dask data is read on the workers
    prep = prepare_targets(adata, ens, target=target, groupby=groupby, layer=layer, use_raw=use_raw,
                           ensemble_key=ensemble_key)
    rng = np.random.default_rng(random_state)
    cells = _subsample(prep.group_codes, int(max_cells), rng)
    Xs = prep.X.rows(cells)
    t_s, g_s = prep.targets[cells], prep.group_codes[cells]
    n_groups = len(prep.group_names)
    present = [g for g in range(n_groups) if (g_s == g).any()]
    modules = ens.modules

    def run(mods, m, seed, **kw) -> np.ndarray:
        res = explain.attribute_modules(mods, Xs, t_s, m, groups=g_s, n_groups=n_groups, store_cells=True,
                                        device=dev, random_state=seed, progress=False, **kw)
        return res.attributions.astype(np.float64)

    rows = []
    for m in methods:
        spec = explain.get_explainer(m)
        ref = baseline
        if vary == "baselines":
            if not spec.needs_reference:
                raise ValueError(f"vary='baselines' needs an explainer with a reference; {m!r} takes none")
            ref = baseline or "universal"
            if ref == "zero":
                raise ValueError("vary='baselines' needs random references; 'zero' is a single fixed reference")
        kw: dict[str, Any] = {"references": ref if spec.needs_reference else None}
        if n_baselines is not None and spec.needs_reference and vary != "baselines":
            kw["n_baselines"] = n_baselines  # else the engine's default (20 for random kinds)
        if vary == "repeats" and not explain.is_stochastic(spec, explain.resolve_reference(spec, kw["references"])):
            raise ValueError(
                f"{m!r} with these references is deterministic: repeats give identical answers, "
                "there is nothing to measure. Use a random baseline (e.g. 'universal') or vary='models'"
            )
        bar = progress(n_values, desc=f"{m}: reproducibility vs {vary}", leave=False)
        if vary == "models":
            per_member = np.stack([run([mod], m, random_state + 7919 * i, **kw) for i, mod in
                                   enumerate(progress(modules, desc=f"{m}: members", leave=False))])
        for n in bar:
            reps, disjoint = [], True
            if vary == "models":
                order = np.random.default_rng([random_state, n]).permutation(len(modules))
                disjoint = n * n_rep <= len(modules)
                for r in range(n_rep):
                    idx = order[r * n:(r + 1) * n] if disjoint else np.random.default_rng([random_state, n, r]).choice(len(modules), n, replace=False)
                    reps.append(per_member[idx].mean(0))
            else:
                for r in range(n_rep):
                    extra = dict(kw)
                    if vary == "baselines":
                        extra["n_baselines"] = n
                    elif vary == "repeats":
                        extra["n_repeats"] = n
                    else:
                        extra["smoothgrad"] = (n, smoothgrad_noise)
                    reps.append(run(modules, m, random_state * 1000 + 31 * n + r, **extra))
            reps = np.stack(reps)  # (n_rep, cells, G)
            groups = np.stack([explain.group_means(rep, g_s, n_groups)[present] for rep in reps])
            gtab = metrics.replicate_agreement(groups, top_k=top_k, row_names=[prep.group_names[g] for g in present])
            gtab = gtab.rename(columns={"row": "group"}).assign(level="group")
            ctab = metrics.replicate_agreement(reps, top_k=top_k)
            ctab = ctab.groupby(["rep_i", "rep_j"], as_index=False)[["spearman", "topk_overlap"]].median()
            ctab = ctab.assign(level="cell", group="all cells")
            tab = pd.concat([gtab, ctab], ignore_index=True).assign(method=m, vary=vary, n=n, disjoint=disjoint)
            rows.append(tab)
    curves = pd.concat(rows, ignore_index=True)[["method", "vary", "n", "level", "group", "rep_i", "rep_j",
                                                  "disjoint", "spearman", "topk_overlap"]]
    curves["group"] = curves["group"].astype(str)
    summary = _summarise(curves)
    convergence = _convergence(summary, target_spearman)

    old = adata.uns.get(key_added)
    if isinstance(old, dict) and "curves" in old and not overwrite:
        keep = ~(old["curves"]["method"].isin(methods) & (old["curves"]["vary"] == vary))
        curves = pd.concat([old["curves"][keep], curves], ignore_index=True)
        summary = _summarise(curves)
        convergence = _convergence(summary, target_spearman)
    params = {TOOL_FIELD: "reproducibility", "method": methods, "vary": vary, "n_values": n_values, "n_replicates": n_rep, "top_k": int(top_k),
              "ensemble_key": ensemble_key, "baseline": str(baseline), "target": target, "groupby": prep.groupby,
              "layer": _layer_param(prep.X.inputs.preprocessing.get("layer")),
              "use_raw": bool(prep.X.inputs.preprocessing.get("use_raw", False)), "n_cells": int(cells.size), "target_spearman": float(target_spearman), "random_state": int(random_state)}
    adata.uns[key_added] = {"params": params, "curves": curves, "summary": summary, "convergence": convergence}
    conv = convergence[convergence["vary"] == vary]
    said = "; ".join(
        f"{r.method} per {r.level}: " + (f"reaches {r.target:g} at n = {r.n_converged:g}" if r.n_converged == r.n_converged
                                         else f"max {r.max_spearman:.2f} at n = {r.at_n}")
        for r in conv.itertuples()
    )
    logger.info("finished reproducibility vs %s (%.1fs): added uns[%r]; %s", vary, time.perf_counter() - t0, key_added, said)


def _summarise(curves: pd.DataFrame) -> pd.DataFrame:
    g = curves.groupby(["method", "vary", "n", "level"], sort=True)
    out = g[["spearman", "topk_overlap"]].median()
    for col in ("spearman", "topk_overlap"):
        out[f"{col}_q25"] = g[col].quantile(0.25)
        out[f"{col}_q75"] = g[col].quantile(0.75)
    out["disjoint"] = g["disjoint"].all()
    return out.reset_index()


def _convergence(summary: pd.DataFrame, target: float) -> pd.DataFrame:
    """Smallest ``n`` reaching the target, among *independent* replicates only.

    Replicates that share members agree partly because they share them (at ``n`` equal to the
    ensemble size they are identical): they are never reported as converged. ``disjoint_up_to``
    is the largest ``n`` measured with disjoint replicates.
    """
    rows = []
    for (m, v, lev), d in summary.groupby(["method", "vary", "level"], sort=True):
        d = d.sort_values("n")
        indep = d[d["disjoint"]]
        ok = indep.loc[indep["spearman"] >= target, "n"]
        best = indep if len(indep) else d
        rows.append({"method": m, "vary": v, "level": lev, "target": target,
                     "n_converged": float(ok.iloc[0]) if len(ok) else np.nan,
                     "max_spearman": float(best["spearman"].max()), "at_n": int(best.loc[best["spearman"].idxmax(), "n"]),
                     "disjoint_up_to": float(indep["n"].max()) if len(indep) else np.nan,
                     "shared_n": ",".join(str(int(n)) for n in d.loc[~d["disjoint"], "n"])})
    return pd.DataFrame(rows)


def _train_more(adata: AnnData, ens, key: str, n_models: int) -> None:
    """Grow ``key`` to ``n_models`` members (``extend=True``: the existing members are kept)."""
    if ens.spec["type"] == "custom":
        raise ValueError("train_missing cannot rebuild a custom-module ensemble; train more members yourself")
    logger.info("training %d members (had %d) for disjoint replicates", n_models, ens.n_models)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScxlWarning)
        _train_call(adata, ens, key, n_models)
    for w in caught:  # at the user's line: warn → here → reproducibility → renamed_kwarg → the user
        if issubclass(w.category, ScxlWarning) and not str(w.message).startswith("train_classifier was interrupted"):
            warn(str(w.message), stacklevel=5, category=w.category)
        elif not issubclass(w.category, ScxlWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if adata.uns[key]["params"].get("interrupted"):  # Ctrl-C: the members so far are stored; replicates need them all
        raise KeyboardInterrupt(f"training interrupted: the members trained so far are stored in uns[{key!r}] "
                                "(train_classifier(..., extend=True) trains the others); xl.tl.reproducibility was not run")


def _train_call(adata: AnnData, ens, key: str, n_models: int) -> None:
    """``train_classifier`` with the stored settings of ``ens``, growing ``uns[key]`` to ``n_models`` (``extend=True``)."""
    from ._train import train_classifier

    p, spec, prep = ens.params, ens.spec, ens.preprocessing
    model_kwargs = {k: v for k, v in spec.items() if k not in ("type", "n_features", "n_classes", "hidden", "dropout")}
    train_classifier(
        adata, p["groupby"], model=spec["type"], n_models=n_models, layer=prep.get("layer"),
        use_raw=bool(prep.get("use_raw")), genes=list(ens.var_names), hidden=spec.get("hidden", (128,)),
        dropout=spec["dropout"], model_kwargs=model_kwargs or None, max_epochs=p["max_epochs"],
        batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"], balance=p["balance"],
        validation=p["validation"], split=p.get("split", "shared"), patience=p["patience"],
        min_delta=p.get("min_delta", 0.0), min_delta_chance=p.get("min_delta_chance", 0.0),
        epoch_size=p.get("epoch_size", 0) or None,  # stored 0 (or absent): whole passes
        random_state=p["random_state"],
        gene_order="random_per_model" if p.get("gene_order") == "random_per_model" else (p.get("gene_order") if spec["type"] == "cnn" and p.get("gene_order") in ("variance", "correlation", "random") else "variance"),
        key_added=key, extend=True,
    )
