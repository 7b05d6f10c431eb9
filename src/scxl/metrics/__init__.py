"""Pure NumPy/SciPy metrics: agreement, specificity, enrichment, consistency, faithfulness.

Arrays in, arrays or DataFrames out; nothing here knows about AnnData (``xl.tl`` wraps these).

Agreement between attributions
    :func:`spearman_rows`, :func:`pairwise_spearman`, :func:`topk_overlap`,
    :func:`pairwise_topk_overlap`, :func:`replicate_agreement`, :func:`agreement_summary`
Gene specificity across groups
    :func:`tau`, :func:`hpa_categories`, :func:`housekeeping`
Gene-set enrichment
    :func:`overlap_enrichment`, :func:`enrichment_table`, :func:`bh_adjust`, :func:`read_gmt`
Consistency and model selection
    :func:`selection_frequency`, :func:`consistency_kld`, :func:`pareto_front`
Faithfulness
    :func:`deletion_curve`, :func:`insertion_curve`, :func:`curve_auc`
Rankings over ensemble members
    :func:`rank_groups` (a :class:`GroupRanking`), :func:`direction_scores` (presence vs absence)
"""

from ._agreement import (
    agreement_summary,
    pairwise_spearman,
    pairwise_topk_overlap,
    replicate_agreement,
    spearman_rows,
    topk_overlap,
)
from ._consistency import consistency_kld, pareto_front, selection_frequency
from ._enrichment import OverlapResult, bh_adjust, enrichment_table, overlap_enrichment, read_gmt
from ._faithfulness import curve_auc, deletion_curve, insertion_curve
from ._ranking import RANK_BY, RANKING_FIELDS, GroupRanking, direction_scores, rank_groups
from ._specificity import HPA_CATEGORIES, housekeeping, hpa_categories, tau

__all__ = [
    "HPA_CATEGORIES",
    "RANKING_FIELDS",
    "RANK_BY",
    "GroupRanking",
    "OverlapResult",
    "agreement_summary",
    "bh_adjust",
    "consistency_kld",
    "curve_auc",
    "deletion_curve",
    "direction_scores",
    "enrichment_table",
    "housekeeping",
    "hpa_categories",
    "insertion_curve",
    "overlap_enrichment",
    "pairwise_spearman",
    "pairwise_topk_overlap",
    "pareto_front",
    "rank_groups",
    "read_gmt",
    "replicate_agreement",
    "selection_frequency",
    "spearman_rows",
    "tau",
    "topk_overlap",
]
