"""Gene-set over-representation: hypergeometric test, Benjamini-Hochberg, GMT files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import hypergeom


class OverlapResult(NamedTuple):
    """Result of :func:`overlap_enrichment` (all counts are within the universe)."""

    overlap: int
    """Genes both selected and in the set (``k``)."""
    expected: float
    """Overlap expected by chance, ``n_selected * set_size / n_universe``."""
    fold_enrichment: float
    """``overlap / expected`` (NaN when ``expected`` is 0)."""
    pvalue: float
    """One-sided hypergeometric P(X >= overlap)."""
    n_selected: int
    """Selected genes in the universe (``N``)."""
    set_size: int
    """Gene-set genes in the universe (``n``)."""
    n_universe: int
    """Universe size (``M``)."""
    genes: list[str]
    """The overlapping genes, sorted."""


def _as_set(x: Iterable, name: str) -> set:
    if isinstance(x, str):
        raise TypeError(f"{name} must be a collection of gene names, not a single string {x!r}")
    return set(np.asarray(list(x), dtype=object).tolist()) if not isinstance(x, set) else x


def overlap_enrichment(
    selected: Iterable[str], gene_set: Iterable[str], universe: Iterable[str]
) -> OverlapResult:
    """Over-representation of a gene set among selected genes (one-sided hypergeometric test).

    ``selected`` and ``gene_set`` are first restricted to ``universe`` (genes outside it cannot
    be drawn). With ``M`` genes in the universe, ``n`` of them in the set, ``N`` selected and
    ``k`` selected genes in the set, the p-value is
    ``P(X >= k) = scipy.stats.hypergeom.sf(k - 1, M, n, N)``.

    Parameters
    ----------
    selected
        Selected genes (e.g. the top genes of a group).
    gene_set
        Genes of the set (e.g. the tissue-enriched genes of a tissue).
    universe
        All genes that could have been selected (e.g. the genes the model saw). Must not be
        empty.

    Returns
    -------
    An :class:`OverlapResult` named tuple: ``overlap``, ``expected``, ``fold_enrichment``,
    ``pvalue``, ``n_selected``, ``set_size``, ``n_universe``, ``genes``.

    Examples
    --------
    >>> from scxl.metrics import overlap_enrichment
    >>> universe = [f"g{i}" for i in range(100)]
    >>> res = overlap_enrichment(["g0", "g1", "g2", "g50"], ["g0", "g1", "g2", "g3"], universe)
    >>> res.overlap, res.expected, res.fold_enrichment
    (3, 0.16, 18.75)
    >>> f"{res.pvalue:.2e}"
    '9.82e-05'
    """
    uni = _as_set(universe, "universe")
    if not uni:
        raise ValueError("universe is empty")
    sel = _as_set(selected, "selected") & uni
    gs = _as_set(gene_set, "gene_set") & uni
    common = sel & gs
    m, n, big_n, k = len(uni), len(gs), len(sel), len(common)
    expected = big_n * n / m
    fold = k / expected if expected > 0 else float("nan")
    pval = float(hypergeom.sf(k - 1, m, n, big_n)) if big_n > 0 and n > 0 else 1.0
    return OverlapResult(k, expected, fold, min(pval, 1.0), big_n, n, m, sorted(common, key=str))


def bh_adjust(pvals: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate).

    ``p_adj[(i)] = min_{j >= i} min(1, p_(j) * m / j)`` over the ``m`` p-values sorted
    increasingly, identical to R's ``p.adjust(p, "BH")`` and to
    :func:`scipy.stats.false_discovery_control`. NaN p-values are left NaN and do not count in
    ``m``.

    Parameters
    ----------
    pvals
        P-values in ``[0, 1]``, any shape.

    Returns
    -------
    Adjusted p-values, same shape as ``pvals``.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.metrics import bh_adjust
    >>> bh_adjust(np.array([0.01, 0.04, 0.03, 0.20])).round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.2]
    """
    p = np.asarray(pvals, dtype=np.float64)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    if ((flat[ok] < 0) | (flat[ok] > 1)).any():
        raise ValueError("p-values must be in [0, 1]")
    out = np.full(flat.shape, np.nan)
    q = flat[ok]
    m = q.size
    if m:
        order = np.argsort(q, kind="stable")
        scaled = q[order] * m / np.arange(1, m + 1)
        adj = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
        res = np.empty(m)
        res[order] = adj
        out[ok] = res
    return out.reshape(p.shape)


def read_gmt(path: str | os.PathLike) -> dict[str, list[str]]:
    r"""Read gene sets from a GMT file (MSigDB / Enrichr format).

    Each non-empty line is ``name<TAB>description<TAB>gene1<TAB>gene2...``. Empty gene fields
    and repeated genes within a set are dropped (first occurrence kept); lines starting with
    ``#`` are skipped.

    Parameters
    ----------
    path
        Path of the ``.gmt`` file.

    Returns
    -------
    Mapping of set name to its genes, in file order.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scxl.metrics import read_gmt
    >>> tmp = pathlib.Path(tempfile.mkdtemp()) / "sets.gmt"
    >>> _ = tmp.write_text("LIVER\tna\tALB\tAPOA1\nHEART\thttp://x\tMYH6\tNPPA\tMYH6\n")
    >>> read_gmt(tmp)
    {'LIVER': ['ALB', 'APOA1'], 'HEART': ['MYH6', 'NPPA']}
    """
    sets: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(
                    f"{path}:{lineno}: a GMT line needs at least a name and a description "
                    "separated by tabs"
                )
            name = fields[0].strip()
            if name in sets:
                raise ValueError(f"{path}:{lineno}: gene set {name!r} appears more than once")
            genes = [g.strip() for g in fields[2:]]
            sets[name] = list(dict.fromkeys(g for g in genes if g))
    return sets


