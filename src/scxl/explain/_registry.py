"""Registry of explainers: name → :class:`ExplainerSpec`, each entry carrying its behaviour.

An entry holds everything the engine needs: its exact fast kernel for one-hidden-layer ReLU MLPs
(if any), its general route for any module (Captum, or scxl's Grad-CAM code), how it is built from
a plain gradient (for gradient correction), its cost model (bytes and multiply-adds per cell, used
by the memory bound), its default reference and reference count, and whether it is stochastic.
The engine dispatches through these fields only, so adding an explainer is adding one entry with
:func:`register_explainer` (and its kernel); :func:`scxl.tl.attribute` validates ``method=``
against this registry. The methods page shows a worked example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch
    from torch import nn

    from ._fast import FoldedMLP

#: ``fast(folded_mlp, x, targets, refs, opts) -> (n, G)``: exact kernel of a one-hidden-layer MLP.
FastKernel = Callable[["FoldedMLP", "torch.Tensor", "torch.Tensor", "torch.Tensor | None", "KernelOptions"], "torch.Tensor"]
#: ``general(module, x, targets, refs, opts) -> (n, G)``: route for any module (Captum or own code).
GeneralKernel = Callable[["nn.Module", "torch.Tensor", "torch.Tensor", "torch.Tensor | None", "KernelOptions"], "torch.Tensor"]


class Registry(dict):
    """A registry: name → entry, with :meth:`register`, :meth:`unregister` and a checked :meth:`get_entry`.

    Parameters
    ----------
    entry_type
        Class of the entries (checked on registration).
    unknown
        Message for an unknown name, formatted with ``name`` and ``names`` (the valid names).
    reserved
        Names that cannot be registered.
    """

    def __init__(self, entry_type: type, unknown: str, *, reserved: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.entry_type, self.unknown, self.reserved = entry_type, unknown, reserved

    def register(self, entry: Any, *, replace: bool = False) -> Any:
        """Add ``entry`` under ``entry.name``; ``replace=True`` allows replacing an existing one."""
        if not isinstance(entry, self.entry_type):
            raise TypeError(f"expected a {self.entry_type.__name__}, got {type(entry).__name__}")
        if entry.name in self.reserved:
            raise ValueError(f"{entry.name!r} is reserved")
        if entry.name in self and not replace:
            raise ValueError(f"{entry.name!r} is already registered; pass replace=True to replace it")
        self[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error if absent)."""
        self.pop(name, None)

    def get_entry(self, name: Any) -> Any:
        """The entry ``name``, or a ValueError listing the valid names."""
        if not isinstance(name, str) or name not in self:
            raise ValueError(self.unknown.format(name=name, names=list(self)))
        return self[name]


@dataclass
class KernelOptions:
    """Per-call options the engine passes to every kernel (one object per attribution run).

    Attributes
    ----------
    absolute
        Absolute value of the saliency map (Captum's default).
    n_steps
        Integration steps of Captum's Integrated Gradients (general route only).
    rows_per_pass
        Rows per forward pass inside Captum's Integrated Gradients.
    k_block
        References per block of the ``K`` workspace of the reference kernels (0: loop).
    workspace
        Preallocated buffer for that workspace (reused across calls), or ``None``.
    gene_block
        Genes ablated at once by the fast feature ablation.
    split
        Kernels of explainers with ``direction="reference"`` return ``(total, presence)``: the
        attribution and its part from genes above their reference.
    """

    absolute: bool = True
    n_steps: int = 50
    rows_per_pass: int | None = None
    k_block: int = 0
    workspace: Any = None
    gene_block: int = 256
    split: bool = False


@dataclass(frozen=True)
class Cost:
    """Cost model of one kernel call, per cell, for one member and one draw of references.

    Attributes
    ----------
    fast_bytes
        ``(G, H, B, itemsize) -> bytes`` of the fast kernel's temporaries.
    general_bytes
        ``(G, activation_bytes, B, itemsize) -> bytes`` of the general route (Captum keeps the
        activations of every expanded row for the backward pass).
    flops
        ``(G, H, B) -> multiply-adds`` of the fast kernel (for benchmarks and logs).
    k_workspace
        Whether the fast kernel uses the ``K`` workspace of ``B × H × G`` values (reference
        kernels with more than two shared references).
    """

    fast_bytes: Callable[[int, int, int, int], int]
    general_bytes: Callable[[int, int, int, int], int]
    flops: Callable[[int, int, int], float]
    k_workspace: bool = False


