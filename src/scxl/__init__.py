"""scxl: explainable neural-network classifier ensembles for AnnData.

Import as ``import scxl as xl``. Submodules: :mod:`xl.pp <scxl.pp>`, :mod:`xl.tl <scxl.tl>`,
:mod:`xl.pl <scxl.pl>`, :mod:`xl.get <scxl.get>`, :mod:`xl.datasets <scxl.datasets>`,
:data:`xl.settings <scxl.settings>`, and :class:`xl.ScxlWarning <scxl.ScxlWarning>` (the class of
scxl's own warnings, deprecations apart, to filter them: ``warnings.simplefilter("ignore", xl.ScxlWarning)``;
its subclass :class:`xl.DataScaleWarning <scxl.DataScaleWarning>` is every warning about the values' scale).

``import scxl`` is light: torch, captum, scanpy and matplotlib are imported only when a function
that needs them is called (``xl.pl`` is loaded on first access).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._logging import DataScaleWarning, ScxlWarning
from ._settings import settings

__version__ = "0.1.0"

_LAZY = ("pp", "tl", "pl", "get", "datasets", "models", "train", "explain", "metrics")

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets, get, pl, pp, tl


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'scxl' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["DataScaleWarning", "ScxlWarning", "datasets", "get", "pl", "pp", "settings", "tl", "__version__"]
