"""Per-group gene rankings from the members of an ensemble (arrays in, a :class:`GroupRanking` out).

The AnnData glue (``xl.tl.attribute``) computes per-member group means of the attributions and
hands them here; this module assembles everything ``rank_genes_groups``-format results hold —
scores, their sd across members, a t-test of the members' scores, BH-adjusted p-values, the
fraction of members that put a gene in their top ``k``, and the agreement between members — as
Scanpy's ``tools/_rank_genes_groups`` splits computing from its ``_results`` writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._agreement import pairwise_spearman, pairwise_topk_overlap
from ._enrichment import bh_adjust

#: Per-gene fields of a ranking, in the order they are stored.
RANKING_FIELDS = ("scores", "scores_std", "logfoldchanges", "pvals", "pvals_adj", "topk_fraction")


@dataclass
class GroupRanking:
    """Per-group, per-gene statistics of an attribution over ensemble members.

    Attributes
    ----------
    groups
        Group names (rows of every array).
    scores
        ``(n_groups, G)`` group score: mean contribution over the group's cells (aggregated
        over members).
    scores_std
        ``(n_groups, G)`` sd of the members' group scores (``ddof=1``; 0 for one member).
    pvals
        ``(n_groups, G)`` two-sided one-sample t-test of the members' group scores against 0
        (NaN with one member; 0 or 1 where the members agree exactly).
    topk_fraction
        ``(n_groups, G)`` fraction of members whose top ``top_k`` genes of the group include the
        gene.
    top_k
        The ``k`` of ``topk_fraction`` and of the agreement.
    agreement
        Per group: median pairwise Spearman and top-k overlap between members (``None`` with
        one member).
    extra
        Further ``(n_groups, G)`` fields stored with the ranking (e.g. ``logfoldchanges``).
    """

    groups: list[str]
    scores: np.ndarray
    scores_std: np.ndarray
    pvals: np.ndarray
    topk_fraction: np.ndarray
    top_k: int
    agreement: pd.DataFrame | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def columns(self, features: np.ndarray, gene_names: np.ndarray, *, groups: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Every field, per group, over ``features`` sorted by decreasing score.

        ``pvals_adj`` is the BH adjustment within ``features`` (e.g. one modality of a MuData).

        Parameters
        ----------
        features
            Column indices of the genes to rank.
        gene_names
            Their names (same length).
        groups
            Groups to include (default: all).

        Returns
        -------
        ``{"names": {group: names}, "scores": {group: values}, ...}`` for every field in
        :data:`RANKING_FIELDS` that is available.
        """
        features = np.asarray(features, dtype=np.int64)
        gene_names = np.asarray(gene_names)
        fields_ = {"scores": self.scores, "scores_std": self.scores_std, **self.extra, "pvals": self.pvals,
                   "topk_fraction": self.topk_fraction}
        names = [f for f in RANKING_FIELDS if f in fields_ or f == "pvals_adj"] + [f for f in self.extra if f not in RANKING_FIELDS]
        cols: dict[str, dict[str, np.ndarray]] = {"names": {}, **{f: {} for f in names}}
        for g, name in enumerate(self.groups):
            if groups is not None and name not in groups:
                continue
            order = np.argsort(-self.scores[g, features], kind="stable")
            cols["names"][name] = gene_names[order].astype(object)
            for f, arr in fields_.items():
                cols[f][name] = arr[g, features][order]
            p = cols["pvals"][name]
            adj = np.full_like(p, np.nan)
            ok = np.isfinite(p)
            if ok.any():
                adj[ok] = bh_adjust(p[ok])
            cols["pvals_adj"][name] = adj
        return cols


def rank_groups(
    member_group_means: np.ndarray,
    group_means: np.ndarray,
    groups: list[str],
    *,
    top_k: int = 100,
    extra: dict[str, np.ndarray] | None = None,
) -> GroupRanking:
    """Assemble a :class:`GroupRanking` from per-member group scores.

    Parameters
    ----------
    member_group_means
        ``(n_members, n_groups, G)`` group scores of every member.
    group_means
        ``(n_groups, G)`` group scores of the aggregated attributions.
    groups
        Group names.
    top_k
        Size of the top-gene lists for ``topk_fraction`` and the agreement (capped at ``G``).
    extra
        Further per-gene fields to store (e.g. ``{"logfoldchanges": lfc}``).

    Returns
    -------
    The :class:`GroupRanking`.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import rank_groups
    >>> member = np.random.default_rng(0).normal(size=(5, 2, 30))
    >>> r = rank_groups(member, member.mean(0), ["a", "b"], top_k=5)
    >>> r.scores.shape, r.topk_fraction.max() <= 1
    ((2, 30), True)
    """
    from scipy import stats as st

    member = np.asarray(member_group_means, dtype=np.float64)
    scores = np.asarray(group_means, dtype=np.float64)
    n_members = member.shape[0]
    sd = member.std(axis=0, ddof=1) if n_members > 1 else np.zeros_like(scores)
    if n_members > 1:
        mean = member.mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            tstat = mean / (sd / np.sqrt(n_members))
        pvals = 2 * st.t.sf(np.abs(tstat), df=n_members - 1)
        pvals = np.where(sd == 0, np.where(mean == 0, 1.0, 0.0), pvals)
    else:
        pvals = np.full_like(scores, np.nan)
    k = min(int(top_k), scores.shape[1])
    topk = np.zeros_like(scores)
    for m in range(n_members):
        for g in range(len(groups)):
            topk[g, np.argsort(-member[m, g], kind="stable")[:k]] += 1
    topk /= n_members
    agreement = _member_agreement(member, groups, k) if n_members > 1 else None
    return GroupRanking(list(groups), scores, sd, pvals, topk, k, agreement, dict(extra or {}))


def _member_agreement(member: np.ndarray, groups: list[str], k: int) -> pd.DataFrame:
    rows: dict[str, Any] = {}
    for g, name in enumerate(groups):
        reps = member[:, g, :]
        if not np.isfinite(reps).all():
            continue
        rho = pairwise_spearman(reps)
        ov = pairwise_topk_overlap(reps, k)
        iu = np.triu_indices(reps.shape[0], 1)
        finite = rho[iu][np.isfinite(rho[iu])]  # NaN where a member's scores are constant (e.g. all zero)
        rows[name] = {"spearman": float(np.median(finite)) if finite.size else np.nan,
                      "topk_overlap": float(np.median(ov[iu]))}
    return pd.DataFrame.from_dict(rows, orient="index")
