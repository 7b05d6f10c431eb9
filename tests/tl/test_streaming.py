"""Training and every reading tool on data from disk: backed .h5ad, .zarr and anndata's lazy (dask) AnnData."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scxl as xl
from scxl import _inputs

FAST = {"n_models": 2, "max_epochs": 4}


@pytest.fixture
def small_blocks(monkeypatch):
    """64-row chunks (the smallest), 2 chunks per buffer (60 genes), so 400 cells make 4 buffers."""
    monkeypatch.setattr(_inputs, "CHUNK_BYTES", 64 * 60 * 4)
    monkeypatch.setattr(_inputs, "BUFFER_BYTES", 2 * 64 * 60 * 4)


def _write(adata, path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*zarr v2.*", category=UserWarning)
        if str(path).endswith(".zarr"):
            adata.write_zarr(path)
        else:
            adata.write_h5ad(path)
    return path


@pytest.fixture
def files(synth, tmp_path):
    csr = synth.copy()
    csr.X = sparse.csr_matrix(csr.X)
    return {"dense.h5ad": _write(synth, tmp_path / "dense.h5ad"), "csr.h5ad": _write(csr, tmp_path / "csr.h5ad"),
            "dense.zarr": _write(synth, tmp_path / "dense.zarr"), "csr.zarr": _write(csr, tmp_path / "csr.zarr")}


def _open(files, kind):
    how, name = kind.split(":")
    return ad.read_h5ad(files[name], backed="r") if how == "backed" else ad.experimental.read_lazy(files[name])


def test_block_shuffled_reading(small_blocks, synth, files):
    backed = ad.read_h5ad(files["dense.h5ad"], backed="r")
    rows = _inputs.make_fetch(_inputs.get_matrix(backed), np.arange(400), np.arange(60), "cpu", seed=1)
    assert rows.streamed and rows.chunk_rows == 64 and rows.buffer_chunks == 2 and rows.n_chunks == 7
    rng = np.random.default_rng(0)
    members = [rng.permutation(np.concatenate([np.arange(400), rng.integers(0, 400, 50)])) for _ in range(2)]
    arranged = [rows.arrange(0, m) for m in members]
    for m, a in zip(members, arranged, strict=True):
        assert np.array_equal(np.sort(a), np.sort(m))  # each row once (plus its repeats) per epoch
        buffers = rows._buffer_of[a]
        assert np.all(np.diff(buffers) >= 0)  # buffer after buffer
        chunks = pd.Series(a // 64).groupby(buffers).nunique()
        assert chunks.max() <= 2  # a buffer holds 2 chunks of contiguous rows
        inside = a[buffers == 0]
        assert np.array_equal(inside, m[np.isin(m, inside)])  # shuffled within the buffer: the member's own order
    assert np.array_equal(rows.arrange(0, members[0]), arranged[0])  # seeded
    assert not np.array_equal(rows.arrange(1, members[0]), arranged[0])  # every epoch its own chunk order
    rows.arrange(0, members[0])
    stacked = np.stack(arranged)
    X = np.asarray(synth.X)
    for start in range(0, stacked.shape[1], 50):  # both members at once, from shared buffers
        b = stacked[:, start : start + 50]
        np.testing.assert_array_equal(rows.batch(b).numpy(), X[b])
    assert rows.loads == 4  # each of the 4 buffers read once for both members
    assert rows._regions <= 3  # memory: a few buffers, not the data
    idx = np.array([399, 3, 3, 250])
    np.testing.assert_array_equal(rows(idx).numpy(), X[idx])  # random access (evaluation)
    backed.file.close()


@pytest.mark.parametrize("kind", ["memory:dense", "memory:csr", "backed:dense.h5ad", "backed:csr.h5ad",
                                  "lazy:csr.h5ad", "lazy:dense.zarr", "lazy:csr.zarr"])
def test_rows_picked_from_a_slice(synth, files, kind):
    """``rows(slice, cols, pick=...)``: the rows ``pick`` of the slice, picked before densifying, on every storage."""
    how, name = kind.split(":")
    if how == "memory":
        data = synth.copy()
        data.X = sparse.csr_matrix(data.X) if name == "csr" else np.asarray(data.X)
    else:
        data = _open(files, kind)
    matrix = _inputs.get_matrix(data)
    X = np.asarray(synth.X, dtype=np.float32)
    pick, cols = np.array([0, 3, 4, 90]), np.array([5, 1, 59])
    np.testing.assert_array_equal(matrix.rows(slice(100, 200), cols, pick=pick), X[100 + pick][:, cols])
    np.testing.assert_array_equal(matrix.rows(slice(100, 200), pick=pick), X[100 + pick])
    np.testing.assert_array_equal(matrix.select(cols).rows(slice(100, 200), pick=pick), X[100 + pick][:, cols])
    np.testing.assert_array_equal(matrix.rows(slice(100, 200)), X[100:200])  # without pick: the whole slice


@pytest.mark.parametrize("kind", ["backed:dense.h5ad", "backed:csr.h5ad", "lazy:dense.h5ad", "lazy:csr.h5ad",
                                  "lazy:dense.zarr", "lazy:csr.zarr"])
def test_train_from_disk(small_blocks, files, kind):
    """Block-shuffled training: stacked and one-after-another members agree, runs are seeded, accuracy holds."""
    a, b, c = _open(files, kind), _open(files, kind), _open(files, kind)
    xl.tl.train_classifier(a, "group", **FAST)
    xl.tl.train_classifier(b, "group", **FAST, vectorize=False)
    xl.tl.train_classifier(c, "group", **FAST)
    assert a.uns["xl"]["params"]["streamed"]
    for i in range(2):
        for k, v in a.uns["xl"]["weights"][f"model_{i}"].items():
            np.testing.assert_array_equal(v, b.uns["xl"]["weights"][f"model_{i}"][k])
            np.testing.assert_array_equal(v, c.uns["xl"]["weights"][f"model_{i}"][k])
    assert xl.get.training_metrics(a).loc["ensemble", "accuracy"] >= 0.9


def test_capped_epochs_from_disk_read_only_their_buffers(small_blocks, files, monkeypatch):
    """epoch_size on a backed file: an epoch reads the buffers its samples lie in, not the whole file;
    stacked and one-after-another members still agree bit for bit."""
    a, b = _open(files, "backed:csr.h5ad"), _open(files, "backed:csr.h5ad")
    loads = []
    real = _inputs.TrainRows._load

    def counting(self, j):
        loads.append(j)
        return real(self, j)

    monkeypatch.setattr(_inputs.TrainRows, "_load", counting)
    xl.tl.train_classifier(a, "group", n_models=2, max_epochs=3, patience=5, epoch_size=100)
    full = len(loads)
    assert a.uns["xl"]["params"]["epoch_size"] == 100
    assert full <= 3 * 2  # 100 of ~400 samples: at most 2 of the 4 buffers per epoch (was 4 per epoch)
    xl.tl.train_classifier(b, "group", n_models=2, max_epochs=3, patience=5, epoch_size=100, vectorize=False)
    for i in range(2):
        for k, v in a.uns["xl"]["weights"][f"model_{i}"].items():
            np.testing.assert_array_equal(v, b.uns["xl"]["weights"][f"model_{i}"][k])


def test_validation_rows_held_once(small_blocks, synth, files, monkeypatch):
    """From disk the members' validation rows are read once and served from memory every epoch; the members
    are those of a run that reads them from the file each time."""
    backed = ad.read_h5ad(files["csr.h5ad"], backed="r")
    rows = _inputs.make_fetch(_inputs.get_matrix(backed), np.arange(400), np.arange(60), "cpu")
    X = np.asarray(synth.X)
    assert rows.hold(np.array([7, 3, 3, 250]))
    reads = []
    real_read = _inputs.TrainRows._read
    monkeypatch.setattr(_inputs.TrainRows, "_read", lambda self, i: reads.append(i) or real_read(self, i))
    np.testing.assert_array_equal(rows(np.array([[250, 3], [7, 7]])).numpy(), X[[[250, 3], [7, 7]]])
    assert not reads  # served from the held rows
    first = rows.validation_rows(np.array([[250, 3], [7, 7]]))  # the same, into a reused buffer
    np.testing.assert_array_equal(first.numpy(), X[[[250, 3], [7, 7]]])
    again = rows.validation_rows(np.array([3, 7]))
    assert again.data_ptr() == first.data_ptr() and not reads
    np.testing.assert_array_equal(again.numpy(), X[[3, 7]])
    np.testing.assert_array_equal(rows(np.array([3, 8])).numpy(), X[[3, 8]])  # 8 is not held: read from the file
    assert len(reads) == 1
    rows.release(held=False)  # the buffers go, the held rows stay
    assert rows._eval_out is None and rows._held is not None
    rows.release()
    assert rows._held is None
    np.testing.assert_array_equal(rows(np.array([3, 7])).numpy(), X[[3, 7]])  # read from the file again
    assert len(reads) == 2
    assert rows.hold(np.array([3]))
    assert not rows.hold(np.arange(400), budget_bytes=100) and rows._held is None  # over the budget: nothing held
    backed.file.close()

    held, released = [], []
    real_hold, real_release = _inputs.TrainRows.hold, _inputs.TrainRows.release
    monkeypatch.setattr(_inputs.TrainRows, "hold", lambda self, p, **kw: held.append(real_hold(self, p, **kw)) or held[-1])
    monkeypatch.setattr(_inputs.TrainRows, "release",
                        lambda self, **kw: released.append((self, kw.get("held", True))) or real_release(self, **kw))
    runs = {}
    for name, budget in (("held", _inputs.HOLD_BYTES), ("read", 0)):
        monkeypatch.setattr(_inputs, "HOLD_BYTES", budget)
        runs[name] = _open(files, "backed:csr.h5ad")
        xl.tl.train_classifier(runs[name], "group", **FAST)
    assert held[0] is True and held[1] is False
    # per run: the trainer keeps the held rows for the evaluation, train_classifier drops them once it is done
    assert [h for _, h in released] == [False, True] * 2 and released[-1][0]._held is None
    for i in range(2):
        for k, v in runs["held"].uns["xl"]["weights"][f"model_{i}"].items():
            np.testing.assert_array_equal(v, runs["read"].uns["xl"]["weights"][f"model_{i}"][k])
    assert runs["held"].uns["xl"]["history"].equals(runs["read"].uns["xl"]["history"])


def test_backed_dense_and_sparse_blocks_agree(small_blocks, files):
    """The same rows in the same blocks: dense and CSR files give the same members."""
    a, b = _open(files, "backed:dense.h5ad"), _open(files, "backed:csr.h5ad")
    xl.tl.train_classifier(a, "group", **FAST)
    xl.tl.train_classifier(b, "group", **FAST)
    np.testing.assert_allclose(a.uns["xl"]["weights"]["model_1"]["net.0.weight"],
                               b.uns["xl"]["weights"]["model_1"]["net.0.weight"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["dense.h5ad", "csr.zarr"])
def test_lazy_anndata_everywhere(trained, tmp_path, name):
    """read_lazy (dask X and layers, xarray obs/var): every reading tool gives the in-memory answer."""
    mem = trained.copy()
    if name.startswith("csr"):
        mem.X = sparse.csr_matrix(mem.X)
    path = _write(mem, tmp_path / name)
    lazy = ad.experimental.read_lazy(path)
    assert type(lazy.X).__module__.startswith("dask")
    for a in (mem, lazy):
        xl.tl.predict(a)
        xl.tl.attribute(a, method="saliency")
        xl.tl.specificity(a, "group", min_expr=0.5)
        xl.tl.gene_set_overlap(a, "xl_saliency", de_groups=("group_0", "group_1"))
        xl.tl.reproducibility(a, method="saliency", n_values=(1,), n_replicates=2, max_cells=100)
    np.testing.assert_array_equal(np.asarray(lazy.obs["xl_prediction"]), mem.obs["xl_prediction"].to_numpy())
    np.testing.assert_allclose(np.asarray(lazy.layers["xl_saliency"]), mem.layers["xl_saliency"], rtol=1e-5, atol=1e-7)
    for a in (mem, lazy):  # the defaults: DeepLift against the gene means (Dask reductions over sparse chunks)
        xl.tl.attribute(a, store_layer=False)
    for field in ("scores", "presence"):
        for g in mem.uns["xl_deeplift"][field].dtype.names:
            np.testing.assert_allclose(np.asarray(lazy.uns["xl_deeplift"][field][g], dtype=float),
                                       np.asarray(mem.uns["xl_deeplift"][field][g], dtype=float), rtol=1e-5, atol=1e-7)
    assert lazy.uns["xl_deeplift"]["params"]["backend"] == "dask" and mem.uns["xl_deeplift"]["params"]["backend"] == "memory"
    np.testing.assert_allclose(np.asarray(lazy.var["xl_tau"]), mem.var["xl_tau"].to_numpy(), rtol=1e-5)
    pd.testing.assert_frame_equal(lazy.uns["xl_saliency_overlap"]["de"], mem.uns["xl_saliency_overlap"]["de"])
    pd.testing.assert_frame_equal(lazy.uns["xl_reproducibility"]["summary"], mem.uns["xl_reproducibility"]["summary"])


def test_read_lazy_groupby_is_categorical(files):
    lazy = ad.experimental.read_lazy(files["dense.h5ad"])
    labels = xl._validation.check_groupby(lazy.obs, "group")
    assert isinstance(labels.dtype, pd.CategoricalDtype) and labels.cat.categories.tolist() == ["group_0", "group_1", "group_2"]


class _Counting:
    """An array-like that records which rows a dask graph reads."""

    def __init__(self, x):
        self.x, self.shape, self.dtype, self.ndim, self.reads = x, x.shape, x.dtype, x.ndim, []

    def __getitem__(self, key):
        self.reads.append(key[0] if isinstance(key, tuple) else key)
        return self.x[key]


@pytest.mark.parametrize("chunk_type", ["dense", "csr"])
def test_dask_x_computes_only_needed_chunks(synth, chunk_type):
    import dask.array as da

    X = np.asarray(synth.X)
    src = _Counting(X)
    arr = da.from_array(src, chunks=(100, 60), asarray=False)
    if chunk_type == "csr":
        arr = arr.map_blocks(sparse.csr_matrix, dtype=X.dtype)
    a = ad.AnnData(arr, obs=synth.obs, var=synth.var)
    m = _inputs.get_matrix(a)
    src.reads.clear()
    np.testing.assert_array_equal(m.rows(np.array([150, 105, 150])), X[[150, 105, 150]])
    assert len(src.reads) == 1 and src.reads[0] == slice(100, 200)  # one chunk of 100 rows
    np.testing.assert_array_equal(m.rows(slice(390, 400), np.array([2, 0])), X[390:400][:, [2, 0]])
    # and the tools: train (streamed by blocks) and predict on it
    xl.tl.train_classifier(a, "group", **FAST)
    assert a.uns["xl"]["params"]["streamed"]
    xl.tl.predict(a)
    assert a.obs["xl_prediction"].notna().all()


def test_backed_csr_slices_read_from_the_group(synth, files):
    """Row slices of anndata's backed CSR datasets (HDF5 and zarr) are read straight from the stored arrays."""
    import zarr

    expected = np.asarray(synth.X, dtype=np.float32)
    backed = ad.read_h5ad(files["csr.h5ad"], backed="r")
    on_zarr = ad.io.sparse_dataset(zarr.open_group(files["csr.zarr"], mode="r")["X"])
    for data in (backed.X, on_zarr):
        matrix = _inputs.Matrix(data, synth.var_names, "X")
        for sl in (slice(0, 400), slice(37, 38), slice(390, 500), slice(10, 10), slice(0, 400, 3)):
            block = _inputs._row_slice(data, sl)
            assert sparse.issparse(block) and block.shape == expected[sl].shape
            np.testing.assert_array_equal(matrix.rows(sl), expected[sl])
        np.testing.assert_array_equal(matrix.rows(np.array([5, 6, 7, 8])), expected[5:9])  # a run: one slice
    backed.file.close()


