"""Time and peak memory of xl.pp.rewrite_as_csr against reading the file and converting in memory.

Writes a CSC .h5ad file (n_obs × 2,000 genes, about 30 % non-zero, as files converted from R hold), then in
fresh processes: (a) scipy in memory: anndata.read_h5ad, X.tocsr(), write_h5ad; (b) rewrite_as_csr with
max_bytes 64 MiB, 256 MiB (the default) and 1 GiB; and a process that only imports, the floor of the peaks. Prints a table with the seconds, the peak resident memory of each
process and the ratio to (a).

    python benchmarks/rewrite_csr.py --sizes 50000 200000
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RUN = {
    "(imports only: the floor)": "import anndata, h5py, scipy.sparse, scxl, scxl.pp._csr",
    "in memory (read, tocsr, write)": "import anndata as ad; a = ad.read_h5ad({src!r}); a.X = a.X.tocsr(); a.write_h5ad({dst!r})",
    "rewrite_as_csr, 64 MiB": "import scxl as xl; xl.pp.rewrite_as_csr({src!r}, {dst!r}, max_bytes=2**26, overwrite=True)",
    "rewrite_as_csr, 256 MiB (default)": "import scxl as xl; xl.pp.rewrite_as_csr({src!r}, {dst!r}, overwrite=True)",
    "rewrite_as_csr, 1 GiB": "import scxl as xl; xl.pp.rewrite_as_csr({src!r}, {dst!r}, max_bytes=2**30, overwrite=True)",
}


def write_csc(path: Path, n_obs: int, n_vars: int = 2000, block: int = 20000) -> int:
    import anndata as ad
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(0)
    parts = []
    for start in range(0, n_obs, block):
        n = min(block, n_obs - start)
        x = rng.random((n, n_vars), dtype=np.float32)
        x[x < 0.7] = 0
        parts.append(sparse.csr_matrix(x))
    X = sparse.vstack(parts).tocsc()
    ad.AnnData(X, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_obs)]),
               var=pd.DataFrame(index=[f"g{j}" for j in range(n_vars)])).write_h5ad(path)
    return X.nnz


def timed(code: str) -> tuple[float, float]:
    wrapper = ("import re, time; t = time.perf_counter(); " + code + "; s = time.perf_counter() - t; "
               "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]); print(s, hwm / 2**20)")
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50000])
    args = parser.parse_args()
    import torch

    import scxl

    print(f"python benchmarks/rewrite_csr.py --sizes {' '.join(map(str, args.sizes))} — {time.strftime('%Y-%m-%d')}, "
          f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), scxl {scxl.__version__}\n")
    print("| cells | non-zero values | file (GiB) | way | seconds | peak RSS (GiB) | seconds / in memory |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            src, dst = str(Path(folder) / f"csc_{n}.h5ad"), str(Path(folder) / f"csr_{n}.h5ad")
            nnz = write_csc(Path(src), n)
            size = Path(src).stat().st_size / 2**30
            base = None
            for way, code in RUN.items():
                seconds, peak = timed(code.format(src=src, dst=dst))
                if way.startswith("(imports"):
                    print(f"| {n:,} | {nnz:,} | {size:.2f} | {way} |  | {peak:.2f} |  |", flush=True)
                    continue
                base = base or seconds
                print(f"| {n:,} | {nnz:,} | {size:.2f} | {way} | {seconds:.1f} | {peak:.2f} | {seconds / base:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
