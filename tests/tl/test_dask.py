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
    monkeypatch.setattr(validation, "available_memory", lambda: (dense_bytes // 2, "system"))
    with pytest.raises(MemoryError, match=r"about 94 KiB .* at most 38 KiB may be used \(80 % of the 47 KiB available, set by the free memory of this machine\)"):
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
    with pytest.raises(TypeError, match=r"obs is a lazy \(xarray\) table, which scanpy's plots cannot draw.*to_memory\(\)"):
        xl.pl.contributions(lazy, "xl_deeplift", "gene_0000", basis="pca")
    assert xl.pl.contributions(lazy[:50].to_memory(), "xl_deeplift", "gene_0000", basis="pca") is not None
    import matplotlib.pyplot as plt

    plt.close("all")


class _Scheduler:
    """A stand-in for a client: only what :func:`~scxl.explain._distributed.worker_room` asks."""

    def __init__(self, workers, new_api=True):
        self.workers, self.new_api = workers, new_api

    def scheduler_info(self, *args, **kwargs):
        if kwargs and not self.new_api:
            raise TypeError("scheduler_info() got an unexpected keyword argument 'n_workers'")
        return {"workers": self.workers}


def test_worker_room_is_the_tightest_workers_share_below_the_pause_mark():
    import dask

    from scxl.explain._distributed import WORKER_BASELINE_BYTES, check_worker_room, worker_room

    gib = 2**30
    workers = {"a": {"memory_limit": 4 * gib, "nthreads": 2}, "b": {"memory_limit": 8 * gib, "nthreads": 1},
               "c": {"memory_limit": 0, "nthreads": 4}}  # 0: no limit
    assert worker_room(_Scheduler(workers)) == int((0.8 * 4 * gib - WORKER_BASELINE_BYTES) / 2)
    assert worker_room(_Scheduler(workers, new_api=False)) == worker_room(_Scheduler(workers))
    with dask.config.set({"distributed.worker.memory.pause": False}):  # no pausing: the terminate mark counts
        assert worker_room(_Scheduler(workers)) == int((0.95 * 4 * gib - WORKER_BASELINE_BYTES) / 2)
    assert worker_room(_Scheduler({"c": {"memory_limit": 0, "nthreads": 1}})) is None
    assert worker_room(_Scheduler({})) is None  # no worker yet
    assert check_worker_room(_Scheduler(workers), gib, "attribution") == worker_room(_Scheduler(workers))
    with pytest.raises(MemoryError, match=r"attribution needs about 2.0 GiB per task on a Dask worker .* tightest worker "
                                          r"allows 1.4 GiB per thread: Dask pauses a worker at 80% of its memory_limit \(and its tasks then wait for ever\).*memory_limit='4GiB'.*, or x"):
        check_worker_room(_Scheduler(workers), 2 * gib, "attribution", ", or x")
    with dask.config.set({"distributed.worker.memory.pause": False}), \
            pytest.raises(MemoryError, match=r"Dask restarts a worker at 95% of its memory_limit \(and its tasks fail\)"):
        check_worker_room(_Scheduler(workers), 2 * gib, "attribution")
    assert worker_room(_Scheduler({"d": {"memory_limit": 4 * gib, "nthreads": None}})) == int(0.8 * 4 * gib - WORKER_BASELINE_BYTES)


def test_worker_room_asks_each_worker_for_its_own_limits():
    """Workers may run with another pause fraction than the client's config: each worker's own counts."""
    import dask

    from scxl.explain._distributed import WORKER_BASELINE_BYTES, check_worker_room, worker_room

    gib = 2**30
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                                  memory_limit="2GiB") as cluster, distributed.Client(cluster) as client:
        assert worker_room(client) == int(0.8 * 2 * gib - WORKER_BASELINE_BYTES)
        tight = next(iter(cluster.workers.values()))
        tight.memory_manager.memory_pause_fraction = 0.5  # as a worker started with another config would
        with dask.config.set({"distributed.worker.memory.pause": 0.9}):  # the client's config does not count
            assert worker_room(client) == int(0.5 * 2 * gib - WORKER_BASELINE_BYTES)
            with pytest.raises(MemoryError, match=r"Dask pauses a worker at 50% of its memory_limit"):
                check_worker_room(client, gib, "attribution")
        for worker in cluster.workers.values():  # no pausing and no nanny (in-process): nothing stops them
            worker.memory_manager.memory_pause_fraction = False
        assert worker_room(client) == int(2 * gib - WORKER_BASELINE_BYTES)
        with pytest.raises(MemoryError, match=r"a worker without a pause or terminate fraction runs out of memory at its "
                                              r"memory_limit \(and its tasks fail\)"):
            check_worker_room(client, 2 * gib, "attribution")


def test_workers_too_small_are_refused_before_any_task(trained, monkeypatch):
    """A worker whose memory cannot hold a task would pause, and every computation on it wait for ever: refuse first.

    (A real 400 MiB worker process pauses at start, torch imported; an in-process worker would measure the whole
    test process, so the room is patched and the scheduler's record shows that no task was ever submitted.)
    """
    from scxl.explain import _distributed

    b = trained.copy()
    b.X = da.from_array(np.asarray(b.X), chunks=(150, b.n_vars))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        monkeypatch.setattr(_distributed, "worker_room", lambda client: 10 * 2**20)  # below one task's minimum
        with pytest.raises(MemoryError, match=r"attribution needs about 32 MiB per task on a Dask worker.*allows 10 MiB"):
            xl.tl.attribute(b, store_layer=False)
        with pytest.raises(MemoryError, match=r"training needs about 32 MiB per task"):
            xl.tl.train_classifier(b, "group", key_added="small", n_models=2, max_epochs=1)
        assert not cluster.scheduler.task_prefixes  # nothing reached the workers
        monkeypatch.setattr(_distributed, "worker_room", lambda client: 60 * 2**20)  # enough to read, not to train
        with pytest.raises(MemoryError, match=r"training needs about .* per task.*vectorize=False"):
            xl.tl.train_classifier(b, "group", key_added="small", n_models=2, max_epochs=1)
        monkeypatch.setattr(_distributed, "worker_room", lambda client: _distributed.MIN_TASK_WORKSPACE + 1000)  # reads, no block
        with pytest.raises(MemoryError, match=r"attribution needs about .* per task.*X.rechunk\(\(37, -1\)\)"):
            xl.tl.attribute(b, store_layer=False)
    assert "small" not in b.uns


def test_tight_workers_get_a_smaller_workspace_and_the_same_numbers(trained, monkeypatch):
    from scxl.explain import _distributed

    a = trained.copy()
    xl.tl.attribute(a, key_added="mem", store_layer=False)
    b = a.copy()
    b.X = da.from_array(np.asarray(a.X), chunks=(150, a.n_vars))
    seen = []
    run = _distributed.attribute_modules

    def spy(*args, config, **kwargs):
        seen.append(config.memory_limit_bytes)
        return run(*args, config=config, **kwargs)

    monkeypatch.setattr(_distributed, "worker_room", lambda client: 100 * 2**20)  # 100 MiB a task
    monkeypatch.setattr(_distributed, "attribute_modules", spy)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        xl.tl.attribute(b, key_added="dsk", store_layer=False)
    assert seen and all(_distributed.MIN_TASK_WORKSPACE <= v < 100 * 2**20 for v in seen)
    for g in a.uns["mem"]["names"].dtype.names:
        np.testing.assert_allclose(np.asarray(b.uns["dsk"]["scores"][g]), np.asarray(a.uns["mem"]["scores"][g]),
                                   rtol=1e-5, atol=1e-6)


def test_asking_the_workers_their_limits_imports_no_torch():
    """The question must not fill the small workers it is meant to find (torch alone is ~300 MiB)."""
    import sys

    from scxl.explain._distributed import worker_room

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit="2GiB") as cluster, distributed.Client(cluster) as client:
        assert worker_room(client) is not None
        imported = next(iter(client.run(lambda: sorted(m for m in sys.modules if m in ("torch", "scxl.explain"))).values()))
        assert imported == [], imported


