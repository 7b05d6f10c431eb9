import numpy as np
import pandas as pd

import scxl as xl


def test_pbmc68k():
    import scanpy as sc

    adata = xl.datasets.pbmc68k()
    ref = sc.datasets.pbmc68k_reduced()
    assert adata.shape == (700, 765)
    assert isinstance(adata.X, np.ndarray) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X, ref.raw.X.toarray())
    assert adata.raw is None
    assert adata.var_names.equals(ref.raw.var_names)
    assert adata.obs_names.equals(ref.obs_names)
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert (adata.obs["cell_type"].astype(str) == ref.obs["bulk_labels"].astype(str)).all()
    assert adata.obs["cell_type"].cat.categories.size == 10
    assert adata.obs["cell_type"].value_counts()["Dendritic"] == 240
    assert {"X_pca", "X_umap"} <= set(adata.obsm)
    assert len(adata.uns["cell_type_colors"]) == 10
    assert all(isinstance(v, str) for v in adata.uns["source"].values())
    assert "Zheng" in adata.uns["source"]["dataset"]
    # log-normalised, not scaled
    assert adata.X.min() == 0 and 5 < adata.X.max() < 8
    # a new object: changing it does not touch scanpy's data
    adata.obs["cell_type"] = adata.obs["cell_type"].cat.add_categories("x")
    adata.X[:] = 0
    again = xl.datasets.pbmc68k()
    assert again.X.max() > 0 and "x" not in again.obs["cell_type"].cat.categories
    # known markers are highest in their cell type
    for gene, cell_type in [("MS4A1", "CD19+ B"), ("CD79A", "CD19+ B"), ("NKG7", "CD56+ NK")]:
        means = (
            pd.Series(again[:, gene].X.ravel()).groupby(again.obs["cell_type"].to_numpy()).mean()
        )
        assert means.idxmax() == cell_type, gene
