"""Atlas-scale training: all members at once vs one after another, and training from disk.

Four tables, each timed within this one run (the machine may be shared: compare the ratios,
not the absolute numbers):

1. **vectorised vs one-after-another**: ``xl.tl.train_classifier`` with ``vectorize=True`` and
   ``vectorize=False`` for 10 MLP members on synthetic data (default 50,000 cells × 2,000 genes,
   10 classes), a fixed number of epochs (no early stop), the two runs alternated ``--repeats``
   times; throughput = training cells × members × epochs / second (validation included).
2. **accuracy**: the same data and seeds, trained to early stopping both ways on a smaller, harder
   data set; accuracy on held-out cells of every member and of the ensemble, and whether the
   weights are identical.
3. **from disk**: vectorised training from a backed ``.h5ad`` (dense and CSR) and from
   ``anndata.experimental.read_lazy`` (dask) vs in memory, same data.
4. **peak memory**: peak RSS of a training run (fresh process) from a backed ``.h5ad`` and in
   memory, at two numbers of cells.

    python benchmarks/ensemble.py [--n-obs 50000] [--n-vars 2000] [--epochs 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import scxl as xl


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def _train(adata, *, vectorize: bool, epochs: int, n_models: int = 10, **kw) -> float:
    t = time.perf_counter()
    xl.tl.train_classifier(adata, "group", n_models=n_models, max_epochs=epochs, patience=epochs + 1,
                           vectorize=vectorize, overwrite=True, **kw)
    return time.perf_counter() - t


def throughput_table(adata, epochs: int, repeats: int) -> pd.DataFrame:
    n_train = adata.n_obs * 0.9
    rows = []
    for r in range(repeats):
        for vec in (False, True):
            a = adata.copy()
            s = _train(a, vectorize=vec, epochs=epochs)
            rows.append({"repeat": r, "training": "vectorised" if vec else "one after another", "seconds": s,
                         "member-cells/s": n_train * 10 * epochs / s, "load": _load()})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def accuracy_table(n_obs: int, n_vars: int) -> tuple[pd.DataFrame, bool]:
    data = xl.datasets.synthetic(n_obs, n_vars, 10, n_markers=5, effect=0.6, random_state=1)
    rng = np.random.default_rng(0)
    test = rng.random(data.n_obs) < 0.2
    train, held = data[~test].copy(), data[test].copy()
    res, weights = {}, {}
    for vec in (False, True):
        a = train.copy()
        xl.tl.train_classifier(a, "group", n_models=10, vectorize=vec, random_state=0)
        ens = xl.get.ensemble(a)
        truth = held.obs["group"].astype(str).to_numpy()
        proba = ens.predict_proba(held.X, return_members=True)
        col = {f"model_{i}": float((ens.classes[p.argmax(1)] == truth).mean()) for i, p in enumerate(proba)}
        col["ensemble"] = float((ens.classes[proba.mean(0).argmax(1)] == truth).mean())
        col["epochs (mean)"] = float(a.uns["xl"]["history"].groupby("model").size().mean())
        res["vectorised" if vec else "one after another"] = col
        weights[vec] = a.uns["xl"]["weights"]
    same = all(np.array_equal(weights[True][m][k], weights[False][m][k]) for m in weights[True] for k in weights[True][m])
    return pd.DataFrame(res), same


def disk_table(adata, folder: Path, epochs: int) -> pd.DataFrame:
    import anndata as ad
    from scipy import sparse

    dense, csr = folder / "dense.h5ad", folder / "csr.h5ad"
    adata.write_h5ad(dense)
    sp = adata.copy()
    sp.X = sparse.csr_matrix(sp.X)
    sp.write_h5ad(csr)
    n_train = adata.n_obs * 0.9
    rows = []
    for name, make in [("in memory (dense)", adata.copy), ("backed .h5ad, dense", lambda: ad.read_h5ad(dense, backed="r")),
                       ("in memory (CSR)", sp.copy), ("backed .h5ad, CSR", lambda: ad.read_h5ad(csr, backed="r")),
                       ("read_lazy .h5ad (dask), dense", lambda: ad.experimental.read_lazy(dense))]:
        a = make()
        s = _train(a, vectorize=True, epochs=epochs)
        rows.append({"source": name, "seconds": s, "member-cells/s": n_train * 10 * epochs / s,
                     "streamed": a.uns["xl"]["params"]["streamed"], "load": _load()})
        print(rows[-1], flush=True)
        if getattr(a, "file", None) is not None and a.isbacked:
            a.file.close()
    return pd.DataFrame(rows)


# peak RSS: VmHWM of /proc/self/status (ru_maxrss survives exec, so it would report the parent's peak)
_CHILD = """
import sys, time, anndata as ad, scxl as xl
xl.settings.progress = False
path, mode = sys.argv[1], sys.argv[2]
a = ad.read_h5ad(path, backed="r") if mode == "backed" else ad.read_h5ad(path)
t = time.perf_counter()
xl.tl.train_classifier(a, "group", n_models=10, max_epochs=1, patience=2)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(hwm / 1024, time.perf_counter() - t)
"""


def memory_table(adata, folder: Path, factors=(1, 4)) -> pd.DataFrame:
    import anndata as ad

    rows = []
    for f in factors:
        path = folder / f"tiled_{f}.h5ad"
        big = ad.AnnData(np.tile(np.asarray(adata.X), (f, 1)), obs=pd.concat([adata.obs[["group"]]] * f, ignore_index=True),
                         var=adata.var[[]])
        big.obs_names = [f"c{i}" for i in range(big.n_obs)]
        big.write_h5ad(path)
        n = big.n_obs
        del big
        for mode in ("backed", "in memory"):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(path), "backed" if mode == "backed" else "memory"],
                                 capture_output=True, text=True, check=True).stdout.split()
            rows.append({"cells": n, "genes": adata.n_vars, "X dense (MB)": n * adata.n_vars * 4 / 2**20,
                         "training": mode, "peak RSS (MB)": float(out[-2]), "seconds": float(out[-1])})
            print(rows[-1], flush=True)
        path.unlink()
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-obs", type=int, default=50000)
    parser.add_argument("--n-vars", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy-obs", type=int, default=5000)
    parser.add_argument("--memory-obs", type=int, default=50000, help="cells of the smaller memory run (×4 for the larger)")
    parser.add_argument("--only", default="throughput,accuracy,disk,memory")
    parser.add_argument("--json", default=None, help="also write the tables to this JSON file")
    args = parser.parse_args()
    xl.settings.progress = False
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {os.cpu_count()} CPUs; load average at start {_load()}")
    only = set(args.only.split(","))
    out = {}
    adata = None
    if only & {"throughput", "disk"}:
        t = time.perf_counter()
        adata = xl.datasets.synthetic(args.n_obs, args.n_vars, 10, n_markers=20, random_state=0)
        print(f"synthetic data {args.n_obs} × {args.n_vars}, 10 classes ({time.perf_counter() - t:.0f} s)", flush=True)
    if "throughput" in only:
        tab = throughput_table(adata, args.epochs, args.repeats)
        med = tab.groupby("training")["member-cells/s"].median()
        ratio = med["vectorised"] / med["one after another"]
        print(f"\n1. 10 MLP members, {args.n_obs} cells × {args.n_vars} genes, {args.epochs} epoch(s) per run, batch 256")
        print(tab.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        print(f"median throughput ratio vectorised / one after another: {ratio:.2f}x")
        out["throughput"] = tab.to_dict("records")
    if "accuracy" in only:
        tab, same = accuracy_table(args.accuracy_obs, args.n_vars)
        print(f"\n2. held-out accuracy (20% of {args.accuracy_obs} cells × {args.n_vars} genes, weak markers), 10 members,"
              " trained to early stopping with the same seeds")
        print(tab.to_string(float_format=lambda v: f"{v:.4f}"))
        print(f"weights identical: {same}")
        out["accuracy"] = tab.to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        if "disk" in only:
            tab = disk_table(adata, Path(tmp), args.epochs)
            ref = tab.loc[tab["source"] == "in memory (dense)", "member-cells/s"].iloc[0]
            tab["vs in memory (dense)"] = tab["member-cells/s"] / ref
            print(f"\n3. vectorised training from disk, {args.n_obs} cells × {args.n_vars} genes, {args.epochs} epoch(s)")
            print(tab.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
            out["disk"] = tab.to_dict("records")
        if "memory" in only:
            small = xl.datasets.synthetic(args.memory_obs, args.n_vars, 10, n_markers=20, random_state=0)
            tab = memory_table(small, Path(tmp))
            print("\n4. peak resident memory of a training run (fresh process, 10 members, 1 epoch)")
            print(tab.to_string(index=False, float_format=lambda v: f"{v:.0f}"))
            out["memory"] = tab.to_dict("records")
    print(f"\nload average at end {_load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
