r"""Grad-CAM, Grad-CAM++ and their guided versions for the grid CNN, mapped back to genes.

:class:`scxl.models.GridCNN` takes ``(n, G)`` expression and lays genes on a ``side × side`` grid
inside the module (buffer ``index``), so Captum's :class:`~captum.attr.GuidedGradCam` cannot
upsample the CAM to the input shape (its interpolation targets ``input.shape[2:]``, which is
empty). Here the CAM of the last convolution is upsampled to ``(side, side)`` with
:meth:`captum.attr.LayerAttribution.interpolate` (nearest by default, as Captum), read at each
gene's grid pixel, and multiplied by guided backpropagation w.r.t. the gene input (the gradient
of a gene is the gradient at its pixel, because the layout is a gather).

Grad-CAM++ (Chattopadhay et al., 2018) with the exponential-output closed form: for the class
score ``S`` and ``Y = exp(S)``, the higher derivatives of ``Y`` are powers of the first
derivatives of ``S`` (the network is piecewise linear), so with ``g = ∂S/∂A^k_ij``

.. math::

    \alpha^k_{ij} = \frac{g^2}{2 g^2 + \sum_{ab} A^k_{ab}\, g^3}, \qquad
    w_k = \sum_{ij} \alpha^k_{ij}\, \mathrm{relu}(g), \qquad
    \mathrm{CAM} = \mathrm{relu}\Big(\sum_k w_k A^k\Big),

with ``α = 0`` where ``g = 0`` (the common implementation). The exact formula with
``Y = exp(S)`` gives the same map times the positive constant ``exp(S)`` per cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._captum import quiet_captum


def gene_positions(module: nn.Module) -> torch.Tensor:
    """Grid pixel (row-major flat index) of every gene of a grid CNN.

    Parameters
    ----------
    module
        A module with an ``index`` buffer as :class:`scxl.models.GridCNN` (``index[p]`` is the
        gene at pixel ``p``; ``n_features`` marks padding).

    Returns
    -------
    ``(G,)`` int64 tensor.
    """
    if not hasattr(module, "index") or not hasattr(module, "side"):
        raise TypeError("Grad-CAM explainers need a grid CNN with `index` and `side` (scxl.models.GridCNN)")
    index = module.index
    n_features = int(module.n_features)
    pixels = torch.nonzero(index < n_features).ravel()
    pos = torch.empty(n_features, dtype=torch.int64, device=index.device)
    pos[index[pixels]] = pixels
    return pos


def _layer(module: nn.Module, layer: nn.Module | None) -> nn.Module:
    if layer is not None:
        return layer
    if not hasattr(module, "last_conv"):
        raise TypeError("pass layer= or use a module with a `last_conv` property (scxl.models.GridCNN)")
    return module.last_conv


def layer_activation_and_gradient(
    module: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output of ``layer`` and the gradient of the target logit w.r.t. it.

    Parameters
    ----------
    module
        Eval-mode model.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    layer
        Submodule whose output is read.

    Returns
    -------
    activations, gradients
        Both of the layer's output shape, e.g. ``(n, K, h, w)``.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_mod, _inp, out):
        store["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            logits = module(xg)
            score = logits.gather(1, targets[:, None]).sum()
            (grad,) = torch.autograd.grad(score, store["a"])
    finally:
        handle.remove()
    return store["a"].detach(), grad.detach()


def gradcam_pp_map(
    module: nn.Module, x: torch.Tensor, targets: torch.Tensor, *, layer: nn.Module | None = None
) -> torch.Tensor:
    """Grad-CAM++ map of a convolutional layer.

    Parameters
    ----------
    module
        Eval-mode model.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    layer
        Convolution to explain (default ``module.last_conv``).

    Returns
    -------
    ``(n, 1, h, w)`` non-negative map.
    """
    a, g = layer_activation_and_gradient(module, x, targets, _layer(module, layer))
    g2 = g * g
    g3 = g2 * g
    denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(g != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    weights = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
    return torch.relu((weights * a).sum(1, keepdim=True))


def gradcam_map(
    module: nn.Module, x: torch.Tensor, targets: torch.Tensor, *, layer: nn.Module | None = None
) -> torch.Tensor:
    """Grad-CAM map via :class:`captum.attr.LayerGradCam` with ``relu_attributions=True``.

    Parameters
    ----------
    module
        Eval-mode model.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    layer
        Convolution to explain (default ``module.last_conv``).

    Returns
    -------
    ``(n, 1, h, w)`` non-negative map.
    """
    from captum.attr import LayerGradCam

    with quiet_captum():
        return LayerGradCam(module, _layer(module, layer)).attribute(
            x.detach(), target=targets, relu_attributions=True
        ).detach()


def cam_to_genes(module: nn.Module, cam: torch.Tensor, *, interpolate_mode: str = "nearest") -> torch.Tensor:
    """Upsample a CAM to the ``side × side`` grid and read it at every gene's pixel.

    Parameters
    ----------
    module
        The grid CNN (for ``side`` and ``index``).
    cam
        ``(n, 1, h, w)`` map.
    interpolate_mode
        Mode of :meth:`captum.attr.LayerAttribution.interpolate` (Captum's default ``"nearest"``).

    Returns
    -------
    ``(n, G)`` CAM value of every gene.
    """
    side = int(module.side)
    up = F.interpolate(cam, size=(side, side), mode=interpolate_mode)
    return up.reshape(cam.shape[0], side * side)[:, gene_positions(module)]


def _guided(module: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    from captum.attr import GuidedBackprop

    with quiet_captum():
        return GuidedBackprop(module).attribute(x.detach(), target=targets).detach()


def guided_gradcam(
    module: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    layer: nn.Module | None = None,
    interpolate_mode: str = "nearest",
) -> torch.Tensor:
    """Guided Grad-CAM per gene: guided backprop × Grad-CAM (as Captum's ``GuidedGradCam``).

    Parameters
    ----------
    module
        Eval-mode grid CNN.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    layer
        Convolution to explain (default ``module.last_conv``).
    interpolate_mode
        Upsampling mode of the CAM.

    Returns
    -------
    ``(n, G)`` attributions.
    """
    cam = cam_to_genes(module, gradcam_map(module, x, targets, layer=layer), interpolate_mode=interpolate_mode)
    return _guided(module, x, targets) * cam


def guided_gradcam_pp(
    module: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    layer: nn.Module | None = None,
    interpolate_mode: str = "nearest",
) -> torch.Tensor:
    """Guided Grad-CAM++ per gene: guided backprop × Grad-CAM++.

    Parameters
    ----------
    module
        Eval-mode grid CNN.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    layer
        Convolution to explain (default ``module.last_conv``).
    interpolate_mode
        Upsampling mode of the CAM.

    Returns
    -------
    ``(n, G)`` attributions.
    """
    cam = cam_to_genes(module, gradcam_pp_map(module, x, targets, layer=layer), interpolate_mode=interpolate_mode)
    return _guided(module, x, targets) * cam
