"""Getters: ``xl.get.*`` — read what scxl stored in an AnnData as Python objects and tidy tables."""

from ._ensemble import ensemble, training_metrics

__all__ = ["ensemble", "training_metrics"]
