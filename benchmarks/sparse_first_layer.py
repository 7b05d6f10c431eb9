"""Would a sparse first layer pay? CSR × dense against the dense product, at single-cell densities.

scxl's first layer is a dense product ``X @ W1ᵀ`` (training: a mini-batch of every member; attribution:
a chunk of cells against all members' stacked first layers). Single-cell matrices are mostly zeros,
so a sparse product does fewer floating-point operations, in proportion to the non-zero entries.
This script times both at the shapes scxl uses, for a range of densities, on random data with
the given fraction of non-zeros (uniformly placed, as a CSR ``torch.sparse_csr_tensor``):

- training forward: ``(256, G) @ (G, 128)``, one member's mini-batch (in training every member has
  its own rows, so ten members are ten such products, batched or not);
- attribution forward: ``(2048, G) @ (G, 1280)`` (the same cells against all ten members' stacked
  first layers).

Printed: milliseconds per product (median of ``--repeats``) and the dense/sparse ratio (> 1: sparse
is faster). The backward product of training (``gradᵀ @ X``, ``W1``'s gradient) and attribution's
pull-back through the first layer are not timed here.

    python benchmarks/sparse_first_layer.py [--genes 2000] [--repeats 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def _time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--densities", default="0.01,0.02,0.05,0.1,0.2,0.32,0.5")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    g = args.genes
    lines = [f"python benchmarks/sparse_first_layer.py --genes {g} --repeats {args.repeats} — "
             f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} torch thread(s)", "",
             "| product | density | dense (ms) | sparse CSR (ms) | dense / sparse |", "|---|---|---|---|---|"]
    shapes = [("train, one member's mini-batch", 256, 128), ("attribution, 10 members", 2048, 1280)]
    for name, n, h in shapes:
        w = torch.from_numpy(rng.normal(0, 0.05, (g, h)).astype(np.float32))
        for density in (float(d) for d in args.densities.split(",")):
            x = rng.random((n, g), dtype=np.float32)
            x[rng.random((n, g)) >= density] = 0
            dense = torch.from_numpy(x)
            csr = dense.to_sparse_csr()
            td = _time(lambda: dense @ w, args.repeats)  # noqa: B023
            ts = _time(lambda: csr @ w, args.repeats)  # noqa: B023
            lines.append(f"| {name} | {density:.2f} | {td:.2f} | {ts:.2f} | {td / ts:.2f}× |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
