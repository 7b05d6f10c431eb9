"""General attribution path through Captum, for models without an exact fast kernel.

Deeper MLPs, CNNs and custom modules go through :mod:`captum.attr`. Several references per cell
are batched by expanding the inputs (cell ``i`` is repeated once per reference, as Captum's own
:class:`~captum.attr.DeepLiftShap` does) and the attributions are averaged over references.
Captum is imported inside the functions, never at module import.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

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


def captum_attribute(
    module: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    method: str,
    refs: torch.Tensor | None = None,
    *,
    abs: bool = True,
    n_steps: int = 50,
    ig_method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    perturbations_per_eval: int = 1,
) -> torch.Tensor:
    """Attributions of one module through Captum.

    Parameters
    ----------
    module
        Eval-mode module mapping ``(n, G)`` to logits.
    x
        Inputs, ``(n, G)`` (same dtype and device as the module).
    targets
        Target class per cell, ``(n,)`` int64.
    method
        ``"gradient"`` (raw gradient) or one of ``"saliency"``, ``"input_x_gradient"``,
        ``"guided_backprop"``, ``"integrated_gradients"``, ``"deeplift"``, ``"deeplift_shap"``,
        ``"feature_ablation"``.
    refs
        References for reference-based methods: shared ``(B, G)`` or per cell ``(n, B, G)``.
    abs
        Absolute value for saliency (Captum's default).
    n_steps
        Integration steps of Integrated Gradients.
    ig_method
        Integration rule of Integrated Gradients (Captum's ``method``).
    internal_batch_size
        Rows per forward pass inside Integrated Gradients (Captum's argument).
    perturbations_per_eval
        Ablated copies per forward pass in FeatureAblation.

    Returns
    -------
    ``(n, G)`` attributions, averaged over references.
    """
    from captum import attr as ca

    x = x.detach()
    with quiet_captum():
        if method in ("gradient", "saliency"):
            return ca.Saliency(module).attribute(x, target=targets, abs=abs and method == "saliency").detach()
        if method == "input_x_gradient":
            return ca.InputXGradient(module).attribute(x, target=targets).detach()
        if method == "guided_backprop":
            return ca.GuidedBackprop(module).attribute(x, target=targets).detach()
        if refs is None:
            raise ValueError(f"method={method!r} needs references")
        n = x.shape[0]
        xe, te, re, b = _expand(x, targets, refs)
        if method == "integrated_gradients":
            out = ca.IntegratedGradients(module).attribute(
                xe, baselines=re, target=te, n_steps=n_steps, method=ig_method,
                internal_batch_size=internal_batch_size,
            )
        elif method in ("deeplift", "deeplift_shap"):
            out = ca.DeepLift(module).attribute(xe, baselines=re, target=te)
        elif method == "feature_ablation":
            out = ca.FeatureAblation(module).attribute(
                xe, baselines=re, target=te, perturbations_per_eval=perturbations_per_eval
            )
        else:
            raise ValueError(f"method={method!r} has no Captum path")
        return out.detach().reshape(n, b, -1).mean(1)
