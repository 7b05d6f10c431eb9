"""Torch modules of the ensemble members: the paper's MLP and grid CNN.

A module is fully described by a JSON-able *spec* (``dict``), so an ensemble can be rebuilt from
``adata.uns`` without pickling: :func:`build_module` turns a spec into a fresh module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

#: Built-in member architectures (``model=`` of :func:`scxl.tl.train_classifier`).
MODEL_TYPES = ("mlp", "cnn")


def dropout_noise(shape: Sequence[int], p: float, *, dtype: torch.dtype, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted-dropout noise: ``1 / (1 - p)`` with probability ``1 - p``, else 0.

    The mask compares uniform numbers with ``1 - p`` (``torch.rand`` from ``generator``, torch's
    global one by default) rather than drawing ``bernoulli_``, which on the CPU with a generator
    was 2.9× slower: 267 µs against 92 µs for a ``(256, 128)`` mask (2-core CPU, torch 2.13), about
    a sixth of an MLP ensemble's training step. Same distribution; not the same draws as ``nn.Dropout``.
    """
    keep = 1.0 - float(p)
    if keep <= 0:
        return torch.zeros(tuple(shape), dtype=dtype, device=device)
    noise = torch.rand(tuple(shape), dtype=dtype, device=device, generator=generator).lt_(keep)
    return noise.div_(keep)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with its mask from :func:`dropout_noise` (faster on the CPU); identity in eval mode.

    The stacked trainer (:func:`scxl.train.fit_members`) draws each member's mask with the same
    function from the member's own generator, so members trained together equal members trained
    one after another.

    Examples
    --------
    >>> import torch
    >>> from scxl.models._modules import Dropout
    >>> _ = torch.manual_seed(0)
    >>> d = Dropout(0.5)
    >>> out = d(torch.ones(2, 4))
    >>> sorted(set(out.flatten().tolist()))
    [0.0, 2.0]
    >>> d.eval()(torch.ones(2, 4)).sum().item()
    8.0
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_noise(x.shape, self.p, dtype=x.dtype, device=x.device)


class MLP(nn.Module):
    """Multilayer perceptron: ``[Linear → (BatchNorm) → ReLU] × len(hidden) → Dropout → Linear``.

    The default is one hidden layer of 128 units with ReLU and dropout 0.25 before the output
    layer. The paper adds BatchNorm after the hidden layer (``batchnorm=True``); without it,
    independently trained ensembles agree better and small data is classified better (measured
    in the methods page), so it is off by default.

    Parameters
    ----------
    n_features
        Number of input genes.
    n_classes
        Number of classes (output logits).
    hidden
        Sizes of the hidden layers.
    dropout
        Dropout probability before the output layer.
    batchnorm
        Use BatchNorm after each hidden linear layer (the paper's architecture).
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: Sequence[int] = (128,),
        *,
        dropout: float = 0.25,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = n_features
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            d = h
        layers += [Dropout(dropout), nn.Linear(d, n_classes)]
        self.net = nn.Sequential(*layers)
        self.n_features = n_features
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(n, n_classes)``."""
        return self.net(x)


class GridCNN(nn.Module):
    """The paper's CNN: genes laid out on a zero-padded square grid in a given order.

    ``[Conv(k) → MaxPool(2) → BatchNorm → ReLU] × 3`` with 64/128/256 channels and kernels
    5/5/3, then global average pooling → BatchNorm → ReLU → Dropout → Linear. The layout is part
    of the module (a fixed index buffer), so the module takes a plain ``(n, n_features)`` matrix
    and gradients flow back to genes, not to grid pixels.

    Parameters
    ----------
    n_features
        Number of input genes.
    n_classes
        Number of classes.
    order
        Permutation of ``range(n_features)``: ``order[p]`` is the gene placed at grid position
        ``p`` (row-major). Defaults to the identity.
    channels, kernels
        Output channels and kernel sizes of the convolutions.
    dropout
        Dropout probability before the output layer.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        order: Sequence[int] | np.ndarray | None = None,
        *,
        channels: Sequence[int] = (64, 128, 256),
        kernels: Sequence[int] = (5, 5, 3),
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if len(channels) != len(kernels):
            raise ValueError("channels and kernels must have the same length")
        side = max(2, math.ceil(math.sqrt(n_features)))
        order = np.arange(n_features) if order is None else np.asarray(order, dtype=np.int64)
        if order.shape != (n_features,) or not np.array_equal(np.sort(order), np.arange(n_features)):
            raise ValueError("order must be a permutation of range(n_features)")
        index = np.full(side * side, n_features, dtype=np.int64)  # n_features = padding (zero)
        index[: n_features] = order
        self.register_buffer("index", torch.from_numpy(index))
        self.side = side
        blocks: list[nn.Module] = []
        c_in = 1
        for c, k in zip(channels, kernels, strict=True):
            blocks += [
                nn.Conv2d(c_in, c, kernel_size=k, padding=k // 2),
                nn.MaxPool2d(2, ceil_mode=True),
                nn.BatchNorm2d(c),
                nn.ReLU(),
            ]
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.BatchNorm1d(c_in),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(c_in, n_classes),
        )
        self.n_features = n_features
        self.n_classes = n_classes

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Lay genes out on the grid: ``(n, n_features)`` → ``(n, 1, side, side)``."""
        pad = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
        return torch.cat([x, pad], dim=1)[:, self.index].reshape(-1, 1, self.side, self.side)

    @property
    def last_conv(self) -> nn.Module:
        """The last convolution (the layer Grad-CAM reads)."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)][-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(n, n_classes)``."""
        return self.head(self.features(self.to_grid(x)))


