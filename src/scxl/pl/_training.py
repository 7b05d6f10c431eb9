"""``xl.pl.training``: loss/accuracy curves per member and the ensemble confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._docs import doc_params, doc_return_fig

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

import numpy as np

from .._keys import Key
from .._logging import renamed_kwarg
from ._utils import OKABE_ITO, finish, style


@doc_params(return_fig=doc_return_fig)
@renamed_kwarg("key", "ensemble_key")
def training(
    adata: AnnData,
    ensemble_key: str = Key.uns.ensemble,
    *,
    normalize: bool = True,
    ax: Any = None,
    return_fig: bool = False,
    show: bool | None = None,
):
    """Plot the training history of every member and the ensemble's confusion matrix.

    Left: training (dashed) and validation (solid) loss per member against the epoch, the best
    epoch of each member marked. Right: the ensemble's confusion matrix on the validation cells
    (out-of-bag with per-member splits: each cell predicted by the members that held it out;
    rows true class, columns predicted; row-normalised if ``normalize``).

    Parameters
    ----------
    adata
        AnnData or MuData with a trained ensemble.
    ensemble_key
        Key of the ensemble in ``adata.uns`` (formerly ``key=``).
    normalize
        Show recall (row-normalised) instead of counts in the confusion matrix.
    ax
        Two Axes to draw into (loss, confusion); a new figure if ``None``.
    {return_fig}

    Returns
    -------
    The two Axes, or the Figure if ``return_fig``.

    Examples
    --------
    >>> import scxl as xl
    >>> xl.settings.progress = False
    >>> adata = xl.datasets.synthetic(200, 100, 3, random_state=0)
    >>> xl.tl.train_classifier(adata, "group", n_models=2, max_epochs=5)
    >>> axes = xl.pl.training(adata)
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from ..get import ensemble as get_ensemble

    ens = get_ensemble(adata, ensemble_key)
    hist = ens.history
    if hist is None:
        raise ValueError(f"uns[{ensemble_key!r}] has no training history")
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.3, 1]})
    else:
        axes = list(ax) if isinstance(ax, list | tuple | np.ndarray) else [ax]
        if len(axes) != 2:
            raise ValueError("ax must be a pair of Axes (loss curves, confusion matrix)")
        fig = axes[0].figure
    for i, (name, h) in enumerate(hist.groupby("model", sort=False)):
        c = OKABE_ITO[i % len(OKABE_ITO)]
        validated = h["val_loss"].notna().any()
        axes[0].plot(h["epoch"], h["train_loss"], ls="--", color=c, lw=1, alpha=0.7, label=None if validated else name)
        if validated:
            axes[0].plot(h["epoch"], h["val_loss"], color=c, lw=1.5, label=name)
            best = h[h["best"]]
            axes[0].scatter(best["epoch"], best["val_loss"], color=c, s=20, zorder=3)
    axes[0].set(xlabel="epoch", ylabel="cross-entropy loss", title="training (dashed) / validation (solid)")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    style(axes[0])
    if ens.n_models <= 5:  # more members: the colours alone tell them apart
        axes[0].legend(fontsize="small", frameon=False, loc="upper right")
    cm = ens.confusion
    if cm is None:
        axes[1].set_axis_off()
        axes[1].text(0.5, 0.5, "no validation cells", ha="center", va="center")
    else:
        cm = np.asarray(cm, dtype=float)
        shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
        im = axes[1].imshow(shown, cmap="viridis", vmin=0, vmax=1 if normalize else None)
        n = len(ens.classes)
        axes[1].set_xticks(range(n), ens.classes, rotation=90, fontsize="small")
        axes[1].set_yticks(range(n), ens.classes, fontsize="small")
        if n <= 20:
            for (r, c), v in np.ndenumerate(shown):
                if cm[r, c]:
                    axes[1].text(c, r, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center", fontsize="x-small",
                                 color="black" if v > 0.5 * (shown.max() or 1) else "white")
        oob = ens.params.get("split") == "per_model"
        axes[1].set(xlabel="predicted", ylabel="true",
                    title="ensemble, out-of-bag validation observations" if oob else "ensemble, held-out validation observations")
        fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04, label="recall" if normalize else "cells")
    return finish(fig, list(axes), created=ax is None, return_fig=return_fig, show=show)
