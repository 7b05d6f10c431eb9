"""xl.pp.rewrite_as_csr: CSC matrices of an .h5ad file rewritten as CSR, a bounded block at a time."""

from __future__ import annotations

import doctest

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scxl as xl
from scxl.pp import _csr


def _csc_file(path, n_obs=300, n_vars=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.poisson(0.6, (n_obs, n_vars)).astype(np.float32)
    x[:, 3] = 0  # an empty column
    x[7] = 0  # an empty row
    a = ad.AnnData(sparse.csc_matrix(x), obs=pd.DataFrame({"group": rng.choice(["a", "b"], n_obs)},
                                                             index=[f"c{i}" for i in range(n_obs)]),
                   var=pd.DataFrame(index=[f"g{j}" for j in range(n_vars)]))
    a.obs["group"] = a.obs["group"].astype("category")
    a.layers["counts"] = sparse.csc_matrix(x * 2)
    a.layers["dense"] = x + 1
    a.layers["csr"] = sparse.csr_matrix(x)
    a.obsm["X_pca"] = rng.normal(size=(n_obs, 3))
    a.uns["note"] = {"text": "kept"}
    a.raw = ad.AnnData(sparse.csc_matrix(np.hstack([x, x[:, :5] * 3])), obs=a.obs,
                       var=pd.DataFrame(index=[f"g{j}" for j in range(n_vars + 5)]))
    a.write_h5ad(path)
    return a


@pytest.mark.parametrize("max_bytes", [2**16, 2**30])  # many buckets (temporary files), and one (in memory)
def test_every_csc_matrix_becomes_csr_with_the_same_values_and_the_rest_is_copied(tmp_path, max_bytes):
    a = _csc_file(tmp_path / "in.h5ad", n_obs=3000)
    path = xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "out.h5ad", max_bytes=max_bytes)
    b = ad.read_h5ad(path)
    for name, before, after in (("X", a.X, b.X), ("counts", a.layers["counts"], b.layers["counts"]),
                                ("raw", a.raw.X, b.raw.X), ("csr", a.layers["csr"], b.layers["csr"])):
        assert sparse.isspmatrix_csr(after) or isinstance(after, sparse.csr_array), name
        assert after.has_sorted_indices, name
        np.testing.assert_array_equal(after.toarray(), before.toarray(), err_msg=name)
        assert after.dtype == before.dtype and after.nnz == before.nnz, name
    np.testing.assert_array_equal(b.layers["dense"], a.layers["dense"])
    np.testing.assert_array_equal(b.obsm["X_pca"], a.obsm["X_pca"])
    pd.testing.assert_frame_equal(b.obs, a.obs)
    assert list(b.raw.var_names) == list(a.raw.var_names) and b.uns["note"]["text"] == "kept"
    backed = ad.read_h5ad(path, backed="r")
    assert type(backed.X).__name__.endswith("CSRDataset")
    assert not list(tmp_path.glob(".*"))  # no temporary files or partial copy left


def test_many_buckets_were_used_with_a_small_budget(tmp_path, monkeypatch):
    _csc_file(tmp_path / "in.h5ad", n_obs=3000)
    buckets = []
    real = _csr._write_bucket
    monkeypatch.setattr(_csr, "_write_bucket", lambda rows, *rest: (buckets.append(len(rows)), real(rows, *rest)))
    xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "out.h5ad", max_bytes=2**16)
    assert len(buckets) > 3 * 5  # X, raw and one layer, several buckets each
    assert max(buckets) <= 2**16 // _csr._BUCKET_BYTES


def test_a_backed_anndata_and_compression_are_accepted(tmp_path):
    a = _csc_file(tmp_path / "plain.h5ad")
    a.write_h5ad(tmp_path / "in.h5ad", compression="gzip")
    backed = ad.read_h5ad(tmp_path / "in.h5ad", backed="r")
    xl.pp.rewrite_as_csr(backed, tmp_path / "out.h5ad", max_bytes=2**16)
    import h5py

    with h5py.File(tmp_path / "out.h5ad") as f:
        assert f["X"].attrs["encoding-type"] == "csr_matrix" and f["X/data"].compression == "gzip"
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "out.h5ad").X.toarray(), a.X.toarray())


def test_a_file_without_csc_is_copied_unchanged(tmp_path, caplog):
    a = xl.datasets.synthetic(100, 60, 2, random_state=0)
    a.write_h5ad(tmp_path / "in.h5ad")
    with caplog.at_level("INFO", logger="scxl"):
        xl.pp.rewrite_as_csr(str(tmp_path / "in.h5ad"), str(tmp_path / "out.h5ad"))
    assert "held no CSC matrix" in caplog.text
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "out.h5ad").X, a.X)


