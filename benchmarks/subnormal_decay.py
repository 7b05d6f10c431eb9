"""How fast do unused weights fall from 1e-30 into the subnormal range under Adam with weight decay?

scxl sets magnitudes below ``scxl._subnormal.TINY`` (1e-30) to 0 every ``FLUSH_EVERY`` optimiser
steps, so that the first-layer weights of never-expressed genes (and their Adam momentum), which
weight decay drives towards zero, never become subnormal floats (slow on CPUs). The interval is
safe if no value goes from below 1e-30 to below float32's smallest normal number (1.18e-38) in
fewer steps. This simulates the worst case — parameters that get no gradient from the data, only
weight decay — with ``torch.optim.Adam`` (the arithmetic of both of scxl's training loops) for a
grid of learning rates and weight decays, and prints, for the weights and for Adam's first moment,
the first step any value became subnormal and the fewest steps any value took from 1e-30 to
subnormal. (The second moment underflows to 0 far from the weights' time scale and is left out.)

    python benchmarks/subnormal_decay.py [--n 20000] [--steps 40000] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="parameters simulated (initial sd 0.05)")
    parser.add_argument("--steps", type=int, default=40000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    tiny = torch.finfo(torch.float32).tiny
    lines = [f"python benchmarks/subnormal_decay.py --n {args.n} --steps {args.steps} — {time.strftime('%Y-%m-%d')}, "
             f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}", "",
             "| lr | weight decay | weights: first subnormal step | weights: fewest steps 1e-30 → subnormal "
             "| momentum: first subnormal step | momentum: fewest steps 1e-30 → subnormal |", "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for lr, wd in itertools.product([1e-3, 1e-2, 1e-1], [1e-4, 1e-3, 1e-2]):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(args.n) * 0.05)
        opt = torch.optim.Adam([p], lr=lr, weight_decay=wd)
        below = {k: torch.full((args.n,), -1) for k in ("p", "m")}
        sub = {k: torch.full((args.n,), -1) for k in ("p", "m")}
        for step in range(1, args.steps + 1):
            p.grad = torch.zeros_like(p)  # no gradient from the data: weight decay only
            opt.step()
            for k, t in (("p", p.detach()), ("m", opt.state[p]["exp_avg"])):
                a = t.abs()
                below[k][(a < 1e-30) & (a > 0) & (below[k] < 0)] = step
                sub[k][(a < tiny) & (a > 0) & (sub[k] < 0)] = step
        row = [f"{lr:g}", f"{wd:g}"]
        for k in ("p", "m"):
            ok = (below[k] > 0) & (sub[k] > 0)
            row.append(str(int(sub[k][sub[k] > 0].min())) if (sub[k] > 0).any() else "never")
            row.append(str(int((sub[k][ok] - below[k][ok]).min())) if ok.any() else "–")
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