@dataclass(frozen=True)
class ExplainerSpec:
    """An explainer: what it is and how the engine runs it.

    Attributes
    ----------
    name
        Registry key, e.g. ``"deeplift"``.
    label
        Display name (Captum's class name where there is one).
    description
        One-line description.
    needs_reference
        Whether the explainer compares the input with a reference (baseline).
    stochastic
        Whether the explainer is stochastic by nature. For reference-based explainers the actual
        settings decide (see :func:`is_stochastic`): random reference kinds and SmoothGrad make
        any explainer stochastic, a fixed reference makes DeepLiftShap plain DeepLift.
    model_types
        Architectures it applies to: ``("mlp", "cnn")`` or ``("cnn",)``.
    group
        Explainer group of Zhao, Shao & Asmann (2022) where the paper supports it (``"II"``:
        DeepLift, DeepLiftShap, InputXGradient, IntegratedGradients on aggregated MLPs, the group
        whose top genes were tissue-specific), else ``None``.
    default_reference
        Reference kind used when none is given (``None`` when no reference is needed).
    default_n_baselines
        References per cell when none is given; ``None``: the reference kind's default.
    fast
        Exact closed-form kernel for one-hidden-layer ReLU MLPs (:mod:`scxl.explain._fast`), or
        ``None``: other models (and this explainer always) go through ``general``.
    general
        Route for any module: Captum (:mod:`scxl.explain._captum`) or scxl's own code.
    from_gradient
        ``(gradient, x, opts) -> attribution`` for explainers built from the plain input
        gradient; gradient correction of one-hot blocks applies to exactly these.
    cost
        Memory and compute model, see :class:`Cost`.
    stacked
        The exact kernel for all members at once (:mod:`scxl.explain._stacked`):
        ``stacked(stacked_mlp, x, targets, refs, opts) -> (M, n, G)``; used instead of ``fast``
        when every member is a foldable MLP of the same shape.
    direction
        How a contribution splits into *presence* (the gene being above its reference supports
        the class) and *absence* (being below it does): ``"reference"`` — the kernels return
        ``(total, presence)`` when ``opts.split`` is set (DeepLift, DeepLiftShap, Integrated
        Gradients, FeatureAblation: every contribution is ``(x - r)`` times a multiplier, or a
        change when ``x`` becomes ``r``); ``"input"`` — the contribution is ``x ⊙ gradient``
        (a zero reference), so presence is where ``x > 0``; ``None`` — no direction (Saliency,
        GuidedBackprop, Grad-CAM: magnitudes or gated gradients).
    """

    name: str
    label: str
    description: str
    general: GeneralKernel
    cost: Cost
    needs_reference: bool = False
    stochastic: bool = False
    model_types: tuple[str, ...] = ("mlp", "cnn")
    group: str | None = None
    default_reference: str | None = None
    default_n_baselines: int | None = None
    fast: FastKernel | None = field(default=None)
    from_gradient: Callable[..., Any] | None = None
    direction: str | None = None
    stacked: Callable[..., Any] | None = None

    @property
    def fast_kernel(self) -> bool:
        """Whether an exact fast kernel exists for one-hidden-layer ReLU MLPs."""
        return self.fast is not None

    @property
    def gradient_based(self) -> bool:
        """Whether the attribution is built from the plain input gradient (gradient correction applies)."""
        return self.from_gradient is not None


EXPLAINERS: Registry = Registry(ExplainerSpec, "method={name!r} is not a known explainer; choose one of {names}")
"""All explainers by name (filled by :func:`register_explainer`)."""


def register_explainer(spec: ExplainerSpec, *, replace: bool = False) -> ExplainerSpec:
    """Add an explainer to the registry; :func:`scxl.tl.attribute` then accepts ``method=spec.name``.

    Parameters
    ----------
    spec
        The explainer. Its ``general`` route is required; ``fast`` is optional.
    replace
        Allow replacing an entry of the same name.

    Returns
    -------
    ``spec``.

    Examples
    --------
    >>> import torch
    >>> from scxl.explain import EXPLAINERS, ExplainerSpec, register_explainer, unregister_explainer
    >>> from scxl.explain import _fast, _registry
    >>> spec = ExplainerSpec(
    ...     "gradient", "Gradient", "The signed input gradient.",
    ...     general=lambda module, x, t, refs, opts: _registry.module_gradient(module, x, t),
    ...     fast=lambda f, x, t, refs, opts: _fast.gradient(f, x, t),
    ...     cost=EXPLAINERS["saliency"].cost)
    >>> _ = register_explainer(spec)
    >>> "gradient" in EXPLAINERS
    True
    >>> unregister_explainer("gradient")
    """
    if getattr(spec, "needs_reference", False) and spec.default_reference is None:
        raise ValueError(f"explainer {spec.name!r} needs a reference: give it a default_reference")
    return EXPLAINERS.register(spec, replace=replace)


