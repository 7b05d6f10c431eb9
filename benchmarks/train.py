"""Training throughput of scxl members (cells/s per epoch) on synthetic data.

Prints one table: MLP and CNN (default architectures), on CPU and on CUDA when present, for a
synthetic data set of 20,000 cells × 2,000 genes. Throughput is measured over a fixed number of
optimisation steps (after one warm-up step) with the same loop ``xl.tl.train_classifier`` uses,
so an epoch of N cells takes about N / throughput seconds.

    python benchmarks/train.py [--n-obs 20000] [--n-vars 2000] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import scxl as xl
from scxl.models import build_module, default_spec
from scxl.train import TrainConfig, fit_member


def throughput(model: str, X: torch.Tensor, y: np.ndarray, device: torch.device, steps: int, batch: int) -> float:
    n_classes = int(y.max()) + 1
    spec = default_spec(model, X.shape[1], n_classes)
    Xd = X.to(device)

    def fetch(i):
        return Xd[torch.as_tensor(i, device=device)]

    idx = np.arange(steps * batch) % X.shape[0]
    torch.manual_seed(0)
    m = build_module(spec)
    cfg = TrainConfig(max_epochs=1, batch_size=batch, balance="none")
    fit_member(m, fetch, y, idx[:batch], np.empty(0, dtype=int), n_classes=n_classes, config=cfg,
               rng=np.random.default_rng(0), device=device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fit_member(m, fetch, y, idx, np.empty(0, dtype=int), n_classes=n_classes, config=cfg,
               rng=np.random.default_rng(0), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return idx.size / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-obs", type=int, default=20000)
    parser.add_argument("--n-vars", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps timed per setting")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    xl.settings.progress = False
    adata = xl.datasets.synthetic(args.n_obs, args.n_vars, 10, n_markers=20, random_state=0)
    X = torch.as_tensor(np.asarray(adata.X, dtype=np.float32))
    y = adata.obs["group"].cat.codes.to_numpy().astype(np.int64)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"synthetic data: {args.n_obs} cells × {args.n_vars} genes, 10 classes; batch {args.batch_size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'model':<6}{'device':<8}{'cells/s':>12}{'s/epoch':>12}")
    for model in ("mlp", "cnn"):
        for dev in devices:
            steps = args.steps if (model == "mlp" or dev.type == "cuda") else max(2, args.steps // 5)
            tp = throughput(model, X, y, dev, steps, args.batch_size)
            print(f"{model:<6}{dev.type:<8}{tp:>12.0f}{args.n_obs / tp:>12.1f}")


if __name__ == "__main__":
    main()
