"""Every key scxl writes into an AnnData, in one place (nested per slot, like squidpy's ``Key``).

``Key.uns.ensemble`` is where :func:`scxl.tl.train_classifier` stores an ensemble; every other key
derives from a prefix (``key_added``) so results of several runs can live side by side:

======================================  ==========================================================
key                                     written by
======================================  ==========================================================
``uns["xl"]``                           :func:`~scxl.tl.train_classifier` (``Key.uns.ensemble``)
``obs["<e>_prediction"]`` etc.          :func:`~scxl.tl.predict` (``Key.obs.prediction(e)``, ...)
``layers``/``uns["xl_<method>"]``       :func:`~scxl.tl.attribute` (``Key.uns.attribution(m)``)
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


class Key:
    """Key names, per AnnData slot."""

    class uns:
        """Keys in ``adata.uns``."""

        ensemble = PREFIX
        reproducibility = f"{PREFIX}_reproducibility"
        explainers = f"{PREFIX}_explainers"
        selection = "selection"  # inside the ensemble's entry

        @staticmethod
        def attribution(method: str) -> str:
            """Ranking of an attribution (also its ``layers`` key)."""
            return f"{PREFIX}_{method}"

        @staticmethod
        def faithfulness(key: str) -> str:
            """Deletion/insertion curves of the attribution ``key``."""
            return f"{key}_faithfulness"

        @staticmethod
        def consistency(key: str) -> str:
            """Consistency table of the attribution ``key``."""
            return f"{key}_consistency"

        @staticmethod
        def overlap(key: str) -> str:
            """Gene-set overlap of the ranking ``key``."""
            return f"{key}_overlap"

        @staticmethod
        def specificity(prefix: str = PREFIX) -> str:
            """Group profiles and settings of :func:`scxl.tl.specificity`."""
            return f"{prefix}_specificity"

    class obs:
        """Columns of ``adata.obs`` written by :func:`scxl.tl.predict` (``e``: the ensemble's key)."""

        @staticmethod
        def prediction(e: str) -> str:
            """Predicted class."""
            return f"{e}_prediction"

        @staticmethod
        def confidence(e: str) -> str:
            """Ensemble probability of the predicted class."""
            return f"{e}_confidence"

        @staticmethod
        def uncertainty(e: str) -> str:
            """Fraction of members that disagree with the ensemble."""
            return f"{e}_uncertainty"

    class obsm:
        """Keys in ``adata.obsm``."""

        @staticmethod
        def proba(e: str) -> str:
            """DataFrame of class probabilities of the ensemble ``e``."""
            return f"{e}_proba"

        @staticmethod
        def angle(key: str) -> str:
            """Off-simplex angles of an attribution with gradient correction."""
            return f"{key}_angle"

    class layers:
        """Keys in ``adata.layers``."""

        @staticmethod
        def attribution(method: str) -> str:
            """Per-cell contributions of an attribution (same key as its ranking)."""
            return f"{PREFIX}_{method}"

    class var:
        """Columns of ``adata.var`` written by :func:`scxl.tl.specificity` (``p``: its ``key_added``)."""

        block = f"{PREFIX}_block"

        @staticmethod
        def tau(p: str = PREFIX) -> str:
            """Tissue-specificity index tau."""
            return f"{p}_tau"

        @staticmethod
        def specificity(p: str = PREFIX) -> str:
            """HPA/TissueEnrich category."""
            return f"{p}_specificity"

        @staticmethod
        def enriched_in(p: str = PREFIX) -> str:
            """Groups the gene is enriched in."""
            return f"{p}_enriched_in"

        @staticmethod
        def housekeeping(p: str = PREFIX) -> str:
            """Housekeeping call."""
            return f"{p}_housekeeping"


def ensemble_key_of(params: dict) -> str:
    """The ensemble key recorded in a result's ``params`` (``"key"`` in files written before scxl 0.2)."""
    value = params.get("ensemble_key", params.get("key"))
    return Key.uns.ensemble if value in (None, "None", "") else str(value)
