"""General attribution routes, for models without an exact fast kernel.

Deeper MLPs, CNNs and custom modules go through :mod:`captum.attr`. Several references per cell
are batched by expanding the inputs (cell ``i`` is repeated once per reference, as Captum's own
:class:`~captum.attr.DeepLiftShap` does) and the attributions are averaged over references.
Every route has the registry's signature ``route(module, x, targets, refs, opts) -> (n, G)``
(:data:`scxl.explain.GeneralKernel`). Captum is imported inside the functions, never at module
import.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from ._registry import KernelOptions

# Informational warnings Captum emits on every call; silenced locally, never globally.
_CAPTUM_NOISE = (
    r"Setting forward, backward hooks and attributes on non-linear",
    r"Setting backward hooks on ReLU activations",
    r"Input Tensor \d+ did not already require gradients",
)


@contextlib.contextmanager
def quiet_captum():
    """Silence Captum's per-call informational warnings inside the block."""
    with warnings.catch_warnings():
        for pattern in _CAPTUM_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def _expand(x: torch.Tensor, targets: torch.Tensor, refs: torch.Tensor):
    n = x.shape[0]
    if refs.ndim == 2:
        b = refs.shape[0]
        r = refs.repeat(n, 1)
    else:
        b = refs.shape[1]
        r = refs.reshape(n * b, -1)
    return x.repeat_interleave(b, 0), targets.repeat_interleave(b), r.contiguous(), b


def _attr(cls_name: str, module: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    from captum import attr as ca

    with quiet_captum():
        return getattr(ca, cls_name)(module).attribute(x.detach(), **kwargs).detach()


def _over_references(cls_name: str, module, x, targets, refs, *, split: bool = False, **kwargs):
    """Captum attribution of every (cell, reference) pair, averaged over references.

    With ``split``, also the mean of the attributions where the gene is above the reference.
    """
    if refs is None:
        raise ValueError(f"{cls_name} needs references")
    n = x.shape[0]
    xe, te, re, b = _expand(x.detach(), targets, refs)
    attr = _attr(cls_name, module, xe, baselines=re, target=te, **kwargs)
    total = attr.reshape(n, b, -1).mean(1)
    if not split:
        return total
    return total, (attr * (xe > re)).reshape(n, b, -1).mean(1)


def gradient(module: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Signed input gradient of the target logit (Captum's Saliency with ``abs=False``).

    Parameters
    ----------
    module
        Eval-mode module mapping ``(n, G)`` to logits.
    x
        Inputs, ``(n, G)`` (same dtype and device as the module).
    targets
        Target class per cell, ``(n,)`` int64.

    Returns
    -------
    ``(n, G)`` gradients.
    """
    return _attr("Saliency", module, x, target=targets, abs=False)


def saliency(module: nn.Module, x, targets, refs, opts: KernelOptions) -> torch.Tensor:
    """:class:`captum.attr.Saliency` (absolute value with ``opts.absolute``)."""
    return _attr("Saliency", module, x, target=targets, abs=opts.absolute)


def input_x_gradient(module: nn.Module, x, targets, refs, opts: KernelOptions) -> torch.Tensor:
    """:class:`captum.attr.InputXGradient`."""
    return _attr("InputXGradient", module, x, target=targets)


def guided_backprop(module: nn.Module, x, targets, refs, opts: KernelOptions) -> torch.Tensor:
    """:class:`captum.attr.GuidedBackprop`."""
    return _attr("GuidedBackprop", module, x, target=targets)


def deeplift(module: nn.Module, x, targets, refs, opts: KernelOptions) -> torch.Tensor:
    """:class:`captum.attr.DeepLift` against every reference, averaged (DeepLiftShap for a distribution)."""
    return _over_references("DeepLift", module, x, targets, refs, split=opts.split)


def integrated_gradients(module: nn.Module, x, targets, refs, opts: KernelOptions) -> torch.Tensor:
    """:class:`captum.attr.IntegratedGradients` (Gauss–Legendre, ``opts.n_steps``) per reference, averaged."""
    return _over_references("IntegratedGradients", module, x, targets, refs, n_steps=opts.n_steps,
                            method="gausslegendre", internal_batch_size=opts.rows_per_pass, split=opts.split)


def feature_ablation(module: nn.Module, x, targets, refs, opts: KernelOptions) -> torch.Tensor:
    """:class:`captum.attr.FeatureAblation` (one gene at a time) per reference, averaged."""
    return _over_references("FeatureAblation", module, x, targets, refs, perturbations_per_eval=1, split=opts.split)


def guided_gradcam(module: nn.Module, x, targets, refs, opts: KernelOptions) -> torch.Tensor:
    """Guided Grad-CAM of a grid CNN, mapped to genes (:func:`scxl.explain.guided_gradcam`)."""
    from ._gradcam import guided_gradcam as run

    return run(module, x, targets)


def guided_gradcam_pp(module: nn.Module, x, targets, refs, opts: KernelOptions) -> torch.Tensor:
    """Guided Grad-CAM++ of a grid CNN, mapped to genes (:func:`scxl.explain.guided_gradcam_pp`)."""
    from ._gradcam import guided_gradcam_pp as run

    return run(module, x, targets)
