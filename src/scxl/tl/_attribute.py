"""``xl.tl.attribute``: per-cell, per-gene contributions of an ensemble, and per-group rankings.

Thin glue: read the inputs aligned to the ensemble (:mod:`scxl._inputs`), run the engine
(:func:`scxl.explain.attribute_modules`), assemble the ranking (:func:`scxl.metrics.rank_groups`)
and write everything in one place (:func:`_write`), only after the whole computation succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_copy, doc_device, doc_key, doc_overwrite, doc_params, doc_random_state
from .._inputs import (
    FROM_TRAINING,
    Aligned,
    _is_dask,
    aligned,
    is_all_columns,
    is_out_of_core,
    stored_nonzeros,
)
from .._keys import Key
from .._logging import deferred_interrupt, logger, renamed_kwarg, warn
from .._types import Aggregate, LayerDtype, Method, RankBy, ReferenceKindName
from .._validation import (
    TOOL_FIELD,
    ValueSummary,
    check_groupby,
    check_in,
    check_writable,
    copy_of,
    detect_scale,
    is_mudata,
    resolve_device,
    summarise_values,
    view_to_actual,
)
from ._predict import _check_scale, resolve_ensemble, warn_if_cut_short

TARGETS = ("label", "prediction")
LAYER_DTYPES = ("float32", "float16")
LAYER_FORMATS = ("auto", "dense", "sparse")


class _Layer:
    """The per-cell layer of one destination, dense or sparse (CSR), filled chunk by chunk."""

    def __init__(self, d: _Destination, dtype: str, keep: np.ndarray | None, *, sparse: bool) -> None:
        self.d, self.dtype, self.sparse = d, np.dtype(dtype), sparse
        self.cols = np.arange(d.features.size) if keep is None else np.flatnonzero(np.isin(d.features, keep))
        self.var_pos = d.var_pos[self.cols]
        self.features = d.features[self.cols]
        self.dense = None if sparse else np.zeros((d.adata.n_obs, d.adata.n_vars), dtype=self.dtype)
        # sparse: per chunk, its rows, their stored values' counts, columns (int32) and values
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        # the usual case: the ensemble's genes are the AnnData's, in order, and every row is attributed
        n_vars = d.adata.n_vars
        self.identity = is_all_columns(self.features, n_vars) and is_all_columns(self.var_pos, n_vars)

    def add(self, sl: slice, chunk: np.ndarray) -> None:
        rows = self.d.rows[sl]
        if self.dense is not None and self.identity and chunk.shape[1] == self.features.size and rows.size and np.array_equal(rows, np.arange(rows[0], rows[0] + rows.size)):
            self.dense[rows[0] : rows[0] + rows.size] = chunk  # one contiguous block: no fancy indexing
            return
        block = chunk[:, self.features].astype(self.dtype)
        if self.dense is not None:
            self.dense[np.ix_(rows, self.var_pos)] = block
            return
        r, c = np.nonzero(block)  # exact zeros (e.g. unexpressed genes against the zero reference) are not stored
        counts = np.bincount(r, minlength=rows.size)
        self.parts.append((rows.astype(np.int64), counts, self.var_pos[c].astype(np.int32), block[r, c]))

    def result(self):
        """The layer: the dense array, or the CSR matrix assembled from the chunks' parts.

        Each part is copied into the CSR arrays and dropped, so building holds the values with
        their columns (int32) about once, never as COO triplets.
        """
        if self.dense is not None:
            return self.dense
        from scipy import sparse

        n_obs, n_vars = self.d.adata.n_obs, self.d.adata.n_vars
        per_row = np.zeros(n_obs, dtype=np.int64)
        for rows, counts, _, _ in self.parts:
            per_row[rows] = counts
        nnz = int(per_row.sum())
        idx = np.int32 if max(nnz, n_vars) < 2**31 else np.int64
        indptr = np.zeros(n_obs + 1, dtype=idx)
        np.cumsum(per_row, out=indptr[1:])
        indices = np.empty(nnz, dtype=idx)
        data = np.empty(nnz, dtype=self.dtype)
        while self.parts:
            rows, counts, cols, vals = self.parts.pop()  # (any order: each row has its place)
            local = np.cumsum(counts) - counts  # where each row's values start within the part
            dest = np.repeat(indptr[rows].astype(np.int64) - local, counts) + np.arange(cols.size)
            indices[dest] = cols
            data[dest] = vals
        out = sparse.csr_matrix((data, indices, indptr), shape=(n_obs, n_vars))
        if np.any(np.diff(self.var_pos) <= 0):  # the ensemble's genes in another order than the AnnData's
            out.has_sorted_indices = False
            out.sort_indices()
        return out

    @staticmethod
    def bytes_needed(d: _Destination, dtype: str, n_genes: int, *, sparse: bool) -> int:
        """Upper bound of the layer's memory (sparse: as if every stored value were non-zero)."""
        return layer_bytes(d.adata.n_obs, d.adata.n_vars, n_genes, dtype, sparse=sparse)


@dataclass
class _Destination:
    """Where the attributions of some ensemble features go: one AnnData (or modality)."""

    adata: AnnData
    rows: np.ndarray  # row in ``adata`` of every input row
    features: np.ndarray  # ensemble feature indices written here
    var_pos: np.ndarray  # their position in ``adata.var_names``
    label: str  # for messages: "adata" or "mdata['rna']"


def _destinations(container: Any, X: Aligned, ens) -> list[_Destination]:
    """Targets of the layers and rankings; features are matched to each target's ``var_names`` by name.

    With ``use_raw`` the ensemble's genes come from ``raw`` while layers live on ``X``'s genes: only
    the features present in ``var_names`` get a layer column (all of them are ranked).
    """
    names = ens.var_names.to_numpy()
    feats = np.flatnonzero(X.present)
    if not is_mudata(container):
        pos = pd.Index(container.var_names).get_indexer(names[feats])
        return [_Destination(container, X.inputs.rows, feats[pos >= 0], pos[pos >= 0], "adata")]
    out = []
    for mod in ens.preprocessing.get("mods") or list(container.mod):
        sub = container.mod[mod]
        mine = np.array([j for j in feats if names[j].startswith(f"{mod}:")], dtype=np.int64)
        if mine.size == 0:
            continue
        var_pos = sub.var_names.get_indexer(pd.Index([names[j].split(":", 1)[1] for j in mine]))
        rows = pd.Index(sub.obs_names).get_indexer(container.obs_names[X.inputs.rows])
        out.append(_Destination(sub, rows, mine[var_pos >= 0], var_pos[var_pos >= 0], f"mdata[{mod!r}]"))
    return out


@dataclass
class Prepared:
    """Inputs aligned to an ensemble, with the target class and group of every cell."""

    X: Aligned
    targets: np.ndarray
    group_codes: np.ndarray
    group_names: list[str]
    groupby: str

    @property
    def col(self) -> np.ndarray:
        return self.X.col


