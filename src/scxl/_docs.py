"""Shared parameter documentation, filled into docstrings with :func:`doc_params`."""

from __future__ import annotations

import inspect


def doc_params(**kwds: str):
    """Fill ``{name}`` placeholders of a docstring with shared parameter text (Scanpy's pattern)."""

    def dec(obj):
        obj.__orig_doc__ = obj.__doc__
        obj.__doc__ = inspect.cleandoc(obj.__doc__).format_map(kwds)
        return obj

    return dec


doc_adata = """\
adata
    Annotated data matrix (cells or samples × genes). A :class:`~mudata.MuData` is accepted too:
    its modalities are concatenated and features are named ``"mod:gene"``."""

doc_layer = """\
layer
    Use ``adata.layers[layer]`` instead of ``adata.X``.
use_raw
    Use ``adata.raw.X`` (and ``adata.raw.var_names``). Never inferred: ``False`` by default."""

doc_random_state = """\
random_state
    Seed of every stochastic step. The same seed on the same device gives identical results."""

doc_device = """\
device
    ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Defaults to
    ``xl.settings.device``."""

doc_copy = """\
copy
    Return a modified copy instead of writing into ``adata``. Not for a backed AnnData (anndata
    copies those only to a new file); the results go to its in-memory parts and the file is
    never written, so ``copy=False`` is safe there."""

doc_key = """\
ensemble_key
    Key of the ensemble in ``adata.uns`` (``key_added`` of :func:`scxl.tl.train_classifier`).
    (Formerly ``key=``, still accepted with a ``FutureWarning``: in scxl ``key`` always names a
    ranking or attribution, as in Scanpy's ``rank_genes_groups`` functions.)"""

doc_ensemble_key = doc_key

doc_ax = """\
ax
    Axes to draw into (a single panel); by default a new figure is created."""

doc_return_fig = """\
return_fig
    Return the :class:`~matplotlib.figure.Figure` instead of the Axes.
show
    Show the figure (:func:`matplotlib.pyplot.show`) and return ``None``, as Scanpy's plots
    do with ``show=True`` (with ``return_fig`` the Figure is returned instead, not shown); by
    default the Axes are returned and a notebook draws the figure when the cell ends. To write a file: ``return_fig=True`` and ``fig.savefig(path)``."""

doc_plot = doc_ax + "\n" + doc_return_fig

doc_overwrite = """\
overwrite
    Replace an entry under ``key_added`` that another tool or the user wrote (an entry this
    tool wrote before is always replaced). By default such a key is refused with an error."""
