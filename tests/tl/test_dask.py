"""Dask-backed AnnData and LocalClusters: xl.tl.attribute gives the in-memory numbers, members trained on the workers are those of one process."""

import anndata as ad
import dask.array as da
import distributed
import numpy as np
import pandas as pd
import pytest
import torch

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


def _weights(a, key):
    return [m.state_dict() for m in xl.get.ensemble(a, key).modules]


def _identical(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)


def test_members_train_on_the_workers_bit_identical(synth, tmp_path):
    """backend='dask': member groups trained as tasks on a LocalCluster are the members of one process."""
    a = synth.copy()
    kw = dict(n_models=3, max_epochs=4, random_state=1)
    xl.tl.train_classifier(a, "group", key_added="mem", **kw)
    assert a.uns["mem"]["params"]["backend"] == "memory"
    b = a.copy()
    b.X = da.from_array(np.asarray(a.X), chunks=(70, a.n_vars))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        xl.tl.train_classifier(a, "group", key_added="sent", backend="dask", **kw)  # in-memory data sent to the workers
        xl.tl.train_classifier(b, "group", key_added="auto", **kw)  # Dask data: on the workers by default
        xl.tl.train_classifier(b, "group", key_added="one", vectorize=False, **kw)  # one task per member
        xl.tl.train_classifier(b, "group", key_added="grown", **(kw | {"n_models": 2}))
        xl.tl.train_classifier(b, "group", key_added="grown", extend=True, overwrite=True, **kw)
        xl.tl.train_classifier(b, "group", key_added="here", backend="memory", **kw)
        with pytest.raises(ValueError, match="MLP members only"):
            xl.tl.train_classifier(a, "group", key_added="cnn", model="cnn", backend="dask", n_models=1, max_epochs=1)
    ref = _weights(a, "mem")
    assert _identical(ref, _weights(a, "sent")) and a.uns["sent"]["params"]["backend"] == "dask"
    for key in ("auto", "one", "grown"):
        assert b.uns[key]["params"]["backend"] == "dask", key
        assert _identical(ref, _weights(b, key)), key
    assert b.uns["here"]["params"]["backend"] == "memory" and _identical(ref, _weights(b, "here"))
    pd.testing.assert_frame_equal(b.uns["auto"]["history"], a.uns["mem"]["history"])
    pd.testing.assert_frame_equal(b.uns["auto"]["metrics"], a.uns["mem"]["metrics"])


def _unreadable(block):
    raise RuntimeError("the expression was read")


def test_backend_dask_without_a_client_or_on_a_backed_file(synth, tmp_path):
    a = synth.copy()
    a.X = da.from_array(np.asarray(a.X), chunks=(100, a.n_vars)).map_blocks(_unreadable, dtype=np.float32)
    with pytest.raises(ValueError, match="none is active"):  # before any pass over the data
        xl.tl.train_classifier(a, "group", backend="dask", n_models=1, max_epochs=1)
    with pytest.raises(ValueError, match="MLP members only"):
        xl.tl.train_classifier(a, "group", backend="dask", model="cnn", n_models=1, max_epochs=1)
    a = synth.copy()
    with pytest.raises(ValueError, match="backend='fast' is not valid"):
        xl.tl.train_classifier(a, "group", backend="fast", n_models=1, max_epochs=1)
    a.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        with pytest.raises(ValueError, match="read_lazy"):
            xl.tl.train_classifier(backed, "group", backend="dask", n_models=1, max_epochs=1)
        xl.tl.train_classifier(backed, "group", n_models=1, max_epochs=1)  # auto: a backed file trains here
    assert backed.uns["xl"]["params"]["backend"] == "memory"
    backed.file.close()


