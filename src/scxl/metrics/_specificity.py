"""Per-gene tissue / cell-type specificity from a (groups × genes) profile matrix.

Three views of the same question:

- :func:`tau`: a continuous specificity index (Yanai et al. 2005), 0 = uniform, 1 = one group;
- :func:`hpa_categories`: the discrete categories of the Human Protein Atlas (Uhlén et al.
  2015) exactly as implemented by TissueEnrich (Jain & Tuteja 2019), which produced the published
  tissue-specific gene tables;
- :func:`housekeeping`: genes expressed in every group at a similar level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from ._utils import as_float_array, check_choice

#: Category names, in the order in which TissueEnrich tests them.
HPA_CATEGORIES = (
    "Not-Expressed",
    "Tissue-Enriched",
    "Group-Enriched",
    "Expressed-In-All",
    "Tissue-Enhanced",
    "Mixed",
)


def _profile(profile, name: str = "profile") -> np.ndarray:
    x = as_float_array(profile, name, ndim=(2,))
    if x.shape[0] < 2:
        raise ValueError(
            f"{name} must have at least 2 groups (rows) to measure specificity, got {x.shape[0]}"
        )
    if (x < 0).any():
        raise ValueError(
            f"{name} contains negative values (min {x.min():.3g}); specificity needs non-negative "
            "expression on a linear (e.g. TPM) or log1p scale"
        )
    return x


def _tau(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    mx = x.max(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (1.0 - x / mx).sum(axis=0) / (n - 1)
    t[~(mx > 0)] = np.nan
    return t


def tau(profile: np.ndarray, *, log: bool = True) -> np.ndarray:
    r"""Tissue-specificity index tau of each gene (Yanai et al. 2005).

    .. math:: \tau = \frac{\sum_{i=1}^{n} (1 - x_i / \max_j x_j)}{n - 1}

    over the ``n`` groups. ``tau = 0`` for a gene expressed equally everywhere, ``tau = 1`` for a
    gene expressed in exactly one group.

    Parameters
    ----------
    profile
        Non-negative expression of shape ``(n_groups, n_genes)``, ``n_groups >= 2``: one row per
        tissue or cell type (e.g. mean or median TPM). NaN entries give NaN for that gene.
    log
        If ``True`` (default), ``profile`` is on a linear scale (TPM, counts, CPM) and is
        transformed as ``log2(x + 1)`` before computing tau, the variant recommended by
        Kryuchkova-Mostacci & Robinson-Rechavi (2017, *Brief. Bioinform.*) and used by most
        tau benchmarks. If ``False``, values are used as given; pass ``False`` for data already
        on a log1p scale (e.g. ``sc.pp.log1p`` output) or to get tau on linear values.

    Returns
    -------
    tau of each gene, shape ``(n_genes,)``, in ``[0, 1]``. Genes that are zero in every group
    (not expressed anywhere) are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import tau
    >>> profile = np.array([[5.0, 8.0, 0.0], [5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    >>> tau(profile).tolist()
    [0.0, 1.0, nan]
    """
    x = as_float_array(profile, "profile", ndim=(2,), finite=False)
    if x.shape[0] < 2:
        raise ValueError(f"profile must have at least 2 groups (rows), got {x.shape[0]}")
    if np.isinf(x).any():
        raise ValueError("profile contains infinite values")
    if (x < 0).any():
        raise ValueError(
            f"profile contains negative values (min {np.nanmin(x):.3g}); tau needs non-negative "
            "expression (linear with log=True, or already log1p-transformed with log=False)"
        )
    if log:
        x = np.log2(x + 1.0)
    return _tau(x)


def _r_mean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean computed as R's ``mean()`` does (sum / n, then a correction pass), as float64.

    Needed to decide threshold ties exactly as the reference R implementation does. R
    accumulates in long double; ``np.longdouble`` is wider than float64 on x86-64 and aarch64
    Linux but equals float64 on others (Windows, Apple silicon), where the correction pass alone
    gives the same decisions on HPA v18 (checked).
    """
    xl = x.astype(np.longdouble)
    n = x.shape[axis]
    m = xl.sum(axis=axis) / n
    m = m + (xl - np.expand_dims(m, axis)).sum(axis=axis) / n
    return m.astype(np.float64)


def hpa_categories(
    profile_tpm: np.ndarray,
    group_names: Sequence[str],
    *,
    min_expr: float = 1.0,
    fold: float = 5.0,
    max_group_size: int = 7,
    gene_names: Sequence[str] | None = None,
    legacy_ties: bool = True,
) -> pd.DataFrame:
    """Classify genes into the Human Protein Atlas specificity categories (TissueEnrich rules).

    This reproduces ``TissueEnrich::teGeneRetrieval`` (Jain & Tuteja 2019, *Bioinformatics*),
    the implementation of the HPA algorithm of Uhlén et al. (2015, *Science*) that produced the
    tissue-specific gene tables shipped with TissueEnrich. On the HPA v18 profiles shipped with
    TissueEnrich (35 tissues × 19,332 genes) it reproduces the published categories *and*
    tissues for every gene (see Notes). Each gene's groups are sorted by decreasing expression
    (ties keep the row order) and tested in this order; the first rule that matches wins:

    1. **Not-Expressed**: the highest value is below ``min_expr``.
    2. **Tissue-Enriched**: the highest value is at least ``fold`` × the second highest
       (i.e. ``fold`` × the maximum of all other groups). Groups: the top one.
    3. **Group-Enriched**: let the candidate set be the groups with a value
       ``>= max / fold`` and ``>= min_expr``. If it has 2 to ``max_group_size`` members, the
       top ``i`` groups (``i = 2, 3, ...``, up to the candidate count) form a group when their
       mean is at least ``fold`` × the ``(i+1)``-th highest value (the maximum outside the
       group; a group never spans every row); the smallest such ``i`` is used. Groups: those
       ``i``.
    4. **Expressed-In-All**: every group is at least ``min_expr``.
    5. **Tissue-Enhanced**: at least one group has a value ``>= fold`` × the mean over *all*
       groups (itself included) and ``>= min_expr``. Groups: all such groups.
    6. **Mixed**: everything else.

    Parameters
    ----------
    profile_tpm
        Expression of shape ``(n_groups, n_genes)`` on a **linear TPM-like scale** (TPM, nTPM,
        FPKM, CPM; not log): thresholds are absolute (``min_expr``) and fold changes are ratios.
        Must be finite and non-negative; ``n_groups >= 2``. Values are compared in float64; if
        they were stored as float32 from decimal source values, round them back (e.g.
        ``np.round(x.astype(float), 2)``) to reproduce a published table bit for bit.
    group_names
        Name of each row (tissue or cell type), length ``n_groups``.
    min_expr
        Expression threshold (TissueEnrich's ``expressedGeneThreshold``), default 1 TPM.
    fold
        Fold-change threshold (``foldChangeThreshold``), default 5 (TissueEnrich and Uhlén 2015).
    max_group_size
        Largest group of a Group-Enriched gene (``maxNumberOfTissues``), default 7.
    gene_names
        Index of the result (default ``0 .. n_genes - 1``).
    legacy_ties
        TissueEnrich 1.0.x, which generated the published tables, compares a group with the
        Tissue-Enhanced threshold using ``>=`` when the Group-Enriched candidate set had an
        allowed size and with ``>`` otherwise; the later rewrite uses ``>=`` in both cases.
        ``True`` (default) follows the published tables; ``False`` always uses ``>=``. Only exact
        ties are affected (1 of 19,332 genes in HPA v18).

    Returns
    -------
    DataFrame with one row per gene and columns

    ``category``
        Categorical with the categories of :data:`HPA_CATEGORIES`.
    ``groups``
        The group(s) the gene is enriched or enhanced in, ``";"``-joined in order of decreasing
        expression; ``""`` for Not-Expressed, Expressed-In-All and Mixed.
    ``n_groups``
        Number of groups in ``groups``.
    ``tau``
        :func:`tau` on ``log2(TPM + 1)`` (NaN when zero everywhere).
    ``max_group``, ``max_expr``
        Group with the highest value (first in row order on ties) and that value.

    Notes
    -----
    Measured on ``tissueenrich_hpa_v18_tpm.h5ad`` (float32 values rounded back to 2 decimals)
    against TissueEnrich's ``tissueSpecificGenes`` table for HPA v18: 19,332 of 19,332 genes in
    the same category with the same tissues. With ``legacy_ties=False`` one Tissue-Enhanced gene
    gains a tissue; without rounding the float32 values, 15 genes change category. Means are
    computed like R's ``mean()`` (extended-precision accumulation), which decides two further
    exact ties.

    Differences from the definitions on the HPA website (which have changed between versions):

    - Later HPA releases (the current website) use a **4**-fold threshold, groups of **2–5**
      tissues, and compare Tissue-Enhanced with the mean of the *other* tissues; pass
      ``fold=4.0, max_group_size=5`` for the first two (the third is not reproduced here).
    - HPA now reports specificity (enriched/enhanced) and distribution (detected in all/many/
      some/single) as two separate classifications; TissueEnrich, like Uhlén 2015, uses one
      list, and tests Expressed-In-All *before* Tissue-Enhanced, so a gene at ``>= min_expr``
      everywhere is never Tissue-Enhanced here.
    - HPA thresholds ``nTPM >= 1`` on consensus normalised values; TissueEnrich (and this
      function) uses whatever linear values are passed.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import hpa_categories
    >>> genes = np.array(  # one row per gene here, transposed below
    ...     [[50, 5, 1, 0, 0, 0, 0, 0, 0, 0],
    ...      [40, 30, 2, 1, 0, 0, 0, 0, 0, 0],
    ...      [0.5, 0.2, 0, 0, 0, 0, 0, 0, 0, 0],
    ...      [10, 10, 10, 10, 10, 10, 10, 10, 10, 10],
    ...      [8, 3, 2, 1.5, 1.2, 0, 0, 0, 0, 0],
    ...      [3, 3, 3, 3, 1, 1, 1, 1, 0, 0]], dtype=float
    ... )
    >>> tissues = [f"t{i}" for i in range(10)]
    >>> res = hpa_categories(genes.T, tissues, gene_names=list("ABCDEF"))
    >>> res[["category", "groups"]]
               category groups
    A   Tissue-Enriched     t0
    B    Group-Enriched  t0;t1
    C     Not-Expressed
    D  Expressed-In-All
    E   Tissue-Enhanced     t0
    F             Mixed
    """
    x = _profile(profile_tpm, "profile_tpm")
    n, g = x.shape
    names = np.asarray([str(s) for s in group_names], dtype=object)
    if names.shape != (n,):
        raise ValueError(f"group_names has {names.size} entries but profile_tpm has {n} rows")
    if not min_expr >= 0:
        raise ValueError(f"min_expr must be >= 0, got {min_expr}")
    if not fold >= 1:
        raise ValueError(f"fold must be >= 1, got {fold}")
    if isinstance(max_group_size, bool) or not isinstance(max_group_size, int | np.integer):
        raise TypeError(f"max_group_size must be an integer, got {type(max_group_size).__name__}")
    if max_group_size < 2:
        raise ValueError(f"max_group_size must be >= 2, got {max_group_size}")
    if gene_names is not None:
        index = pd.Index(gene_names)
        if len(index) != g:
            raise ValueError(f"gene_names has {len(index)} entries but profile_tpm has {g} columns")
    else:
        index = pd.RangeIndex(g)

    order = np.argsort(-x, axis=0, kind="stable")  # ties keep the row order, like R's order()
    s = np.take_along_axis(x, order, axis=0)  # sorted, decreasing
    high, second = s[0], s[1]
    # code: 0 NE, 1 TEnriched, 2 Group, 3 EIA, 4 TEnhanced, 5 Mixed; n_top: how many top groups
    code = np.full(g, 5, dtype=np.int8)
    n_top = np.zeros(g, dtype=np.int64)
    undecided = np.ones(g, dtype=bool)

    not_expr = high < min_expr
    code[not_expr] = 0
    undecided &= ~not_expr

    with np.errstate(divide="ignore", invalid="ignore"):
        enriched = undecided & (high / second >= fold)
    code[enriched] = 1
    n_top[enriched] = 1
    undecided &= ~enriched

    n_cand = ((s >= high / fold) & (s >= min_expr)).sum(axis=0)
    in_range = (n_cand >= 2) & (n_cand <= max_group_size)
    for i in range(2, min(max_group_size, n - 1) + 1):
        test = undecided & in_range & (n_cand >= i)
        if not test.any():
            continue
        cols = np.flatnonzero(test)
        mean_top = _r_mean(s[:i, cols], axis=0)
        outside = s[i, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            hit = mean_top / outside >= fold
        cols = cols[hit]
        code[cols] = 2
        n_top[cols] = i
        undecided[cols] = False

    eia = undecided & (s[-1] >= min_expr)
    code[eia] = 3
    undecided &= ~eia

    thr = _r_mean(x, axis=0) * fold
    if legacy_ties:
        above = np.where(in_range, x >= thr, x > thr)
    else:
        above = x >= thr
    enhanced_mask = above & (x >= min_expr) & undecided
    enhanced = enhanced_mask.any(axis=0)
    code[enhanced] = 4

    groups = np.full(g, "", dtype=object)
    n_groups = n_top.copy()
    for j in np.flatnonzero(n_top > 0):
        groups[j] = ";".join(names[order[: n_top[j], j]])
    for j in np.flatnonzero(enhanced):
        rows = order[:, j][enhanced_mask[order[:, j], j]]  # decreasing expression
        groups[j] = ";".join(names[rows])
        n_groups[j] = rows.size

    top = order[0]
    return pd.DataFrame(
        {
            "category": pd.Categorical.from_codes(code, categories=list(HPA_CATEGORIES)),
            "groups": groups,
            "n_groups": n_groups,
            "tau": _tau(np.log2(x + 1.0)),
            "max_group": names[top],
            "max_expr": high,
        },
        index=index,
    )


def housekeeping(
    profile: np.ndarray,
    *,
    min_expr: float = 1.0,
    max_fold: float = 2.0,
    stat: Literal["median", "mean", "range"] = "median",
    trim: float = 0.1,
    log_base: float | None = None,
    gene_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Housekeeping genes: expressed in every group, at a similar level everywhere.

    A gene is called housekeeping when

    1. its value is ``>= min_expr`` in **every** group (no trimming here), and
    2. its spread over groups is below ``max_fold``. The ``k = floor(trim × n_groups)`` lowest and
       ``k`` highest groups are set aside (one outlying tissue, such as pancreas whose TPM is
       dominated by a few digestive enzymes, would otherwise exclude nearly every gene); with
       ``lo``/``hi`` the lowest/highest remaining values, the spread is

       - ``stat="median"``: ``max(hi / median, median / lo)``, every remaining group within
         ``max_fold`` of the median group (median over all groups);
       - ``stat="mean"``: the same around the arithmetic mean over all groups;
       - ``stat="range"``: ``hi / lo``, the ratio of the highest to the lowest remaining group.

    Parameters
    ----------
    profile
        Non-negative expression of shape ``(n_groups, n_genes)``, one row per tissue or cell
        type, on a **linear scale** (TPM, CPM, mean counts) unless ``log_base`` is given. Must be
        finite.
    min_expr
        Expression threshold on the linear scale (default 1, i.e. 1 TPM, as in the HPA
        "expressed in all" rule).
    max_fold
        Largest allowed fold spread (strict ``<``).
    stat
        How the spread is measured, see above.
    trim
        Fraction of groups set aside at each end before measuring the spread, in ``[0, 0.5)``.
        ``0`` uses every group.
    log_base
        If the profile is ``log_b(x + 1)`` (e.g. ``2`` for ``log2(TPM + 1)``, ``np.e`` for
        ``sc.pp.log1p``), the base ``b``: values are mapped back with ``b ** v - 1`` before
        applying the linear rules. ``None`` (default): the profile is linear.
    gene_names
        Index of the result (default ``0 .. n_genes - 1``).

    Returns
    -------
    DataFrame with one row per gene: ``expressed_in_all`` (bool), ``fold`` (the spread, float;
    NaN where it is undefined because a remaining group is 0) and ``housekeeping`` (bool).

    Notes
    -----
    Measured on HPA v18 (35 tissues, TPM, ``tissueenrich_hpa_v18_tpm.h5ad``): the defaults
    call 1,798 genes, 10 of the 11 most stable genes of Eisenberg & Levanon (2013; all but
    REEP5) and 1,232 genes of their 3,804-gene list (69 % of the calls are on the list, against
    18 % of all genes and 44 % of genes expressed in every tissue). GAPDH (spread 2.1) and ACTB
    (4.6) vary strongly across tissues (skeletal muscle, pancreas) and are not called, in line
    with Eisenberg & Levanon, who left them out too. ``max_fold=3`` calls 5,663 genes, all 11
    stable genes, GAPDH and 75 of the 77 cytosolic ribosomal protein genes (RPL*/RPS*).
    Without trimming (``trim=0``) almost nothing passes ``max_fold=2`` on tissue data.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import housekeeping
    >>> profile = np.array([[10.0, 10.0, 50.0], [12.0, 30.0, 0.0], [9.0, 15.0, 0.0]])
    >>> housekeeping(profile, trim=0.0)
       expressed_in_all  fold  housekeeping
    0              True   1.2          True
    1              True   2.0         False
    2             False   NaN         False
    """
    x = as_float_array(profile, "profile", ndim=(2,))
    check_choice(stat, "stat", ("median", "mean", "range"))
    if log_base is not None:
        if not log_base > 1:
            raise ValueError(f"log_base must be > 1 (e.g. 2, 10 or np.e), got {log_base}")
        x = np.power(float(log_base), x) - 1.0
    x = _profile(x, "profile")
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    if not max_fold >= 1:
        raise ValueError(f"max_fold must be >= 1, got {max_fold}")
    n = x.shape[0]
    s = np.sort(x, axis=0)
    k = int(np.floor(trim * n))
    lo, hi = s[k], s[n - 1 - k]
    expressed = s[0] >= min_expr
    with np.errstate(divide="ignore", invalid="ignore"):
        if stat == "range":
            spread = hi / lo
        else:
            center = np.median(x, axis=0) if stat == "median" else x.mean(axis=0)
            spread = np.maximum(hi / center, center / lo)
    spread = np.where(np.isfinite(spread), spread, np.nan)
    index = None
    if gene_names is not None:
        index = pd.Index(gene_names)
        if len(index) != x.shape[1]:
            raise ValueError(
                f"gene_names has {len(index)} entries but profile has {x.shape[1]} columns"
            )
    return pd.DataFrame(
        {
            "expressed_in_all": expressed,
            "fold": spread,
            "housekeeping": expressed & (spread < max_fold),
        },
        index=index,
    )
