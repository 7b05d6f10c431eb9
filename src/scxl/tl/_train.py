"""``xl.tl.train_classifier``: train an ensemble on an AnnData and store it in ``uns``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from .._docs import (
    doc_adata,
    doc_copy,
    doc_device,
    doc_layer,
    doc_overwrite,
    doc_params,
    doc_random_state,
)
from .._inputs import BUFFER_BYTES, HOLD_BYTES, _is_dask, extract, is_out_of_core, make_fetch
from .._keys import Key
from .._logging import DataScaleWarning, deferred_interrupt, logger, progress, warn
from .._types import Balance, ModelType, Split
from .._validation import (
    TOOL_FIELD,
    check_groupby,
    check_in,
    check_random_state,
    check_values,
    check_writable,
    copy_of,
    is_mudata,
    resolve_device,
    resolve_genes,
    scale_hint,
    shallow_counts,
    view_to_actual,
)
from ..models import Ensemble, build_module, default_spec, register_factory, resolve_gene_order
from ..train import (
    AUTO_EPOCH_SIZE,
    TrainConfig,
    TrainingInterrupted,
    classification_metrics,
    fit_member,
    fit_members,
    stackable,
    stratified_kfold,
    stratified_split,
)

#: The default early-stopping floor, as a fraction of the chance loss ln K (``benchmarks/early_stopping.py``).
MIN_DELTA_CHANCE = 0.003


def _member_seed(random_state: int, purpose: int, i: int = 0) -> tuple[int, np.random.Generator]:
    """Independent, index-stable seeds: member ``i`` gets the same seed however many are trained."""
    ss = np.random.SeedSequence([int(random_state), purpose, i])
    return int(ss.generate_state(1, dtype=np.uint32)[0]), np.random.default_rng(ss)


@doc_params(adata=doc_adata, layer=doc_layer, random_state=doc_random_state, device=doc_device, copy=doc_copy, overwrite=doc_overwrite)
def train_classifier(
    adata: AnnData,
    groupby: str,
    *,
    model: ModelType | Callable[[int, int], torch.nn.Module] = "mlp",
    n_models: int = 10,
    layer: str | None = None,
    use_raw: bool = False,
    genes: str | Sequence[str] | np.ndarray | None = None,
    mods: Sequence[str] | None = None,
    hidden: int | Sequence[int] = (128,),
    dropout: float = 0.25,
    model_kwargs: dict[str, Any] | None = None,
    max_epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    balance: Balance = "upsample",
    validation: float = 0.1,
    split: Split = "per_model",
    patience: int = 10,
    min_delta: float = 0.0,
    min_delta_chance: float | None = None,
    epoch_size: int | Literal["auto"] | None = "auto",
    cv: int | None = None,
    gene_order: str | Sequence[str] | np.ndarray = "variance",
    gene_annotation: pd.DataFrame | None = None,
    random_state: int = 0,
    device: str | None = None,
    key_added: str = Key.uns.ensemble,
    extend: bool = False,
    vectorize: bool = True,
    backend: Literal["auto", "memory", "dask"] = "auto",
    overwrite: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Train an ensemble of neural-network classifiers to predict ``obs[groupby]`` from expression.

    Every member draws its own stratified train/validation split (the paper's 9:1) and differs
    from the others by that split, its random initialisation, its up-sampling draws and dropout
    (and, for CNNs, optionally its gene order). Each epoch up-samples every class to the size of the largest one; Adam with
    cross-entropy and L2 weight decay; the learning rate is multiplied by 0.25 after 5 epochs
    without improvement of the validation loss, and training stops after ``patience`` such
    epochs, restoring the best weights.

    The input should be log-normalised expression (e.g. ``sc.pp.normalize_total`` then
    ``sc.pp.log1p``, as CellTypist requires). Its scale is detected from the values (whole numbers
    above 20: raw counts; values above 50: implausible on a log scale, so linear; negative values:
    scaled) and recorded in the ensemble; raw counts and other linear-scale values give a warning
    that names the fix, and :func:`scxl.tl.predict` flags data on another scale than this. Whole
    numbers from 0 to at most 20 (not only 0/1) are taken as they are but warn too, since shallow
    counts (e.g. scATAC fragments) look like that; for data that are meant to be small integers
    (copy numbers, genotypes) silence it with
    ``warnings.filterwarnings("ignore", message=".*too small to be sure these are raw counts")``
    (or every warning about the scale: ``category=xl.DataScaleWarning``).

    **Interrupting** (Ctrl-C, a notebook's stop button) once every member in training has
    finished an epoch keeps the work done: the call returns, stores the members trained so far
    (those still in training with their best weights so far, i.e. under-trained) with
    ``params["interrupted"] = True`` and ``params["finished"]`` (per member, whether its training
    had ended), and warns. The ensemble predicts and explains as it is. The same call with
    ``extend=True`` (and without ``cv``) keeps the members before the first one cut short and
    trains the others *from the start*, which gives the same ensemble as an uninterrupted run
    (bit for bit on the CPU); members trained all at once (the default for MLPs) are all cut
    short together, so there it trains them all again. On Dask workers a task returns its
    members only when all of them have finished (``vectorize=False``: one member per task). An
    interrupted evaluation or cross-validation keeps the trained ensemble without those metrics,
    and a Ctrl-C just after the members finished keeps them all (``params["interrupted"]`` stays
    False unless ``cv`` was asked for, which is then skipped); ``params["stopped"]`` is True
    whenever a Ctrl-C stopped the call, even with every member finished. In a script that should stop there instead, turn the warning into an error, raised once the
    ensemble is stored (with ``copy=False``):
    ``warnings.filterwarnings("error", message="train_classifier was interrupted")``.

    Parameters
    ----------
    {adata}
    groupby
        Column of ``obs`` with the labels (categorical or string). Cells whose label is missing
        (NaN) are left out of training and still get predictions from :func:`scxl.tl.predict`.
    model
        ``"mlp"`` (one hidden layer of 128 units, ReLU, dropout 0.25 before the output; the
        paper's BatchNorm after the hidden layer with ``model_kwargs={{"batchnorm": True}}``),
        ``"cnn"`` (genes on a square grid; three convolutions of 64/128/256 channels,
        kernels 5/5/3, each followed by max-pool, BatchNorm and ReLU; global average pooling) or
        a callable ``factory(n_features, n_classes) -> torch.nn.Module``. A custom module's
        weights are stored, its code is not: the factory is registered under its qualified name
        (recorded in ``spec["factory"]``), so :func:`scxl.tl.predict`, :func:`scxl.tl.attribute`
        and :func:`scxl.get.ensemble` find it in this session; in a new session call
        :func:`scxl.models.register_factory` with the same factory first.
    n_models
        Number of ensemble members. The paper aggregates 10 or more for stable attributions.
    {layer}
    genes
        Features to train on: ``None`` (all), the name of a boolean ``var`` column (e.g.
        ``"highly_variable"``), a boolean mask, or a list of names.
    mods
        For a MuData: the modalities to use (default: all). Features are named ``"mod:gene"`` and
        only observations present in every chosen modality are used.
    hidden
        MLP hidden layer size(s), positive integers, e.g. ``128`` or ``(256, 64)``.
    dropout
        Dropout probability before the output layer, in ``[0, 1)``.
    model_kwargs
        Further architecture options, e.g. ``{{"channels": (16, 32, 64)}}`` for the CNN or
        ``{{"batchnorm": True}}`` for the paper's MLP.
    max_epochs
        Maximum number of epochs per member.
    batch_size
        Mini-batch size. On small data it is lowered (to no less than 16) so that every epoch
        has at least 8 optimiser steps.
    lr
        Initial learning rate of Adam.
    weight_decay
        L2 penalty.
    balance
        ``"upsample"`` (class-balanced up-sampling each epoch, the paper's choice),
        ``"weights"`` (class-weighted loss) or ``"none"``.
    validation
        Fraction of each class held out for early stopping and for the reported metrics
        (``0`` disables it: the training loss is monitored and no validation metrics exist).
    split
        ``"per_model"``: each member holds out its own random ``validation`` fraction, so the
        ensemble as a whole learns from every cell and does not depend on one particular split
        (two ensembles trained with different seeds then agree much better, in predictions and in
        attributions); the ensemble's reported metrics are out-of-bag: each held-out cell is
        predicted by the members that did not train on it — with 10 members and
        ``validation=0.1`` about 1.5 members per cell (column ``n_members``), so the
        out-of-bag numbers describe a small ensemble and understate the full one.
        ``"shared"``: one split for all members (the ensemble's metrics are then those of the
        full ensemble on cells none of its members trained on).
    patience
        Epochs without improvement of the validation loss before stopping. Measured by
        ``benchmarks/early_stopping.py`` against the rule without ``min_delta_chance``:
        ``patience=5`` trained a simulated, well-separated 50,000-cell atlas 2.6× faster with the
        same top genes, but lost accuracy and top-gene stability where classes overlap or act in
        combination, so the default stays 10 (with the default ``min_delta_chance`` a replay of
        the recorded curves puts its saving on the atlas at about 1.7×).
    min_delta
        Smallest relative improvement that counts: an epoch improves when its validation loss is
        below ``best × (1 - min_delta)`` (besides ``min_delta_chance``); ``0`` (default): no
        relative threshold. It sets when training stops, not which weights are kept (those of the
        lowest validation loss) nor the learning-rate schedule. ``0.01`` shortened training by
        0-22 % on the benchmark's small data sets and hardly on the atlas, whose validation loss
        kept falling by more than 1 %. Values above 0.1 warn.
    min_delta_chance
        Smallest absolute improvement that counts, as a fraction of the chance loss ``ln K`` (the
        cross-entropy of a uniform guess over the ``K`` groups): an epoch must also lower the
        validation loss by more than ``min_delta_chance × ln K`` and by more than 1e-6 (0.0069
        for 10 groups at ``0.003``). Unlike ``min_delta`` it ignores the slow fall of an already
        small loss on well-separated atlases. Like ``min_delta`` it sets when training stops, not
        which weights are kept. ``None`` (default): ``0.003``, or with ``extend=True`` the value
        the stored ensemble was trained with (``0`` for ensembles from before 2026-12-07, whose
        rule it was). Measured by ``benchmarks/early_stopping.py`` on 22 simulated and real data
        sets with 3 to 40 groups (the smallest 19 cells): ``0.003`` halved the epochs of a
        simulated 50,000-cell atlas (1.9× faster, same accuracy and top genes), left the marker
        AP unchanged everywhere (and the balanced accuracy on the two 40-group sets) and cost at
        most 0.006 of accuracy (combinatorial designs). ``0``: off. Values above 0.05 warn.
    epoch_size
        Samples per epoch at most. ``"auto"`` (default): 100,000 (:data:`scxl.train.AUTO_EPOCH_SIZE`),
        so epochs of smaller data are whole passes and on atlases the validation check, the
        learning-rate schedule and early stopping come every 100,000 samples instead of once per
        pass over millions of cells (a million cells would otherwise need at least
        ``patience + 1`` full passes). A capped epoch is a fresh random draw of that many of the
        member's (up-sampled) training samples, and early stopping then watches a fixed subset
        of ``epoch_size // 4`` validation cells (the reported metrics use every held-out cell).
        ``None``: every epoch is a whole pass; an integer sets the cap.
    cv
        If set (e.g. ``5``), also estimate accuracy by stratified ``cv``-fold cross-validation:
        an ensemble of ``n_models`` is trained per fold and scored on the held-out fold. This
        costs ``cv`` times the training; the stored ensemble is the one trained on all cells.
    gene_order
        CNN only: ``"variance"`` (decreasing variance), ``"correlation"`` (leaf order of an
        average-linkage clustering on 1 − Pearson r), ``"random"``, ``"random_per_model"`` (a
        different random layout per member), ``"genomic"`` (chromosome and start, from ``var``
        columns ``chrom``/``start`` or ``gene_annotation``), or an explicit list of gene names.
    gene_annotation
        Table of gene positions for ``gene_order="genomic"`` (e.g.
        :func:`scxl.datasets.gene_annotation`): a ``symbol`` column or gene-name index,
        ``chrom`` and ``start``.
    {random_state}
    {device}
    key_added
        Key of the ensemble in ``adata.uns``. A new ensemble replaces the one stored there
        (without ``extend``): that one's predictions (``obs[f"{{key_added}}_prediction"]`` etc.,
        ``obsm[f"{{key_added}}_proba"]``) are removed, and a warning names the rankings computed
        with it (they are kept).
    extend
        Grow the ensemble already stored under ``key_added`` to ``n_models`` members: its
        members are kept and only the missing ones are trained. Member seeds (and splits) depend
        only on ``random_state`` and the member's index, so the result is identical to training
        all ``n_models`` at once; every other setting must therefore equal the stored one (an
        error lists the differences). Of an interrupted ensemble only the members before the
        first one cut short are kept. Not with ``cv``.
    vectorize
        Train all MLP members at once: their weights are stacked and every mini-batch goes
        through one batched pass for all members (the data are read once per step for all of
        them). Each member keeps its own split, seeds, learning-rate schedule, early stopping and
        best weights, and on the CPU the members are bit-identical to those of
        ``vectorize=False``, which trains them one after another (the CNN and custom modules are
        always trained one after another). See the methods page, "Training at atlas scale".
    backend
        Where the members train. ``"memory"``: in this process. ``"dask"``: on the workers of
        the active ``dask.distributed`` client, the members split into one task per worker
        thread (one task per member with ``vectorize=False``); each task reads the expression
        itself (a Dask array's graph, e.g. from ``anndata.experimental.read_lazy``, runs on the
        worker; in-memory data are sent to the workers once) and trains its members stacked.
        Seeds, splits and block order depend only on ``random_state`` and the member's index,
        so the members are those this process would train (bit-identical when the workers use
        as many torch threads as this process — Dask's worker processes run with
        ``OMP_NUM_THREADS=1`` — and the same kind of CPU; otherwise equal up to floating-point
        rounding, about 1e-7). The workers train on ``device`` as resolved here. Only MLP
        members train on workers. ``"auto"`` (default): ``"dask"`` when the
        expression is a Dask array, a client is active and the model is an MLP, else
        ``"memory"``. ``params["backend"]`` records which ran.
    {overwrite}
    {copy}

    Returns
    -------
    ``None``, or a copy of ``adata`` if ``copy=True``. Writes ``adata.uns[key_added]``: the
    ensemble (``weights`` as NumPy arrays per member, ``spec``, ``classes``, ``var_names``,
    ``orders`` for CNNs, ``params``, ``preprocessing`` (where the input came from, and its
    ``scale``: ``"log"``, ``"counts"``, ``"linear"`` or ``"scaled"``, as detected from the values,
    with ``value_range`` and ``integer_values``), ``versions``) with its training record:
    ``history`` (per member and epoch), ``metrics`` (accuracy, balanced accuracy, macro-F1 per
    member, for the ensemble on the validation cells, and per cross-validation fold), ``recall``
    (per class), ``confusion`` (ensemble, validation cells; rows true, columns predicted) and
    ``extra["validation_obs"]`` (names of the observations held out by at least one member) and
    ``extra["validation_members"]`` (boolean, members × those observations: which member held
    out which observation).

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.pbmc68k()
    >>> xl.tl.train_classifier(adata, "cell_type", n_models=2, max_epochs=5)
    >>> bool(adata.uns["xl"]["metrics"].loc["ensemble", "accuracy"] > 0.5)
    True
    """
    t0 = time.perf_counter()
    if copy:
        adata = copy_of(adata, "train_classifier")
    if not (_is_int(n_models) and n_models >= 1):
        raise ValueError(f"n_models must be a positive integer, got {n_models!r}")
    if not callable(model) and model not in ("mlp", "cnn"):
        raise ValueError(f"model={model!r} is not valid; choose 'mlp', 'cnn' or pass a callable factory(n_features, n_classes)")
    if split not in ("per_model", "shared"):
        raise ValueError(f"split={split!r} is not valid; choose 'per_model' or 'shared'")
    if not isinstance(vectorize, bool | np.bool_):
        raise TypeError(f"vectorize must be True or False, got {vectorize!r}")
    if cv is not None and (not _is_int(cv) or cv < 2):
        raise ValueError(f"cv must be None or an integer >= 2, got {cv!r}")
    check_in(backend, ("auto", "memory", "dask"), "backend")
    random_state = check_random_state(random_state)
    if min_delta_chance is None:  # extend keeps the stored rule (0 for ensembles trained before it existed)
        stored = adata.uns.get(key_added) if extend else None
        min_delta_chance = (stored.get("params", {}).get("min_delta_chance", 0.0) if isinstance(stored, Mapping)
                            else MIN_DELTA_CHANCE)
    _check_architecture(model, hidden, dropout, model_kwargs)
    _check_training(max_epochs=max_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                    validation=validation, patience=patience, min_delta=min_delta,
                    min_delta_chance=min_delta_chance)
    check_writable(adata, key_added, tool="train_classifier", overwrite=overwrite)
    if not (epoch_size is None or (isinstance(epoch_size, str) and epoch_size == "auto")
            or (_is_int(epoch_size) and epoch_size >= 2)):
        raise ValueError(f"epoch_size={epoch_size!r} is not valid: give 'auto', None (whole passes) or an integer >= 2")
    config = TrainConfig(max_epochs=max_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         balance=balance, patience=patience, min_delta=float(min_delta) + 0.0,  # -0.0 -> 0.0
                         min_delta_chance=float(min_delta_chance) + 0.0,
                         epoch_size=AUTO_EPOCH_SIZE if epoch_size == "auto" else None if epoch_size is None else int(epoch_size))
    dev = resolve_device(device)
    from ..explain._distributed import refuse_small_workers

    refuse_small_workers("training", adata)  # before anything of Dask data is read (a lazy obs too) on the workers
    inputs = extract(adata, layer=layer, use_raw=use_raw, mods=mods)
    on_workers = _use_workers(backend, model, inputs.matrix)  # before any pass over the data

    # labels
    labels = check_groupby(adata.obs if is_mudata(adata) else inputs.obs, groupby,
                           where="mdata.obs" if is_mudata(adata) else "adata.obs")
    if is_mudata(adata):
        labels = labels.iloc[inputs.rows]
    labelled = np.flatnonzero(labels.notna().to_numpy())
    if labelled.size == 0:
        raise ValueError(f"obs[{groupby!r}] has no non-missing labels")
    if labelled.size < labels.size:
        logger.info("%d cells with missing %r are not used for training", labels.size - labelled.size, groupby)
    labels = labels.cat.remove_unused_categories()
    classes = labels.cat.categories.astype(str).to_numpy()
    y_all = labels.cat.codes.to_numpy().astype(np.int64)
    counts = pd.Series(np.bincount(y_all[labelled], minlength=len(classes)), index=classes)
    as_text = [c for c in classes if c.strip().lower() in MISSING_AS_TEXT]
    if as_text:
        warn(f"obs[{groupby!r}] has the class(es) {as_text}, which look like missing labels written as text (e.g. by "
             ".astype(str) of a column with NaN): they are trained as classes of their own. If those cells are "
             f"unlabelled, make them missing first: adata.obs[{groupby!r}] = adata.obs[{groupby!r}]"
             f".astype('category').cat.remove_categories({as_text})")
    if len(classes) < 2:
        raise ValueError(f"obs[{groupby!r}] has a single class ({classes[0]!r}); a classifier needs at least two")
    min_cells = max(2 if validation > 0 else 1, cv or 1)
    small = counts[counts < min_cells]
    if len(small):
        raise ValueError(
            f"classes with fewer than {min_cells} cells cannot be split for training/validation"
            f"{' and ' + str(cv) + '-fold CV' if cv else ''}: "
            + ", ".join(f"{k!r} ({v})" for k, v in small.items())
            + f". Remove them (e.g. adata = adata[~adata.obs[{groupby!r}].isin({[str(k) for k in small.index]!r})]"
            + (".to_memory()" if getattr(adata, "isbacked", False) else ".copy()") + ") or merge them"
        )

    # features
    if (use_raw and isinstance(genes, str) and genes not in inputs.var.columns and not is_mudata(adata)
            and genes in adata.var.columns and adata.var[genes].dtype == bool):  # (as highly_variable usually is)
        raise KeyError(
            f"use_raw=True selects among the genes of adata.raw, and raw.var has no column {genes!r} (adata.var has "
            f"it): pass the genes by name, genes=adata.var_names[adata.var[{genes!r}]], or copy the column to raw: "
            f"adata.raw.var[{genes!r}] = adata.raw.var_names.isin(adata.var_names[adata.var[{genes!r}]])"
        )
    cols = resolve_genes(inputs.var, inputs.var_names, genes, where="raw.var" if use_raw else "var")
    features = inputs.var_names[cols]
    raw_hint = ""
    if layer is None and not use_raw and not is_mudata(adata) and getattr(adata, "raw", None) is not None:
        raw_hint = ("; adata.raw is set: if it holds the log-normalised values (as in scanpy's pbmc68k_reduced, whose X "
                    "is scaled), train on it with use_raw=True")
    values = check_values(inputs.matrix.select(cols), hint=raw_hint)
    scale = values.scale
    if scale in ("counts", "linear"):
        warn(scale_hint(scale, values, inputs.matrix.source) + "; the scale is recorded in the ensemble's "
             "preprocessing['scale'] and xl.tl.predict flags data on another scale", category=DataScaleWarning)
    elif shallow_counts(values):
        warn(scale_hint("shallow", values, inputs.matrix.source), category=DataScaleWarning)

    n_classes = len(classes)
    y = y_all[labelled]
    fetch = make_fetch(inputs.matrix, labelled, cols, dev, seed=_member_seed(random_state, 3)[0])
    if fetch.streamed:
        logger.info("streaming %s by blocks: %d chunks of %d rows, shuffled in buffers of %d chunks",
                    inputs.matrix.source, fetch.n_chunks, fetch.chunk_rows, fetch.buffer_chunks)
    model_name = "custom" if callable(model) else model
    logger.info("training %d %s models on %d labelled cells × %d features (%d classes; each member holds out %s of "
                "every class for validation) on %s", n_models, model_name.upper(), labelled.size, cols.size, n_classes,
                f"{validation:.0%}" if validation else "none", dev)

    # architecture
    if callable(model):
        spec = {"type": "custom", "factory": register_factory(model),  # known to predict/attribute in this session
                "n_features": int(cols.size), "n_classes": n_classes}
    else:
        options = {"dropout": dropout, **(model_kwargs or {})}
        if model == "mlp":
            options["hidden"] = [int(hidden)] if np.ndim(hidden) == 0 else [int(h) for h in hidden]
        spec = default_spec(model, cols.size, n_classes, **options)
    orders = None
    if model == "cnn":
        positions = gene_annotation
        if positions is None and {"start"} <= set(inputs.var.columns):
            positions = inputs.var.iloc[cols]
        _, order_rng = _member_seed(random_state, 1)
        orders = resolve_gene_order(
            gene_order, var_names=features, n_models=n_models, rng=order_rng,
            stats=lambda: _moments(fetch, y.size), sample=lambda: _sample(fetch, y.size, order_rng),
            positions=positions,
        )

    def splits(yy: np.ndarray, salt: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if split == "shared":
            return [stratified_split(yy, validation, _member_seed(random_state, salt)[1])] * n_models
        return [stratified_split(yy, validation, _member_seed(random_state, salt, i)[1]) for i in range(n_models)]

    member_splits = splits(y, 0)
    settings = {
        "groupby": groupby, "model": model_name, "validation": float(validation), "random_state": int(random_state),
        **config.asdict(), "epoch_size": int(config.epoch_size or 0),  # 0: whole passes
        "gene_order": gene_order if isinstance(gene_order, str) else "explicit" if model == "cnn" else "none",
        "split": split,
    }
    kept: list[torch.nn.Module] = []
    kept_history: list[pd.DataFrame] = []
    resumed = False  # extend=True on an interrupted ensemble: its unfinished members are trained again
    if extend:
        if cv:
            raise ValueError("extend=True cannot be combined with cv; estimate accuracy with cv on a full training run")
        kept, kept_history, resumed = _stored_members(adata, key_added, n_models=n_models, settings=settings, spec=spec,
                                                      classes=classes, features=features, orders=orders,
                                                      factory=model if callable(model) else None)
        kept = [m.to(dev).eval() for m in kept]

    factory = model if callable(model) else None

    source = (inputs.matrix, labelled, cols, _member_seed(random_state, 3)[0]) if on_workers else None

    user_stop = []  # a Ctrl-C stopped the training (also one that came just after every member had finished)

    def train_ensemble(parts: list, desc: str, fold: int = 0, start: int = 0) -> tuple[list, list, list[bool]]:
        """Members ``start``.. with their histories and whether each finished its training.

        On Ctrl-C the members trained so far come back, those in training with their best weights
        so far (``finished`` False); members not reached are missing.
        """
        indices = list(range(start, n_models))
        trained, done = None, None
        try:
            if on_workers and indices:
                trained = _fit_on_workers(spec, indices, parts, source=source, y=y, n_classes=n_classes, config=config,
                                          random_state=random_state, fold=fold, client_device=dev,
                                          per_task=None if vectorize else 1, desc=desc)
            elif vectorize and model == "mlp" and dev.type in ("cpu", "cuda") and indices:
                # all members at once: each built from its own seed as below, its dropout generator in the state
                # the global one would be in after that initialisation
                members, seeds = _init_members(spec, random_state, fold, indices, dev)
                if all(stackable(m) for m in members):
                    trained = _fit_stacked(members, seeds, fetch, y, [parts[i] for i in indices], n_classes=n_classes,
                                           config=config, random_state=random_state, fold=fold, indices=indices,
                                           device=dev, desc=f"{desc} (all at once)")
        except TrainingInterrupted as stop:
            trained, done = stop.results, stop.finished
            user_stop.append(True)
        if trained is not None:
            done = [True] * len(trained) if done is None else list(done)
            for i, (_, hist) in zip(indices, trained, strict=False):  # (workers: the groups that finished)
                hist.insert(0, "model", f"model_{i}")
            return [m for m, _ in trained], [h for _, h in trained], done
        out = []  # (module, history, finished): one append per member, so an interrupt never splits one
        try:
            for i in progress(indices, desc=desc, leave=True):
                tr, va = parts[i]
                seed, rng = _member_seed(random_state, 2 + fold, i)
                try:
                    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                        torch.manual_seed(seed)
                        m = build_module(spec, order=None if orders is None else orders[i], factory=factory)
                        m, hist = fit_member(m, fetch, y, tr, va, n_classes=n_classes, config=config, rng=rng,
                                             device=dev, desc=f"model {i + 1}/{n_models}")
                    d, stopped = True, False
                except TrainingInterrupted as stop:  # cut short: its best weights so far (or finished just before)
                    (m, hist), d, stopped = stop.results[0], stop.finished[0], True
                hist.insert(0, "model", f"model_{i}")
                out.append((m, hist, d))
                if stopped:
                    user_stop.append(True)
                    break
        except KeyboardInterrupt:  # between members or before this one's first epoch: keep those trained so far
            if not out:
                raise
            user_stop.append(True)
        return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]

    try:
        modules, histories, finished = train_ensemble(
            member_splits, f"training {n_models - len(kept)} {model_name.upper()}", start=len(kept))
    except KeyboardInterrupt:  # before any member finished an epoch (or any task on the workers): nothing to keep
        raise KeyboardInterrupt(
            "train_classifier was interrupted before any member finished an epoch"
            + (" or any task on the Dask workers finished (a task returns its members when all of them have finished; "
               "with vectorize=False each member is a task of its own)" if on_workers else "")
            + ": nothing was stored" + (f" (uns[{key_added!r}] is unchanged)" if key_added in adata.uns else "")) from None
    # from here to the write a Ctrl-C is held (the members must not be lost in the bookkeeping), except in
    # the long steps (evaluation, cross-validation), which let it through and handle it
    guard = deferred_interrupt(f"the ensemble in uns[{key_added!r}]", reraise=False)
    with guard:
        interrupted = len(modules) < n_models - len(kept) or not all(finished)
        stopped = bool(user_stop)  # also a Ctrl-C that came just after every member had finished (nothing is missing)
        finished = [True] * len(kept) + finished  # per member: its training ended (early stopping or max_epochs)
        modules, histories = kept + modules, kept_history + histories
        member_splits = member_splits[: len(modules)]
        if orders is not None:
            orders = orders[: len(modules)]
        history = pd.concat(histories, ignore_index=True)

        # evaluation: each member on its own validation cells; the ensemble on every held-out cell,
        # averaging the members that did not train on it (out-of-bag when splits differ per member)
        rows, recalls = {}, {}
        confusion = None
        held_out = np.unique(np.concatenate([va for _, va in member_splits]))
        mask = np.stack([np.isin(held_out, va) for _, va in member_splits])  # members × held-out cells
        evaluated = True  # False: a Ctrl-C during the evaluation (the members are kept, without metrics)
        if held_out.size:
            logger.info("evaluating the members on %d held-out cells", held_out.size)
            try:
                with guard.released():
                    proba = _proba(modules, fetch, held_out, n_classes)
            except KeyboardInterrupt:
                evaluated = False
        if held_out.size and evaluated:
            for i, p in enumerate(proba):
                met = classification_metrics(y[held_out[mask[i]]], p[mask[i]].argmax(1), n_classes)
                h = histories[i]
                best = h.loc[h["best"], "epoch"]
                rows[f"model_{i}"] = _row(met, "validation", n_epochs=len(h), best_epoch=int(best.iloc[0]) if len(best) else len(h))
                recalls[f"model_{i}"] = met["recall"]
            oob = (proba * mask[..., None]).sum(0) / mask.sum(0)[:, None]
            met = classification_metrics(y[held_out], oob.argmax(1), n_classes)
            rows["ensemble"] = _row(met, "validation" if split == "shared" else "out-of-bag validation",
                                    n_members=float(mask.sum(0).mean()))
            recalls["ensemble"] = met["recall"]
            confusion = met["confusion"]

        cv_stopped = None  # the fold during which a Ctrl-C stopped the cross-validation
        if cv and not interrupted and not stopped and evaluated:
            _, cv_rng = _member_seed(random_state, 1000)
            oof = np.zeros((y.size, n_classes), dtype=np.float32)
            cv_stopped = 1  # (a Ctrl-C held before the folds stops them at the first)
            try:
                with guard.released():
                    for k, test in enumerate(stratified_kfold(y, int(cv), cv_rng)):
                        cv_stopped = k + 1
                        rest = np.setdiff1d(np.arange(y.size), test)
                        parts = [(rest[tr], rest[va]) for tr, va in splits(y[rest], 2000 + k)]  # own stream (1000 drew the folds)
                        mods_k, _, done_k = train_ensemble(parts, f"CV fold {k + 1}/{cv}", fold=100 + k)
                        if user_stop or len(mods_k) < n_models or not all(done_k):  # a fold's ensemble cut short estimates nothing
                            raise KeyboardInterrupt
                        oof[test] = _proba(mods_k, fetch, test, n_classes).mean(0)
                        rows[f"cv_fold_{k + 1}"] = _row(classification_metrics(y[test], oof[test].argmax(1), n_classes),
                                                        "held-out fold")
                cv_stopped = None
            except KeyboardInterrupt:  # the ensemble itself is trained: keep it, without the cross-validation
                rows = {name: row for name, row in rows.items() if not name.startswith("cv_fold_")}
            if cv_stopped is None:
                met = classification_metrics(y, oof.argmax(1), n_classes)
                rows["cv"] = _row(met, "out-of-fold")
                recalls["cv"] = met["recall"]

        fetch.release()  # the held validation rows: evaluated
        metrics = pd.DataFrame.from_dict(rows, orient="index") if rows else None
        recall = pd.DataFrame(recalls, index=pd.Index(classes, name="class")) if recalls else None
        params = {
            **settings, "n_models": len(modules), "n_models_requested": int(n_models),
            "cv": int(cv) if cv and not interrupted and not stopped and evaluated and cv_stopped is None else 0,
            # interrupted: by a Ctrl-C, in training, evaluation or cross-validation
            "interrupted": bool(interrupted or not evaluated or cv_stopped or (stopped and cv)),
            "stopped": bool(stopped or not evaluated or cv_stopped),  # a Ctrl-C stopped the call (maybe all finished)
            "cv_interrupted_fold": int(cv_stopped or 0),  # the fold a Ctrl-C stopped (0: none)
            "finished": [bool(f) for f in finished],
            "device": str(dev),
            "vectorize": bool(vectorize), "streamed": bool(fetch.streamed), "backend": "dask" if on_workers else "memory",
            "n_train": int(member_splits[0][0].size), "n_validation": int(member_splits[0][1].size),
            "class_counts": [int(v) for v in counts.to_numpy()],
            "training_seconds": round(time.perf_counter() - t0, 2),
        }
        prep = inputs.preprocessing | {"genes": genes if isinstance(genes, str) else "all" if genes is None else "list",
                                       "scale": scale, "value_range": [values.minimum, values.maximum],
                                       "integer_values": values.integer}
        ens = Ensemble([m.cpu() for m in modules], classes=classes, var_names=features, spec=spec, orders=orders,
                       params=params, preprocessing=prep, history=history, metrics=metrics, recall=recall,
                       confusion=confusion,
                       extra={"validation_obs": np.asarray(inputs.obs.index[labelled[held_out]]).astype(object),
                              "validation_members": mask})
        with deferred_interrupt(f"the ensemble in uns[{key_added!r}]"):  # a Ctrl-C here waits for the write
            if not is_mudata(adata):
                view_to_actual(adata)
            # (extend keeps the members the stored results were computed with, unless it trained unfinished ones again)
            replaced = key_added in adata.uns and (not extend or resumed)
            adata.uns[key_added] = ens.to_dict()  # the one write
            if replaced:
                _drop_stale_results(adata, key_added)
    if guard.received:  # held while the results were put together or stored
        raise KeyboardInterrupt(f"interrupted while storing the ensemble in uns[{key_added!r}]: it was stored first")
    if interrupted or stopped or cv_stopped or not evaluated:
        warn(_interrupted_message(key_added, n_models=n_models, finished=finished, model=model_name, cv=cv,
                                  cv_fold=cv_stopped, evaluated=evaluated, validated=validation > 0))
    summary = ""
    if metrics is not None and "ensemble" in metrics.index:
        summary = f"; validation accuracy {metrics.loc['ensemble', 'accuracy']:.3f}, balanced {metrics.loc['ensemble', 'balanced_accuracy']:.3f}"
    logger.info("finished training (%.1fs): added uns[%r] (%r)%s", time.perf_counter() - t0, key_added, ens, summary)
    return adata if copy else None


