"""``Literal`` aliases of the option values in public signatures (one place, reused everywhere)."""

from __future__ import annotations

from typing import Literal

Method = Literal[
    "saliency", "input_x_gradient", "guided_backprop", "integrated_gradients", "deeplift", "deeplift_shap",
    "guided_gradcam", "guided_gradcam_pp", "feature_ablation",
]
"""Built-in explainers (see :func:`scxl.tl.explainers`; registered ones are accepted too)."""

ReferenceKindName = Literal["zero", "mean", "normal", "universal", "specific", "sample", "rest", "marginal", "rest_mean"]
"""Built-in reference kinds (registered ones are accepted too)."""

Aggregate = Literal["mean", "median"]
"""Aggregation over ensemble members."""

Precision = Literal["single", "double"]
"""Computation precision of the attribution engine."""

Target = Literal["label", "prediction"]
"""Class explained per cell (a class name is accepted too)."""

Vary = Literal["models", "baselines", "repeats", "smoothgrad"]
"""What :func:`scxl.tl.reproducibility` varies."""

ModelType = Literal["mlp", "cnn"]
"""Built-in member architectures."""

Balance = Literal["upsample", "weights", "none"]
"""Class balancing in training."""

Split = Literal["per_model", "shared"]
"""Validation split per member or shared."""

LayerDtype = Literal["float32", "float16"]
"""Dtype of stored attribution layers."""

Values = Literal["log1p", "log2p", "linear"]
"""Scale of expression values (specificity)."""

Replace = Literal["reference", "zero", "mean"]
"""What deleted genes are replaced with (faithfulness)."""

RankBy = Literal["up", "presence", "total"]
"""How genes are ranked within a group (presence on top; presence only; the whole contribution)."""

Direction = Literal["up", "down", "all"]
"""Which end of a ranking :func:`scxl.get.top_genes` reads."""
