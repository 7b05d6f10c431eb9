"""xl.tl.attribute on a Dask-backed AnnData (and on a LocalCluster): the in-memory numbers."""

import anndata as ad
import dask.array as da
import distributed
import numpy as np
import pytest

import scxl as xl


def test_attribute_dask_anndata_equals_in_memory(trained, tmp_path):
    a = trained.copy()
    xl.tl.attribute(a, key_added="mem")
    b = a.copy()
    b.X = da.from_array(np.asarray(a.X), chunks=(150, a.n_vars))
    xl.tl.attribute(b, key_added="dsk")
    assert b.uns["dsk"]["params"]["store_layer"] == "dense"
    assert isinstance(b.layers["dsk"], da.Array)  # lazy until written or indexed
    np.testing.assert_allclose(np.asarray(b.layers["dsk"]), a.layers["mem"], rtol=1e-5, atol=1e-6)
    for g in a.uns["mem"]["names"].dtype.names:
        np.testing.assert_allclose(np.asarray(b.uns["dsk"]["scores"][g]), np.asarray(a.uns["mem"]["scores"][g]),
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="with Dask the layer is dense"):
        xl.tl.attribute(b, key_added="x", layer_genes="top")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        xl.tl.attribute(b, key_added="cluster", baseline="universal")
        b.write_zarr(tmp_path / "result.zarr")  # the layer is written block by block
    xl.tl.attribute(a, key_added="cluster", baseline="universal")
    back = ad.read_zarr(tmp_path / "result.zarr")
    np.testing.assert_allclose(back.layers["cluster"], a.layers["cluster"], rtol=1e-5, atol=1e-6)


def test_backend_dask_on_in_memory_data(trained):
    a = trained.copy()
    xl.tl.attribute(a, key_added="mem", store_layer=False)
    xl.tl.attribute(a, key_added="dsk", store_layer=False, backend="dask")
    np.testing.assert_allclose(np.asarray(a.uns["dsk"]["scores"]["group_0"]), np.asarray(a.uns["mem"]["scores"]["group_0"]),
                               rtol=1e-5, atol=1e-6)