def test_reference_statistics_from_stored_sparse_values(trained, tmp_path, monkeypatch):
    """Default references on CSR data (in memory and backed): their statistics come from the stored values, and the
    contributions are those of the same cells held dense."""
    from scxl.explain import _references

    calls = []
    real = _references._sparse_moments
    monkeypatch.setattr(_references, "_sparse_moments", lambda *a, **k: calls.append(1) or real(*a, **k))
    dense = trained.copy()
    csr = trained.copy()
    csr.X = sparse.csr_matrix(csr.X)
    backed = ad.read_h5ad(_write(csr, tmp_path / "csr.h5ad"), backed="r")
    xl.tl.attribute(dense)
    assert not calls  # dense data: dense blocks
    for a in (csr, backed):
        xl.tl.attribute(a, store_layer=a is csr)
        assert calls
        calls.clear()
        pd.testing.assert_frame_equal(xl.get.top_genes(a, "xl_deeplift", n=10), xl.get.top_genes(dense, "xl_deeplift", n=10))
    np.testing.assert_allclose(np.asarray(csr.layers["xl_deeplift"]), np.asarray(dense.layers["xl_deeplift"]),
                               rtol=1e-5, atol=1e-6)
    backed.file.close()


def test_a_large_backed_csc_matrix_gets_a_hint(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(_inputs, "CSC_HINT_ROWS", 50)
    rng = np.random.default_rng(0)
    for fmt, hinted in (("csc", True), ("csr", False)):
        a = ad.AnnData(sparse.random(60, 10, density=0.3, format=fmt, dtype=np.float32, random_state=rng))
        a.write_h5ad(tmp_path / f"{fmt}.h5ad")
        b = ad.read_h5ad(tmp_path / f"{fmt}.h5ad", backed="r")
        caplog.clear()
        with caplog.at_level("WARNING", logger="scxl"):
            _inputs.get_matrix(b)
        assert ("X is a backed CSC (column-compressed) matrix" in caplog.text) is hinted, fmt
        assert not hinted or "adata.X = adata.X.tocsr()" in caplog.text
        b.file.close()
