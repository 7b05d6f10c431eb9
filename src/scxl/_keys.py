"""Every key scxl writes into an AnnData, in one place."""

from __future__ import annotations


class Key:
    """Key names derived from a ``key_added`` prefix.

    ``uns[ensemble]`` holds a trained ensemble; predictions of an ensemble stored under ``key`` go
    to ``obs[f"{key}_prediction"]``, ``obs[f"{key}_confidence"]``, ``obs[f"{key}_uncertainty"]``
    and ``obsm[f"{key}_proba"]``; attributions by ``method`` to ``layers``/``uns`` under
    ``f"xl_{method}"``.
    """

    ENSEMBLE = "xl"

    @staticmethod
    def prediction(key: str) -> str:
        """``obs`` column with the ensemble's predicted class."""
        return f"{key}_prediction"

    @staticmethod
    def confidence(key: str) -> str:
        """``obs`` column with the ensemble probability of the predicted class."""
        return f"{key}_confidence"

    @staticmethod
    def uncertainty(key: str) -> str:
        """``obs`` column with the fraction of members that disagree with the ensemble."""
        return f"{key}_uncertainty"

    @staticmethod
    def proba(key: str) -> str:
        """``obsm`` DataFrame of class probabilities."""
        return f"{key}_proba"

    @staticmethod
    def attribution(method: str) -> str:
        """``layers``/``uns`` key of an attribution."""
        return f"xl_{method}"