def test_dask_x_chunked_along_genes_and_auto_layers(trained, tmp_path):
    """A dense X chunked along genes (as anndata's write_zarr stores it) is attributed on whole rows; under Dask
    layer_format='auto' gives the lazy dense layer even where it would be sparse in memory (zero reference)."""
    a = trained.copy()
    a.X = np.asarray(a.X)
    xl.tl.attribute(a, key_added="mem")
    xl.tl.attribute(a, key_added="zero_mem", baseline="zero")
    b = a.copy()
    b.X = da.from_array(np.asarray(a.X), chunks=(150, 25))  # 60 genes in 3 column chunks
    for k in list(b.layers):
        del b.layers[k]
    xl.tl.attribute(b, key_added="dsk")
    np.testing.assert_allclose(np.asarray(b.layers["dsk"]), a.layers["mem"], rtol=1e-5, atol=1e-6)
    c = b.copy()
    c.X = da.from_array(sparse_csr(np.asarray(a.X)), chunks=(150, a.n_vars), asarray=False)
    xl.tl.attribute(c, key_added="zero_dsk", baseline="zero")  # auto: the dense lazy layer, not an error
    assert c.uns["zero_dsk"]["params"]["store_layer"] == "dense"
    np.testing.assert_allclose(np.asarray(c.layers["zero_dsk"]), np.asarray(a.layers["zero_mem"].todense())
                               if hasattr(a.layers["zero_mem"], "todense") else a.layers["zero_mem"], rtol=1e-5, atol=1e-6)


def sparse_csr(x):
    from scipy import sparse

    return sparse.csr_matrix(x)


def test_layer_memory_check_counts_what_is_built(trained, monkeypatch):
    """The memory check sizes the layer that will be built: the top genes' union, nothing for a lazy Dask layer;
    the message gives sizes in readable units."""
    import scxl._validation as validation

    a = trained.copy()
    dense_bytes = a.n_obs * a.n_vars * 4
    monkeypatch.setattr(validation, "available_memory_bytes", lambda: dense_bytes // 2)
    with pytest.raises(MemoryError, match=r"about 94 KiB .* only 47 KiB are available"):
        xl.tl.attribute(a)
    xl.tl.attribute(a, layer_genes="top", top_k=1)  # 3 groups x 1 gene at most, 8 bytes a value and 16 a row: fits
    assert a.layers["xl_deeplift"].shape == (a.n_obs, a.n_vars) and a.layers["xl_deeplift"].nnz <= a.n_obs * 3
    b = a.copy()
    b.X = da.from_array(np.asarray(a.X), chunks=(150, a.n_vars))
    xl.tl.attribute(b, key_added="lazy")  # a lazy layer costs nothing until written
    assert isinstance(b.layers["lazy"], da.Array)
    with pytest.warns(xl.ScxlWarning if hasattr(xl, "ScxlWarning") else UserWarning, match="no effect with store_layer=False"):
        xl.tl.attribute(a, key_added="none", layer_genes="top", store_layer=False, overwrite=True)
    assert a.uns["none"]["params"]["layer_genes"] == "top"


def test_attribute_warns_on_data_of_another_scale(trained):
    """Counts given to an ensemble trained on log data: attribute warns as predict does (from the rows it read)."""
    a = trained.copy()
    a.X = np.round(np.expm1(np.asarray(a.X)) * 10).astype(np.float32)
    with pytest.warns(UserWarning, match="Contributions on another scale are unreliable"):
        xl.tl.attribute(a, store_layer=False)


def test_backend_dask_on_a_backed_file_with_a_client_says_what_to_do(trained, tmp_path):
    a = trained.copy()
    a.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        with pytest.raises(ValueError, match="backed file, which cannot be sent to Dask workers; open it lazily"):
            xl.tl.attribute(backed, backend="dask", store_layer=False)
    backed.file.close()


def test_contributions_plot_of_a_lazy_anndata_says_what_to_do(trained, tmp_path):
    """scanpy's embedding failed deep inside dask on read_lazy's obsm (review): a clear error, and
    the subset read into memory draws."""
    import scanpy as sc

    a = trained.copy()
    sc.pp.pca(a, n_comps=5)
    xl.tl.attribute(a)
    a.write_zarr(tmp_path / "a.zarr")
    lazy = ad.experimental.read_lazy(tmp_path / "a.zarr")
    with pytest.raises(TypeError, match=r"obsm\['X_pca'\] is a lazy \(dask\) array.*to_memory\(\)"):
        xl.pl.contributions(lazy, "xl_deeplift", "gene_000", basis="pca")
    assert xl.pl.contributions(lazy[:50].to_memory(), "xl_deeplift", "gene_000", basis="pca") is not None
    import matplotlib.pyplot as plt

    plt.close("all")
