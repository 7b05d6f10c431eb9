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
from ._utils import topk_mask

#: Per-gene fields of a ranking, in the order they are stored.
RANKING_FIELDS = ("scores", "scores_std", "logfoldchanges", "pvals", "pvals_adj", "topk_fraction")

#: How a gene's group score is formed from its contribution S and its presence part P (A = S - P).
RANK_BY = ("up", "presence", "total")


def direction_scores(total: np.ndarray, presence: np.ndarray | None, rank_by: str = "up",
                     lfc: np.ndarray | None = None) -> np.ndarray:
    """The ranking score of every gene from its contribution and the part from being present.

    A DeepLift-type contribution ``S = (x - r) × multiplier`` splits into *presence* ``P`` (the
    part where the gene is above the reference) and *absence* ``A = S - P`` (below it). A positive
    ``P`` means the group's expression of the gene supports the group; a positive ``A`` that its
    lack does — either because the group does not express a gene the other groups do (an absence
    marker, e.g. a monocyte gene for B cells) or because the gene acts in a pattern (one gene of a
    pair low while the other is high).

    Parameters
    ----------
    total
        Contributions ``S`` (any shape).
    presence
        Presence parts ``P`` (same shape), or ``None`` (explainers without a direction: ``S``).
    rank_by
        ``"up"`` (the default, chosen in ``benchmarks/markers.py``): supporting evidence,
        ``max(P, 0) + max(A, 0)`` for genes that are not lower in the group than in the rest
        (``lfc >= 0``) and ``max(P, 0) - max(A, 0)`` for genes that are (absence markers go to
        the bottom with negative scores): the sign convention of ``rank_genes_groups``,
        up-regulated first and down-regulated last, while genes that act in combination keep
        their evidence. ``"presence"``: ``P``. ``"total"``: ``S`` (the paper's ranking; absence
        markers mix into the top).
    lfc
        Log fold change of the group's mean expression on the *linear* scale (e.g. normalised
        counts, ``mean(expm1(x))`` for log1p data) against the rest, same shape as ``total``;
        needed for ``"up"``. NaN counts as not lower. (Scanpy's ``logfoldchanges`` compare
        ``expm1`` of the mean *log* values instead; for a gene that is high in half of a group's
        cells and nearly absent in the other half the two disagree, and the linear mean is the
        one that says whether the group expresses the gene less.)

    Returns
    -------
    Scores, same shape as ``total``.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import direction_scores
    >>> S = np.array([2.0, 2.0, 1.0]); P = np.array([2.0, 0.0, -0.5])  # present, absent, a pattern
    >>> lfc = np.array([3.0, -4.0, 0.2])
    >>> direction_scores(S, P, "up", lfc).tolist(), direction_scores(S, P, "total").tolist()
    ([2.0, -2.0, 1.5], [2.0, 2.0, 1.0])
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by={rank_by!r} is not valid; choose one of {list(RANK_BY)}")
    total = np.asarray(total, dtype=np.float64)
    if presence is None or rank_by == "total":
        return total
    presence = np.asarray(presence, dtype=np.float64)
    if rank_by == "presence":
        return presence
    if lfc is None:
        raise ValueError("rank_by='up' needs the log fold changes of expression (lfc=)")
    lower = np.broadcast_to(np.nan_to_num(np.asarray(lfc, dtype=np.float64), nan=0.0) < 0, total.shape)
    absence = np.maximum(total - presence, 0.0)
    return np.maximum(presence, 0.0) + np.where(lower, -absence, absence)


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
    member_presence: np.ndarray | None = None,
    presence: np.ndarray | None = None,
    rank_by: str = "up",
    lfc: np.ndarray | None = None,
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
    member_presence, presence
        The presence parts of ``member_group_means`` and ``group_means`` (see
        :func:`direction_scores`), or ``None`` for explainers without a direction. When given,
        scores, their sd, the t-test and the top-k fractions are those of the ``rank_by`` score,
        and the fields ``contribution`` (``S``), ``presence`` (``P``) and ``absence``
        (``S - P``) are stored too.
    rank_by
        See :func:`direction_scores`.
    lfc
        Linear-scale log fold changes for ``rank_by="up"`` (see :func:`direction_scores`).

    Returns
    -------
    The :class:`GroupRanking`.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import rank_groups
    >>> member = np.random.default_rng(0).normal(size=(5, 2, 30))
    >>> r = rank_groups(member, member.mean(0), ["a", "b"], top_k=5)
    >>> r.scores.shape, bool(r.topk_fraction.max() <= 1)
    ((2, 30), True)
    """
    from scipy import stats as st

    member = np.asarray(member_group_means, dtype=np.float64)
    scores = np.asarray(group_means, dtype=np.float64)
    extra = dict(extra or {})
    if presence is not None:
        total, pres = scores, np.asarray(presence, dtype=np.float64)
        extra |= {"contribution": total, "presence": pres, "absence": total - pres}
        scores = direction_scores(total, pres, rank_by, lfc)
        member = direction_scores(member, member_presence, rank_by, lfc)
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
    topk = topk_mask(member.reshape(-1, member.shape[-1]), k).reshape(member.shape).mean(0)
    agreement = _member_agreement(member, groups, k) if n_members > 1 else None
    return GroupRanking(list(groups), scores, sd, pvals, topk, k, agreement, extra)


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