#: Labels that are missing values written as text (``str(np.nan)``, ``str(None)``, …), compared lower-cased.
MISSING_AS_TEXT = frozenset({"nan", "none", "<na>", "null", ""})


def leading_finished(finished: Sequence[bool]) -> int:
    """How many members, from the first, finished their training (``params["finished"]``): what ``extend`` keeps."""
    flags = [bool(f) for f in finished]
    return flags.index(False) if False in flags else len(flags)


def _interrupted_message(key: str, *, n_models: int, finished: list[bool], model: str, cv: int | None,
                         cv_fold: int | None, evaluated: bool, validated: bool = True) -> str:
    """What a Ctrl-C left in ``uns[key]`` (``finished``: per member stored), and what to do next."""
    n_kept, n_done, n_finished = len(finished), sum(finished), leading_finished(finished)
    redo_cv = f"; run the call again with cv={cv} to estimate its accuracy (this trains the ensemble again too)" if cv else ""
    if cv_fold:
        return (f"train_classifier was interrupted during the cross-validation (fold {cv_fold} of {cv}): the ensemble "
                f"in uns[{key!r}] is fully trained and stored, without the cross-validated metrics (params['cv'] is 0)"
                + redo_cv)
    if evaluated and n_done == n_models:  # the Ctrl-C came just after the training had ended
        return (f"train_classifier was interrupted just after its members finished training: the ensemble in "
                f"uns[{key!r}] is fully trained and stored"
                + (" (with its validation metrics), without the cross-validation (params['cv'] is 0)" + redo_cv if cv else ""))
    if not evaluated and n_done == n_models:
        return (f"train_classifier was interrupted while evaluating the trained members: the ensemble in uns[{key!r}] "
                "is fully trained and stored, without its validation metrics" + redo_cv)
    cut, missing = n_kept - n_done, n_models - n_kept
    parts = [f"{n_done} finished" if n_done else "",
             f"{cut} cut short with {'its' if cut == 1 else 'their'} best weights so far, those of the epoch of lowest "
             f"{'validation' if validated else 'training'} loss" if cut else "", f"{missing} not trained" if missing else ""]
    again = ("trains them all again from the start" if not n_finished else
             f"keeps the first {n_finished} (those before any member cut short or missing) and trains the others "
             "from the start")
    return (f"train_classifier was interrupted: uns[{key!r}] holds {n_kept} of the {n_models} {model.upper()} members "
            f"({'; '.join(p for p in parts if p)}), and params['interrupted'] is True"
            + ("" if evaluated else ", without validation metrics (interrupted again while evaluating)")
            + ". It predicts and explains"
            + (", but members cut short are under-trained" if cut else "")
            + f". The same call with extend=True{' and without cv' if cv else ''} {again}, which gives the same "
            "ensemble as an uninterrupted run (bit for bit on the CPU)")