def default_spec(model: str, n_features: int, n_classes: int, **options: Any) -> dict[str, Any]:
    """A JSON-able architecture spec with the paper's defaults, overridden by ``options``."""
    if model == "mlp":
        spec = {"type": "mlp", "hidden": [128], "dropout": 0.25, "batchnorm": False}
    elif model == "cnn":
        spec = {"type": "cnn", "channels": [64, 128, 256], "kernels": [5, 5, 3], "dropout": 0.25}
    else:
        raise ValueError(f"model={model!r} is not valid; choose one of {list(MODEL_TYPES)} or pass a callable")
    spec.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items() if v is not None})
    spec.update(n_features=int(n_features), n_classes=int(n_classes))
    return spec


#: Module factories known in this session (qualified name → callable), see :func:`register_factory`.
_FACTORIES: dict[str, Callable[[int, int], nn.Module]] = {}


def factory_name(factory: Callable[..., Any]) -> str:
    """The name under which a module factory is recorded in a spec: ``"module.qualname"``."""
    qual = getattr(factory, "__qualname__", None) or type(factory).__qualname__
    mod = getattr(factory, "__module__", None) or type(factory).__module__
    return f"{mod}.{qual}" if mod else str(qual)


def register_factory(factory: Callable[[int, int], nn.Module], name: str | None = None) -> str:
    """Make a custom module factory known, so stored ensembles built with it can be rebuilt.

    :func:`scxl.tl.train_classifier` registers the ``model=`` callable it is given, so in the same
    session :func:`scxl.tl.predict`, :func:`scxl.tl.attribute` and :func:`scxl.get.ensemble`
    find it by itself. In a new session (code is never stored, only weights), register the same
    factory once before using the ensemble. Registering a factory under a name already taken
    replaces the earlier one.

    Parameters
    ----------
    factory
        ``factory(n_features, n_classes) -> torch.nn.Module``.
    name
        The name recorded in the ensemble's ``spec["factory"]``; default: the factory's
        qualified name (``"module.qualname"``), as recorded at training.

    Returns
    -------
    The name it is registered under.

    Examples
    --------
    >>> import torch
    >>> import scxl as xl
    >>> def linear(n_features, n_classes):
    ...     return torch.nn.Sequential(torch.nn.Linear(n_features, n_classes))
    >>> name = xl.models.register_factory(linear)
    >>> name.endswith(".linear")
    True
    """
    if not callable(factory):
        raise TypeError(f"factory must be a callable factory(n_features, n_classes) -> torch.nn.Module, got {type(factory).__name__}")
    name = factory_name(factory) if name is None else str(name)
    _FACTORIES[name] = factory
    return name


def _known_factory(name: Any) -> Callable[[int, int], nn.Module] | None:
    if not isinstance(name, str):
        return None
    if name in _FACTORIES:
        return _FACTORIES[name]
    # ensembles trained before the module was recorded store the bare qualname
    hits = [f for k, f in _FACTORIES.items() if k.rsplit(".", 1)[-1] == name or k.endswith("." + name)]
    return hits[-1] if len(hits) == 1 else None


def build_module(
    spec: dict[str, Any],
    *,
    order: np.ndarray | None = None,
    factory: Callable[[int, int], nn.Module] | None = None,
    initialise: bool = True,
) -> nn.Module:
    """Build a fresh (randomly initialised) module from a spec.

    For a ``"custom"`` spec the module comes from ``factory`` or, without it, from the factory
    registered under ``spec["factory"]`` (:func:`register_factory`). With ``initialise=False``
    an MLP or CNN is built with uninitialised storage (no random draws), for a caller that loads
    every entry of its ``state_dict`` next; a custom module is always built by its factory.
    """
    if not initialise and spec["type"] in ("mlp", "cnn"):
        with torch.device("meta"):  # (the draws of the default initialisation were most of loading an ensemble)
            module = build_module(spec, order=order, factory=factory)
        return module.to_empty(device="cpu")
    kind = spec["type"]
    n_features, n_classes = int(spec["n_features"]), int(spec["n_classes"])
    if kind == "mlp":
        hidden = spec["hidden"]
        hidden = [int(hidden)] if np.ndim(hidden) == 0 else [int(h) for h in hidden]
        return MLP(n_features, n_classes, hidden, dropout=float(spec["dropout"]), batchnorm=bool(spec["batchnorm"]))
    if kind == "cnn":
        return GridCNN(
            n_features,
            n_classes,
            order,
            channels=[int(c) for c in spec["channels"]],
            kernels=[int(k) for k in spec["kernels"]],
            dropout=float(spec["dropout"]),
        )
    if kind == "custom":
        name = spec.get("factory", "?")
        factory = factory if factory is not None else _known_factory(name)
        if factory is None:
            short = str(name).rsplit(".", 1)[-1]
            raise ValueError(
                f"this ensemble was trained with a custom module factory ({name}), which is not known in this "
                f"session (weights are stored, code never is): register it once with "
                f"xl.models.register_factory({short}), or pass the same callable as factory= "
                f"(xl.get.ensemble(adata, factory={short}), Ensemble.load(path, factory={short})) and give that "
                "ensemble to xl.tl.predict/xl.tl.attribute with ensemble="
            )
        module = factory(n_features, n_classes)
        if not isinstance(module, nn.Module):
            raise TypeError(f"the model factory must return a torch.nn.Module, got {type(module).__name__}")
        return module
    raise ValueError(f"unknown module type {kind!r} in the ensemble spec")
