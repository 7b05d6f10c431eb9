"""``xl.tl.predict``: apply a stored ensemble to the same or another AnnData."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_adata, doc_copy, doc_device, doc_key, doc_params
from .._inputs import FROM_TRAINING, aligned
from .._keys import SLASH, Key, storable
from .._logging import DataScaleWarning, logger, renamed_kwarg, warn
from .._validation import (
    ValueSummary,
    check_holds_results,
    check_key_added,
    check_values,
    copy_of,
    is_mudata,
    resolve_device,
    scale_hint,
    view_to_actual,
)
from ..get import ensemble as get_ensemble


def resolve_ensemble(adata: Any, ensemble_key: str, ensemble: Any, *, check_finished: bool = True):
    """The ensemble to use: ``ensemble`` (object or ``.npz`` path) if given, else ``uns[ensemble_key]``.

    ``check_finished``: warn if members were cut short by an interrupted training.
    """
    from pathlib import Path

    from ..models import Ensemble

    if ensemble is None:
        ens = get_ensemble(adata, ensemble_key)
    elif isinstance(ensemble, Ensemble):
        ens = ensemble
    elif isinstance(ensemble, str | Path):
        ens = Ensemble.load(ensemble)
    else:
        raise TypeError(f"ensemble must be an xl.models.Ensemble or a path to a saved one, got {type(ensemble).__name__}")
    if check_finished:  # warn → warn_if_cut_short → resolve_ensemble → the tool → renamed_kwarg → the user
        warn_if_cut_short(ens, f"uns[{ensemble_key!r}]" if ensemble is None else "the ensemble", stacklevel=6)
    return ens


def warn_if_cut_short(ens, where: str, *, members: Any = None, stacklevel: int = 4) -> None:
    """Warn that members of ``ens`` (those in ``members``, default all) were cut short by an interrupted training."""
    finished = ens.finished
    used = range(len(finished)) if members is None else members
    cut = [i for i in used if not finished[i]]
    if cut:
        warn(f"{where}: {len(cut)} of the {len(used)} members {'was' if len(cut) == 1 else 'were'} cut short by an "
             f"interrupted training, so {'it is' if len(cut) == 1 else 'they are'} under-trained and the results may "
             "differ from those of the finished "
             "ensemble; finish it with xl.tl.train_classifier(..., extend=True)", stacklevel=stacklevel)


def _check_scale(values: ValueSummary, ens, source: str, *, what: str = "Predictions") -> None:
    """Warn when the query's values are not on the scale the ensemble was trained on (``what``: of the tool's results)."""
    trained = ens.preprocessing.get("scale")
    scale = values.scale
    if trained is None or scale == trained:
        return
    rng = ens.preprocessing.get("value_range")
    seen = f" (values from {rng[0]:.4g} to {rng[1]:.4g})" if isinstance(rng, list | tuple) and len(rng) == 2 else ""
    fix = {
        "log": "normalise the query as the training data were, e.g. sc.pp.normalize_total(query, target_sum=1e4); "
               "sc.pp.log1p(query), or pass layer= naming its log-normalised layer",
        "counts": "give raw counts, as the training data were (e.g. layer='counts')",
    }.get(str(trained), "transform the query as the training data were, or pass layer= naming such a layer")
    warn(
        f"the query is on another scale than the ensemble's training data: {scale_hint(scale, values, source)}; "
        f"the ensemble was trained on {trained!r} data{seen}. {what} on another scale are unreliable: {fix}",
        stacklevel=5,  # warn → _check_scale → predict → renamed_kwarg → the user
        category=DataScaleWarning,
    )


@renamed_kwarg("key", "ensemble_key")
@doc_params(adata=doc_adata, key=doc_key, device=doc_device, copy=doc_copy)
def predict(
    adata: AnnData,
    *,
    ensemble_key: str = Key.uns.ensemble,
    ensemble: Any = None,
    layer: str | None = FROM_TRAINING,
    use_raw: bool | None = None,
    min_gene_fraction: float = 0.5,
    batch_size: int = 4096,
    device: str | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Predict classes with a stored ensemble, on the training data or on a new (query) dataset.

    Genes are matched to the ensemble's by name and reordered; genes the ensemble needs but the
    data lacks are filled with 0 and reported. Members are combined by averaging their class
    probabilities (soft voting).

    Parameters
    ----------
    {adata}
    {key}
    ensemble
        Use this ensemble instead of ``uns[ensemble_key]``: an :class:`~scxl.models.Ensemble` (e.g.
        ``xl.get.ensemble(atlas)``) or the path of a file written by ``Ensemble.save``. This is how
        a model trained on one dataset annotates another.
    layer
        Where to read expression. By default the source the ensemble was trained on (recorded in
        ``uns[ensemble_key]["preprocessing"]``); ``"X"`` forces ``adata.X``; any other value names a layer.
        The values must be on the same scale as the training data: a query whose detected scale
        (raw counts, log, linear, scaled) differs from the one recorded at training gives a warning.
    use_raw
        Read ``adata.raw``; by default as recorded at training.
    min_gene_fraction
        Raise an error if fewer than this fraction of the ensemble's genes are present.
    batch_size
        Rows per forward pass.
    {device}
    key_added
        Prefix of the keys written (default: ``ensemble_key``).
    {copy}

    Returns
    -------
    ``None``, or a copy if ``copy=True``. Writes

    - ``obs[f"{{key_added}}_prediction"]``: predicted class (categorical with the training classes);
    - ``obs[f"{{key_added}}_confidence"]``: ensemble probability of the predicted class;
    - ``obs[f"{{key_added}}_uncertainty"]``: fraction of members whose own prediction differs
      from the ensemble's (0 = unanimous);
    - ``obsm[f"{{key_added}}_proba"]``: DataFrame of class probabilities (columns = classes, in
      the order of the categories of the prediction; a ``/`` in a class name is stored as the
      look-alike ``"∕"`` (U+2215), since ``.zarr`` cannot hold ``/`` in keys and ``.h5ad`` warns
      that it will not: :func:`scxl.get.proba` returns the table with the real class names).

    For a MuData, observations missing from a modality the ensemble uses get no prediction (NaN).

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.pbmc68k()
    >>> xl.tl.train_classifier(adata, "cell_type", n_models=2, max_epochs=5)
    >>> xl.tl.predict(adata)
    >>> adata.obs[["xl_prediction", "xl_confidence", "xl_uncertainty"]].shape
    (700, 3)
    """
    if copy:
        adata = copy_of(adata, "predict")
    key_added = ensemble_key if key_added is None else key_added
    check_key_added(key_added)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (rows per forward pass), got {batch_size!r}")
    check_holds_results(adata, tool="predict")  # (predict writes obs columns: no check_writable)
    ens = resolve_ensemble(adata, ensemble_key, ensemble)
    ens.to(resolve_device(device))
    from ..explain._distributed import refuse_small_workers

    refuse_small_workers("prediction", adata)  # before anything of Dask data is read (a lazy obs too) on the workers
    X = aligned(adata, ens, layer=layer, use_raw=use_raw, min_gene_fraction=min_gene_fraction)
    inputs = X.inputs
    _check_scale(check_values(X, expect_nonnegative=False), ens, X.source)
    member = ens.predict_proba(X, return_members=True, batch_size=batch_size)
    proba = member.mean(0)
    call = proba.argmax(1)
    uncertainty = (member.argmax(2) != call[None, :]).mean(0).astype(np.float32)

    n = adata.n_obs
    full = np.full((n, len(ens.classes)), np.nan, dtype=np.float32)
    full[inputs.rows] = proba
    codes = np.full(n, -1, dtype=np.int64)
    codes[inputs.rows] = call
    conf = np.full(n, np.nan, dtype=np.float32)
    conf[inputs.rows] = proba.max(1)
    unc = np.full(n, np.nan, dtype=np.float32)
    unc[inputs.rows] = uncertainty

    if not is_mudata(adata):
        view_to_actual(adata)
    adata.obs[Key.obs.prediction(key_added)] = pd.Categorical.from_codes(codes, categories=list(ens.classes))
    adata.obs[Key.obs.confidence(key_added)] = conf
    adata.obs[Key.obs.uncertainty(key_added)] = unc
    columns = [storable(c) for c in ens.classes]  # anndata cannot write "/" in keys (.zarr refuses, .h5ad warns)
    adata.obsm[Key.obsm.proba(key_added)] = pd.DataFrame(full, index=adata.obs_names, columns=columns)
    if columns != list(ens.classes):
        logger.info("class names with '/' are stored with %r in the columns of obsm[%r] (anndata cannot write '/' in "
                    "keys); xl.get.proba(adata) returns the real names", SLASH, Key.obsm.proba(key_added))
    if inputs.rows.size < n:
        warn(f"{n - inputs.rows.size} observations are missing from a modality the ensemble uses and got no prediction")
    logger.info(
        "finished predicting %d observations: added obs[%r], obs[%r], obs[%r], obsm[%r]",
        inputs.rows.size, Key.obs.prediction(key_added), Key.obs.confidence(key_added), Key.obs.uncertainty(key_added),
        Key.obsm.proba(key_added),
    )
    return adata if copy else None
