from pathlib import Path

import pytest

import scxl as xl


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real data sets that tests/conftest.py points scxl at (``tests/data``).

    The three files read from it here (HPA v18 TPM, TissueEnrich's groups, Eisenberg's
    housekeeping list) are the full files, byte for byte (``tests/data/README.md``).
    """
    folder = Path(xl.settings.datasetdir)
    for name in (
        "tissueenrich_hpa_v18_tpm.h5ad",
        "tissue_specific_genes_hpa_v18_tissueenrich.tsv.gz",
        "housekeeping_eisenberg2013_HK_genes.txt",
    ):
        assert (folder / name).is_file(), f"{name} is missing from {folder}"
    return folder


@pytest.fixture(scope="session")
def hpa_v18(shared_data):
    """HPA v18 TPM profiles as used by TissueEnrich: (profile float64, tissues, gene_ids, symbols)."""
    import anndata as ad
    import numpy as np

    a = ad.read_h5ad(shared_data / "tissueenrich_hpa_v18_tpm.h5ad")
    # X is float32 converted from decimal TPM values with at most 2 decimals: round back to the
    # float64 values TissueEnrich compared.
    x = np.round(np.asarray(a.X, dtype=np.float64), 2)
    return x, list(a.obs["tissue"]), a.var["gene_ids"].to_numpy(), a.var_names.to_numpy()
