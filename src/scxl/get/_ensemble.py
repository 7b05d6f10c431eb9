"""Readers of what scxl stores in an AnnData."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._keys import Key
from .._logging import renamed_kwarg
from .._validation import check_adata

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from ..models import Ensemble


@renamed_kwarg("key", "ensemble_key")
def ensemble(adata: Any, ensemble_key: str = Key.uns.ensemble, *, factory: Callable[[int, int], nn.Module] | None = None) -> Ensemble:
    """The ensemble stored in ``adata.uns[ensemble_key]`` as an :class:`~scxl.models.Ensemble`.

    Parameters
    ----------
    adata
        AnnData or MuData with a trained ensemble.
    ensemble_key
        Key of the ensemble in ``adata.uns`` (``key_added`` of :func:`scxl.tl.train_classifier`;
        formerly ``key=``).
    factory
        The module factory, for an ensemble trained with a custom ``model=`` callable. Not needed
        in the session that trained it, nor after :func:`scxl.models.register_factory`.

    Returns
    -------
    The ensemble, on the CPU, in eval mode. Its ``predict_proba`` takes a matrix whose columns
    follow ``ensemble.var_names``; ``save``/``load`` write a standalone ``.npz`` file. The stored
    record is checked as a whole first (architecture, classes, genes, every member's weights); a
    damaged one raises :class:`~scxl.models.EnsembleFormatError` (a ``ValueError``) naming the
    field.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(200, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=3)
    >>> xl.get.ensemble(adata)
    Ensemble of 2 MLP models: 100 features → 3 classes (group_0, group_1, group_2)
    """
    from ..models import Ensemble

    check_adata(adata)
    if ensemble_key not in adata.uns:
        raise KeyError(f"no ensemble under uns[{ensemble_key!r}]: run xl.tl.train_classifier first (or pass ensemble_key= of a trained one)"
                       + _where_else(adata, ensemble_key))
    stored = adata.uns[ensemble_key]
    if not isinstance(stored, dict) or "weights" not in stored:
        raise ValueError(f"uns[{ensemble_key!r}] is not an scxl ensemble (written by xl.tl.train_classifier)")
    return Ensemble.from_dict(stored, factory=factory, source=f"uns[{ensemble_key!r}]")


def _where_else(adata: Any, key: str) -> str:
    """A hint when the ensemble sits in a modality of a MuData, or under another key."""
    from .._validation import is_mudata, result_owner

    if is_mudata(adata):
        mods = [m for m, mod in adata.mod.items() if isinstance(mod.uns.get(key), dict) and "weights" in mod.uns[key]]
        if mods:
            return (f"; the modality {mods[0]!r} holds one: use it (xl.tl.predict(mdata[{mods[0]!r}])), or pass "
                    f"ensemble=xl.get.ensemble(mdata[{mods[0]!r}])")
    others = [k for k, v in adata.uns.items() if result_owner(v) == "train_classifier"]
    return f"; ensembles are stored under {others}" if others else ""


@renamed_kwarg("key", "ensemble_key")
def training_metrics(adata: Any, ensemble_key: str = Key.uns.ensemble) -> pd.DataFrame:
    """Validation (and cross-validation) metrics of a stored ensemble, one row per member.

    Parameters
    ----------
    adata
        AnnData or MuData with a trained ensemble.
    ensemble_key
        Key of the ensemble in ``adata.uns`` (formerly ``key=``).

    Returns
    -------
    DataFrame with ``accuracy``, ``balanced_accuracy``, ``macro_f1`` and ``evaluated_on`` per
    member, for the ``ensemble`` and, if cross-validated, per fold and overall (``cv``); per
    member also ``n_epochs`` (epochs trained) and ``best_epoch`` (the one whose weights were
    kept), and for the ensemble ``n_members``: how many members, on average, predicted each
    held-out cell (out-of-bag: only those that did not train on it). Columns that do not apply
    to a row are NaN.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(200, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=3)
    >>> list(xl.get.training_metrics(adata).index)
    ['model_0', 'model_1', 'ensemble']
    """
    check_adata(adata)
    if ensemble_key not in adata.uns or "weights" not in adata.uns[ensemble_key]:
        raise KeyError(f"no ensemble under uns[{ensemble_key!r}]: run xl.tl.train_classifier first")
    metrics = adata.uns[ensemble_key].get("metrics")
    if metrics is None:
        params = adata.uns[ensemble_key].get("params", {})
        if params.get("interrupted") and (params.get("validation", 0) > 0 or params.get("cv")):
            raise ValueError(f"the ensemble under uns[{ensemble_key!r}] has no validation metrics: its training was "
                             "interrupted while they were computed (params['interrupted']); train it again to get them")
        raise ValueError(f"the ensemble under uns[{ensemble_key!r}] was trained without validation (validation=0, no cv)")
    return metrics.copy()
