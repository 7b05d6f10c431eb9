"""Synthetic expression data with planted, known marker genes."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._logging import logger

_KINDS = ("single_cell", "bulk")
_ROLES = ("marker_up", "marker_down", "housekeeping", "noise")


def _n_down(n_markers: int) -> int:
    """Number of down-regulated markers planted per group."""
    return n_markers // 2


def _check_int(value, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _group_counts(n_obs: int, n_groups: int, group_sizes: Sequence[float] | None) -> np.ndarray:
    """Observations per group (sums to ``n_obs``; largest-remainder rounding)."""
    if group_sizes is None:
        props = np.full(n_groups, 1.0 / n_groups)
    else:
        props = np.asarray(group_sizes, dtype=float)
        if props.ndim != 1 or props.size != n_groups:
            raise ValueError(
                f"group_sizes must have one entry per group (n_groups={n_groups}), got {props.size}"
            )
        if not np.isfinite(props).all() or (props < 0).any() or props.sum() <= 0:
            raise ValueError(
                f"group_sizes must be finite, non-negative and not all zero, got {list(props)}"
            )
        props = props / props.sum()
    exact = props * n_obs
    counts = np.floor(exact).astype(int)
    remainder = n_obs - counts.sum()
    if remainder:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:remainder]] += 1
    if (counts == 0).any():
        empty = [f"group_{i}" for i in np.flatnonzero(counts == 0)]
        raise ValueError(
            f"n_obs={n_obs} with these proportions leaves {', '.join(empty)} without observations; "
            "increase n_obs or the proportions of the small groups"
        )
    return counts


def _rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    raise TypeError(
        f"random_state must be an int, None or a numpy Generator, got {type(random_state).__name__}"
    )


@doc_params(
    random_state="""\
