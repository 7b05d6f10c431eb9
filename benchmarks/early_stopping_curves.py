"""Early-stopping rules replayed on recorded validation curves (exploratory, before a real run).

Training is deterministic for a seed and the stopping rule only decides *when* to stop (the
learning-rate schedule has its own rule), so a rule that stops no later than the default can be
replayed exactly on the default's per-member validation-loss curves: the epoch it stops at, and
the restored (lowest-loss) epoch's validation accuracy. What a replay cannot give is the marker
AP and the seed-to-seed stability of the top genes: a rule that looks good here still needs
``benchmarks/early_stopping.py`` (which retrains) before it can become a default.

The candidates add an *absolute* floor to what counts as an improvement, scaled by the loss of
a uniform guess (``tol × ln K``): the atlas's validation loss keeps falling by small amounts
(0.0067 to 0.0052, accuracy flat at 0.998) for many epochs, which the relative ``min_delta``
does not stop.

    python benchmarks/early_stopping_curves.py collect CURVES.csv   # trains, as early_stopping.py's data sets
    python benchmarks/early_stopping_curves.py replay CURVES.csv [TOL ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def collect(path: str) -> None:
    import early_stopping as E

    import scxl as xl

    xl.settings.progress = False
    if (HERE.parent.parent / "shared" / "data").is_dir():
        xl.settings.datasetdir = HERE.parent.parent / "shared" / "data"
    rows = []
    for name, loader, groupby, _truth, kind in E.data_sets(quick=False):
        base = loader()
        for seed in (0, 1):
            a = base.copy()
            t = time.perf_counter()
            xl.tl.train_classifier(a, groupby, n_models=10, random_state=seed)  # the default rule: patience 10
            h = xl.get.ensemble(a).history.copy()
            h["data"], h["set"], h["seed"], h["n_groups"] = name, kind, seed, a.obs[groupby].nunique()
            rows.append(h)
            print(name, seed, f"{time.perf_counter() - t:.1f} s", h.groupby("model").epoch.max().mean(), flush=True)
        pd.concat(rows).to_csv(path, index=False)


def stop(val_loss: np.ndarray, patience: int, floor: float = 0.0) -> tuple[int, int]:
    """(stopping epoch, restored epoch), 0-based: scxl's rule with an absolute improvement floor."""
    best, lowest, bad, low_e = np.inf, np.inf, 0, 0
    for e, loss in enumerate(val_loss):
        if loss < lowest - 1e-6:
            lowest, low_e = loss, e
        if loss < best - max(1e-6, floor):
            best, bad = loss, 0
        else:
            bad += 1
        if bad >= patience:
            return e, low_e
    return len(val_loss) - 1, low_e


def replay(path: str, tols: list[float]) -> str:
    c = pd.read_csv(path)
    rules = {"default (patience 10)": (10, 0.0)}
    for tol in tols:
        rules[f"patience 10, floor {tol:g}·lnK"] = (10, tol)
        rules[f"patience 5, floor {tol:g}·lnK"] = (5, tol)
    rows = []
    for (data, _seed, _model), h in c.groupby(["data", "seed", "model"], sort=False):
        h = h.sort_values("epoch")
        vl, va, k = h.val_loss.to_numpy(), h.val_accuracy.to_numpy(), int(h.n_groups.iloc[0])
        for name, (patience, tol) in rules.items():
            e, low = stop(vl, patience, tol * np.log(k))
            rows.append({"data": data, "set": h["set"].iloc[0], "rule": name, "epochs": e + 1, "val_accuracy": va[low],
                         "recorded": len(vl)})
    t = pd.DataFrame(rows)
    d = t[t.rule == "default (patience 10)"]
    assert (d.epochs == d.recorded).all(), "the replay does not reproduce the recorded default"
    g = t.groupby(["set", "data", "rule"], sort=False)[["epochs", "val_accuracy"]].mean()
    base = g.xs("default (patience 10)", level="rule")
    g = g.join(base, rsuffix=" (default)")
    g["epochs / default"] = g["epochs"] / g["epochs (default)"]
    g["accuracy - default"] = g["val_accuracy"] - g["val_accuracy (default)"]
    cols = ["epochs", "epochs / default", "val_accuracy", "accuracy - default"]
    summary = g.groupby(["set", "rule"], sort=False)[["epochs / default", "accuracy - default"]].mean()
    return ("## mean over the data sets of each set (members' validation accuracy at the restored epoch)\n\n"
            + summary.round(4).to_string() + "\n\n## every data set\n\n" + g[cols].round(4).to_string())


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("collect", "replay"):
        sys.exit(__doc__)
    if sys.argv[1] == "collect":
        collect(sys.argv[2])
    else:
        print(replay(sys.argv[2], [float(x) for x in sys.argv[3:]] or [1e-3, 3e-3, 1e-2]))