def prepare_targets(adata: Any, ens, *, target: str = "label", groupby: str | None = None,
                    layer: str | None = FROM_TRAINING, use_raw: bool | None = None,
                    ensemble_key: str = Key.uns.ensemble) -> Prepared:
    """Align ``adata`` to the ensemble and resolve targets and groups (see :func:`attribute`).

    ``ensemble_key`` names the ensemble's prediction column (``obs["<key>_prediction"]``), by
    which unlabelled data are grouped.
    """
    X = aligned(adata, ens, layer=layer, use_raw=use_raw, task="attribute")
    classes = list(ens.classes)
    obs = adata.obs.iloc[X.inputs.rows] if is_mudata(adata) else X.obs
    trained_on = ens.params.get("groupby")
    if groupby is None and trained_on is not None and str(trained_on) not in obs.columns:  # e.g. unlabelled query data
        groupby = _unlabelled_groupby(obs, ens, target, ensemble_key)
    groupby = groupby or ens.params.get("groupby")
    labels = check_groupby(obs, groupby, where="mdata.obs" if is_mudata(adata) else "adata.obs")
    group_names = [str(c) for c in labels.cat.categories]
    group_codes = labels.cat.codes.to_numpy().astype(np.int64)
    need_pred = target == "prediction" or (target == "label" and (group_codes < 0).any())
    pred = ens.predict_proba(X).argmax(1) if need_pred else None
    if target == "label":
        absent = [g for g in group_names if g not in classes]
        if absent:
            raise ValueError(
                f"groups of obs[{groupby!r}] absent from training cannot be explained towards their own label: "
                f"{absent[:5]}; use target='prediction', a class name, or subset the data"
            )
        class_of_group = np.array([classes.index(g) for g in group_names], dtype=np.int64)
        targets = np.where(group_codes >= 0, class_of_group[np.maximum(group_codes, 0)], pred if pred is not None else 0)
    elif target == "prediction":
        targets = pred
    elif target in classes:
        targets = np.full(X.shape[0], classes.index(target), dtype=np.int64)
    else:
        raise ValueError(f"target={target!r} is not valid; choose 'label', 'prediction' or one of the classes {classes}")
    return Prepared(X, targets.astype(np.int64), group_codes, group_names, groupby)


def _unlabelled_groupby(obs: pd.DataFrame, ens, target: str, ensemble_key: str = Key.uns.ensemble) -> str:
    """The groups of data without the training labels: the predictions of ``xl.tl.predict``, or a clear error."""
    trained_on = ens.params.get("groupby")
    predicted = Key.obs.prediction(ensemble_key)
    seen = set(map(str, pd.Series(obs[predicted]).dropna().unique())) if predicted in obs.columns else set()
    if target != "label" and seen and seen <= set(map(str, ens.classes)):  # (another ensemble's would name other classes)
        logger.info("obs has no column %r (the training labels): the cells are grouped by obs[%r]", trained_on, predicted)
        return predicted
    raise KeyError(
        f"obs has no column {trained_on!r}, the labels the ensemble was trained on (unlabelled data?), so attribute "
        f"has no groups to rank genes in. Predict first and group by the predictions: xl.tl.predict(adata, "
        f"{'ensemble=...' if ensemble_key == Key.uns.ensemble else f'ensemble_key={ensemble_key!r}'}), then "
        f"xl.tl.attribute(adata, ..., target='prediction') (which then groups by "
        f"obs[{predicted!r}]), or pass groupby= another obs column")


def _references(baseline: Any, ens, explain, *, layer: str | None = FROM_TRAINING, use_raw: bool | None = None) -> Any:
    """``baseline`` as the engine takes it: a kind name, ``None`` or an array in ensemble gene order.

    An AnnData is read where the explained data are (``layer``, ``use_raw`` of :func:`attribute`).
    """
    if isinstance(baseline, AnnData):
        return aligned(baseline, ens, layer=layer, use_raw=use_raw, task="serve as references").rows(slice(None))
    if isinstance(baseline, np.ndarray):
        arr = np.atleast_2d(np.asarray(baseline, dtype=np.float32))
        if arr.ndim != 2 or arr.shape[1] != len(ens.var_names):
            raise ValueError(
                f"baseline array has shape {arr.shape}; expected (n_references, {len(ens.var_names)}) "
                "with columns in the ensemble's gene order (xl.get.ensemble(adata).var_names)"
            )
        return arr
    if baseline is not None and not isinstance(baseline, str):
        raise TypeError(f"baseline must be a reference kind, an array or an AnnData, got {type(baseline).__name__}")
    if isinstance(baseline, str):
        check_in(baseline, list(explain.REFERENCE_KINDS), "baseline")
    return baseline


def _blocks(X: Aligned, ens, block_key: str) -> np.ndarray:
    var = X.inputs.var.reindex(ens.var_names)
    if block_key not in var.columns:
        raise KeyError(f"gradient_correction needs var[{block_key!r}] naming the one-hot block of each feature: use xl.pp.append_covariates")
    names = var[block_key].fillna("").astype(str).to_numpy()
    uniq = sorted(set(names) - {""})
    if not uniq:
        raise ValueError(f"var[{block_key!r}] names no block")
    return np.array([uniq.index(n) if n else -1 for n in names], dtype=np.int64)


def expression_logfoldchanges(X: Aligned, codes: np.ndarray, n_groups: int, *, scale: str | None = None,
                               linear: bool = False):
    """log2 fold change of mean expression, each group vs the rest, on the linear scale the data are on.

    For log-expression (``log1p``), as Scanpy computes it: the means of the log values are
    brought back with ``expm1``. For raw counts and other linear-scale values (detected from the
    values, see :func:`scxl._validation.detect_scale`, or given as ``scale``) the means are
    compared as they are, so counts never overflow ``expm1``. With ``linear=True`` also returns
    the fold change of the means of the linear values (``mean(expm1(x))`` for log data), which
    says whether a group expresses a gene less (:func:`scxl.metrics.direction_scores`).
    """
    acc = FoldChanges(codes, n_groups, scale=scale, linear=linear)
    for sl, block in X.chunks(4096):
        acc.add(sl, block)
    return acc.result()


