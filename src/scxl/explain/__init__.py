"""Attribution kernels: explainer and reference registries, exact fast kernels, Grad-CAM++, engine.

Pure array/tensor code (no AnnData): ``xl.tl.attribute`` pulls matrices out of AnnData and
calls :func:`attribute_modules`. Importing this package does not import Captum.

Adding an explainer is one :class:`ExplainerSpec` given to :func:`register_explainer`; adding a
reference kind is one :class:`ReferenceKind` given to :func:`register_reference` (see the methods
page, "How to add an explainer or a reference kind").
"""

from ._correction import BlockIndex, correct_gradients
from ._distributed import active_client, attribute_dask
from ._engine import (
    DEFAULT_MEMORY_LIMIT,
    AttributionConfig,
    AttributionResult,
    attribute_modules,
    choose_batch_size,
    chunk_bytes_per_cell,
    group_means,
    group_sums,
)
from ._fast import FoldedMLP, fold_mlp, is_foldable
from ._gradcam import gene_positions, gradcam_map, gradcam_pp_map, guided_gradcam, guided_gradcam_pp
from ._references import (
    REFERENCE_KINDS,
    FixedReferences,
    GeneStats,
    ReferenceKind,
    ReferenceSampler,
    ReferenceSet,
    ReferenceSource,
    compute_gene_stats,
    get_reference_kind,
    make_reference_sampler,
    reference_shift,
    register_reference,
    truncated_normal,
    unregister_reference,
)
from ._registry import (
    EXPLAINERS,
    Cost,
    ExplainerSpec,
    KernelOptions,
    explainers_table,
    get_explainer,
    is_stochastic,
    register_explainer,
    resolve_n_baselines,
    resolve_reference,
    unregister_explainer,
)

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "EXPLAINERS",
    "REFERENCE_KINDS",
    "AttributionConfig",
    "AttributionResult",
    "BlockIndex",
    "Cost",
    "ExplainerSpec",
    "FixedReferences",
    "FoldedMLP",
    "GeneStats",
    "KernelOptions",
    "ReferenceKind",
    "ReferenceSampler",
    "ReferenceSet",
    "ReferenceSource",
    "active_client",
    "attribute_dask",
    "attribute_modules",
    "choose_batch_size",
    "chunk_bytes_per_cell",
    "compute_gene_stats",
    "correct_gradients",
    "explainers_table",
    "fold_mlp",
    "gene_positions",
    "get_explainer",
    "get_reference_kind",
    "gradcam_map",
    "gradcam_pp_map",
    "group_means",
    "group_sums",
    "guided_gradcam",
    "guided_gradcam_pp",
    "is_foldable",
    "is_stochastic",
    "make_reference_sampler",
    "reference_shift",
    "register_explainer",
    "register_reference",
    "resolve_n_baselines",
    "resolve_reference",
    "truncated_normal",
    "unregister_explainer",
    "unregister_reference",
]