def _drop_stale_results(adata: Any, key: str) -> None:
    """After the ensemble in ``uns[key]`` was replaced: its predictions describe the previous one.

    They are removed (``xl.get.proba`` would otherwise hand them out under the new ensemble's
    classes) and the rankings computed with the previous ensemble are named in a warning (they
    are kept: they may be worth keeping, and cost more to recompute).
    """
    dropped = []
    for where, name in [("obs", Key.obs.prediction(key)), ("obs", Key.obs.confidence(key)),
                        ("obs", Key.obs.uncertainty(key)), ("obsm", Key.obsm.proba(key))]:
        if name in getattr(adata, where):
            frame = getattr(adata, where)
            if where == "obs" and not isinstance(frame, pd.DataFrame) and hasattr(frame, "ds"):
                del frame.ds[name]  # anndata's lazy obs (read_lazy: a Dataset2D over an xarray Dataset)
            else:
                del frame[name]
            dropped.append(f"{where}[{name!r}]")
    rankings = [k for k, v in adata.uns.items() if k != key and isinstance(v, Mapping) and isinstance(v.get("params"), Mapping)
                and v["params"].get(TOOL_FIELD) == "attribute" and str(v["params"].get("ensemble_key")) == key]
    said = []
    if dropped:
        said.append(f"removed the previous ensemble's predictions ({', '.join(dropped)}; run xl.tl.predict again)")
    if rankings:
        said.append(f"uns{rankings[:5]} {'was' if len(rankings) == 1 else 'were'} computed with the previous ensemble "
                    "(rerun xl.tl.attribute to explain this one)")
    if said:
        warn(f"train_classifier replaced the ensemble in uns[{key!r}]: " + "; ".join(said), stacklevel=4)