random_state
    Seed (or :class:`numpy.random.Generator`) of every random draw. The same integer seed gives
    identical data (on the same NumPy version); ``None`` gives fresh data each call."""
)
def synthetic(
    n_obs: int = 1000,
    n_vars: int = 500,
    n_groups: int = 4,
    *,
    kind: str = "single_cell",
    n_markers: int = 10,
    n_housekeeping: int = 20,
    effect: float = 2.0,
    group_sizes: Sequence[float] | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> AnnData:
    """Simulated expression data with planted marker genes: a ground truth for attributions.

    Every gene has one role:

    * ``marker_up`` — ``n_markers`` genes per group, up-regulated in that group only (log
      fold change ``effect`` on average, varying from gene to gene and, through a per-observation
      program activity, from cell to cell, so markers are detectable but not perfect);
    * ``marker_down`` — ``n_markers // 2`` genes per group, moderately to highly expressed
      elsewhere and down-regulated by the same kind of fold change in that group only;
    * ``housekeeping`` — highly and stably expressed (low dispersion) in every group;
    * ``noise`` — the remaining genes, whose counts do not depend on the group (after
      library-size normalisation, ``X`` of a noise gene moves by a few percent at most between
      groups: the compositional effect of the markers, as in real data).

    Each marker gene belongs to exactly one group, so the truth is unambiguous. Genes are
    shuffled (markers are not the first columns) and named ``gene_0000``, ``gene_0001``, … (at least four digits, whatever ``n_obs``).

    ``kind="single_cell"`` draws negative-binomial (gamma-Poisson) UMI-like counts with per-cell
    library-size variation (log-normal size factors, sd 0.4); ``X`` is
    ``log1p`` of counts normalised to 10,000 per cell (``sc.pp.normalize_total(target_sum=1e4)``
    followed by ``sc.pp.log1p``). ``kind="bulk"`` draws log-normal, TPM-like expression per
    sample (biological variation, lower for housekeeping genes), on a TPM-like scale (samples sum
    to 1e6 on average), then Poisson read counts at a depth of about 2 million reads per sample
    (sd 0.3 on the log scale); ``X`` is ``log1p`` of counts per million (CPM).

    Parameters
    ----------
    n_obs
        Number of cells (``"single_cell"``) or samples (``"bulk"``).
    n_vars
        Number of genes; at least ``n_groups * (n_markers + n_markers // 2) + n_housekeeping``.
    n_groups
        Number of groups (at least 2).
    kind
        ``"single_cell"`` (negative-binomial counts) or ``"bulk"`` (log-normal expression).
    n_markers
        Up-regulated markers per group; ``n_markers // 2`` down-regulated markers per group are
        planted as well.
    n_housekeeping
        Number of housekeeping genes.
    effect
        Mean log fold change (natural log) of the marker genes; ``2.0`` is about 7.4-fold. Must
        be positive.
    group_sizes
        Relative group sizes (one non-negative number per group, normalised to proportions).
        ``None``: balanced groups. Counts are rounded so they sum to ``n_obs``.
    {random_state}

    Returns
    -------
    AnnData with

    ``X``
        Dense float32 log-normalised expression (see above).
    ``layers["counts"]``
        Dense float32 integer-valued counts.
    ``obs["group"]``
        Categorical ground-truth group, categories ``"group_0"``, ``"group_1"``, …
        (observations are in random order).
    ``obs["total_counts"]``
        Library size (sum of ``layers["counts"]``).
    ``var["role"]``
        Categorical: ``"marker_up"``, ``"marker_down"``, ``"housekeeping"`` or ``"noise"``.
    ``var["marker_of"]``
        Categorical: the group a marker belongs to, ``"none"`` for other genes.
    ``var["marker_direction"]``
        Categorical: ``"up"``, ``"down"`` or ``"none"``.
    ``var["housekeeping"]``
        Boolean.
    ``var["true_log_fold"]``
        Planted natural-log fold change of each marker in its group (positive for up, negative
        for down, 0 for other genes), before per-cell program activity.
    ``uns["synthetic"]``
        The parameters, the realised ``group_sizes`` and ``n_markers_down``.

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.synthetic(n_obs=200, n_vars=100, n_groups=3, random_state=0)
    >>> adata.shape
    (200, 100)
    >>> adata.obs["group"].value_counts().sort_index().tolist()
    [67, 67, 66]
    >>> adata.var["role"].value_counts()[["marker_up", "marker_down", "housekeeping"]].tolist()
    [30, 15, 20]
    >>> bulk = xl.datasets.synthetic(60, 200, kind="bulk")
    >>> float(bulk.X.max()) > 0
    True
    """
    n_obs = _check_int(n_obs, "n_obs", minimum=1)
    n_vars = _check_int(n_vars, "n_vars", minimum=1)
    n_groups = _check_int(n_groups, "n_groups", minimum=2)
    n_markers = _check_int(n_markers, "n_markers", minimum=0)
    n_housekeeping = _check_int(n_housekeeping, "n_housekeeping", minimum=0)
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r} is not valid; choose one of {list(_KINDS)}")
    if isinstance(effect, bool) or not isinstance(effect, numbers.Real) or not np.isfinite(effect):
        raise TypeError(f"effect must be a finite number, got {effect!r}")
    if effect <= 0:
        raise ValueError(f"effect must be positive (a log fold change), got {effect}")
    if n_obs < n_groups:
        raise ValueError(
            f"n_obs={n_obs} is smaller than n_groups={n_groups}: every group needs observations"
        )
    n_down = _n_down(n_markers)
    n_planted = n_groups * (n_markers + n_down) + n_housekeeping
    if n_vars < n_planted:
        raise ValueError(
            f"n_vars={n_vars} is too small: {n_planted} genes are needed for the planted genes "
            f"({n_groups} groups × ({n_markers} up + {n_down} down markers) + {n_housekeeping} "
            f"housekeeping); increase n_vars or lower n_markers/n_housekeeping"
        )
    counts_per_group = _group_counts(n_obs, n_groups, group_sizes)
    rng = _rng(random_state)
    logger.info(
        "simulating %s data: %d observations × %d genes, %d groups", kind, n_obs, n_vars, n_groups
    )

    # --- gene roles (planted block first, then shuffled) ------------------------------------
    role = np.full(n_vars, "noise", dtype=object)
    owner = np.full(n_vars, -1)
    pos = 0
    for g in range(n_groups):
        role[pos : pos + n_markers] = "marker_up"
        owner[pos : pos + n_markers] = g
        pos += n_markers
        role[pos : pos + n_down] = "marker_down"
        owner[pos : pos + n_down] = g
        pos += n_down
    role[pos : pos + n_housekeeping] = "housekeeping"
    perm = rng.permutation(n_vars)
    role, owner = role[perm], owner[perm]
    up, down, hk = role == "marker_up", role == "marker_down", role == "housekeeping"
    marker = up | down

    # --- observations -------------------------------------------------------------------------
    group = rng.permutation(np.repeat(np.arange(n_groups), counts_per_group))
    # per-observation activity of its group's program (gamma, mean 1): markers are not equally
    # strong in every cell or sample, and some barely show them. Bulk samples average out
    # technical noise, so their activity varies more to keep classification realistic.
    shape_activity = 4.0 if kind == "single_cell" else 2.0
    activity = rng.gamma(shape=shape_activity, scale=1.0 / shape_activity, size=n_obs)

    # --- gene-level parameters -----------------------------------------------------------------
    log_fold = np.zeros(n_vars)
    log_fold[marker] = effect * rng.uniform(0.5, 1.5, size=marker.sum())
    log_fold[down] *= -1

    if kind == "single_cell":
        log_mean = rng.normal(np.log(0.3), 1.2, size=n_vars)  # noise genes: mostly low
        log_mean[up] = rng.normal(np.log(0.4), 0.5, size=up.sum())
        log_mean[down] = rng.normal(np.log(4.0), 0.5, size=down.sum())
        log_mean[hk] = rng.normal(np.log(20.0), 0.4, size=hk.sum())
        # NB dispersion (variance = mu + phi * mu^2): overdispersed, housekeeping tight
        phi = np.exp(rng.normal(np.log(0.5), 0.4, size=n_vars))
        phi[hk] = np.exp(rng.normal(np.log(0.02), 0.3, size=hk.sum()))
    else:
        log_mean = rng.normal(np.log(20.0), 1.5, size=n_vars)  # TPM-like scale before closure
        log_mean[up] = rng.normal(np.log(10.0), 0.7, size=up.sum())
        log_mean[down] = rng.normal(np.log(60.0), 0.7, size=down.sum())
        log_mean[hk] = rng.normal(np.log(500.0), 0.5, size=hk.sum())
        # biological sd of log expression across samples of the same group
        sigma = np.exp(rng.normal(np.log(0.45), 0.3, size=n_vars))
        sigma[hk] = np.exp(rng.normal(np.log(0.08), 0.2, size=hk.sum()))

    # log mean of every observation × gene: the gene's base level, shifted for its markers in
    # the observation's group, scaled by that observation's program activity
    eta = np.broadcast_to(log_mean, (n_obs, n_vars)).copy()
    in_group = marker[None, :] & (owner[None, :] == group[:, None])
    eta += np.where(in_group, activity[:, None] * log_fold[None, :], 0.0)

    if kind == "single_cell":
        size_factor = np.exp(rng.normal(0.0, 0.4, size=n_obs))
        mu = np.exp(eta) * size_factor[:, None]
        shape = 1.0 / phi
        lam = rng.gamma(shape=np.broadcast_to(shape, mu.shape), scale=mu / shape)
        counts = rng.poisson(lam)
    else:
        eta += rng.normal(size=(n_obs, n_vars)) * sigma[None, :]
        # TPM-like: one constant scales every sample so that they sum to 1e6 on average (no
        # per-sample closure, so noise genes stay group-independent in the counts)
        tpm = np.exp(eta)
        tpm *= 1e6 / tpm.sum(axis=1).mean()
        depth = 2e6 * np.exp(rng.normal(0.0, 0.3, size=n_obs))
        counts = rng.poisson(tpm * (depth[:, None] / 1e6))

    counts = counts.astype(np.float32)
    total = counts.sum(axis=1, dtype=np.float64)
    target = 1e4 if kind == "single_cell" else 1e6
    scale = np.divide(target, total, out=np.zeros_like(total), where=total > 0)
    X = np.log1p(counts * scale[:, None].astype(np.float32)).astype(np.float32)

    # --- assemble ------------------------------------------------------------------------------
    group_names = [f"group_{g}" for g in range(n_groups)]
    prefix = "cell" if kind == "single_cell" else "sample"
    width = len(str(n_obs - 1))
    gene_width = max(4, len(str(n_vars - 1)))  # gene_0000 whatever n_obs: data sets of one n_vars share names
    obs = pd.DataFrame(
        {
            "group": pd.Categorical.from_codes(group, categories=group_names),
            "total_counts": total.astype(np.float32),
        },
        index=[f"{prefix}_{i:0{width}d}" for i in range(n_obs)],
    )
    marker_of = np.where(owner >= 0, np.array(group_names, dtype=object)[owner], "none")
    direction = np.where(up, "up", np.where(down, "down", "none"))
    var = pd.DataFrame(
        {
            "role": pd.Categorical(role, categories=list(_ROLES)),
            "marker_of": pd.Categorical(marker_of, categories=[*group_names, "none"]),
            "marker_direction": pd.Categorical(direction, categories=["up", "down", "none"]),
            "housekeeping": hk,
            "true_log_fold": log_fold.astype(np.float32),
        },
        index=[f"gene_{j:0{gene_width}d}" for j in range(n_vars)],
    )
    params = {
        "kind": kind,
        "n_obs": n_obs,
        "n_vars": n_vars,
        "n_groups": n_groups,
        "n_markers": n_markers,
        "n_markers_down": n_down,
        "n_housekeeping": n_housekeeping,
        "effect": float(effect),
        "group_sizes": counts_per_group.astype(np.int64),
        "random_state": (
            int(random_state)
            if isinstance(random_state, numbers.Integral)
            else ("None" if random_state is None else "Generator")
        ),
        "X": "log1p(normalize_total(counts, 1e4))" if kind == "single_cell" else "log1p(CPM)",
    }
    adata = AnnData(X=X, obs=obs, var=var, layers={"counts": counts}, uns={"synthetic": params})
    logger.info(
        "    finished: X, layers['counts'], obs['group'], var['role', 'marker_of', "
        "'marker_direction', 'housekeeping', 'true_log_fold'], uns['synthetic']"
    )
    return adata
