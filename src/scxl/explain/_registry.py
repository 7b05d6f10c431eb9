"""Registry of explainers: name → :class:`ExplainerSpec`.

Adding an explainer is adding an entry here (and a kernel in :mod:`._fast` or :mod:`._captum`);
:func:`scxl.tl.attribute` validates ``method=`` against this registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


@dataclass(frozen=True)
class ExplainerSpec:
    """What the engine needs to know about an explainer.

    Attributes
    ----------
    name
        Registry key, e.g. ``"deeplift"``.
    label
        Display name (Captum's class name where there is one).
    needs_reference
        Whether the explainer compares the input with a reference (baseline).
    stochastic
        Whether the explainer is stochastic by nature: it draws its references from a
        distribution (DeepLiftShap = expected DeepLift over sampled references). Any explainer
        becomes stochastic when its references are random or SmoothGrad is on; the engine decides
        from the actual settings whether repeats are needed.
    model_types
        Architectures it applies to: ``("mlp", "cnn")`` or ``("cnn",)``.
    fast_kernel
        Whether an exact closed-form kernel exists for a one-hidden-layer ReLU MLP
        (:mod:`scxl.explain._fast`); other models go through Captum.
    group
        Explainer group of Zhao, Shao & Asmann (2022) where the paper supports it (``"II"``:
        DeepLift, DeepLiftShap, InputXGradient, IntegratedGradients on aggregated MLPs, the group
        whose top genes were tissue-specific), else ``None``.
    default_reference
        Reference kind used when none is given (``None`` when no reference is needed).
    gradient_based
        Whether the attribution is built from the plain input gradient, so that gradient
        correction for one-hot blocks applies.
    description
        One-line description.
    """

    name: str
    label: str
    needs_reference: bool
    stochastic: bool
    model_types: tuple[str, ...]
    fast_kernel: bool
    group: str | None
    default_reference: str | None
    gradient_based: bool
    description: str


_SPECS = (
    ExplainerSpec(
        "saliency", "Saliency", False, False, ("mlp", "cnn"), True, None, None, True,
        "Gradient of the target logit w.r.t. the input (absolute value by default, as Captum).",
    ),
    ExplainerSpec(
        "input_x_gradient", "InputXGradient", False, False, ("mlp", "cnn"), True, "II", None, True,
        "Input times the gradient of the target logit.",
    ),
    ExplainerSpec(
        "guided_backprop", "GuidedBackprop", False, False, ("mlp", "cnn"), True, None, None, False,
        "Gradient with negative gradients zeroed at every ReLU on the way back.",
    ),
    ExplainerSpec(
        "integrated_gradients", "IntegratedGradients", True, False, ("mlp", "cnn"), True, "II",
        "zero", False,
        "Path integral of the gradient from a reference to the input; exact closed form for "
        "one-hidden-layer ReLU MLPs (equal to DeepLift-Rescale).",
    ),
    ExplainerSpec(
        "deeplift", "DeepLift", True, False, ("mlp", "cnn"), True, "II", "zero", False,
        "DeepLift with the Rescale rule against a reference (averaged over references if several).",
    ),
    ExplainerSpec(
        "deeplift_shap", "DeepLiftShap", True, True, ("mlp", "cnn"), True, "II", "sample", False,
        "DeepLift averaged over a distribution of references (expected DeepLift, SHAP values).",
    ),
    ExplainerSpec(
        "guided_gradcam", "GuidedGradCam", False, False, ("cnn",), False, None, None, False,
        "Guided backprop times Grad-CAM of the last convolution, mapped from the grid to genes.",
    ),
    ExplainerSpec(
        "guided_gradcam_pp", "GuidedGradCam++", False, False, ("cnn",), False, None, None, False,
        "Guided backprop times Grad-CAM++ (Chattopadhay et al. 2018) of the last convolution.",
    ),
    ExplainerSpec(
        "feature_ablation", "FeatureAblation", True, False, ("mlp", "cnn"), True, None, "zero",
        False,
        "Change of the target logit when one gene at a time is replaced by its reference value.",
    ),
)

EXPLAINERS: dict[str, ExplainerSpec] = {spec.name: spec for spec in _SPECS}
"""All explainers by name."""


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
    if not isinstance(name, str) or name not in EXPLAINERS:
        raise ValueError(f"method={name!r} is not a known explainer; choose one of {list(EXPLAINERS)}")
    return EXPLAINERS[name]


def explainers_table() -> pd.DataFrame:
    """All registered explainers as a table, one row per explainer.

    Returns
    -------
    A DataFrame indexed by name with one column per :class:`ExplainerSpec` field
    (``model_types`` joined by commas).

    Examples
    --------
    >>> from scxl.explain import explainers_table
    >>> "deeplift_shap" in explainers_table().index
    True
    """
    rows = []
    for spec in EXPLAINERS.values():
        row = asdict(spec)
        row["model_types"] = ",".join(spec.model_types)
        rows.append(row)
    return pd.DataFrame(rows).set_index("name")