def _init_members(spec: dict, random_state: int, fold: int, indices: Sequence[int],
                  device: torch.device) -> tuple[list, list[tuple[int, torch.Tensor]]]:
    """Freshly initialised members ``indices`` and their dropout seeds, as one-after-another training builds them.

    Returns the modules and, per member, ``(seed, state)``: its seed and the state of the global CPU
    generator right after its initialisation (where :func:`~scxl.train.fit_member`'s dropout
    would start drawing).
    """
    members, seeds = [], []
    for i in indices:
        seed, _ = _member_seed(random_state, 2 + fold, i)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            members.append(build_module(spec))
            seeds.append((seed, torch.random.get_rng_state()))
    return members, seeds


def _fit_stacked(members: list, seeds: list, fetch, y: np.ndarray, parts: list, *, n_classes: int, config: TrainConfig,
                 random_state: int, fold: int, indices: Sequence[int], device: torch.device, desc: str,
                 progress: bool = True) -> list:
    """:func:`~scxl.train.fit_members` on members from :func:`_init_members` (their generators and samplers rebuilt)."""
    gens = []
    for seed, state in seeds:
        gen = torch.Generator(device=device)
        if device.type == "cpu":
            gen.set_state(state)
        else:
            gen.manual_seed(seed)
        gens.append(gen)
    rngs = [_member_seed(random_state, 2 + fold, i)[1] for i in indices]
    return fit_members(members, fetch, y, parts, n_classes=n_classes, config=config, rngs=rngs, generators=gens,
                       device=device, desc=desc, progress=progress)