def enrichment_table(
    selected: Mapping[str, Iterable[str]],
    gene_sets: Mapping[str, Iterable[str]],
    universe: Iterable[str],
    *,
    min_set_size: int = 1,
    adjust: Literal["group", "all"] = "group",
) -> pd.DataFrame:
    """Hypergeometric over-representation of many gene sets in many selections.

    Every selection (e.g. the top genes of each cell type) is tested against every gene set
    (e.g. each tissue's tissue-enriched genes) as in :func:`overlap_enrichment`, with gene sets
    restricted to ``universe``.

    Parameters
    ----------
    selected
        Mapping of group name to its selected genes.
    gene_sets
        Mapping of gene-set name to its genes (e.g. from :func:`read_gmt`).
    universe
        All genes that could have been selected.
    min_set_size
        Gene sets with fewer genes in the universe are skipped.
    adjust
        ``"group"``: Benjamini-Hochberg over the gene sets tested for each group (default);
        ``"all"``: over every test in the table.

    Returns
    -------
    Tidy DataFrame, one line per (group, gene set), sorted by group then p-value, with columns
    ``group``, ``gene_set``, ``n_selected``, ``set_size``, ``n_universe``, ``overlap``,
    ``expected``, ``fold_enrichment``, ``pvalue``, ``pvalue_adj`` and ``genes`` (the
    overlapping genes, ``";"``-joined and sorted).

    Examples
    --------
    >>> from scxl.metrics import enrichment_table
    >>> universe = [f"g{i}" for i in range(100)]
    >>> sets = {"A": ["g0", "g1", "g2", "g3"], "B": ["g10", "g11", "g12"]}
    >>> res = enrichment_table({"type1": ["g0", "g1", "g2", "g50"]}, sets, universe)
    >>> res[["group", "gene_set", "overlap", "genes"]]
       group gene_set  overlap     genes
    0  type1        A        3  g0;g1;g2
    1  type1        B        0
    """
    if not isinstance(selected, Mapping) or not isinstance(gene_sets, Mapping):
        raise TypeError("selected and gene_sets must be mappings of name -> genes (e.g. dicts)")
    if adjust not in ("group", "all"):
        raise ValueError(f"adjust must be 'group' or 'all', got {adjust!r}")
    if isinstance(universe, str):
        raise TypeError("universe must be a collection of gene names, not a single string")
    uni = list(dict.fromkeys(universe))
    if not uni:
        raise ValueError("universe is empty")
    pos = {g: i for i, g in enumerate(uni)}
    m = len(uni)

    def incidence(mapping: Mapping[str, Iterable[str]], what: str):
        names, rows, cols = [], [], []
        for r, (name, genes) in enumerate(mapping.items()):
            idx = sorted({pos[g] for g in _as_set(genes, f"{what}[{name!r}]") if g in pos})
            names.append(name)
            rows.extend([r] * len(idx))
            cols.extend(idx)
        mat = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(len(names), m)
        )
        return names, mat

    g_names, s_mat = incidence(selected, "selected")
    t_names, t_mat = incidence(gene_sets, "gene_sets")
    set_size = np.asarray(t_mat.sum(axis=1)).ravel()
    keep = set_size >= min_set_size
    t_names = [n for n, k in zip(t_names, keep, strict=True) if k]
    t_mat, set_size = t_mat[keep], set_size[keep]
    n_sel = np.asarray(s_mat.sum(axis=1)).ravel()
    overlap = np.asarray((s_mat @ t_mat.T).todense())  # groups × sets

    gi, ti = np.meshgrid(np.arange(len(g_names)), np.arange(len(t_names)), indexing="ij")
    gi, ti = gi.ravel(), ti.ravel()
    k, big_n, n = overlap.ravel(), n_sel[gi], set_size[ti]
    expected = big_n * n / m
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = np.where(expected > 0, k / expected, np.nan)
    pval = np.where((big_n > 0) & (n > 0), hypergeom.sf(k - 1, m, n, big_n), 1.0)
    pval = np.clip(pval, 0.0, 1.0)

    genes = np.full(k.size, "", dtype=object)
    s_csr, t_csr = s_mat.tocsr(), t_mat.tocsr()
    for row in np.flatnonzero(k > 0):
        a = set(s_csr.indices[s_csr.indptr[gi[row]] : s_csr.indptr[gi[row] + 1]])
        b = t_csr.indices[t_csr.indptr[ti[row]] : t_csr.indptr[ti[row] + 1]]
        genes[row] = ";".join(sorted(str(uni[j]) for j in b if j in a))

    table = pd.DataFrame(
        {
            "group": np.asarray(g_names, dtype=object)[gi] if g_names else [],
            "gene_set": np.asarray(t_names, dtype=object)[ti] if t_names else [],
            "n_selected": big_n.astype(np.int64),
            "set_size": n.astype(np.int64),
            "n_universe": m,
            "overlap": k.astype(np.int64),
            "expected": expected,
            "fold_enrichment": fold,
            "pvalue": pval,
            "genes": genes,
        }
    )
    if adjust == "all":
        table["pvalue_adj"] = bh_adjust(table["pvalue"].to_numpy())
    else:
        table["pvalue_adj"] = np.nan
        for _, idx in table.groupby("group", sort=False).groups.items():
            table.loc[idx, "pvalue_adj"] = bh_adjust(table.loc[idx, "pvalue"].to_numpy())
    cols = [*table.columns[:-2], "pvalue_adj", "genes"]
    order = {name: i for i, name in enumerate(g_names)}
    table = table[cols].sort_values(
        ["group", "pvalue"], key=lambda c: c.map(order) if c.name == "group" else c, kind="stable"
    )
    return table.reset_index(drop=True)
