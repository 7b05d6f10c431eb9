"""``xl.tl.predict``: apply a stored ensemble to the same or another AnnData."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_adata, doc_copy, doc_device, doc_key, doc_params
from .._keys import Key
from .._logging import logger, warn
from .._validation import RowChunks, check_values, is_mudata, resolve_device, view_to_actual
from ..get import ensemble as get_ensemble
from ._data import Inputs, extract

_FROM_TRAINING = "training"


def resolve_ensemble(adata: Any, key: str, ensemble: Any):
    """The ensemble to use: ``ensemble`` (object or ``.npz`` path) if given, else ``uns[key]``."""
    from pathlib import Path

    from ..models import Ensemble

    if ensemble is None:
        return get_ensemble(adata, key=key)
    if isinstance(ensemble, Ensemble):
        return ensemble
    if isinstance(ensemble, str | Path):
        return Ensemble.load(ensemble)
    raise TypeError(f"ensemble must be an xl.models.Ensemble or a path to a saved one, got {type(ensemble).__name__}")


def aligned_inputs(
    adata: Any,
    ens,
    *,
    layer: str | None = _FROM_TRAINING,
    use_raw: bool | None = None,
    min_gene_fraction: float = 0.5,
) -> tuple[Inputs, np.ndarray, np.ndarray]:
    """Inputs of ``adata`` matched to the ensemble's features by name.

    Returns the inputs, the column of each ensemble feature in the matrix (``-1`` = missing,
    filled with zeros), and the boolean mask of present features.
    """
    prep = ens.preprocessing
    if layer == _FROM_TRAINING:
        layer = prep.get("layer")
    elif layer == "X":
        layer = None
    if use_raw is None:
        use_raw = bool(prep.get("use_raw", False))
    mods = prep.get("mods") if is_mudata(adata) else None
    inputs = extract(adata, layer=layer, use_raw=use_raw, mods=mods)
    col = inputs.var_names.get_indexer(ens.var_names)
    present = col >= 0
    n_present = int(present.sum())
    if n_present == 0:
        raise ValueError(
            f"none of the ensemble's {len(ens.var_names)} features are in this data "
            f"(e.g. ensemble has {list(ens.var_names[:3])}, data has {list(inputs.var_names[:3])}); "
            "check that gene identifiers match (symbols vs Ensembl IDs) and that the same layer/raw is used"
        )
    frac = n_present / len(ens.var_names)
    if frac < min_gene_fraction:
        raise ValueError(
            f"only {n_present} of the ensemble's {len(ens.var_names)} features ({frac:.0%}) are in this data, "
            f"below min_gene_fraction={min_gene_fraction}; predictions would be unreliable"
        )
    if n_present < len(ens.var_names):
        missing = ens.var_names[~present]
        logger.warning(
            "%d of %d ensemble features (%.1f%%) are missing from the data and set to 0, e.g. %s",
            missing.size, len(ens.var_names), 100 * (1 - frac), list(missing[:5]),
        )
    return inputs, col, present


def read_aligned(inputs: Inputs, col: np.ndarray, present: np.ndarray, idx: np.ndarray | slice) -> np.ndarray:
    """Dense float32 rows in the ensemble's feature order, zeros for missing features."""
    block = inputs.matrix.rows(idx, col[present])
    if present.all():
        return block
    out = np.zeros((block.shape[0], present.size), dtype=np.float32)
    out[:, present] = block
    return out


class Aligned(RowChunks):
    """Array-like view of the inputs in ensemble feature order (row slices only)."""

    def __init__(self, inputs: Inputs, col: np.ndarray, present: np.ndarray) -> None:
        self.inputs, self.col, self.present = inputs, col, present
        self.shape = (inputs.matrix.n_obs, present.size)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return read_aligned(self.inputs, self.col, self.present, sl)

    def rows(self, idx: np.ndarray | slice) -> np.ndarray:
        """Dense float32 rows in ensemble feature order."""
        return read_aligned(self.inputs, self.col, self.present, idx)

    @property
    def n_obs(self) -> int:
        return self.shape[0]

    @property
    def n_vars(self) -> int:
        return self.shape[1]


@doc_params(adata=doc_adata, key=doc_key, device=doc_device, copy=doc_copy)
def predict(
    adata: AnnData,
    *,
    key: str = Key.ENSEMBLE,
    ensemble: Any = None,
    layer: str | None = _FROM_TRAINING,
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
        Use this ensemble instead of ``uns[key]``: an :class:`~scxl.models.Ensemble` (e.g.
        ``xl.get.ensemble(atlas)``) or the path of a file written by ``Ensemble.save``. This is how
        a model trained on one dataset annotates another.
    layer
        Where to read expression. By default the source the ensemble was trained on (recorded in
        ``uns[key]["preprocessing"]``); ``"X"`` forces ``adata.X``; any other value names a layer.
        The values must be on the same scale as the training data.
    use_raw
        Read ``adata.raw``; by default as recorded at training.
    min_gene_fraction
        Raise an error if fewer than this fraction of the ensemble's genes are present.
    batch_size
        Rows per forward pass.
    {device}
    key_added
        Prefix of the keys written (default: ``key``).
    {copy}

    Returns
    -------
    ``None``, or a copy if ``copy=True``. Writes

    - ``obs[f"{{key_added}}_prediction"]``: predicted class (categorical with the training classes);
    - ``obs[f"{{key_added}}_confidence"]``: ensemble probability of the predicted class;
    - ``obs[f"{{key_added}}_uncertainty"]``: fraction of members whose own prediction differs
      from the ensemble's (0 = unanimous);
    - ``obsm[f"{{key_added}}_proba"]``: DataFrame of class probabilities (columns = classes).

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
        adata = adata.copy()
    key_added = key if key_added is None else key_added
    ens = resolve_ensemble(adata, key, ensemble)
    ens.to(resolve_device(device))
    inputs, col, present = aligned_inputs(adata, ens, layer=layer, use_raw=use_raw, min_gene_fraction=min_gene_fraction)
    aligned = Aligned(inputs, col, present)
    from .._validation import Matrix

    check_values(Matrix(aligned, ens.var_names, inputs.matrix.source), expect_nonnegative=False)
    member = ens.predict_proba(aligned, return_members=True, batch_size=batch_size)
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
    adata.obs[Key.prediction(key_added)] = pd.Categorical.from_codes(codes, categories=list(ens.classes))
    adata.obs[Key.confidence(key_added)] = conf
    adata.obs[Key.uncertainty(key_added)] = unc
    adata.obsm[Key.proba(key_added)] = pd.DataFrame(full, index=adata.obs_names, columns=list(ens.classes))
    if inputs.rows.size < n:
        warn(f"{n - inputs.rows.size} observations are missing from a modality the ensemble uses and got no prediction")
    logger.info(
        "finished predicting %d observations: added obs[%r], obs[%r], obs[%r], obsm[%r]",
        inputs.rows.size, Key.prediction(key_added), Key.confidence(key_added), Key.uncertainty(key_added),
        Key.proba(key_added),
    )
    return adata if copy else None