def unregister_explainer(name: str) -> None:
    """Remove an explainer from the registry (e.g. one registered for a test).

    Parameters
    ----------
    name
        Registry name.
    """
    EXPLAINERS.unregister(name)


def get_explainer(name: str) -> ExplainerSpec:
    """Return the spec of an explainer.

    Parameters
    ----------
    name
        Registry name, e.g. ``"deeplift"``.

    Returns
    -------
    The frozen :class:`ExplainerSpec`.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names.

    Examples
    --------
    >>> from scxl.explain import get_explainer
    >>> get_explainer("deeplift").needs_reference
    True
    """
    return EXPLAINERS.get_entry(name)


_TABLE_SKIP = ("general", "fast", "from_gradient", "cost", "stacked")


def explainers_table() -> pd.DataFrame:
    """All registered explainers as a table, one row per explainer.

    Returns
    -------
    A DataFrame indexed by name with the descriptive fields of :class:`ExplainerSpec`
    (``model_types`` joined by commas) and ``fast_kernel``/``gradient_based`` flags.

    Examples
    --------
    >>> from scxl.explain import explainers_table
    >>> "deeplift_shap" in explainers_table().index
    True
    """
    import pandas as pd

    rows = []
    for spec in EXPLAINERS.values():
        row = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in _TABLE_SKIP}
        row["model_types"] = ",".join(spec.model_types)
        row["fast_kernel"] = spec.fast_kernel
        row["direction"] = spec.direction or "none"
        row["gradient_based"] = spec.gradient_based
        rows.append(row)
    return pd.DataFrame(rows).set_index("name")


def resolve_reference(spec: ExplainerSpec, references: Any) -> Any:
    """The reference an explainer uses: ``references`` if given, else its default.

    Parameters
    ----------
    spec
        The explainer.
    references
        A reference kind, an array or ``None``.

    Returns
    -------
    The reference kind or array (``None`` for explainers without a reference).

    Raises
    ------
    ValueError
        If a reference is given to an explainer that takes none.
    """
    if not spec.needs_reference:
        if references is not None:
            raise ValueError(f"method={spec.name!r} takes no reference; pass references=None")
        return None
    return spec.default_reference if references is None else references


def resolve_n_baselines(spec: ExplainerSpec, references: Any, n_baselines: int | None) -> int:
    """References per cell: ``n_baselines`` if given, else the explainer's or the kind's default.

    Parameters
    ----------
    spec
        The explainer.
    references
        Reference kind (a name) or array, after :func:`resolve_reference`.
    n_baselines
        Requested count, or ``None``.

    Returns
    -------
    The count (1 for explainers without a reference and for arrays, whose rows are used as given).
    """
    from ._references import get_reference_kind

    if references is None or not isinstance(references, str):
        return 1 if references is None else int(np.shape(references)[0] if np.ndim(references) == 2 else 1)
    if n_baselines is not None:
        if not isinstance(n_baselines, int | np.integer) or isinstance(n_baselines, bool) or n_baselines < 1:
            raise ValueError(f"n_baselines must be a positive integer, got {n_baselines!r}")
        return int(n_baselines)
    kind = get_reference_kind(references)
    if not kind.random:
        return kind.default_n_baselines
    return int(spec.default_n_baselines or kind.default_n_baselines)


def is_stochastic(spec: ExplainerSpec, references: Any, smoothgrad: Any = None) -> bool:
    """Whether two runs with different seeds can differ (and repeats are worth computing).

    Parameters
    ----------
    spec
        The explainer.
    references
        Reference kind or array after :func:`resolve_reference` (``None`` without a reference).
    smoothgrad
        SmoothGrad setting (``None``: off).

    Returns
    -------
    ``True`` with SmoothGrad, with a random reference kind, or for an explainer without a
    reference that is stochastic by nature; ``False`` otherwise (e.g. DeepLift against
    ``"zero"``, Saliency).

    Examples
    --------
    >>> from scxl.explain import get_explainer, is_stochastic
    >>> is_stochastic(get_explainer("deeplift"), "zero"), is_stochastic(get_explainer("deeplift"), "universal")
    (False, True)
    """
    from ._references import get_reference_kind

    if smoothgrad is not None:
        return True
    if references is None:
        return spec.stochastic
    if not isinstance(references, str):
        return False
    return get_reference_kind(references).random


# --------------------------------------------------------------------------------------------
# cost models (bytes per cell of the temporaries; multiply-adds of the fast kernel)


def _gradient_cost() -> Cost:
    return Cost(
        fast_bytes=lambda g, h, b, d: h * d * 4 + g * d * 2,
        general_bytes=lambda g, act, b, d: act * 4 + g * d * 4,
        flops=lambda g, h, b: 2.0 * g * h,
    )


