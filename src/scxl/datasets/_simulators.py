"""Two more simulators with planted truth: sparse pathway-driven counts, and combinatorial markers.

Together with :func:`scxl.datasets.synthetic` (negative-binomial counts with planted up/down
markers) they are the ground truth on which scxl's default explainer, reference and ranking were
chosen (``benchmarks/markers.py``):

* :func:`synthetic_pathways` — sparse, compositional UMI counts (a few thousand UMIs per cell
  spread over all genes, most entries 0) driven by gene *programs*: every group switches on its
  own programs, some programs are shared by two groups, and every cell also runs cell-state
  programs unrelated to the groups. A marker is a gene of a program that only one group runs.
* :func:`synthetic_combinatorial` — markers that act only *in combination*: every gene has the
  same location in every group (Wilcoxon's AUC 1/2), but in a group's own gene pairs one gene is
  high and the other low while elsewhere both sit in the middle. A univariate test (Wilcoxon, t-test, logistic
  regression) cannot see them; a classifier can.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from ._synthetic import _check_int, _group_counts, _rng


def _assemble(counts, group, role, owner, n_groups, prefix, params, *, target_sum=1e4) -> AnnData:
    counts = counts.astype(np.float32)
    total = counts.sum(axis=1, dtype=np.float64)
    scale = np.divide(target_sum, total, out=np.zeros_like(total), where=total > 0)
    X = np.log1p(counts * scale[:, None].astype(np.float32)).astype(np.float32)
    names = [f"group_{g}" for g in range(n_groups)]
    n_obs, n_vars = counts.shape
    width = len(str(max(n_obs, n_vars) - 1))
    obs = pd.DataFrame(
        {"group": pd.Categorical.from_codes(group, categories=names), "total_counts": total.astype(np.float32)},
        index=[f"{prefix}_{i:0{width}d}" for i in range(n_obs)],
    )
    marker_of = np.where(owner >= 0, np.array(names, dtype=object)[np.maximum(owner, 0)], "none")
    roles = sorted(set(role))
    var = pd.DataFrame(
        {
            "role": pd.Categorical(role, categories=roles),
            "marker_of": pd.Categorical(marker_of, categories=[*names, "none"]),
            "marker_direction": pd.Categorical(np.where(owner >= 0, "up", "none"), categories=["up", "down", "none"]),
        },
        index=[f"gene_{j:0{width}d}" for j in range(n_vars)],
    )
    return AnnData(X=X, obs=obs, var=var, layers={"counts": counts}, uns={"synthetic": params})


def synthetic_pathways(
    n_obs: int = 2000,
    n_vars: int = 2000,
    n_groups: int = 5,
    *,
    programs_per_group: int = 2,
    genes_per_program: int = 15,
    n_shared: int = 4,
    n_state: int = 6,
    depth: float = 600.0,
    effect: float = 0.8,
    random_state: int | np.random.Generator | None = 0,
) -> AnnData:
    """Sparse, compositional single-cell counts driven by gene programs, with planted group markers.

    Every gene has a base rate (log-normal, most genes low). A *program* is a set of
    ``genes_per_program`` genes whose rates are multiplied by ``exp(effect × activity)`` in the
    cells that run it (activity: gamma with mean 1 per cell and program). Each group runs
    ``programs_per_group`` programs of its own (their genes are the group's markers, role
    ``"marker_up"``) and, for ``n_shared`` programs, a program shared with one other group (role
    ``"shared"``: up in two groups, marker of none); every cell runs ``n_state`` cell-state
    programs at a random level, whatever its group (role ``"state"``). Counts are multinomial
    with ``depth`` UMIs per cell on average (log-normal library sizes, sd 0.5), so most entries
    are 0 and the data are compositional: a program switched on lowers every other gene's share.
    ``X`` is ``log1p`` of counts normalised to 10,000 per cell.

    Parameters
    ----------
    n_obs
        Number of cells.
    n_vars
        Number of genes.
    n_groups
        Number of groups.
    programs_per_group
        Programs of every group's own.
    genes_per_program
        Genes per program.
    n_shared
        Programs shared by two groups (group ``i`` and ``i + 1``).
    n_state
        Cell-state programs independent of the groups.
    depth
        Mean UMIs per cell.
    effect
        Log fold change of a program's genes at activity 1.
    random_state
        Seed.

    Returns
    -------
    AnnData with ``X`` (log-normalised), ``layers["counts"]``, ``obs["group"]``,
    ``var["role"]`` (``"marker_up"``, ``"shared"``, ``"state"``, ``"noise"``),
    ``var["marker_of"]`` (the group a marker belongs to, ``"none"`` otherwise),
    ``var["marker_direction"]`` and ``uns["synthetic"]``.

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.synthetic_pathways(300, 400, 3, random_state=0)
    >>> adata.shape
    (300, 400)
    >>> int((adata.var["role"] == "marker_up").sum())
    90
    """
    n_obs = _check_int(n_obs, "n_obs", minimum=1)
    n_vars = _check_int(n_vars, "n_vars", minimum=1)
    n_groups = _check_int(n_groups, "n_groups", minimum=2)
    n_prog = n_groups * programs_per_group + n_shared + n_state
    if n_prog * genes_per_program > n_vars:
        raise ValueError(f"n_vars={n_vars} is too small for {n_prog} programs of {genes_per_program} genes")
    rng = _rng(random_state)
    group = rng.permutation(np.repeat(np.arange(n_groups), _group_counts(n_obs, n_groups, None)))
    genes = rng.permutation(n_vars)
    programs = [genes[i * genes_per_program:(i + 1) * genes_per_program] for i in range(n_prog)]
    role = np.full(n_vars, "noise", dtype=object)
    owner = np.full(n_vars, -1)
    runs = np.zeros((n_obs, n_prog))  # activity of every program in every cell
    act = rng.gamma(4.0, 0.25, size=(n_obs, n_prog))
    p = 0
    for g in range(n_groups):
        for _ in range(programs_per_group):
            role[programs[p]], owner[programs[p]] = "marker_up", g
            runs[:, p] = np.where(group == g, act[:, p], 0.0)
            p += 1
    for s in range(n_shared):
        a, b = s % n_groups, (s + 1) % n_groups
        role[programs[p]] = "shared"
        runs[:, p] = np.where((group == a) | (group == b), act[:, p], 0.0)
        p += 1
    for _ in range(n_state):
        role[programs[p]] = "state"
        runs[:, p] = rng.uniform(0, 1.5, size=n_obs) * act[:, p]
        p += 1
    log_rate = rng.normal(0.0, 1.3, size=n_vars)
    log_rate[role != "noise"] = rng.normal(0.5, 0.6, size=(role != "noise").sum())
    eta = np.broadcast_to(log_rate, (n_obs, n_vars)).copy()
    for i, prog in enumerate(programs):
        eta[:, prog] += effect * runs[:, i : i + 1] * rng.uniform(0.6, 1.4, size=prog.size)[None]
    prob = np.exp(eta - eta.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    size = np.maximum(1, np.round(depth * np.exp(rng.normal(0.0, 0.5, size=n_obs)))).astype(np.int64)
    counts = np.stack([rng.multinomial(n, pr) for n, pr in zip(size, prob, strict=True)])
    params = {"design": "pathways", "n_obs": n_obs, "n_vars": n_vars, "n_groups": n_groups,
              "programs_per_group": programs_per_group, "genes_per_program": genes_per_program,
              "n_shared": n_shared, "n_state": n_state, "depth": float(depth), "effect": float(effect)}
    return _assemble(counts, group, role, owner, n_groups, "cell", params)


def _nb(mu: np.ndarray, rng: np.random.Generator, dispersion: float = 0.2) -> np.ndarray:
    return rng.poisson(rng.gamma(1 / dispersion, mu * dispersion))


def _matching_middle(high: float, low: float, rng: np.random.Generator) -> float:
    """The level at which a gene is as often above as below a gene that is high or low half the time.

    Then ``P(own > other) = 1/2`` and Wilcoxon's statistic has no shift: solved by bisection on
    simulated counts (3,000 UMIs per cell, normalised to 10,000), so the counting noise and its
    ties are matched too.
    """
    from scipy.stats import mannwhitneyu

    size = 3.0 * np.exp(rng.normal(0.0, 0.3, size=4000))
    own = np.log1p(np.concatenate([_nb(high * size[:2000], rng), _nb(low * size[2000:], rng)]) * (10 / 3.0))

    def above(level):
        mid = np.log1p(_nb(level * size, rng) * (10 / 3.0))
        return mannwhitneyu(own, mid).statistic / (own.size * mid.size)

    lo, hi = low, high
    for _ in range(30):
        m = (lo + hi) / 2
        lo, hi = (m, hi) if above(m) > 0.5 else (lo, m)
    return (lo + hi) / 2


def synthetic_combinatorial(
    n_obs: int = 2000,
    n_vars: int = 400,
    n_groups: int = 4,
    *,
    pairs_per_group: int = 8,
    high: float = 8.0,
    low: float = 0.25,
    random_state: int | np.random.Generator | None = 0,
) -> AnnData:
    """Counts whose group markers act only in combination: the same location in every group.

    Every group owns ``pairs_per_group`` gene pairs. In the cells of the pair's own group one
    gene of the pair is high and the other low (which one varies from cell to cell, 1/2 each): the
    two genes go opposite ways. In all other cells both genes sit at a middle level chosen so
    that a cell of the group is as often above as below another cell: Wilcoxon's statistic has no
    shift (its AUC is 1/2), the spread is about 2.5 times larger in the own group, and the mean
    ``log1p`` expression is about 0.3 *lower* there (a gene is either high or nearly absent).
    A gene alone therefore looks unchanged or slightly down, so univariate tests (Wilcoxon,
    t-test, logistic regression) do not rank these markers at the top of their group, while a
    classifier with a hidden layer learns that in this group the pair is split. The other genes are noise.
    Counts are negative binomial (dispersion 0.2) at about 3,000 UMIs per cell; ``X`` is
    ``log1p`` of counts normalised to 10,000.

    Parameters
    ----------
    n_obs
        Number of cells.
    n_vars
        Number of genes.
    n_groups
        Number of groups.
    pairs_per_group
        Gene pairs of each group (its markers: ``2 × pairs_per_group`` genes).
    high
        Mean UMIs (per 1,000) of the high gene of a split pair.
    low
        Mean UMIs (per 1,000) of the low gene of a split pair.
    random_state
        Seed.

    Returns
    -------
    AnnData with ``X``, ``layers["counts"]``, ``obs["group"]``, ``var["role"]``
    (``"marker_pair"`` or ``"noise"``), ``var["marker_of"]``, ``var["marker_direction"]``
    (``"up"`` for the pair genes: they are the group's markers, although their mean does not
    change) and ``uns["synthetic"]``.

    Examples
    --------
    >>> import scxl as xl
    >>> import numpy as np
    >>> from scipy.stats import mannwhitneyu
    >>> adata = xl.datasets.synthetic_combinatorial(600, random_state=0)
    >>> gene = (adata.var["marker_of"] == "group_0").to_numpy().nonzero()[0][0]
    >>> own = (adata.obs["group"] == "group_0").to_numpy()
    >>> x = adata.X[:, gene]
    >>> auc = mannwhitneyu(x[own], x[~own]).statistic / (own.sum() * (~own).sum())
    >>> bool(abs(auc - 0.5) < 0.05), bool(x[own].std() > 2 * x[~own].std())
    (True, True)
    """
    n_obs = _check_int(n_obs, "n_obs", minimum=1)
    n_vars = _check_int(n_vars, "n_vars", minimum=1)
    n_groups = _check_int(n_groups, "n_groups", minimum=2)
    if 2 * pairs_per_group * n_groups > n_vars:
        raise ValueError(f"n_vars={n_vars} is too small for {n_groups} × {pairs_per_group} gene pairs")
    rng = _rng(random_state)
    group = rng.permutation(np.repeat(np.arange(n_groups), _group_counts(n_obs, n_groups, None)))
    genes = rng.permutation(n_vars)
    role = np.full(n_vars, "noise", dtype=object)
    owner = np.full(n_vars, -1)
    base = np.exp(rng.normal(np.log(0.3), 1.0, size=n_vars))
    n_pair = 2 * pairs_per_group * n_groups
    base *= (1000 - n_pair * (high + low) / 2) / base[genes[n_pair:]].sum()  # ~1,000 per 1,000 UMIs
    rate = np.broadcast_to(base, (n_obs, n_vars)).copy()
    mid = _matching_middle(high, low, rng)
    k = 0
    for g in range(n_groups):
        for _ in range(pairs_per_group):
            a, b = genes[k], genes[k + 1]
            k += 2
            role[[a, b]], owner[[a, b]] = "marker_pair", g
            first = rng.random(n_obs) < 0.5
            own = group == g
            rate[:, a] = np.where(own, np.where(first, high, low), mid)
            rate[:, b] = np.where(own, np.where(first, low, high), mid)
    size = 3.0 * np.exp(rng.normal(0.0, 0.3, size=n_obs))  # thousands of UMIs
    counts = _nb(rate * size[:, None], rng)
    params = {"design": "combinatorial", "n_obs": n_obs, "n_vars": n_vars, "n_groups": n_groups,
              "pairs_per_group": pairs_per_group, "high": float(high), "low": float(low), "mid": float(mid)}
    return _assemble(counts, group, role, owner, n_groups, "cell", params)
