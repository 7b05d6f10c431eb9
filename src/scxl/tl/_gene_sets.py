"""``xl.tl.gene_set_overlap``: tie each group's top genes to biology."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import Key
from .._logging import logger, warn
from .._validation import TOOL_FIELD, check_adata, check_writable, to_frame


def ranking(adata: AnnData, key: str) -> dict[str, np.ndarray]:
    """Gene names per group, best first, from a ``rank_genes_groups``-format entry of ``uns``."""
    if key not in adata.uns or "names" not in adata.uns[key]:
        raise KeyError(
            f"no ranking under uns[{key!r}]: run xl.tl.attribute (or sc.tl.rank_genes_groups) first"
        )
    names = adata.uns[key]["names"]
    if not isinstance(names, np.ndarray) or names.dtype.names is None:
        raise TypeError(
            f"uns[{key!r}]['names'] is a {type(names).__name__}, not the record array (one field per group) that "
            "xl.tl.attribute and sc.tl.rank_genes_groups write; pass the key of such a ranking"
        )
    return {g: np.asarray(names[g]).astype(str) for g in names.dtype.names}


def _gene_sets(adata: AnnData, gene_sets: Any) -> dict[str, list[str]]:
    if gene_sets is None:
        return {}
    if isinstance(gene_sets, str | Path) and (str(gene_sets) in list(adata.var.columns)):
        col = to_frame(adata.var, [str(gene_sets)])[str(gene_sets)]
        if col.dtype != bool:
            raise TypeError(f"var[{gene_sets!r}] must be boolean to define a gene set, found {col.dtype}")
        return {str(gene_sets): adata.var_names[col.to_numpy()].tolist()}
    if isinstance(gene_sets, str | Path):
        path = Path(gene_sets)
        if not path.exists():
            hint = (f"; to test a list of genes, pass a dict: gene_sets={{'my set': [{str(gene_sets)!r}, ...]}}"
                    if str(gene_sets) in adata.var_names else "")
            raise FileNotFoundError(f"gene_sets={str(gene_sets)!r} is neither a boolean var column nor an existing GMT file{hint}")
        from ..metrics import read_gmt

        return read_gmt(path)
    if isinstance(gene_sets, Mapping):
        out = {}
        for k, v in gene_sets.items():
            if isinstance(v, str | bytes) or not isinstance(v, Sequence | np.ndarray | pd.Index | set | frozenset | pd.Series):
                raise TypeError(
                    f"gene set {k!r} must be a list of gene names, got {type(v).__name__} {v!r:.60}"
                    + (f"; for one gene pass [{v!r}]" if isinstance(v, str) else "")
                )
            out[str(k)] = [str(g) for g in v]
        return out
    if isinstance(gene_sets, Sequence):
        out: dict[str, list[str]] = {}
        for item in gene_sets:
            out |= _gene_sets(adata, item)
        return out
    raise TypeError("gene_sets must be a dict of name -> genes, a GMT path, a boolean var column name, or a list of these")


def gene_set_overlap(
    adata: AnnData,
    key: str,
    gene_sets: Any = None,
    *,
    top_k: int = 100,
    specificity_key: str | None = "xl",
    de_groups: tuple[str, str] | None = None,
    de_groupby: str | None = None,
    de_fdr: float = 0.001,
    de_fold_change: float = 3.0,
    key_added: str | None = None,
    overwrite: bool = False,
) -> None:
    """Overlap of each group's top genes with specific, housekeeping and user gene sets.

    For each group of the ranking ``uns[key]`` (written by :func:`scxl.tl.attribute`, or by
    :func:`scanpy.tl.rank_genes_groups`), its ``top_k`` genes are compared with

    - the genes specific to **that** group (``var[f"{specificity_key}_enriched_in"]`` from
      :func:`scxl.tl.specificity`: enriched or enhanced in it) — the paper's "tissue-specific
      manifestation";
    - housekeeping genes (``var[f"{specificity_key}_housekeeping"]``);
    - every user gene set (e.g. transcription factors).

    For each: overlap, the expected overlap of a random selection of ``top_k`` genes from the
    ranked genes (the universe), fold enrichment and a hypergeometric p-value, Benjamini–Hochberg
    adjusted over the gene sets of a group. Every gene set keeps its row: a set that shares no
    gene with the universe (e.g. gene identifiers that do not match the data's, or a group
    without specific genes) has ``set_size`` 0 and no p-value (NaN, not counted in the
    adjustment); a user set in that state also gives a warning (``ScxlWarning``)
    naming it.

    With ``de_groups=(a, b)``, also the fraction of the top genes that are differentially
    expressed between ``a`` and ``b`` (Scanpy's Wilcoxon test on the same matrix, adjusted
    p ≤ ``de_fdr`` and fold change ≥ ``de_fold_change``; the paper used 0.001 and 3), and how
    many are up in ``a`` or in ``b``.

    Parameters
    ----------
    adata
        Annotated data matrix with a ranking in ``uns[key]``.
    key
        Key of the ranking, e.g. ``"xl_deeplift"``.
    gene_sets
        A dict ``name -> genes``, the path of a GMT file, the name of a boolean ``var`` column
        (e.g. ``"is_tf"``), or a list of these.
    top_k
        Number of top genes per group.
    specificity_key
        ``key_added`` of :func:`scxl.tl.specificity`; ``None`` skips specific/housekeeping sets.
    de_groups
        Two groups to test for differential expression (e.g. ``("Normal", "Tumor")``).
    de_groupby
        ``obs`` column of ``de_groups`` (default: the ranking's ``groupby``).
    de_fdr, de_fold_change
        Thresholds of the differential-expression call.
    key_added
        Key in ``uns`` (default ``f"{key}_overlap"``).
    overwrite
        Replace an entry under ``key_added`` that another tool or the user wrote (an entry this
        tool wrote before is always replaced). By default such a key is refused with an error.

    Returns
    -------
    ``None``. Writes ``uns[key_added]`` with ``params``, ``table`` (tidy: ``group``, ``gene_set``,
    ``overlap``, ``expected``, ``fold_enrichment``, ``pvalue``, ``pvalue_adj``, ``genes``, ...)
    and, with ``de_groups``, ``de`` (per group: ``n_top``, ``n_de``, ``fraction_de``,
    ``n_up_in_a``, ``n_up_in_b``, where ``a`` and ``b`` are ``params["de_groups"]``; the group
    names are not used as column names, so any group name can be written to ``.h5ad``/``.zarr``).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scxl as xl
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.specificity(adata, "group", min_expr=0.5)
    >>> sc.tl.rank_genes_groups(adata, "group", method="wilcoxon")
    >>> xl.tl.gene_set_overlap(adata, "rank_genes_groups", {"markers": adata.var_names[adata.var.role == "marker_up"]}, top_k=10)
    >>> adata.uns["rank_genes_groups_overlap"]["table"].columns[:3].tolist()
    ['group', 'gene_set', 'n_selected']
    """
    from ..metrics import enrichment_table

    check_adata(adata, allow_mudata=False)
    if not (isinstance(top_k, int | np.integer) and top_k >= 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if de_groups is not None:
        if isinstance(de_groups, str) or len(de_groups) != 2:
            raise ValueError(f"de_groups must be two groups to compare, e.g. de_groups=('Tumor', 'Normal'), got {de_groups!r}")
        if str(de_groups[0]) == str(de_groups[1]):
            raise ValueError(f"de_groups must be two different groups, got {de_groups[0]!r} twice")
        if not 0 < de_fdr <= 1:
            raise ValueError(f"de_fdr must be a false discovery rate in (0, 1], e.g. 0.001, got {de_fdr!r}")
        if not de_fold_change >= 1:
            raise ValueError(f"de_fold_change must be a fold change >= 1 (in either direction), e.g. 3, got {de_fold_change!r}")
    key_added = key_added or Key.uns.overlap(key)
    check_writable(adata, key_added, tool="gene_set_overlap", overwrite=overwrite)
    ranks = ranking(adata, key)
    groupby = str(adata.uns[key].get("params", {}).get("groupby", ""))
    universe = sorted(set().union(*[set(v) for v in ranks.values()]))
    selected = {g: list(v[:top_k]) for g, v in ranks.items()}
    sets = _gene_sets(adata, gene_sets)
    per_group_sets: dict[str, dict[str, list[str]]] = {g: dict(sets) for g in ranks}
    if specificity_key is not None:
        col_e, col_h = f"{specificity_key}_enriched_in", f"{specificity_key}_housekeeping"
        if col_e not in list(adata.var.columns) or col_h not in list(adata.var.columns):
            raise KeyError(f"var[{col_e!r}] not found: run xl.tl.specificity(adata, groupby) first, or pass specificity_key=None")
        _check_specificity_groups(adata, specificity_key, key, groupby, list(ranks))
        var = to_frame(adata.var, [col_e, col_h])
        enriched = var[col_e].astype(str).str.split(";")
        hk = adata.var_names[var[col_h].to_numpy(dtype=bool)].tolist()
        for g in ranks:
            per_group_sets[g]["specific to group"] = adata.var_names[enriched.apply(lambda s, g=g: g in s).to_numpy()].tolist()
            per_group_sets[g]["housekeeping"] = hk
    uni = set(universe)
    disjoint = [name for name, genes in sets.items() if not uni.intersection(genes)]
    if disjoint:
        warn(
            f"gene set(s) {disjoint[:5]}{' and more' if len(disjoint) > 5 else ''} share no gene with the "
            f"{len(universe)} genes ranked in uns[{key!r}]: their rows in the table say 0 genes in the universe "
            "(set_size 0, no p-value). Check that the gene identifiers match (symbols vs Ensembl IDs, case)",
        )
    tables = []
    for g in ranks:
        if per_group_sets[g]:
            tables.append(_with_empty_sets(enrichment_table({g: selected[g]}, per_group_sets[g], universe),
                                           g, per_group_sets[g], len(selected[g]), len(universe)))
    if not tables:
        raise ValueError("no gene sets to test: give gene_sets or run xl.tl.specificity first")
    table = pd.concat(tables, ignore_index=True)
    result: dict[str, Any] = {
        "params": {TOOL_FIELD: "gene_set_overlap", "key": key, "top_k": int(top_k), "specificity_key": str(specificity_key),
                   "gene_sets": list(sets), "groupby": groupby},
        "table": table,
    }
    if de_groups is not None:
        result["de"] = _de_fraction(adata, selected, de_groups, de_groupby or groupby, de_fdr, de_fold_change)
        result["params"] |= {"de_groups": list(de_groups), "de_fdr": float(de_fdr), "de_fold_change": float(de_fold_change)}
    adata.uns[key_added] = result
    logger.info("finished gene-set overlap: added uns[%r] (%d tests)", key_added, len(table))


def _check_specificity_groups(adata, specificity_key: str, key: str, groupby: str, groups: list[str]) -> None:
    """The ranking's groups must be those :func:`scxl.tl.specificity` called genes specific to."""
    entry = adata.uns.get(Key.uns.specificity(specificity_key))
    if not isinstance(entry, Mapping) or "profile" not in entry:
        return  # (var columns written by hand or by an older version: nothing to compare with)
    known = {str(g) for g in pd.DataFrame(entry["profile"]).index}
    spec_by = str(entry.get("params", {}).get("groupby", "?"))
    missing = [g for g in groups if str(g) not in known]
    if not missing:
        return
    fix = (f"run xl.tl.specificity(adata, {groupby!r}, key_added=...) and pass that specificity_key"
           if groupby else "run xl.tl.specificity with the ranking's groupby and pass its key_added as specificity_key")
    if len(missing) == len(groups):
        raise ValueError(f"the groups of uns[{key!r}] (by {groupby or '?'!r}: {groups[:3]}...) are not the groups xl.tl.specificity "
                         f"used for specificity_key={specificity_key!r} (by {spec_by!r}), so no gene would be 'specific to "
                         f"group': {fix}, or pass specificity_key=None")
    warn(f"group(s) {missing[:5]} of uns[{key!r}] are not among the groups of specificity_key={specificity_key!r} (by "
         f"{spec_by!r}): their 'specific to group' sets are empty (set_size 0). To test them, {fix}")


def _with_empty_sets(table: pd.DataFrame, group: str, sets: dict[str, list[str]], n_selected: int, n_universe: int) -> pd.DataFrame:
    """Add a row (set_size 0, no p-value) for every gene set that shares no gene with the universe."""
    present = set(table["gene_set"].astype(str))
    empty = [s for s in sets if s not in present]
    if not empty:
        return table
    rows = pd.DataFrame({
        "group": group, "gene_set": empty, "n_selected": np.int64(n_selected), "set_size": np.int64(0),
        "n_universe": np.int64(n_universe), "overlap": np.int64(0), "expected": 0.0, "fold_enrichment": np.nan,
        "pvalue": np.nan, "pvalue_adj": np.nan, "genes": "",
    })
    return pd.concat([table, rows[table.columns]], ignore_index=True)


def _de_fraction(adata, selected, groups, groupby, fdr, fold_change) -> pd.DataFrame:
    import scanpy as sc

    a, b = map(str, groups)
    from .._inputs import get_matrix

    if not groupby or groupby not in list(adata.obs.columns):
        raise KeyError(f"de_groupby={groupby!r} is not a column of obs")
    cats = to_frame(adata.obs, [groupby])[groupby].astype(str)
    missing = [x for x in (a, b) if x not in set(cats)]
    if missing:
        raise ValueError(f"de_groups {missing} are not in obs[{groupby!r}]")
    keep = np.flatnonzero(cats.isin([a, b]).to_numpy())
    # only the two groups' rows are read (through the reader: backed, sparse and dask data alike)
    X = get_matrix(adata).rows(keep)
    sub = AnnData(X, obs=pd.DataFrame({"g": pd.Categorical(cats.iloc[keep])}, index=adata.obs_names[keep]),
                  var=pd.DataFrame(index=adata.var_names))
    sc.tl.rank_genes_groups(sub, "g", groups=[a], reference=b, method="wilcoxon", key_added="de")
    df = sc.get.rank_genes_groups_df(sub, a, key="de").set_index("names")
    is_de = (df["pvals_adj"] <= fdr) & (df["logfoldchanges"].abs() >= np.log2(fold_change))
    rows = {}
    for g, genes in selected.items():
        genes = [x for x in genes if x in df.index]
        d = is_de.reindex(genes).fillna(False).to_numpy(dtype=bool)
        lfc = df["logfoldchanges"].reindex(genes).to_numpy()
        rows[g] = {"n_top": len(genes), "n_de": int(d.sum()), "fraction_de": float(d.mean()) if genes else np.nan,
                   "n_up_in_a": int((d & (lfc > 0)).sum()), "n_up_in_b": int((d & (lfc < 0)).sum())}
    return pd.DataFrame.from_dict(rows, orient="index")
