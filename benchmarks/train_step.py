"""Where a stacked training step's time goes, and what each of the step's kernels costs against the one it replaced.

One training step of the stacked trainer (:mod:`scxl.train._stacked`) for the default ensemble
(10 MLPs, one hidden layer of 128 units, dropout 0.25) on a mini-batch of 256 cells × 2,000
genes, in memory, timed part by part over ``--steps`` steps after a warm-up:

* **gather**: the members' rows of the batch, by advanced indexing into a fresh tensor (before)
  or by ``index_select`` into a reused buffer (now, ``scxl._inputs.TrainRows.batch``);
* **forward**: the stacked forward pass, with the dropout mask drawn by ``bernoulli_`` (before,
  ``nn.Dropout``'s draw) or by comparing ``torch.rand`` (now, ``scxl.models._modules.dropout_noise``);
* **backward**: the cross-entropy and its backward pass (the same both ways);
* **Adam**: the default single-tensor arithmetic written over the stack (before) or torch's
  fused kernel member by member (now, where torch has it).

Both variants run in this one process, alternated ``--repeats`` times, so the ratios compare like
with like on a shared machine.

    python benchmarks/train_step.py [--steps 60] [--repeats 3] [--genes 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
import torch

from scxl._inputs import gather_rows
from scxl.models import MLP
from scxl.models._modules import dropout_noise
from scxl.train import _loop, _stacked


def _bernoulli_noise(shape, p, *, dtype, device, generator=None):
    return torch.empty(tuple(shape), dtype=dtype, device=device).bernoulli_(1 - p, generator=generator).div_(1 - p)


def run(variant: str, X: torch.Tensor, steps: int, members: int, batch: int, n_classes: int) -> dict[str, float]:
    """Mean milliseconds per step of each part, for ``variant`` "before" or "now"."""
    torch.manual_seed(0)
    mods = [MLP(X.shape[1], n_classes) for _ in range(members)]
    stack = _stacked._Stack(mods, torch.device("cpu"))
    gens = [torch.Generator().manual_seed(i) for i in range(members)]
    rng = np.random.default_rng(0)
    before = variant == "before"
    _loop._FUSED_ADAM.pop("cpu", None)  # "now": checked afresh
    if before:
        _loop._FUSED_ADAM["cpu"] = False
    _stacked.dropout_noise = _bernoulli_noise if before else dropout_noise
    buf = torch.empty(members * batch, X.shape[1])
    parts = {"gather": 0.0, "forward": 0.0, "backward": 0.0, "Adam": 0.0}
    for it in range(steps + 5):
        if it == 5:
            parts = dict.fromkeys(parts, 0.0)
        idx = rng.integers(0, X.shape[0], (members, batch))
        target = torch.as_tensor(rng.integers(0, n_classes, (members, batch)))
        t0 = time.perf_counter()
        if before:
            xb = X[torch.as_tensor(idx)]
        else:
            xb = gather_rows(X, idx, out=buf)
        t1 = time.perf_counter()
        logits = stack.forward(xb, train=True, generators=gens)
        t2 = time.perf_counter()
        _stacked._cross_entropy_backward(logits, target)
        t3 = time.perf_counter()
        stack.adam_step([1e-3] * members, [it + 1] * members, 1e-4)
        t4 = time.perf_counter()
        for k, a, b in (("gather", t0, t1), ("forward", t1, t2), ("backward", t2, t3), ("Adam", t3, t4)):
            parts[k] += b - a
        del xb, logits
    out = {k: 1e3 * v / steps for k, v in parts.items()}
    out["step"] = sum(out.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=45000)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(args.cells, args.genes, generator=gen).relu_()
    fused = _loop.fused_adam(torch.device("cpu"))
    print(f"python benchmarks/train_step.py --steps {args.steps} --repeats {args.repeats} --genes {args.genes} — "
          f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s); {args.members} MLPs (128 hidden units), batch {args.batch_size}, "
          f"in memory; fused Adam on this CPU: {fused}\n")
    rows = []
    for r in range(args.repeats):
        for variant in ("before", "now"):
            rows.append({"repeat": r, "kernels": variant, **run(variant, X, args.steps, args.members, args.batch_size, 10)})
    table = pd.DataFrame(rows)
    median = table.groupby("kernels", sort=False).median(numeric_only=True).drop(columns="repeat")
    print("| kernels | gather (ms) | forward (ms) | backward (ms) | Adam (ms) | step (ms) | member-cells/s |")
    print("|---|---|---|---|---|---|---|")
    for name, row in median.iterrows():
        rate = args.members * args.batch_size / (row["step"] / 1e3)
        print(f"| {name} | {row['gather']:.2f} | {row['forward']:.2f} | {row['backward']:.2f} | {row['Adam']:.2f} | "
              f"{row['step']:.2f} | {rate:,.0f} |")
    ratio = median.loc["before"] / median.loc["now"]
    print("| before / now | " + " | ".join(f"{ratio[k]:.2f}×" for k in ("gather", "forward", "backward", "Adam", "step"))
          + " | |")
    print(f"\n(medians of {args.repeats} alternated repeats of {args.steps} steps each)")


if __name__ == "__main__":
    main()
