"""Readers of what :func:`scxl.tl.predict` stores."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .._keys import Key, storable, unstorable
from .._validation import check_adata, to_frame


def proba(adata: Any, ensemble_key: str = Key.uns.ensemble) -> pd.DataFrame:
    """Class probabilities of :func:`scxl.tl.predict`, with the real class names as columns.

    ``obsm[f"{ensemble_key}_proba"]`` stores a ``/`` in a class name as the look-alike ``"∕"``
    (U+2215), because anndata cannot write ``/`` in the keys of a ``.zarr`` store (and warns for
    ``.h5ad``). This getter gives the names back, as the categories of
    ``obs[f"{ensemble_key}_prediction"]`` (written with it) spell them.

    Parameters
    ----------
    adata
        AnnData or MuData after :func:`scxl.tl.predict`.
    ensemble_key
        ``key_added`` of :func:`scxl.tl.predict` (default: the key of the ensemble, ``"xl"``).

    Returns
    -------
    A copy of the probabilities: observations × classes, columns named by class.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.pbmc68k()
    >>> xl.tl.train_classifier(adata, "cell_type", n_models=1, max_epochs=2)
    >>> xl.tl.predict(adata)
    >>> "CD4+/CD25 T Reg" in xl.get.proba(adata).columns
    True
    """
    check_adata(adata)
    key = Key.obsm.proba(ensemble_key)
    if key not in adata.obsm:
        raise KeyError(f"no class probabilities under obsm[{key!r}]: run xl.tl.predict(adata) first"
                       + (f" (or pass the key_added used there: obsm has {list(adata.obsm)})" if len(adata.obsm) else ""))
    stored = adata.obsm[key]
    if not isinstance(stored, pd.DataFrame):
        raise TypeError(f"obsm[{key!r}] is a {type(stored).__name__}, not the DataFrame xl.tl.predict writes")
    columns = [str(c) for c in stored.columns]
    pred_key = Key.obs.prediction(ensemble_key)
    # obs of a lazy AnnData (anndata.experimental.read_lazy) holds xarray columns: read this one as pandas
    pred = to_frame(adata.obs, [pred_key])[pred_key] if pred_key in adata.obs.columns else None
    names = [unstorable(c) for c in columns]
    if pred is not None and isinstance(pred.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in pred.cat.categories]
        if [storable(c) for c in cats] == columns:
            names = cats
    return pd.DataFrame(stored.to_numpy(), index=stored.index, columns=pd.Index(names, dtype=object))
