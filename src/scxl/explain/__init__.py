"""Attribution kernels: explainer registry, references, exact fast kernels, Grad-CAM++, engine.

Pure array/tensor code (no AnnData): ``xl.tl.attribute`` pulls matrices out of AnnData and
calls :func:`attribute_modules`. Importing this package does not import Captum.
"""

from ._correction import BlockIndex, correct_gradients
from ._engine import (
    DEFAULT_MEMORY_LIMIT,
    AttributionResult,
    attribute_modules,
    choose_batch_size,
    chunk_bytes_per_cell,
)
from ._fast import FoldedMLP, fold_mlp, is_foldable
from ._gradcam import gene_positions, gradcam_map, gradcam_pp_map, guided_gradcam, guided_gradcam_pp
from ._references import (
    REFERENCE_KINDS,
    GeneStats,
    ReferenceSampler,
    ReferenceSet,
    compute_gene_stats,
    make_reference_sampler,
    truncated_normal,
)
from ._registry import EXPLAINERS, ExplainerSpec, explainers_table, get_explainer

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "EXPLAINERS",
    "REFERENCE_KINDS",
    "AttributionResult",
    "BlockIndex",
    "ExplainerSpec",
    "FoldedMLP",
    "GeneStats",
    "ReferenceSampler",
    "ReferenceSet",
    "attribute_modules",
    "choose_batch_size",
    "chunk_bytes_per_cell",
    "compute_gene_stats",
    "correct_gradients",
    "explainers_table",
    "fold_mlp",
    "gene_positions",
    "get_explainer",
    "gradcam_map",
    "gradcam_pp_map",
    "guided_gradcam",
    "guided_gradcam_pp",
    "is_foldable",
    "make_reference_sampler",
    "truncated_normal",
]
