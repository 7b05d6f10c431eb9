import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the staged real data sets (``SCXL_DATASETDIR`` or ``../shared/data``)."""
    candidates = [os.environ.get("SCXL_DATASETDIR"), _REPO.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "tissueenrich_hpa_v18_tpm.h5ad").exists():
            return Path(c)
    raise FileNotFoundError(
        "staged real data not found: set SCXL_DATASETDIR to the folder holding "
        "tissueenrich_hpa_v18_tpm.h5ad (normally ../shared/data)"
    )


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