def _use_workers(backend: str, model: Any, matrix: Any) -> bool:
    """Whether the members train on Dask workers (``backend``; ``"auto"``: Dask data and an active client)."""
    from ..explain import active_client

    if backend == "memory":
        return False
    parts = getattr(matrix, "parts", [matrix])  # the modalities of a MuData
    if backend == "auto":  # (looks for a client, importing distributed, only for Dask data)
        return model == "mlp" and any(_is_dask(p.data) for p in parts) and active_client() is not None
    client = active_client()
    if model != "mlp":
        raise ValueError(f"backend='dask' trains MLP members only (got model={'custom' if callable(model) else model!r}); "
                         "use backend='memory' (CNN and custom members train one after another in this process)")
    if client is None:
        raise ValueError("backend='dask' trains the members on the workers of a dask.distributed client, and none is "
                         "active: start one (client = distributed.Client(...); a client made with set_as_default=False "
                         "is not used) or use backend='memory'")
    backed = [p.source for p in parts if is_out_of_core(p.data) and not _is_dask(p.data)]
    if backed:
        raise ValueError(f"{backed[0]} is a backed file, which cannot be sent to Dask workers; open it lazily instead "
                         "(anndata.experimental.read_lazy, or read_elem_lazy for X), so that each worker reads it itself")
    return True


