"""The PBMC data set bundled with Scanpy, prepared for classification."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._logging import logger


def pbmc68k() -> AnnData:
    """700 labelled human PBMCs with 765 log-normalised genes (Scanpy's ``pbmc68k_reduced``).

    A subset of the 68k PBMC data of Zheng et al. 2017 (*Nat Commun* 8:14049, 10x Genomics),
    shipped inside Scanpy as :func:`scanpy.datasets.pbmc68k_reduced`, so no download is needed.
    Scanpy's copy keeps scaled values in ``X`` and the log-normalised values in ``.raw``; this
    loader returns the log-normalised values as ``X`` (what classifiers and attributions should
    see) and leaves ``.raw`` unset.

    Units: ``log1p`` of library-size-normalised UMI counts, as shipped by Scanpy (values 0 to
    about 6.5; the 765 genes are a subset of the normalised transcriptome, so rows do not sum to
    a constant). Raw counts are not available.

    Returns
    -------
    AnnData (700 cells × 765 genes) with

    ``X``
        Dense float32 log-normalised expression (from ``pbmc68k_reduced().raw.X``).
    ``obs["cell_type"]``
        Categorical label, a copy of ``bulk_labels`` (10 types; Dendritic 240 … CD4+/CD45RA+/CD25-
        Naive T 8; the labels come from correlation with purified populations, so some are
        noisy).
    ``obs``
        Scanpy's columns as well: ``bulk_labels``, ``n_genes``, ``percent_mito``, ``n_counts``,
        ``S_score``, ``G2M_score``, ``phase``, ``louvain``.
    ``obsm["X_pca"]``, ``obsm["X_umap"]``
        Embeddings that ship with the data.
    ``uns["cell_type_colors"]``
        Colours of the labels (Scanpy's ``bulk_labels_colors``).
    ``uns["source"]``
        Provenance (strings).

    Examples
    --------
    >>> import scxl as xl
    >>> adata = xl.datasets.pbmc68k()
    >>> adata.shape
    (700, 765)
    >>> adata.obs["cell_type"].value_counts().head(3)
    cell_type
    Dendritic         240
    CD14+ Monocyte    129
    CD19+ B            95
    Name: count, dtype: int64
    """
    import scanpy as sc

    ref = sc.datasets.pbmc68k_reduced()
    raw = ref.raw
    X = raw.X.toarray() if sparse.issparse(raw.X) else np.asarray(raw.X)
    obs = ref.obs.copy()
    obs["cell_type"] = pd.Categorical(
        obs["bulk_labels"].astype(str), categories=list(obs["bulk_labels"].cat.categories)
    )
    uns = {
        "source": {
            "dataset": "pbmc68k_reduced: 700-cell subset of Zheng et al. 2017 68k PBMCs (10x Genomics)",
            "reference": "Zheng et al. 2017, Nat Commun 8:14049",
            "distributed_by": "scanpy.datasets.pbmc68k_reduced (bundled with scanpy)",
            "units": "log1p of library-size-normalised UMI counts (scanpy's .raw), 765 genes",
            "label": "cell_type = bulk_labels",
            "loader": "scxl.datasets.pbmc68k",
        }
    }
    if "bulk_labels_colors" in ref.uns:
        uns["cell_type_colors"] = np.asarray(ref.uns["bulk_labels_colors"]).copy()
    adata = AnnData(
        X=np.asarray(X, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=raw.var_names.copy()),
        obsm={k: np.asarray(ref.obsm[k]).copy() for k in ("X_pca", "X_umap") if k in ref.obsm},
        uns=uns,
    )
    logger.info("loaded pbmc68k: %d cells × %d genes, label obs['cell_type']", *adata.shape)
    return adata
