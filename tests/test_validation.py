"""The input checks of ``scxl._validation``: scale detection on arrays and on the real data sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scxl as xl
from scxl._validation import COUNTS_MIN_MAX, LOG_MAX, ValueSummary, detect_scale, summarise_values


def _dense(x):
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        (np.array([[0, 3, 250], [1, 0, 7]]), "counts"),
        (np.array([[0.0, 3.0, 21.0]]), "counts"),
        (np.array([[0, 1, 2, 3]]), "log"),  # small whole numbers: binarised or shallow, not called counts
        (np.log1p(np.array([[0.0, 3.0, 2500.0]])), "log"),
        (np.array([[0.0, 12.5, 60.2]]), "linear"),  # TPM-like
        (np.array([[-1.2, 0.0, 3.0]]), "scaled"),
        (np.zeros((2, 2)), "log"),
    ],
)
def test_detect_scale_on_arrays(values, scale):
    assert detect_scale(values) == scale
    assert detect_scale(summarise_values([values[:1], values[1:]])) == scale


def test_thresholds_and_summary():
    assert (COUNTS_MIN_MAX, LOG_MAX) == (20.0, 50.0)
    v = summarise_values(np.array([[0.0, np.nan, 4305.0]]))
    assert v == ValueSummary(0.0, 4305.0, True) and v.scale == "counts"
    assert v.describe() == "integer values from 0 to 4305"


@pytest.mark.parametrize(
    ("load", "scale"),
    [
        (lambda: xl.datasets.synthetic(200, 80, 3, n_markers=5, random_state=0).X, "log"),
        (lambda: xl.datasets.synthetic(200, 80, 3, n_markers=5, random_state=0).layers["counts"], "counts"),
        (lambda: xl.datasets.pbmc68k().X, "log"),
        (lambda: xl.datasets.pancreas().X, "log"),
        (lambda: xl.datasets.pancreas().layers["counts"], "counts"),
        (lambda: xl.datasets.eccite_pbmc()["rna"].X, "counts"),
        (lambda: xl.datasets.tcga6().layers["counts"], "counts"),
        (lambda: xl.datasets.gtex26().X, "log"),
        (lambda: xl.datasets.brca_multiomics()["mrna"].X, "scaled"),
        (lambda: xl.datasets.hpa_tissue_profiles(version="v18").X, "linear"),
    ],
)
def test_detect_scale_on_the_data_sets(load, scale):
    assert detect_scale(_dense(load())) == scale


@pytest.mark.parametrize("density", [0.3, 1.0])
def test_check_values_reads_sparse_data_as_stored(density, monkeypatch):
    """CSR data are checked on their stored values, never densified: the same summary as the dense check,
    the first NaN named at its row and gene, implicit zeros counted in the range."""
    from scxl import _inputs
    from scxl._validation import check_values

    rng = np.random.default_rng(0)
    x = (rng.random((50, 7)) * 30 + 1) * (rng.random((50, 7)) < density)
    x = np.round(x).astype(np.float32)
    names = pd.Index([f"g{j}" for j in range(7)])
    dense = check_values(_inputs.Matrix(x, names, "X"), chunk_size=16)
    csr = _inputs.Matrix(sparse.csr_matrix(x), names, "X")
    monkeypatch.setattr(_inputs.Matrix, "rows", lambda *a, **k: pytest.fail("densified"))
    assert check_values(csr, chunk_size=16) == dense
    assert check_values(csr.select(np.array([2, 0])), chunk_size=16).integer
    bad = x.copy()
    bad[37, 4], bad[41, 2] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"first at row 37, variable 'g4'"):
        check_values(_inputs.Matrix(sparse.csr_matrix(bad), names, "X"), chunk_size=16)


def _files(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


GIB = 2**30


@pytest.mark.parametrize(
    ("cgroup_files", "self_cgroup", "expected"),
    [
        ({}, "0::/\n", 20 * GIB),  # no memory cgroup: MemAvailable
        # cgroup v2, the process's own group: 8 GiB limit, 5 GiB used of which 1 GiB reclaimable page cache
        ({"job/memory.max": f"{8 * GIB}\n", "job/memory.current": f"{5 * GIB}\n", "job/memory.stat": f"anon 1\ninactive_file {GIB}\n"},
         "0::/job\n", 4 * GIB),
        ({"memory.max": "max\n", "memory.current": f"{5 * GIB}\n"}, "0::/\n", 20 * GIB),  # v2 without a limit
        # v2, the limit on a parent (a Slurm job's group; the task's own group says max), active file cache reclaimable
        ({"job_1/memory.max": f"{4 * GIB}\n", "job_1/memory.current": f"{3 * GIB}\n",
          "job_1/memory.stat": f"anon {GIB}\nactive_file {GIB}\ninactive_file {GIB}\n",
          "job_1/step_0/memory.max": "max\n", "job_1/step_0/memory.current": f"{3 * GIB}\n"},
         "garbage line\n0::/job_1/step_0\n", 3 * GIB),
        # cgroup v1 as a container sees it (its own path is not under the mount): the hierarchical limit counts
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": f"{3 * GIB}\n",
          "memory/memory.stat": f"hierarchical_memory_limit {6 * GIB}\ntotal_inactive_file {GIB}\n"},
         "4:memory:/docker/abc\n0::/\n", 4 * GIB),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": f"{3 * GIB}\n"},
         "4:memory:/\n", 20 * GIB),  # v1 without a limit
    ],
)
def test_available_memory_respects_cgroup_limits(tmp_path, monkeypatch, cgroup_files, self_cgroup, expected):
    """The layer memory check must see a container's or scheduler's limit, not only the host's free memory."""
    import resource

    from scxl._validation import available_memory_bytes

    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    _files(proc, {"meminfo": f"MemTotal: {32 * GIB // 1024} kB\nMemAvailable: {20 * GIB // 1024} kB\n",
                  "self/cgroup": self_cgroup, "self/status": "VmSize:\t 1048576 kB\n"})
    _files(cgroup, cgroup_files)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert available_memory_bytes(str(proc), str(cgroup)) == expected
    from scxl._validation import available_memory

    assert available_memory(str(proc), str(cgroup))[1] == ("system" if expected == 20 * GIB else "cgroup")
    # ulimit -v 3 GiB with 1 GiB of address space in use leaves 2 GiB, whatever else allows more
    monkeypatch.setattr(resource, "getrlimit", lambda which: (3 * GIB, resource.RLIM_INFINITY) if which == resource.RLIMIT_AS
                        else (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert available_memory_bytes(str(proc), str(cgroup)) == min(expected, 2 * GIB)
    assert available_memory(str(proc), str(cgroup))[1] == "ulimit"


def test_available_memory_when_nothing_is_readable(tmp_path, monkeypatch):
    import os
    import resource

    from scxl._validation import available_memory_bytes

    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    monkeypatch.setattr(os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert available_memory_bytes(str(tmp_path / "none"), str(tmp_path / "none")) is None
    assert available_memory_bytes() > 0  # this machine