def _fit_on_workers(spec: dict, indices: list[int], parts: list, *, source: tuple, y: np.ndarray, n_classes: int,
                    config: TrainConfig, random_state: int, fold: int, client_device: torch.device,
                    per_task: int | None, desc: str) -> list:
    """Train members ``indices`` on the active client's workers: groups of members, one task each, in index order."""
    from ..explain import active_client
    from ..explain._distributed import MIN_TASK_WORKSPACE, check_worker_room, wait_for

    client = active_client()
    if not client.nthreads():  # a cluster still starting its workers (e.g. batch jobs): the split needs them
        logger.info("waiting for a Dask worker to start")
        client.wait_for_workers(1)
    threads = sum(client.nthreads().values())
    n_tasks = len(indices) if per_task == 1 else max(1, min(len(indices), threads))
    groups = [g.tolist() for g in np.array_split(np.asarray(indices), n_tasks)]
    inits = [_init_members(spec, random_state, fold, g, client_device) for g in groups]
    # a task holds its read buffer, its members (as sent, stacked, with gradients, Adam's two moments and the best
    # weights: about six copies) and, if they fit, the members' validation rows; a worker that cannot hold the first
    # two would pause, its task waiting for ever
    largest = max(len(g) for g in groups)
    state = 6 * 4 * sum(int(p.numel()) for p in inits[0][0][0].parameters()) * largest
    room = check_worker_room(client, BUFFER_BYTES + state + MIN_TASK_WORKSPACE, "training",
                             ", or train one member per task (vectorize=False)" if largest > 1 else "")
    hold = None if room is None else int(max(0, min(HOLD_BYTES, room - BUFFER_BYTES - state - MIN_TASK_WORKSPACE)))
    shared = client.scatter([source, y], broadcast=False, hash=False)
    logger.info("%s: %d member(s) in %d task(s) on %d Dask worker thread(s), on %s (tasks 'train-members' in the "
                "dashboard)", desc, len(indices), len(groups), threads, client_device)
    futures, run = [], uuid.uuid4().hex[:12]
    for g, (members, seeds) in zip(groups, inits, strict=True):
        futures.append(client.submit(_train_task, members, seeds, *shared, [parts[i] for i in g], n_classes=n_classes,
                                     config=config, random_state=random_state, fold=fold, indices=g, hold_bytes=hold,
                                     device=str(client_device), key=f"train-members-{run}-{g[0]}", pure=False))  # dashboard: "train-members"
    try:
        wait_for(futures)
        results = client.gather(futures)
    except KeyboardInterrupt:  # keep the groups that finished, in index order up to the first that had not
        results = []
        for future in futures:
            if future.status != "finished":
                break
            results.append(future.result())
        client.cancel(futures)
        if not results:
            raise
        trained = [(m.to(client_device).eval(), h) for result in results for m, h in result]
        raise TrainingInterrupted(trained, [True] * len(trained)) from None
    return [(m.to(client_device).eval(), h) for result in results for m, h in result]


