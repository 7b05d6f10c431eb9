"""Getters: ``xl.get.*`` — read what scxl stored in an AnnData as Python objects and tidy tables."""

from ._ensemble import ensemble, training_metrics
from ._predictions import proba
from ._rankings import top_genes

__all__ = ["ensemble", "proba", "top_genes", "training_metrics"]
