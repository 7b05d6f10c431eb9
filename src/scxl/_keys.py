"""Every key scxl writes into an AnnData, in one place (nested per slot, like squidpy's ``Key``).

``Key.uns.ensemble`` is where :func:`scxl.tl.train_classifier` stores an ensemble; every other key
derives from a prefix (``key_added``) so results of several runs can live side by side:

======================================  ==========================================================
key                                     written by
======================================  ==========================================================
``uns["xl"]``                           :func:`~scxl.tl.train_classifier` (``Key.uns.ensemble``)
``obs["<e>_prediction"]`` etc.          :func:`~scxl.tl.predict` (``Key.obs.prediction(e)``, ...)
``layers``/``uns["xl_<method>"]``       :func:`~scxl.tl.attribute` (``Key.uns.attribution(m)``;
                                        ``"<e>_<method>"`` for another ensemble key ``e``)
``obsm["<a>_angle"]``                   :func:`~scxl.tl.attribute` with gradient correction
``uns["xl_reproducibility"]``           :func:`~scxl.tl.reproducibility`
``uns["xl_explainers"]``                :func:`~scxl.tl.compare_explainers`
``uns["<a>_faithfulness"]``             :func:`~scxl.tl.faithfulness`
``uns["<a>_consistency"]``              :func:`~scxl.tl.consistency`
``uns["<a>_overlap"]``                  :func:`~scxl.tl.gene_set_overlap`
``var["<p>_tau"]`` etc.                 :func:`~scxl.tl.specificity` (``Key.var.tau(p)``, ...)
``uns["<e>"]["selection"]``             :func:`~scxl.tl.select_models`
======================================  ==========================================================
"""

from __future__ import annotations

PREFIX = "xl"
"""Prefix of every default key."""


def _suffixed(suffix: str, doc: str, *, default: str | None = None):
    """A key function ``prefix -> f"{prefix}_{suffix}"`` (a static method of the slot classes)."""

    def key(prefix: str = default) -> str:  # type: ignore[assignment]
        if prefix is None:
            raise TypeError("pass the prefix (the key of the ensemble or attribution)")
        return f"{prefix}_{suffix}"

    key.__doc__ = doc
    key.__name__ = suffix
    return staticmethod(key)


def _method_key(doc: str):
    """A key function ``method -> f"xl_{method}"``."""

    def key(method: str) -> str:
        return f"{PREFIX}_{method}"

    key.__doc__ = doc
    return staticmethod(key)


class Key:
    """Key names, per AnnData slot."""

    class uns:
        """Keys in ``adata.uns``."""

        ensemble = PREFIX
        reproducibility = f"{PREFIX}_reproducibility"
        explainers = f"{PREFIX}_explainers"
        selection = "selection"  # inside the ensemble's entry
        attribution = _method_key("Ranking of an attribution (also its ``layers`` key).")
        faithfulness = _suffixed("faithfulness", "Deletion/insertion curves of an attribution.")
        consistency = _suffixed("consistency", "Consistency table of an attribution.")
        overlap = _suffixed("overlap", "Gene-set overlap of a ranking.")
        specificity = _suffixed("specificity", "Group profiles and settings of :func:`scxl.tl.specificity`.", default=PREFIX)

    class obs:
        """Columns of ``adata.obs`` written by :func:`scxl.tl.predict` (argument: the ensemble's key)."""

        prediction = _suffixed("prediction", "Predicted class.")
        confidence = _suffixed("confidence", "Ensemble probability of the predicted class.")
        uncertainty = _suffixed("uncertainty", "Fraction of members that disagree with the ensemble.")

    class obsm:
        """Keys in ``adata.obsm``."""

        proba = _suffixed("proba", "DataFrame of class probabilities of an ensemble (``/`` in class names stored as :data:`SLASH`).")
        angle = _suffixed("angle", "Off-simplex angles of an attribution with gradient correction.")

    class layers:
        """Keys in ``adata.layers``."""

        attribution = _method_key("Per-cell contributions of an attribution (same key as its ranking).")

    class var:
        """Columns of ``adata.var`` written by :func:`scxl.tl.specificity` (argument: its ``key_added``)."""

        block = f"{PREFIX}_block"
        tau = _suffixed("tau", "Tissue-specificity index tau.", default=PREFIX)
        specificity = _suffixed("specificity", "HPA/TissueEnrich category.", default=PREFIX)
        enriched_in = _suffixed("enriched_in", "Groups the gene is enriched in.", default=PREFIX)
        housekeeping = _suffixed("housekeeping", "Housekeeping call.", default=PREFIX)


#: Stand-in for ``"/"`` in names that anndata stores as keys (the columns of a DataFrame in
#: ``obsm``/``uns``): ``.zarr`` refuses ``"/"`` in keys and ``.h5ad`` warns that it will. U+2215
#: DIVISION SLASH looks the same in printed tables and is valid in every store and file system.
SLASH = "\u2215"


def storable(name: object) -> str:
    """``name`` as a key anndata can write to ``.h5ad`` and ``.zarr`` (``"/"`` → :data:`SLASH`)."""
    return str(name).replace("/", SLASH)


def unstorable(name: object) -> str:
    """Undo :func:`storable`."""
    return str(name).replace(SLASH, "/")


def ensemble_key_of(params: dict) -> str:
    """The ensemble key recorded in a result's ``params`` (``"key"`` in files written before scxl 0.2)."""
    value = params.get("ensemble_key", params.get("key"))
    return Key.uns.ensemble if value in (None, "None", "") else str(value)


def baseline_of(params: dict) -> str:
    """The explainer's reference recorded in an attribute result's ``params``.

    ``"baseline"`` since 2026-12-07; before, it was stored as ``"reference"``, the field Scanpy
    reads as the group a ranking is compared against (now ``"rest"``, that of the fold changes).
    """
    return str(params["baseline"] if "baseline" in params else params.get("reference"))