def _train_task(members: list, seeds: list, source: tuple, y: np.ndarray, parts: list, *, n_classes: int,
                config: TrainConfig, random_state: int, fold: int, indices: list[int], device: Any,
                hold_bytes: int | None = None) -> list:
    """One Dask task: read the rows on this worker and train ``members`` stacked; the modules come back on the CPU.

    ``device`` is the one chosen on the client (the workers' own ``xl.settings`` are not consulted);
    ``hold_bytes`` caps the validation rows kept in memory (what the worker's memory allows).
    """
    matrix, rows, cols, seed = source
    dev = torch.device(device)
    fetch = make_fetch(matrix, rows, cols, dev, seed=seed, hold_bytes=hold_bytes)
    trained = _fit_stacked(members, seeds, fetch, y, parts, n_classes=n_classes, config=config, random_state=random_state,
                           fold=fold, indices=indices, device=dev, desc="members on a worker", progress=False)
    return [(m.cpu(), h) for m, h in trained]


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_architecture(model: Any, hidden: Any, dropout: Any, model_kwargs: Any) -> None:
    """Raise on hidden sizes and dropout that would build a useless or broken network."""
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict of architecture options, got {type(model_kwargs).__name__}")
    kw = model_kwargs or {}
    if model == "mlp":
        sizes = [hidden] if np.ndim(hidden) == 0 else list(hidden) if isinstance(hidden, list | tuple | np.ndarray) else None
        if isinstance(hidden, str) or sizes is None or not sizes or not all(_is_int(h) and h >= 1 for h in sizes):
            raise ValueError(
                f"hidden={hidden!r} is not valid: give the hidden layer size(s) as positive integers, e.g. hidden=128 "
                "or hidden=(256, 64) (a layer of 0 units cannot carry any signal)"
            )
    p = kw.get("dropout", dropout)
    if callable(model):
        return
    if isinstance(p, bool) or not isinstance(p, int | float | np.integer | np.floating) or not 0 <= float(p) < 1:
        raise ValueError(f"dropout={p!r} is not valid: it is a probability in [0, 1), e.g. dropout=0.25 (0 disables it)")
    if model == "cnn":
        ch, ks = kw.get("channels", (64, 128, 256)), kw.get("kernels", (5, 5, 3))
        for name, v in (("channels", ch), ("kernels", ks)):
            if isinstance(v, str) or not isinstance(v, list | tuple | np.ndarray) or not len(v) or not all(_is_int(x) and x >= 1 for x in v):
                raise ValueError(f"model_kwargs[{name!r}]={v!r} is not valid: give a list of positive integers, e.g. (64, 128, 256)")
        if len(ch) != len(ks):
            raise ValueError(f"model_kwargs channels {tuple(ch)} and kernels {tuple(ks)} must have the same length (one kernel per convolution)")