class FoldChanges:
    """The sums behind :func:`expression_logfoldchanges`, gathered block by block (in any order).

    One pass over the rows gives the group sums of the values and of their ``expm1`` and the
    values' range (for the scale); :meth:`result` turns them into fold changes. The attribution
    pass feeds it the rows it reads anyway (``on_rows`` of :func:`scxl.explain.attribute_modules`),
    so the data are not read again for the fold changes.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.tl._attribute import FoldChanges
    >>> X = np.log1p(np.array([[3.0, 0.0], [3.0, 1.0], [0.0, 7.0], [1.0, 7.0]], dtype=np.float32))
    >>> fc = FoldChanges(np.array([0, 0, 1, 1]), 2)
    >>> fc.add(slice(2, 4), X[2:]); fc.add(slice(0, 2), X[:2])  # blocks in any order
    >>> np.round(fc.result(), 2).tolist()  # log2 fold change against the other cells (as Scanpy: expm1 of the mean log)
    [[2.86, -4.08], [-2.86, 4.08]]
    """

    def __init__(self, codes: np.ndarray, n_groups: int, *, scale: str | None = None, linear: bool = False,
                 source: str | None = None, var_names: Any = None) -> None:
        self.codes = np.where(np.asarray(codes) >= 0, codes, -1)
        self.n_groups, self.scale, self.linear = n_groups, scale, linear
        self.source, self.var_names = source, var_names  # with a source, NaN/inf in a block is an error naming it
        self.seen: list = []
        self.sums: np.ndarray | None = None
        self.lin_sums: np.ndarray | None = None
        self._buf = None  # the expm1 of a block

    def add(self, sl: slice, block: np.ndarray) -> None:
        """Add the rows ``sl`` (a dense block)."""
        import torch

        if self.scale is None:
            if self.seen and not self.seen[-1].integer:  # known not to be counts: the range is all that is left
                self.seen.append(_value_range(block))
            else:
                self.seen.append(summarise_values(block))
        codes = self.codes[sl]
        keep = codes >= 0
        rows = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
        if self.source is not None and not bool(torch.isfinite(rows).all()):
            i, j = np.argwhere(~np.isfinite(np.asarray(block)))[0]
            gene = f", variable {self.var_names[j]!r}" if self.var_names is not None else ""
            raise ValueError(f"{self.source} contains NaN or infinite values (first at row {sl.start + int(i)}{gene}): "
                             "every contribution and score would be NaN; impute or drop them first")
        if not keep.all():
            rows, codes = rows[torch.from_numpy(keep)], codes[keep]
        part = _float32_group_sums(rows, codes, self.n_groups)
        self.sums = part if self.sums is None else self.sums + part
        if self.linear:
            # expm1 in float32, the rows' dtype (torch's is vectorised; values above 88 overflow it, but occur
            # only on the linear scales, whose fold changes do not use these sums), into a buffer kept from
            # block to block (fresh 32 MB temporaries page-faulted: 25 ms a block of 4,096 x 2,000, 6.6 ms reused)
            if self._buf is None or self._buf.numel() < rows.numel():
                self._buf = torch.empty(rows.numel(), dtype=torch.float32)
            lin = torch.clamp_max(rows, 88.0, out=self._buf[: rows.numel()].view(rows.shape)).expm1_()
            part = _float32_group_sums(lin, codes, self.n_groups)
            self.lin_sums = part if self.lin_sums is None else self.lin_sums + part

    def summary(self) -> ValueSummary | None:
        """The range of the values added (``None`` when ``scale`` was given or nothing was added)."""
        if not self.seen:
            return None
        return ValueSummary(min(v.minimum for v in self.seen), max(v.maximum for v in self.seen),
                            all(v.integer for v in self.seen))

    def result(self):
        """The fold changes (and the linear ones with ``linear=True``)."""
        scale, seen, codes, n_groups = self.scale, self.seen, self.codes, self.n_groups
        if scale is None:
            scale = detect_scale(ValueSummary(min(v.minimum for v in seen), max(v.maximum for v in seen),
                                              all(v.integer for v in seen))) if seen else "log"
        counts = np.bincount(codes[codes >= 0], minlength=n_groups).astype(float)
        sums = self.sums if self.sums is not None else np.zeros((n_groups, 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            expr = sums / counts[:, None]

        def fold(means):
            total = np.nansum(means * counts[:, None], axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                return means, (total[None, :] - means * counts[:, None]) / (counts.sum() - counts)[:, None]

        group, other = fold(expr)
        if scale not in ("counts", "linear"):  # log1p (and scaled data, as Scanpy); means above 700 cannot be log values
            group, other = np.expm1(np.minimum(group, 700.0)), np.expm1(np.minimum(other, 700.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            lfc = np.log2((group + 1e-9) / (other + 1e-9))
        if not self.linear:
            return lfc
        if scale in ("counts", "linear"):
            return lfc, lfc
        lin_sums = self.lin_sums if self.lin_sums is not None else np.zeros_like(sums)
        with np.errstate(invalid="ignore", divide="ignore"):
            lin_group, lin_rest = fold(lin_sums / counts[:, None])
            return lfc, np.log2((lin_group + 1e-9) / (lin_rest + 1e-9))


#: Rows summed in float32 before the partial sums are added in float64 (:func:`_float32_group_sums`).
SUM_ROWS = 256


def _float32_group_sums(rows, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """``(n_groups, G)`` float64 sums of float32 ``rows`` by group code (all ``>= 0``).

    Runs of :data:`SUM_ROWS` rows are added in float32 (``index_add_``, in row order) and the runs'
    sums in float64: a relative error of about 1e-7 against float64 throughout, for 20 times less
    work. Measured on a 4,096 × 2,000 block with 10 groups: 0.9 ms against 32 ms for a float64 copy
    and its sums, which made these fold changes about 0.8 s of an attribution of 50,000 cells (2-core CPU).
    A run whose float32 sum overflows (values near float32's largest, 3.4e38, as the ``expm1`` of
    values near 88) is added again in float64, so finite rows always give finite sums.
    """
    import torch

    out = np.zeros((n_groups, rows.shape[1]), dtype=np.float64)
    index = torch.as_tensor(np.asarray(codes, dtype=np.int64))
    part = torch.zeros((n_groups, rows.shape[1]), dtype=torch.float32)
    for start in range(0, rows.shape[0], SUM_ROWS):
        run, at = rows[start : start + SUM_ROWS], index[start : start + SUM_ROWS]
        part.zero_().index_add_(0, at, run)
        if torch.isinf(part).any() and not torch.isinf(run).any():
            out += torch.zeros_like(part, dtype=torch.float64).index_add_(0, at, run.double()).numpy()
        else:
            out += part.numpy()
    return out


def _layer_param(layer: Any) -> str | None:
    """The layer the attribution read, as ``params["layer"]`` (Scanpy's: ``None`` for ``X``).

    A MuData ensemble's per-modality layers are in its ``preprocessing``, not here (``None``).
    """
    return None if layer is None or isinstance(layer, Mapping) else str(layer)


def input_of(adata: Any, params: Mapping) -> dict[str, Any]:
    """``layer`` and ``use_raw`` for :func:`prepare_targets`: the matrix an attribute result was computed on.

    Read from its ``params["layer"]`` / ``params["use_raw"]`` (Scanpy's fields), which name the
    ensemble's own source unless ``attribute`` was given another; a MuData's come from the ensemble.
    """
    if is_mudata(adata) or "layer" not in params:
        return {}
    layer = params.get("layer")
    return {"layer": "X" if layer in (None, "None") else str(layer),
            "use_raw": bool(params.get("use_raw") in (True, "True", "true", 1))}


def _value_range(block: np.ndarray) -> ValueSummary:
    """The finite range of ``block``, as a :class:`ValueSummary` that is not integer (the whole-number test skipped)."""
    b = np.asarray(block)
    finite = np.isfinite(b)
    if not finite.all():
        b = b[finite]
    if not b.size:
        return ValueSummary(np.inf, -np.inf, False)
    return ValueSummary(float(b.min()), float(b.max()), False)


@renamed_kwarg("key", "ensemble_key")
@doc_params(key=doc_key, random_state=doc_random_state, device=doc_device, copy=doc_copy, overwrite=doc_overwrite)
def attribute(
    adata: AnnData,
    *,
    method: Method | str = "deeplift",
    ensemble_key: str = Key.uns.ensemble,
    ensemble: Any = None,
    baseline: ReferenceKindName | str | np.ndarray | AnnData | None = None,
    n_baselines: int | None = None,
    smoothgrad: tuple[int, float] | None = None,
    n_repeats: int = 1,
    n_steps: int = 50,
    layer: str | None = FROM_TRAINING,
    use_raw: bool | None = None,
    models: list[int] | None = None,
    aggregate: Aggregate = "mean",
    target: str = "label",
    groupby: str | None = None,
    top_k: int = 100,
    rank_by: RankBy = "up",
    gradient_correction: bool = False,
    block_key: str = Key.var.block,
    store_layer: bool = True,
    layer_dtype: LayerDtype = "float32",
    layer_genes: str | Sequence[str] | np.ndarray | None = None,
    layer_format: str = "auto",
    backend: str = "auto",
    batch_size: int | None = None,
    random_state: int = 0,
    device: str | None = None,
    key_added: str | None = None,
    overwrite: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Explain every ensemble member and aggregate per-gene contributions over members.

    For every cell, every member's attribution towards the cell's target class is computed
    (averaged over ``n_baselines`` references, ``n_repeats`` repeats and SmoothGrad samples),
    then aggregated over members. Zhao, Shao & Asmann found single explanations poorly
    reproducible and aggregation over models the most effective fix; the reproducibility of the
    result is measured by :func:`scxl.tl.reproducibility`.

    Exact fast kernels are used for one-hidden-layer MLPs (the default model): Saliency,
    InputXGradient, GuidedBackprop, DeepLift and DeepLiftShap in closed form, and Integrated
    Gradients exactly (for such a network the path integral equals DeepLift's Rescale rule, so no
    integration steps are needed). Other models go through Captum. Deterministic settings (e.g.
    Saliency, or DeepLift with the ``"zero"`` reference) give the same answer every time and are
    computed once: ``n_repeats > 1`` only repeats what is stochastic.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a trained ensemble.
    method
        Explainer, see :func:`scxl.tl.explainers`: ``"saliency"``, ``"input_x_gradient"``,
        ``"guided_backprop"``, ``"integrated_gradients"``, ``"deeplift"``, ``"deeplift_shap"``,
        ``"guided_gradcam"`` and ``"guided_gradcam_pp"`` (CNN only), ``"feature_ablation"``.
    {key}
    ensemble
        Use this :class:`~scxl.models.Ensemble` (or saved ``.npz`` path) instead of ``uns[ensemble_key]``.
    baseline
        Reference of the explainers that compare with one (IntegratedGradients, DeepLift,
        DeepLiftShap, FeatureAblation): a kind of :data:`scxl.explain.REFERENCE_KINDS`.
        ``"mean"``: the mean profile of all cells (one reference). ``"rest_mean"``: the mean
        profile of the cells of the other groups (one per group). ``"zero"``: all genes 0.
        ``"normal"``: every gene drawn from N(0, 1) truncated to [0, 1]. ``"universal"``: every
        gene drawn from a normal with the gene's mean and sd over all cells, truncated to [0, ∞)
        (never negative). ``"specific"``: the same with the mean and sd of the cell's own group.
        ``"sample"``: real cells drawn uniformly from the data (expected gradients). ``"rest"``:
        real cells from the *other* groups (a one-vs-rest contrast, like
        ``rank_genes_groups(reference="rest")``). ``"marginal"``: every gene drawn from its own
        observed values, independently of the other genes. An array of shape
        ``(n, n_features)`` or an AnnData (read as ``adata`` is: ``layer``, ``use_raw``) gives
        explicit references. Default: the explainer's own
        (``"mean"`` for DeepLift, IntegratedGradients and FeatureAblation, chosen on the marker
        benchmark; ``"sample"`` for DeepLiftShap; see :func:`scxl.tl.explainers`).
    n_baselines
        References per cell. Default: 1 for a fixed reference (``"mean"``, ``"rest_mean"``, ``"zero"``, an array) and 20 for
        random kinds and DeepLiftShap (:func:`scxl.explain.resolve_n_baselines`): a draw is shared
        by the cells of a chunk, so one random reference would shift every cell's contributions
        the same way and dominate the group scores. Random references are redrawn for every
        member and repeat.
    smoothgrad
        ``(n_samples, noise_frac)``: average over noisy copies of each cell (Gaussian noise of
        ``noise_frac`` × each gene's sd), e.g. ``(10, 0.1)``.
    n_repeats
        Independent repeats of stochastic settings, averaged.
    n_steps
        Integration steps of Integrated Gradients where it is estimated (Captum's Gauss–Legendre
        rule, as for CNN and custom members; its cost grows in proportion: at the default 50, IG
        on a CNN costs about 50 DeepLift passes per reference). MLP members get the exact
        integral in one pass whatever ``n_steps`` (see the methods page).
    layer
        Where to read the expression: by default what the ensemble was trained on (its
        ``preprocessing``); ``"X"`` or a layer name to read the same kind of values from
        elsewhere, e.g. a query that keeps in ``X`` what the training data kept in a layer
        (as :func:`~scxl.tl.predict`'s ``layer``). Recorded in ``params["layer"]``.
    use_raw
        Read ``adata.raw`` (default: as at training). Recorded in ``params["use_raw"]``.
    models
        Indices of the members to use (default: all).
    aggregate
        ``"mean"`` or ``"median"`` over members, per cell and gene.
    target
        Class explained for each cell: ``"label"`` (its own label in ``groupby``),
        ``"prediction"`` (the ensemble's prediction) or a class name. Cells without a label are
        explained towards their prediction and belong to no group.
    groupby
        ``obs`` column defining the groups of the rankings (default: the training labels).
        With ``target="label"`` its groups must be training classes. On data without the
        training labels (a query), ``target="prediction"`` groups the cells by their predicted
        class, ``obs["xl_prediction"]`` of :func:`~scxl.tl.predict` (run it first).
    top_k
        Size of the top-gene lists used for the member-agreement figures.
    rank_by
        How genes are ranked within a group (:func:`scxl.metrics.direction_scores`). Every
        contribution of a reference-based explainer splits into *presence* (the gene is above
        the reference and that supports the group) and *absence* (it is below, e.g. a gene the
        model weighs negatively that the group does not express). ``"up"`` (default): presence
        on top, absence evidence at the bottom with negative scores — the sign convention of
        :func:`scanpy.tl.rank_genes_groups` (up positive, down negative), so the top genes are
        marker-grade; ``"presence"``: presence only; ``"total"``: the whole contribution (the
        paper's ranking; genes that support the group by their absence mix into the top).
        Explainers without a direction (Saliency, GuidedBackprop, Grad-CAM) always rank by
        their attribution. The absence ranking stays available:
        ``xl.get.top_genes(adata, key, direction="down")``.
    gradient_correction
        Remove, within each one-hot block of features (``var[block_key]``, see
        :func:`scxl.pp.append_covariates`), the mean gradient across the block's categories
        (Majdandzic, Rajesh & Koo), for ``"saliency"`` and ``"input_x_gradient"``.
    block_key
        ``var`` column naming the one-hot block of each feature.
    store_layer
        Store the cells × genes contributions in ``layers[key_added]``. ``False`` keeps only the
        per-group summaries, computed while streaming (memory does not grow with the cells), and
        removes a layer an earlier run left under ``key_added`` (with a warning: it would no
        longer match the ranking).
    layer_dtype
        ``"float32"`` or ``"float16"`` (half the memory) for the layer.
    layer_genes
        Store the layer for these genes only (the others read as 0): a list of names, the name
        of a boolean ``var`` column, or ``"top"`` — the union of every group's top ``top_k``
        genes of the final ranking (this runs the attribution twice: once for the ranking, once
        for the layer; both passes use the same seeds, so the numbers agree). Rankings always
        cover every gene.
    layer_format
        ``"dense"`` (a NumPy array), ``"sparse"`` (SciPy CSR; exact zeros are not stored) or
        ``"auto"``: the smaller of the two. A sparse layer (float32, 8 bytes a value with its
        column) holds only the ``layer_genes``, or, where the expression is stored sparse and
        the contributions are exactly 0 for unexpressed genes (the ``"zero"`` reference,
        InputXGradient), only the expressed values; a dense one (4 bytes a value, 2 with
        ``float16``) spans every gene. Without ``layer_genes`` or exact zeros: dense. Where
        ``float16`` was asked for but the sparse float32 layer is smaller, that is stored, with a
        warning (SciPy's sparse matrices have no float16). Before
        computing, the layer's size is checked against the available memory; an error names the
        options that fit (the atlas page of the docs has a memory table).
    backend
        ``"auto"``: Dask when the expression is a Dask array (e.g. from
        ``anndata.experimental.read_lazy``), else in this process; ``"dask"`` forces Dask
        (:func:`scxl.explain.attribute_dask`: one task per block of rows, on the workers of the
        active ``dask.distributed`` client if there is one; the layer is then a lazy Dask array,
        computed block by block when it is written or indexed: ``layer.to_zarr(...)`` or
        ``dask.array.store`` under the client write it from the workers, ``adata.write_zarr`` of an
        in-memory AnnData computes it in this process, and anndata cannot write a ``read_lazy``
        AnnData yet); ``"memory"`` reads the blocks into this process. The numbers are the same
        either way (to float rounding); ``params["backend"]`` records which ran.
    batch_size
        Cells per chunk (default: the largest chunk within a 1 GiB working-memory bound).
    {random_state}
    {device}
    key_added
        Key of the results (default ``f"xl_{{method}}"``; for an ensemble under another
        ``ensemble_key``, ``f"{{ensemble_key}}_{{method}}"``, so that its results do not replace
        the default ensemble's).
    {overwrite}
    {copy}

    Returns
    -------
    ``None`` or a copy. Writes

    - ``layers[key_added]``: contribution of every gene to every cell's target class (0 for genes
      the models never saw);
    - ``uns[key_added]``: as :func:`scanpy.tl.rank_genes_groups` writes it — ``params`` (the
      explainer's reference as ``params["baseline"]``; ``params["reference"]`` is Scanpy's
      comparison group, ``"rest"``, so that its plots draw each group against the others),
      ``names`` and ``scores`` (record arrays, one field per group; the group score is formed
      from the mean contribution over the group's cells towards their targets as ``rank_by``
      says), ``logfoldchanges`` (expression, group vs rest, on the data's linear scale),
      ``logfoldchanges_linear`` (the same on the linear mean, ``mean(expm1(x))`` for log1p
      data: what ``rank_by="up"`` and the evidence labels use to say whether the group
      expresses a gene less), ``pvals`` and ``pvals_adj`` (one-sample t-test of the members' group scores against 0,
      i.e. how consistently the members use the gene; BH-adjusted per group: not a test of
      differential expression, and with few members, e.g. 2–3, few genes pass
      ``sc.get.rank_genes_groups_df(..., pval_cutoff=0.05)``) — plus
      ``scores_std`` (sd of the group score across members), ``topk_fraction`` (fraction of
      members that put the gene in the group's top ``top_k``), for explainers with a direction
      ``contribution`` (the mean contribution), ``presence`` and ``absence`` (its parts from
      being above / below the reference), and ``member_agreement`` (per group: median pairwise
      Spearman and top-k overlap between members);
    - with ``layer_genes``: ``uns[key_added]["layer_var_names"]``, the genes the layer holds
      (the others read as 0 there);
    - with ``gradient_correction``: ``obsm[f"{{key_added}}_angle"]``, the off-simplex angle per
      block (degrees).

    For a MuData each modality receives its own ``layers``/``uns`` entries (its genes only), and
    ``mdata.uns[key_added]`` holds the ranking over all features (``"mod:gene"``).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.pbmc68k()
    >>> xl.tl.train_classifier(adata, "cell_type", n_models=2, max_epochs=5)
    >>> xl.tl.attribute(adata)  # the default: DeepLift against the mean profile, ranked by supporting evidence
    >>> adata.layers["xl_deeplift"].shape
    (700, 765)
    >>> df = sc.get.rank_genes_groups_df(adata, "CD19+ B", key="xl_deeplift")
    """
    from .. import explain, metrics

    t0 = time.perf_counter()
    if copy:
        adata = copy_of(adata, "attribute")
    spec = explain.get_explainer(method)  # raises listing the valid names
    if not spec.needs_reference and baseline is not None:
        with_ref = [n for n, sp in explain.EXPLAINERS.items() if sp.needs_reference]
        raise ValueError(f"method={spec.name!r} takes no reference (baseline): leave baseline=None, or use an explainer "
                         f"that compares with one ({', '.join(map(repr, with_ref))})")
    if gradient_correction and not spec.gradient_based:
        raise ValueError(f"gradient_correction=True applies to the gradient explainers ('saliency', 'input_x_gradient'), "
                         f"not to method={spec.name!r}")
    check_in(aggregate, ("mean", "median"), "aggregate")
    check_in(layer_dtype, LAYER_DTYPES, "layer_dtype")
    check_in(layer_format, LAYER_FORMATS, "layer_format")
    check_in(backend, ("auto", "memory", "dask"), "backend")
    check_in(rank_by, metrics.RANK_BY, "rank_by")
    if n_baselines is not None and (not isinstance(n_baselines, int | np.integer) or n_baselines < 1):
        raise ValueError(f"n_baselines must be a positive integer, got {n_baselines!r}")
    if not (isinstance(top_k, int | np.integer) and top_k >= 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if isinstance(n_steps, bool) or not (isinstance(n_steps, int | np.integer) and n_steps >= 1):
        raise ValueError(f"n_steps must be a positive integer (Integrated Gradients' steps, e.g. 20), got {n_steps!r}")
    ens = resolve_ensemble(adata, ensemble_key, ensemble, check_finished=False)
    if ens.model_type not in spec.model_types and not (ens.model_type == "custom" and "mlp" in spec.model_types):
        raise ValueError(
            f"method={method!r} applies to {' and '.join(spec.model_types).upper()} models, but the ensemble under "
            f"uns[{ensemble_key!r}] is made of {ens.model_type.upper()} models; choose another method (see xl.tl.explainers())"
        )
    members = list(range(ens.n_models)) if models is None else [int(i) for i in models]
    if [i for i in members if not 0 <= i < ens.n_models] or not members:
        raise ValueError(f"models must be member indices in [0, {ens.n_models}), got {models!r}")
    if len(set(members)) != len(members):
        dup = sorted({i for i in members if members.count(i) > 1})
        raise ValueError(f"models lists member(s) {dup} more than once; the members' t-test and agreement "
                         "assume distinct members: pass each index once")
    # warn → warn_if_cut_short → attribute → renamed_kwarg → the user
    warn_if_cut_short(ens, f"uns[{ensemble_key!r}]" if ensemble is None else "the ensemble", members=members, stacklevel=5)
    if key_added is None:  # another ensemble's ranking gets its own key (as predict's columns), not the default one's
        key_added = Key.uns.attribution(method) if ensemble_key == Key.uns.ensemble else f"{ensemble_key}_{method}"
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"key_added must be a non-empty string, got {key_added!r}")
    check_writable(adata, key_added, tool="attribute", overwrite=overwrite, layer=store_layer)
    dev = resolve_device(device)
    from ..explain._distributed import has_dask_data, refuse_small_workers

    refuse_small_workers("attribution", adata)  # before anything of Dask data is read (a lazy obs too) on the workers
    prep = prepare_targets(adata, ens, target=target, groupby=groupby, layer=layer, use_raw=use_raw,
                           ensemble_key=ensemble_key)
    X, codes, groups = prep.X, prep.group_codes, prep.group_names
    config = explain.AttributionConfig(
        references=_references(baseline, ens, explain, layer=layer, use_raw=use_raw), n_baselines=n_baselines, smoothgrad=smoothgrad,
        n_repeats=n_repeats, n_steps=n_steps, aggregate=aggregate, batch_size=batch_size, device=dev,
        random_state=random_state,
    )
    blocks = _blocks(X, ens, block_key) if gradient_correction else None

    dests = _destinations(adata, X, ens)
    for d in dests:
        if d.adata is not adata:
            check_writable(d.adata, key_added, tool="attribute", overwrite=overwrite, layer=store_layer)
    keep = None if layer_genes is None or (isinstance(layer_genes, str) and layer_genes == "top") else \
        _layer_features(X, ens, layer_genes)
    zero_exact = zero_is_exact(spec, config.references) and smoothgrad is None  # (noise on x = 0 contributes)
    if layer_format == "sparse" and layer_dtype == "float16":
        raise ValueError("layer_dtype='float16' needs layer_format='dense': SciPy's sparse matrices have no float16")
    top_genes = isinstance(layer_genes, str) and layer_genes == "top"
    if layer_genes is not None and not store_layer:
        warn(f"layer_genes={layer_genes!r} has no effect with store_layer=False (no layer is stored)", stacklevel=4)
    dask_X = _dask_aligned(X) if backend != "memory" else None
    if backend == "dask" and not has_dask_data(adata):  # in-memory data sent to the workers (Dask data: checked above)
        refuse_small_workers("attribution")
    if backend == "dask" and dask_X is None:
        import dask.array as dsa

        data = getattr(X.base, "data", None)
        backed = X.inputs.matrix.source if data is not None and is_out_of_core(data) else None
        if backed is not None and explain.active_client() is not None:
            raise ValueError(f"{backed} is a backed file, which cannot be sent to Dask workers; open it lazily instead "
                             "(anndata.experimental.read_lazy, or read_elem_lazy for X), so that each worker reads it "
                             "itself, or use backend='memory' (which streams the backed file in this process)")
        dask_X = dsa.from_array(_DenseRows(X), chunks=(max(1, min(X.shape[0], 8192)), X.shape[1]))
    bound = len(groups) * int(top_k) if top_genes else None  # the union of every group's top_k genes, at most
    nonzeros = _input_nonzeros(X) if zero_exact and X.is_sparse else None

    def is_sparse(keep_now: np.ndarray | None, bound_now: int | None) -> tuple[bool, int, int]:
        """The format (layer_format="auto": the smaller layer), the bytes it needs, the widest sparse row."""
        dense, sparse_need, width = _layer_sizes(dests, keep_now, bound_now, layer_dtype, nonzeros)
        chosen = layer_format == "sparse" or (layer_format == "auto" and dask_X is None and sparse_is_smaller(
            dense, sparse_need, subset=layer_genes is not None, exact_on_sparse=zero_exact and X.is_sparse))
        return chosen, sparse_need if chosen else dense, width

    sparse_layer, need, width = is_sparse(keep, bound)
    if store_layer and dask_X is None:  # (a Dask layer is lazy: computed block by block when written or read)
        _check_layer_memory(dests, need, sparse=sparse_layer, dtype="float32" if sparse_layer else layer_dtype,
                            n_genes=width, top=top_genes)
    modules = [ens.modules[i] for i in members]
    run = dict(groups=codes, n_groups=len(groups), blocks=blocks, store_cells=False, config=config)
    two_pass = store_layer and top_genes

    def make_layers(keep_now: np.ndarray | None, *, sparse_now: bool) -> dict:
        """One layer per destination; a sparse one is float32 (SciPy's sparse matrices have no float16)."""
        if sparse_now and layer_dtype == "float16":
            _say_float32(X.shape[1] if keep_now is None else keep_now.size)
        return {id(d): _Layer(d, "float32" if sparse_now else layer_dtype, keep_now, sparse=sparse_now) for d in dests}

    layers = make_layers(keep, sparse_now=sparse_layer) if store_layer and not two_pass else {}

    def on_chunk(sl: slice, chunk: np.ndarray) -> None:
        for layer in layers.values():
            layer.add(sl, chunk)

    where = dev if dask_X is None else ("the Dask workers" if explain.active_client() is not None else "Dask's local scheduler")
    logger.info("attributing %d observations with %s over %d %s models on %s", X.shape[0], method,
                len(members), ens.model_type.upper(), where)
    if dask_X is not None:
        if two_pass or (store_layer and (sparse_layer or keep is not None)):
            raise ValueError("with Dask the layer is dense and covers every gene; use layer_genes=None, "
                             "layer_format='dense' (or 'auto'), or backend='memory'")
        res, cells = explain.attribute_dask(modules, dask_X, prep.targets, method, groups=codes, n_groups=len(groups),
                                            config=config, store_cells=store_layer)
        layers = {id(d): _DaskLayer(d, cells, layer_dtype) for d in dests} if store_layer else {}
        fold = FoldChanges(codes, len(groups), linear=True, source=X.source, var_names=X.var_names)
        for sl, block in X.chunks(4096):
            fold.add(sl, block)
    else:
        fold = FoldChanges(codes, len(groups), linear=True, source=X.source, var_names=X.var_names)  # gathered from the rows the attribution reads
        res = explain.attribute_modules(modules, X, prep.targets, method, on_chunk=on_chunk if layers else None,
                                        on_rows=fold.add, **run)
    lfc, linear_lfc = fold.result()
    if (summary := fold.summary()) is not None:  # from the rows the attribution read: no pass of its own
        _check_scale(summary, ens, X.source, what="Contributions")
    ranking = metrics.rank_groups(res.member_group_means, res.group_means, groups, top_k=int(top_k),
                                  extra={"logfoldchanges": lfc, "logfoldchanges_linear": linear_lfc}, lfc=linear_lfc,
                                  member_presence=res.member_presence_group_means, presence=res.presence_group_means,
                                  rank_by=rank_by)
    if two_pass:  # the layer of the union of every group's top genes, by a second, identical pass
        keep = np.unique(np.argsort(-np.nan_to_num(ranking.scores, nan=-np.inf), axis=1, kind="stable")[:, : ranking.top_k])
        sparse_layer = is_sparse(keep, None)[0]  # now that the union is known
        layers = make_layers(keep, sparse_now=sparse_layer)
        explain.attribute_modules(modules, X, prep.targets, method, on_chunk=on_chunk, progress=False, **run)
    rank_by = rank_by if res.presence_group_means is not None else "total"
    params = {
        "groupby": prep.groupby,
        # Scanpy's field: the group each ranking is compared against (its plots read it; the fold changes are vs rest)
        "reference": "rest",
        "baseline": str(baseline if isinstance(baseline, str) else res.params.get("references")),
        "method": key_added, "use_raw": bool(X.inputs.preprocessing.get("use_raw", False)),
        "layer": _layer_param(X.inputs.preprocessing.get("layer")), "corr_method": "t-test across members, benjamini-hochberg",
        "explainer": method, "ensemble_key": ensemble_key, "target": target, "n_models": len(members), "aggregate": aggregate,
        "n_baselines": int(res.params.get("n_baselines") or 0), "n_repeats": int(res.params.get("n_repeats", n_repeats)), "n_steps": int(n_steps),
        "smoothgrad": "None" if smoothgrad is None else list(map(float, smoothgrad)), "top_k": int(ranking.top_k), "rank_by": rank_by,
        "direction": str(res.params.get("direction")),
        "gradient_correction": bool(gradient_correction), "random_state": int(random_state), "device": str(dev),
        "fast_kernel": bool(np.all(res.fast)), TOOL_FIELD: "attribute", "seconds": round(time.perf_counter() - t0, 3),
        "store_layer": "no" if not store_layer else ("sparse" if sparse_layer else "dense"),
        "layer_dtype": ("float32" if sparse_layer else layer_dtype) if store_layer else "None",
        "layer_genes": "all" if layer_genes is None else ("top" if top_genes else int(keep.size)),
        "backend": "dask" if dask_X is not None else "memory",
    }
    with deferred_interrupt(f"the results of attribute under {key_added!r}"):  # a Ctrl-C here waits for the write
        stale = _write(adata, dests, key_added, ranking, params, layers, res, ens, X)
    if stale:
        warn(f"removed {', '.join(stale)} of the previous attribute run under {key_added!r}: this run did not write "
             f"{'it' if len(stale) == 1 else 'them'}" + (" (store_layer=False)" if not store_layer else "")
             + f", and uns[{key_added!r}] now describes this run only", stacklevel=4)
    logger.info("finished %s (%.1fs): added %s", method, time.perf_counter() - t0,
                ", ".join(f"{d.label}.uns[{key_added!r}]" + (f", {d.label}.layers[{key_added!r}]" if store_layer else "") for d in dests))
    return None if not copy else adata


class _DenseRows:
    """Array-like view of a reader for ``dask.array.from_array`` (``backend="dask"`` on in-memory data)."""

    def __init__(self, X: Aligned) -> None:
        self.X, self.shape, self.dtype, self.ndim = X, X.shape, np.dtype(np.float32), 2

    def __getitem__(self, key):
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        return self.X.rows(rows)[:, cols]


def _dask_aligned(X: Aligned):
    """The inputs as a Dask array in ensemble feature order, if they are a Dask array (else ``None``)."""
    data = getattr(X.base, "data", None)
    if data is None or not _is_dask(data):
        return None
    present = X.present
    blocks = data[:, X.col[present]].astype(np.float32)
    if len(blocks.chunks[1]) > 1:  # chunked along genes too (anndata's write_zarr does so for dense X): whole rows
        blocks = blocks.rechunk({1: -1})
    if present.all():
        return blocks

    def scatter(b):
        b = np.asarray(b.todense() if hasattr(b, "todense") else b)
        out = np.zeros((b.shape[0], present.size), dtype=np.float32)
        out[:, present] = b
        return out

    return blocks.map_blocks(scatter, chunks=(blocks.chunks[0], (present.size,)), dtype=np.float32,
                             meta=np.empty((0, 0), dtype=np.float32))


class _DaskLayer:
    """The layer of one destination as a Dask array in its ``var_names`` order (computed when written or read)."""

    def __init__(self, d: _Destination, cells, dtype: str) -> None:
        self.d, self.cells, self.dtype = d, cells, np.dtype(dtype)

    def result(self):
        d, n_vars = self.d, self.d.adata.n_vars
        if d.rows.size != d.adata.n_obs or not np.array_equal(d.rows, np.arange(d.adata.n_obs)):
            raise ValueError("Dask layers need every observation of the AnnData in order; use backend='memory'")
        if is_all_columns(d.var_pos, n_vars) and is_all_columns(d.features, n_vars):
            return self.cells.astype(self.dtype)
        features, var_pos, dtype = d.features, d.var_pos, self.dtype

        def place(b):
            out = np.zeros((b.shape[0], n_vars), dtype=dtype)
            out[:, var_pos] = b[:, features]
            return out

        return self.cells.map_blocks(place, chunks=(self.cells.chunks[0], (n_vars,)), dtype=dtype,
                                     meta=np.empty((0, 0), dtype=dtype))


def _layer_features(X: Aligned, ens, genes) -> np.ndarray:
    """Ensemble feature indices selected by ``layer_genes`` (names or a boolean ``var`` column)."""
    var = X.inputs.var.reindex(ens.var_names)
    if isinstance(genes, str):
        if genes not in var.columns or var[genes].dtype != bool:
            raise KeyError(f"layer_genes={genes!r} is not a boolean column of var (or 'top')")
        idx = np.flatnonzero(var[genes].fillna(False).to_numpy())
    else:
        names = pd.Index(np.asarray(genes, dtype=str))
        missing = names[~names.isin(ens.var_names)]
        if len(missing):
            raise KeyError(f"{len(missing)} of layer_genes are not genes of the ensemble, e.g. {missing[:5].tolist()}")
        idx = ens.var_names.get_indexer(names)
    if idx.size == 0:
        raise ValueError("layer_genes selects no gene")
    return np.unique(idx)


def layer_options(*, sparse: bool, dtype: str, top: bool, cli: bool = False) -> str:
    """What makes a contributions layer smaller, named as in Python or (``cli``) as ``scxl run``'s flags.

    Only what would help: float16 halves a dense float32 layer (a sparse layer has no float16),
    and the zero reference makes a dense layer sparse.
    """
    opts = ["--no-layer" if cli else "store_layer=False"]
    opts[0] += " (rankings only, memory flat in the number of cells)"
    if not top:
        opts.append("--layer-genes top (the union of every group's top genes)" if cli else
                    "layer_genes='top' (the union of every group's top genes) or a gene list")
    if not sparse and dtype == "float32":
        opts.append("--layer-dtype float16 (half)" if cli else "layer_dtype='float16' (half)")
    if sparse and not cli:
        opts.append("layer_format='dense' where most values are non-zero (4 bytes a value instead of 8)")
    if not sparse:
        opts.append("--baseline zero on sparse data (unexpressed genes contribute exactly 0, so the layer is sparse)"
                    if cli else "the zero reference on sparse data (unexpressed genes contribute exactly 0, so the "
                    "layer is sparse: layer_format='auto' or 'sparse')")
    return "Options: " + "; ".join(opts)


def zero_is_exact(spec, references) -> bool:
    """Whether an unexpressed gene contributes exactly 0 (a zero reference, or no reference and ``x ⊙ ∂``)."""
    return (references is None and spec.direction == "input") or (
        isinstance(references, str) and references == "zero") or (
        spec.needs_reference and references is None and spec.default_reference == "zero")


def layer_bytes(n_obs: int, n_vars: int, n_genes: int, dtype: str, *, sparse: bool, nonzeros: int | None = None) -> int:
    """Upper bound of a contributions layer's memory.

    A dense layer spans all ``n_vars`` variables of the AnnData. A sparse one holds at most
    ``n_genes`` values per row (the attributed genes: values and int32 columns, and the row
    pointers); where an unexpressed gene contributes exactly 0, at most the input's ``nonzeros``
    stored values in all.
    """
    if not sparse:
        return int(n_obs * n_vars * np.dtype(dtype).itemsize)
    values = n_obs * n_genes if nonzeros is None else min(int(nonzeros), n_obs * n_genes)
    return sparse_bytes(values, n_obs, dtype)


def sparse_bytes(values: int, n_rows: int, dtype: str = "float32") -> int:
    """Bytes of a CSR matrix of ``values`` stored values and ``n_rows`` rows (int64 indices from 2³¹ values, as SciPy's)."""
    index = 4 if values < 2**31 else 8
    return int(values * (np.dtype(dtype).itemsize + index) + n_rows * 16)


def sparse_is_smaller(dense: int, sparse: int, *, subset: bool, exact_on_sparse: bool) -> bool:
    """``layer_format="auto"``: a sparse layer where it is smaller than the dense one (both in bytes).

    A sparse layer (float32: SciPy's sparse matrices have no float16) holds the attributed genes
    only (a gene subset), and with exact zeros on sparse data at most the input's stored values;
    the dense one spans every variable. Without either, dense.
    """
    return (subset or exact_on_sparse) and sparse < dense


def _say_float32(n_genes: int) -> None:
    warn(f"layer_dtype='float16' applies to a dense layer; the sparse one of {n_genes} genes is smaller, so it is "
         "stored sparse in float32 (SciPy's sparse matrices have no float16); layer_format='dense' for a dense float16 "
         "layer", stacklevel=6)  # warn → here → make_layers → attribute → renamed_kwarg → the user


def check_layer_room(need: int, shape: str, *, what: str = "the attribution layer", options: str, done: str = "") -> None:
    """Raise :class:`MemoryError` when ``need`` bytes do not fit in 80 % of the memory available."""
    from .._validation import MEMORY_LIMITS, available_memory, format_bytes

    free, limit = available_memory()
    if free is None or need <= 0.8 * free:
        return
    raise MemoryError(f"{what} would need about {format_bytes(need)} ({shape}) but at most {format_bytes(int(0.8 * free))} "
                      f"may be used (80 % of the {format_bytes(free)} available, set by {MEMORY_LIMITS[limit]}){done}. "
                      f"{options}")


def _layer_sizes(dests, keep: np.ndarray | None, bound: int | None, dtype: str, nonzeros: int | None):
    """``(dense bytes in dtype, sparse float32 bytes, genes of the widest sparse row)`` over all destinations.

    Each destination (an AnnData, or a MuData's modality) holds a dense layer over all its
    variables, or a sparse one over its attributed genes (``keep``; at most ``bound`` genes for
    ``"top"``), at most ``nonzeros`` stored values in all where zeros are exact.
    """
    per = [len(d.features) if keep is None else int(np.isin(d.features, keep).sum()) for d in dests]
    if bound is not None:
        per = [min(k, bound) for k in per]
    dense = sum(layer_bytes(d.adata.n_obs, d.adata.n_vars, 0, dtype, sparse=False) for d in dests)
    values = sum(d.adata.n_obs * k for d, k in zip(dests, per, strict=True))
    if nonzeros is not None:
        values = min(values, int(nonzeros))
    return dense, sparse_bytes(values, sum(d.adata.n_obs for d in dests)), max(per)


def _input_nonzeros(X) -> int | None:
    """Values stored by the (sparse) input, all modalities together; ``None`` if any is not counted."""
    parts = getattr(X.base, "parts", [X.base])
    counts = [stored_nonzeros(getattr(p, "data", None)) for p in parts]
    return None if any(c is None for c in counts) else int(sum(counts))


def _check_layer_memory(dests, need: int, *, sparse: bool, dtype: str, n_genes: int, top: bool) -> None:
    """Refuse, before computing, a layer that cannot fit, and say what would (all destinations together)."""
    width = n_genes if sparse else sum(d.adata.n_vars for d in dests)
    check_layer_room(need, f"{dests[0].adata.n_obs} observations × {width} genes, {dtype}, "
                           f"{'sparse' if sparse else 'dense'}",
                     options=layer_options(sparse=sparse, dtype=dtype, top=top))


def _write(adata, dests, key_added, ranking, params, layers, res, ens, X) -> list[str]:
    """The one write of :func:`attribute`: rankings, layers and angles of every destination.

    A layer or angles left under ``key_added`` by an earlier run that this one does not write
    are removed (they would no longer match ``uns[key_added]``); their names are returned.
    """
    with_cells = [g for g, c in zip(ranking.groups, res.group_counts, strict=True) if c > 0]
    for d in dests:
        if not is_mudata(adata) or d.adata is not adata:
            view_to_actual(d.adata)
    stale = []
    for d in dests:
        prev = d.adata.uns.get(key_added)
        if not (isinstance(prev, Mapping) and isinstance(prev.get("params"), Mapping)
                and prev["params"].get(TOOL_FIELD) == "attribute"):
            continue  # only what an earlier attribute run wrote is removed, never a layer of the user's
        prefix = f"{d.label}." if is_mudata(adata) else ""
        if not layers and key_added in d.adata.layers:
            del d.adata.layers[key_added]
            stale.append(f"{prefix}layers[{key_added!r}]")
        angle = Key.obsm.angle(key_added)
        if res.angles is None and angle in d.adata.obsm:
            del d.adata.obsm[angle]
            stale.append(f"{prefix}obsm[{angle!r}]")
    for d in dests:
        ranked = np.flatnonzero(X.present) if not is_mudata(adata) else d.features
        names = ens.var_names.to_numpy()[ranked]
        if is_mudata(adata):
            names = d.adata.var_names[d.var_pos].to_numpy()
        d.adata.uns[key_added] = _entry(ranking, ranked, names, with_cells, params)
        if layers:
            layer = layers[id(d)]
            d.adata.layers[key_added] = layer.result()
            if getattr(layer, "cols", None) is not None and layer.cols.size < d.features.size:  # layer_genes
                d.adata.uns[key_added]["layer_var_names"] = d.adata.var_names[layer.var_pos].to_numpy(dtype=object)
        if res.angles is not None:
            full = np.full((d.adata.n_obs, res.angles.shape[1]), np.nan, dtype=np.float32)
            full[d.rows] = res.angles
            d.adata.obsm[Key.obsm.angle(key_added)] = pd.DataFrame(full, index=d.adata.obs_names,
                                                                   columns=[f"block_{b}" for b in res.block_ids])
    if is_mudata(adata):
        feats = np.flatnonzero(X.present)
        adata.uns[key_added] = _entry(ranking, feats, ens.var_names.to_numpy()[feats], with_cells, params)
    return stale


def _entry(ranking, features, gene_names, groups, params) -> dict[str, Any]:
    """One ``rank_genes_groups``-format entry (record arrays, one field per group)."""
    cols = ranking.columns(features, gene_names, groups=groups)
    entry: dict[str, Any] = {"params": dict(params)}
    for f, per_group in cols.items():
        entry[f] = np.rec.fromarrays([np.asarray(v) for v in per_group.values()],
                                     dtype=[(str(g), "O" if f == "names" else "float32") for g in per_group])
    if ranking.agreement is not None:
        entry["member_agreement"] = ranking.agreement
    return entry


def explainers() -> pd.DataFrame:
    """The explainers :func:`scxl.tl.attribute` offers, as a table.

    Returns
    -------
    One row per explainer: display name, whether it needs a reference, whether it is stochastic
    by nature, the model types it applies to, whether an exact fast kernel exists for
    one-hidden-layer MLPs, its explainer group in Zhao, Shao & Asmann, default reference and a
    description.

    Examples
    --------
    >>> import scxl as xl
    >>> table = xl.tl.explainers()
    >>> "deeplift" in table.index
    True
    """
    from ..explain import explainers_table

    return explainers_table()