def test_small_workers_are_refused_before_a_lazy_obs_is_read(trained, tmp_path, monkeypatch):
    """Reading a lazy AnnData's obs runs on the workers: a paused one would hang predict, train and attribute there."""
    import anndata as ad

    from scxl.explain import _distributed

    trained.write_zarr(tmp_path / "a.zarr")
    lazy = ad.experimental.read_lazy(tmp_path / "a.zarr")
    ens = xl.get.ensemble(trained)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        monkeypatch.setattr(_distributed, "worker_room", lambda client: 10 * 2**20)
        with pytest.raises(MemoryError, match="prediction needs about 32 MiB per task"):
            xl.tl.predict(lazy, ensemble=ens)
        with pytest.raises(MemoryError, match="attribution needs about 32 MiB per task"):
            xl.tl.attribute(lazy, ensemble=ens, store_layer=False)
        with pytest.raises(MemoryError, match="training needs about 32 MiB per task"):
            xl.tl.train_classifier(lazy, "group", n_models=1, max_epochs=1)
        assert not cluster.scheduler.task_prefixes  # nothing was read on the workers


def test_plots_of_a_lazy_anndata_grouped_by_a_string_column(trained, tmp_path):
    """A lazy obs column of strings (not categorical) failed to cast in the expression plots (review)."""
    import matplotlib.pyplot as plt

    a = trained.copy()
    a.obs["kind"] = a.obs["group"].astype(str).to_numpy()
    a.write_zarr(tmp_path / "s.zarr", convert_strings_to_categoricals=False)
    lazy = ad.experimental.read_lazy(tmp_path / "s.zarr")
    xl.tl.attribute(lazy, ensemble=xl.get.ensemble(trained), groupby="kind", store_layer=False)
    assert xl.pl.top_genes(lazy, "xl_deeplift", n_genes=2) is not None
    assert xl.pl.contribution_vs_expression(lazy, "xl_deeplift") is not None
    plt.close("all")


def test_dask_data_are_found_in_raw_too(trained):
    from scxl.explain._distributed import has_dask_data

    b = trained.copy()
    assert not has_dask_data(b)
    b.raw = ad.AnnData(X=da.from_array(np.asarray(b.X), chunks=(100, b.n_vars)), var=b.var)
    assert has_dask_data(b)