def _check_training(**values: Any) -> None:
    """Raise on training settings outside their range (each message gives a valid example)."""
    for name in ("max_epochs", "batch_size", "patience"):
        v = values[name]
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name, example in (("lr", "1e-3"), ("weight_decay", "1e-4")):
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not np.isfinite(v) or v < 0 or (name == "lr" and v == 0):
            raise ValueError(f"{name} must be a {'positive' if name == 'lr' else 'non-negative'} number, e.g. {name}={example}; got {v!r}")
    v = values["min_delta"]
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not 0 <= float(v) < 1:
        raise ValueError(f"min_delta must be a fraction in [0, 1), e.g. min_delta=0.01 (an epoch must lower the validation loss by 1 %); got {v!r}")
    if float(v) > 0.1:
        warn(f"min_delta={v} counts an epoch as an improvement only if it lowers the validation loss by more than "
             f"{float(v):.0%}: training will usually stop {values['patience']} epochs after one of the first few "
             "(the lowest-loss weights seen so far are kept); the measured values are 0 and 0.01 "
             "(benchmarks/early_stopping.py)", stacklevel=4)
    v = values["min_delta_chance"]
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not 0 <= float(v) < 1:
        raise ValueError("min_delta_chance must be a fraction in [0, 1) of the chance loss ln K, e.g. min_delta_chance=0.003 "
                         f"(an epoch must lower the validation loss by 0.3 % of ln K); got {v!r}")
    if float(v) > 0.05:
        warn(f"min_delta_chance={v} counts an epoch as an improvement only if it lowers the validation loss by more than "
             f"{float(v):.0%} of the chance loss ln K: training will usually stop {values['patience']} epochs after the "
             "loss stops falling steeply, before it has converged (the lowest-loss weights seen so far are kept); "
             "the measured values are 0 to 0.01 (benchmarks/early_stopping.py)", stacklevel=4)
    v = values["validation"]
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not 0 <= float(v) < 1:
        raise ValueError(f"validation must be a fraction in [0, 1), e.g. validation=0.1 (0 disables early stopping on held-out cells); got {v!r}")


def _as_argument(name: str, stored: Any) -> str | None:
    """The ``train_classifier`` argument that reproduces a stored setting (``None``: no single argument does)."""
    if name == "epoch_size":
        return f"epoch_size={None if stored == 0 else stored!r}"  # 0 is how whole passes are stored
    if name == "gene_order" and stored in ("explicit", "none"):
        return None  # an explicit order (the same list) or a model without one
    if name == "model" and stored == "custom":
        return None
    return f"{name}={stored!r}"


def _stored_members(adata, key: str, *, n_models: int, settings: dict, spec: dict, classes, features, orders,
                    factory) -> tuple[list, list, bool]:
    """The members (and histories) of the ensemble in ``uns[key]`` that ``extend=True`` keeps, and whether it drops some.

    Of an interrupted ensemble, the members before the first one whose training had not finished
    (``params["finished"]``); the others are trained again.
    """
    from ..get import ensemble as get_ensemble

    if key not in adata.uns:
        raise ValueError(f"extend=True needs an ensemble in uns[{key!r}]; train one first (extend=False)")
    ens = get_ensemble(adata, key, factory=factory)
    p = ens.params
    # an interrupted ensemble: the members before the first one cut short are kept, the others trained again
    keep = leading_finished(ens.finished)
    if keep >= n_models:
        raise ValueError(f"uns[{key!r}] already has {keep} member{'s' if keep != 1 else ''}"
                         + (f" that finished training (of {ens.n_models}: it was interrupted)" if keep < ens.n_models else "")
                         + f"; ask for n_models > {keep}")
    unrecorded = {"split": "shared", "epoch_size": 0, "min_delta": 0.0, "min_delta_chance": 0.0}  # what ensembles stored before these keys existed used
    changed = [(k, v) for k, v in settings.items() if p.get(k, unrecorded.get(k)) != v]
    diff = [f"{k}: stored {p[k]!r}, now {v!r}" if k in p else f"{k}: not recorded (so {unrecorded.get(k)!r}), now {v!r}"
            for k, v in changed]
    if ens.spec != spec:
        diff.append(f"architecture: stored {ens.spec}, now {spec}")
    if list(ens.classes) != list(classes):
        diff.append("classes differ")
    if list(ens.var_names) != list(features):
        diff.append("features differ")
    if orders is not None and not all(np.array_equal(a, b) for a, b in zip(ens.orders, orders, strict=False)):
        diff.append("CNN gene orders differ")
    if diff:
        args = [_as_argument(k, p.get(k, unrecorded.get(k))) for k, _ in changed]
        only_settings = len(args) == len(diff)  # (the architecture, classes, features and gene orders need more than an argument)
        hint = f" (pass {', '.join(args)} to extend it)" if only_settings and args and None not in args else ""
        raise ValueError(f"extend=True needs the settings of the ensemble in uns[{key!r}]; they differ: " + "; ".join(diff) + hint)
    history = ens.history if ens.history is not None else pd.DataFrame({"model": []})
    if keep < ens.n_models:
        logger.info("uns[%r] was interrupted: keeping its %d finished member(s), training members %d-%d", key, keep, keep,
                    n_models - 1)
    return (list(ens.modules)[:keep], [history[history["model"] == f"model_{i}"].reset_index(drop=True) for i in range(keep)],
            keep < ens.n_models)


def _row(met: dict, evaluated_on: str, **extra: Any) -> dict[str, Any]:
    return {"accuracy": met["accuracy"], "balanced_accuracy": met["balanced_accuracy"], "macro_f1": met["macro_f1"],
            "evaluated_on": evaluated_on, **extra}


@torch.no_grad()
def _proba(modules: list, fetch, idx: np.ndarray, n_classes: int, batch: int = 2048) -> np.ndarray:
    out = np.empty((len(modules), idx.size, n_classes), dtype=np.float32)
    for start in range(0, idx.size, batch):
        xb = fetch(idx[start : start + batch])
        for i, m in enumerate(modules):
            m.eval()
            out[i, start : start + xb.shape[0]] = torch.softmax(m(xb), 1).cpu().numpy()
    return out


def _moments(fetch, n: int, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    s = s2 = 0.0
    for start in range(0, n, chunk):
        b = fetch(np.arange(start, min(start + chunk, n))).double()
        s = s + b.sum(0)
        s2 = s2 + (b * b).sum(0)
    return (s / n).cpu().numpy(), (s2 / n).cpu().numpy()


def _sample(fetch, n: int, rng: np.random.Generator, max_cells: int = 5000) -> np.ndarray:
    idx = np.sort(rng.choice(n, size=min(n, max_cells), replace=False))
    return fetch(idx).cpu().numpy()
