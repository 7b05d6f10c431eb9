"""Torch modules (MLP, grid CNN), gene orders and the :class:`Ensemble` container."""

from ._ensemble import Ensemble, EnsembleFormatError
from ._gene_order import GENE_ORDERS, resolve_gene_order
from ._modules import MLP, MODEL_TYPES, GridCNN, build_module, default_spec, register_factory

__all__ = [
    "GENE_ORDERS",
    "MLP",
    "MODEL_TYPES",
    "Ensemble",
    "EnsembleFormatError",
    "GridCNN",
    "build_module",
    "default_spec",
    "register_factory",
    "resolve_gene_order",
]