def _reference_cost(*, captum_steps: bool = False) -> Cost:
    def general(g, act, b, d):
        if captum_steps:  # expanded inputs/baselines/sums + one integration step of all rows at a time
            return b * (g * d * 8 + act * 3)
        return b * (2 * act * 3 + g * d * 8)

    return Cost(
        fast_bytes=lambda g, h, b, d: b * h * d * 6 + h * d * 4 + g * d * 3,
        general_bytes=general,
        flops=lambda g, h, b: (1.0 + 2.0 * b) * g * h if b > 1 else 2.0 * g * h,
        k_workspace=True,
    )


def _ablation_cost(gene_block: int = 256) -> Cost:
    return Cost(
        fast_bytes=lambda g, h, b, d: min(g, gene_block) * h * d * 3 + h * d * 4,
        general_bytes=lambda g, act, b, d: b * (g * d * 6 + act * 3),
        flops=lambda g, h, b: float(b) * g * h * 2,
    )


def _register_builtins() -> None:
    from . import _captum as C
    from . import _fast as F
    from . import _stacked as St

    grad, ref = _gradient_cost(), _reference_cost()

    def saliency_from_gradient(g, x, opts):
        return g.abs() if opts.absolute else g

    def ixg_from_gradient(g, x, opts):
        return x * g

    entries = [
        ExplainerSpec(
            "saliency", "Saliency",
            "Gradient of the target logit w.r.t. the input (absolute value by default, as Captum).",
            general=C.saliency, fast=F.saliency_kernel, from_gradient=saliency_from_gradient, cost=grad,
            stacked=St.saliency_kernel,
        ),
        ExplainerSpec(
            "input_x_gradient", "InputXGradient", "Input times the gradient of the target logit.",
            general=C.input_x_gradient, fast=F.input_x_gradient_kernel, from_gradient=ixg_from_gradient,
            cost=grad, group="II", direction="input", stacked=St.input_x_gradient_kernel,
        ),
        ExplainerSpec(
            "guided_backprop", "GuidedBackprop",
            "Gradient with negative gradients zeroed at every ReLU on the way back.",
            general=C.guided_backprop, fast=F.guided_backprop_kernel, cost=grad, stacked=St.guided_backprop_kernel,
        ),
        ExplainerSpec(
            "integrated_gradients", "IntegratedGradients",
            "Path integral of the gradient from a reference to the input; exact closed form for "
            "one-hidden-layer ReLU MLPs (equal to DeepLift-Rescale).",
            general=C.integrated_gradients, fast=F.deeplift_kernel, cost=_reference_cost(captum_steps=True),
            stacked=St.deeplift_kernel,
            needs_reference=True, group="II", default_reference="mean", direction="reference",
        ),
        ExplainerSpec(
            "deeplift", "DeepLift",
            "DeepLift with the Rescale rule against a reference (averaged over references if several).",
            general=C.deeplift, fast=F.deeplift_kernel, cost=ref, stacked=St.deeplift_kernel,
            needs_reference=True, group="II", default_reference="mean", direction="reference",
        ),
        ExplainerSpec(
            "deeplift_shap", "DeepLiftShap",
            "DeepLift averaged over a distribution of references (expected DeepLift, SHAP values).",
            general=C.deeplift, fast=F.deeplift_kernel, cost=ref, stacked=St.deeplift_kernel,
            needs_reference=True, stochastic=True, group="II", default_reference="sample", default_n_baselines=20,
            direction="reference",
        ),
        ExplainerSpec(
            "guided_gradcam", "GuidedGradCam",
            "Guided backprop times Grad-CAM of the last convolution, mapped from the grid to genes.",
            general=C.guided_gradcam, cost=grad, model_types=("cnn",),
        ),
        ExplainerSpec(
            "guided_gradcam_pp", "GuidedGradCam++",
            "Guided backprop times Grad-CAM++ (Chattopadhay et al. 2018) of the last convolution.",
            general=C.guided_gradcam_pp, cost=grad, model_types=("cnn",),
        ),
        ExplainerSpec(
            "feature_ablation", "FeatureAblation",
            "Change of the target logit when one gene at a time is replaced by its reference value.",
            general=C.feature_ablation, fast=F.feature_ablation_kernel, cost=_ablation_cost(),
            needs_reference=True, default_reference="mean", direction="reference",
        ),
    ]
    for spec in entries:
        register_explainer(spec)


def module_gradient(module: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Plain gradient of the target logit of any module w.r.t. its input (Captum's Saliency, signed).

    Parameters
    ----------
    module
        Eval-mode module mapping ``(n, G)`` to logits.
    x
        Inputs ``(n, G)``.
    targets
        Target class per cell.

    Returns
    -------
    ``(n, G)`` gradients.
    """
    from ._captum import gradient

    return gradient(module, x, targets)


_register_builtins()