def test_bad_arguments_are_refused_with_what_to_do(tmp_path):
    _csc_file(tmp_path / "in.h5ad")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        xl.pp.rewrite_as_csr(tmp_path / "missing.h5ad", tmp_path / "out.h5ad")
    with pytest.raises(ValueError, match="is the source itself"):
        xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "in.h5ad", overwrite=True)
    with pytest.raises(ValueError, match=r"reads and writes \.h5ad files"):
        xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "out.zarr")
    with pytest.raises(ValueError, match="adata is not backed"):
        xl.pp.rewrite_as_csr(xl.datasets.synthetic(100, 60, 2, random_state=0), tmp_path / "out.h5ad")
    (tmp_path / "out.h5ad").write_text("something")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "out.h5ad")
    assert (tmp_path / "out.h5ad").read_text() == "something"
    xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "out.h5ad", overwrite=True)
    assert ad.read_h5ad(tmp_path / "out.h5ad").n_obs == 300


def test_an_interrupted_copy_leaves_no_file(tmp_path, monkeypatch):
    _csc_file(tmp_path / "in.h5ad")

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_csr, "_write_bucket", stop)
    with pytest.raises(KeyboardInterrupt):
        xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "out.h5ad", max_bytes=2**16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]


def test_example_runs():
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(xl.pp.rewrite_as_csr, "rewrite_as_csr", globs={}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


def test_more_buckets_than_open_files_allowed(tmp_path):
    """From a review: one open file per bucket hit the open-file limit (1,024 on Linux, 256 on macOS)."""
    import subprocess
    import sys

    _csc_file(tmp_path / "in.h5ad", n_obs=3000)
    code = ("import resource, scxl as xl, anndata as ad, numpy as np; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
            f"xl.pp.rewrite_as_csr({str(tmp_path / 'in.h5ad')!r}, {str(tmp_path / 'out.h5ad')!r}, max_bytes=2**16)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = ad.read_h5ad(tmp_path / "in.h5ad"), ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(b.X.toarray(), a.X.toarray())


def test_paths_and_arguments_a_user_can_get_wrong(tmp_path):
    a = _csc_file(tmp_path / "in.h5ad")
    backed = ad.read_h5ad(tmp_path / "in.h5ad", backed="r")
    with pytest.raises(ValueError, match="is a view of a backed AnnData"):
        xl.pp.rewrite_as_csr(backed[:10], tmp_path / "out.h5ad")
    with pytest.raises(FileNotFoundError, match="the folder .* of the destination does not exist"):
        xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "nowhere" / "out.h5ad")
    (tmp_path / "dir.h5ad").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "dir.h5ad", overwrite=True)
    (tmp_path / "text.h5ad").write_text("not hdf5")
    with pytest.raises(OSError, match=r"cannot read .*text\.h5ad.* as an \.h5ad \(HDF5\) file"):
        xl.pp.rewrite_as_csr(tmp_path / "text.h5ad", tmp_path / "out.h5ad")
    with pytest.raises(TypeError, match="max_bytes must be an integer number of bytes, got 1000000.0"):
        xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "out.h5ad", max_bytes=1e6)
    path = xl.pp.rewrite_as_csr(tmp_path / "in.h5ad", tmp_path / "OUT.H5AD")  # (the suffix in capitals)
    np.testing.assert_array_equal(ad.read_h5ad(path).X.toarray(), a.X.toarray())
    assert not list(tmp_path.glob(".*"))


def test_a_legacy_h5sparse_raw_x_is_converted_too(tmp_path):
    """Files of anndata < 0.7 keep raw's matrix at the root as ``raw.X``, marked with h5sparse attributes."""
    import h5py

    x = sparse.random(50, 8, density=0.3, format="csc", dtype=np.float32, random_state=0)
    with h5py.File(tmp_path / "old.h5ad", "w") as f:
        g = f.create_group("raw.X")
        g.attrs["h5sparse_format"], g.attrs["h5sparse_shape"] = "csc", x.shape
        for name in ("data", "indices", "indptr"):
            g.create_dataset(name, data=getattr(x, name))
    xl.pp.rewrite_as_csr(tmp_path / "old.h5ad", tmp_path / "new.h5ad")
    with h5py.File(tmp_path / "new.h5ad") as f:
        g = f["raw.X"]
        assert g.attrs["h5sparse_format"] == "csr"
        got = sparse.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g.attrs["shape"]))
    np.testing.assert_array_equal(got.toarray(), x.toarray())
