"""``xl.tl.specificity``: tau, HPA/TissueEnrich categories and housekeeping calls per gene."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_copy, doc_layer, doc_overwrite, doc_params
from .._inputs import extract
from .._keys import PREFIX, Key
from .._logging import DataScaleWarning, logger, warn
from .._types import Values
from .._validation import (
    TOOL_FIELD,
    ValueSummary,
    check_adata,
    check_groupby,
    check_in,
    check_values,
    check_writable,
    copy_of,
    view_to_actual,
)
from ..explain import group_means

VALUES = ("log1p", "log2p", "linear")
_TO_LINEAR = {"log1p": np.expm1, "log2p": lambda x: np.exp2(x) - 1.0, "linear": None}


def _check_values_scale(summary: ValueSummary, values: str, source: str) -> None:
    """Refuse ``values="log1p"/"log2p"`` on linear-scale data (``expm1`` would overflow); warn on the reverse."""
    scale = summary.scale
    where = "adata.X" if source == "X" else f"adata.{source}"
    if values in ("log1p", "log2p") and scale in ("counts", "linear"):
        what = "raw counts" if scale == "counts" else "linear-scale values (normalised counts, CPM, TPM)"
        raise ValueError(
            f"values={values!r} says {where} is log-transformed, but it holds {summary.describe()}: it looks like "
            f"{what}, and undoing a log on it would overflow. Pass values='linear' (group means are then taken as they "
            "are), or log-normalise first (sc.pp.normalize_total + sc.pp.log1p) and keep the default"
        )
    if values == "linear" and scale == "log":
        warn(
            f"values='linear' but {where} holds {summary.describe()}, which looks log-transformed; if it is, pass "
            "values='log1p' (natural log, Scanpy's sc.pp.log1p) or values='log2p' (log2(x + 1)), so that group means "
            "are taken on the linear scale",
            stacklevel=4, category=DataScaleWarning,
        )


@doc_params(layer=doc_layer, copy=doc_copy, overwrite=doc_overwrite)
def specificity(
    adata: AnnData,
    groupby: str,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    values: Values = "log1p",
    min_expr: float = 1.0,
    fold: float = 5.0,
    max_group_size: int = 7,
    housekeeping_fold: float = 2.0,
    housekeeping_trim: float = 0.1,
    key_added: str = PREFIX,
    overwrite: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Tissue/cell-type specificity of every gene: tau, HPA categories, housekeeping genes.

    Expression is averaged per group on the **linear** scale (``values`` says how to get there):
    the group profile is the mean of ``expm1(X)`` for log1p data (bulk TPM/CPM, or single-cell
    normalised counts), giving one TPM-like profile per group. On these profiles:

    - **tau** (Yanai et al. 2005) on ``log2(profile + 1)``: 0 = uniform, 1 = one group only;
    - the **Human Protein Atlas categories** exactly as TissueEnrich computes them
      (:func:`scxl.metrics.hpa_categories`; fold 5, groups of 2–7, ``min_expr`` 1 TPM by
      default): Tissue-Enriched (≥ ``fold`` × every other group), Group-Enriched,
      Tissue-Enhanced (≥ ``fold`` × the mean), Expressed-In-All, Mixed, Not-Expressed;
    - **housekeeping** (:func:`scxl.metrics.housekeeping`): ≥ ``min_expr`` in every group and
      within ``housekeeping_fold`` of the median group (after setting aside the
      ``housekeeping_trim`` most extreme groups at each end; the paper uses TPM ≥ 1 and < 2-fold).

    Given per-tissue TPM profiles (one observation per tissue, ``values="linear"``), this
    reproduces the published HPA/TissueEnrich categories. For single-cell data the thresholds
    apply to mean normalised counts (e.g. counts per 10,000 after ``sc.pp.normalize_total``):
    choose ``min_expr`` on that scale.

    Parameters
    ----------
    adata
        Annotated data matrix (one modality of a MuData).
    groupby
        ``obs`` column with the tissues / cell types.
    {layer}
    values
        Scale of the matrix: ``"log1p"`` (natural ``log(x + 1)``, Scanpy's default),
        ``"log2p"`` (``log2(x + 1)``, e.g. GTEx/TCGA tables) or ``"linear"`` (TPM, CPM, counts).
        Checked against the values: a log scale on data that look linear (whole numbers above
        20, or values above 50) is refused with an error that says to pass ``"linear"``;
        ``"linear"`` on data that look log-transformed gives a warning.
    min_expr
        Expression threshold on the linear scale (1 TPM in the HPA rules).
    fold
        Fold-change threshold of the enriched/enhanced categories.
    max_group_size
        Largest group of a Group-Enriched gene.
    housekeeping_fold
        Largest spread around the median group for a housekeeping gene.
    housekeeping_trim
        Fraction of groups set aside at each end before measuring the spread.
    key_added
        Prefix of the ``var`` columns and of the ``uns`` entry.
    {overwrite}
    {copy}

    Returns
    -------
    ``None`` or a copy. Writes ``var[f"{{key_added}}_tau"]``,
    ``var[f"{{key_added}}_specificity"]`` (HPA category), ``var[f"{{key_added}}_enriched_in"]``
    (the group(s) a gene is enriched/enhanced in, ``";"``-joined; empty otherwise),
    ``var[f"{{key_added}}_housekeeping"]`` and ``uns[f"{{key_added}}_specificity"]`` with
    ``params`` and ``profile`` (groups × genes linear means).

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.synthetic(300, 100, 3, random_state=0)
    >>> xl.tl.specificity(adata, "group", min_expr=0.5)
    >>> adata.var[["xl_tau", "xl_specificity", "xl_enriched_in", "xl_housekeeping"]].shape
    (100, 4)
    """
    from .. import metrics

    check_adata(adata, allow_mudata=False)
    check_in(values, VALUES, "values")
    if copy:
        adata = copy_of(adata, "specificity")
    check_writable(adata, Key.uns.specificity(key_added), tool="specificity", overwrite=overwrite,
                   var_columns=[f(key_added) for f in (Key.var.tau, Key.var.specificity, Key.var.enriched_in, Key.var.housekeeping)])
    from ..explain._distributed import refuse_small_workers

    refuse_small_workers("specificity", adata)  # before anything of Dask data is read on the workers
    inputs = extract(adata, layer=layer, use_raw=use_raw)
    if use_raw:
        raise ValueError("specificity writes per-gene columns to var; use_raw is not supported, use a layer")
    labels = check_groupby(adata.obs, groupby)
    groups = labels.cat.categories.astype(str)
    if len(groups) < 2:
        raise ValueError(f"specificity needs at least two groups in obs[{groupby!r}], found {len(groups)}")
    _check_values_scale(check_values(inputs.matrix, expect_nonnegative=True), values, inputs.matrix.source)
    profile = group_means(inputs.matrix.chunks(4096), labels.cat.codes.to_numpy(), len(groups), transform=_TO_LINEAR[values])
    if (profile < 0).any():
        raise ValueError("negative group means on the linear scale: the data are not log-expression or counts")
    cats = metrics.hpa_categories(profile, list(groups), min_expr=min_expr, fold=fold,
                                  max_group_size=max_group_size, gene_names=adata.var_names)
    hk = metrics.housekeeping(profile, min_expr=min_expr, max_fold=housekeeping_fold, trim=housekeeping_trim,
                              gene_names=adata.var_names)
    view_to_actual(adata)
    adata.var[Key.var.tau(key_added)] = cats["tau"].to_numpy()
    adata.var[Key.var.specificity(key_added)] = cats["category"].to_numpy()
    adata.var[Key.var.enriched_in(key_added)] = cats["groups"].to_numpy()
    adata.var[Key.var.housekeeping(key_added)] = hk["housekeeping"].to_numpy()
    adata.uns[Key.uns.specificity(key_added)] = {
        "params": {TOOL_FIELD: "specificity", "groupby": groupby, "values": values, "min_expr": float(min_expr), "fold": float(fold),
                   "max_group_size": int(max_group_size), "housekeeping_fold": float(housekeeping_fold),
                   "housekeeping_trim": float(housekeeping_trim), "source": inputs.matrix.source},
        "profile": pd.DataFrame(profile.astype(np.float32), index=groups, columns=adata.var_names),
    }
    counts = cats["category"].value_counts()
    logger.info(
        "finished specificity: added var[%r], var[%r], var[%r], var[%r]; %s; %d housekeeping",
        Key.var.tau(key_added), Key.var.specificity(key_added), Key.var.enriched_in(key_added),
        Key.var.housekeeping(key_added),
        ", ".join(f"{k} {v}" for k, v in counts.items()), int(hk["housekeeping"].sum()),
    )
    return adata if copy else None
