"""Which early-stopping rule? Training cost against marker recovery, accuracy and stability.

Every candidate rule (``patience``, ``min_delta`` and ``min_delta_chance`` of :func:`scxl.tl.train_classifier`) trains
scxl's default 10-MLP ensemble twice per data set (seeds 0 and 1); the default attribution
(DeepLift against the mean profile, ``rank_by="up"``) ranks every gene per group. Reported per
data set and rule: mean epochs per member, training seconds, ensemble accuracy, the mean over
groups of the average precision (AP) of the known markers (seed 0), and the stability of the
top 20 genes per group between the two seeds (mean overlap fraction).

Data: the marker benchmark's simulators (``benchmarks/markers.py``) — seeds 0 and 1 are the
*tuning* cases, seeds 2 and 3 and the unbalanced and bulk variants *held out* — and its real data
(PBMC, mouse pancreas, 7 tissues), plus the atlas-like 50,000-cell data of ``benchmarks/scale.py``
in memory, where the cost of training shows.

    python benchmarks/early_stopping.py [--quick] [--only PREFIXES] [--rules 0,2] [--out FILE] [--csv FILE]

The real data sets other than PBMC need the full data folder (``SCXL_DATASETDIR``, else
``../shared/data`` beside the checkout is used when present).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import scxl as xl
from scxl import explain
from scxl.tl._attribute import expression_logfoldchanges, prepare_targets

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import markers  # noqa: E402
import scale  # noqa: E402

CANDIDATES = [  # (label, patience, min_delta, min_delta_chance[, epoch_size]); rule 0 is the rule before 2026-12-07
    ("patience 10, min_delta 0", 10, 0.0, 0.0),
    ("patience 10, min_delta 0.01", 10, 0.01, 0.0),
    ("patience 5, min_delta 0", 5, 0.0, 0.0),
    ("patience 5, min_delta 0.01", 5, 0.01, 0.0),
    # the candidate of benchmarks/early_stopping_curves.py's replay: an absolute floor of 0.3 % of ln K
    ("patience 10, min_delta_chance 0.003", 10, 0.0, 0.003),  # the default since 2026-12-07
    # exploratory: shorter epochs on atlases, so that patience waits fewer samples
    ("patience 10, min_delta_chance 0.003, epoch_size 25,000", 10, 0.0, 0.003, 25_000),
    ("patience 10, min_delta_chance 0.003, epoch_size 10,000", 10, 0.0, 0.003, 10_000),
]

#: Data sets run only when ``--only`` names them (slow; for questions a rule raises, not for every run).
EXTRA = [
    # a hard design larger than the epoch cap: does a shorter epoch (and so a smaller max_epochs in samples) cost?
    ("combinatorial 30k (seed 9)", lambda: xl.datasets.synthetic_combinatorial(30_000, random_state=9), "group",
     "planted", "large"),
]


def atlas50k():
    import anndata as ad

    path = Path(tempfile.gettempdir()) / "scxl_early_stopping_50k.h5ad"
    if not path.exists():
        scale.write_data(path, 50_000)
    a = ad.read_h5ad(path)
    a.var["marker_direction"] = np.where(a.var["marker_of"] == "none", "none", "up")
    return a


def many_rare(effect: float = 1.0, seed: int = 7):
    """8,000 cells × 1,000 genes in 40 groups whose sizes fall geometrically to 1/40 of the largest (19 to 739 cells)."""
    return xl.datasets.synthetic(8_000, 1000, 40, n_markers=10, effect=effect, group_sizes=np.geomspace(1, 1 / 40, 40),
                                 random_state=seed)


def data_sets(*, quick: bool):
    """(name, loader, groupby, truth, set)."""
    out = []
    for design in ("markers", "pathways", "combinatorial"):
        for s in ((0, 2) if quick else (0, 1, 2, 3)):
            out.append((f"{design} (seed {s})", lambda d=design, s=s: markers.simulated(d, s, quick=False), "group",
                        "planted", "tuning" if s < 2 else "held out"))
    if not quick:
        out.append(("markers_unbalanced (seed 4)", lambda: markers.simulated("markers_unbalanced", 4, quick=False),
                    "group", "planted", "held out"))
        out.append(("markers_bulk (seed 5)", lambda: markers.simulated("markers_bulk", 5, quick=False), "group",
                    "planted", "held out"))
    out.append(("PBMC (pbmc68k)", xl.datasets.pbmc68k, "cell_type", markers.PBMC_MARKERS, "real"))
    if not quick:
        out.append(("mouse pancreas", xl.datasets.pancreas, "clusters", markers.PANCREAS_MARKERS, "real"))
        out.append(("7 tissues (microarray)", xl.datasets.tissues7, "tissue", "hpa", "real"))
    out.append(("atlas 50k (scale.py)", atlas50k, "cell_type", "planted", "atlas"))
    if not quick:  # large and hard: do the savings on the atlas hold where the classes overlap?
        out.append(("markers 20k (seed 6)", lambda: xl.datasets.synthetic(20_000, 1000, 5, n_markers=10, effect=0.8,
                                                                         random_state=6), "group", "planted", "large"))
        out.append(("combinatorial 20k (seed 6)", lambda: xl.datasets.synthetic_combinatorial(20_000, random_state=6),
                    "group", "planted", "large"))
        # many groups, some rare: the floor grows with ln K, and a rare group hardly moves the mean validation loss
        out.append(("40 groups, rarest 0.2 % (seed 7)", many_rare, "group", "planted", "many groups"))
        out.append(("40 groups, rarest 0.2 %, separated (seed 8)", lambda: many_rare(2.0, 8), "group", "planted",
                    "many groups"))
    return out


def default_scores(adata, groupby: str) -> tuple[np.ndarray, list[str], pd.Index]:
    """Every gene's score per group of the default attribution (DeepLift / mean, rank_by='up')."""
    ens = xl.get.ensemble(adata)
    prep = prepare_targets(adata, ens)
    codes, groups = prep.group_codes, prep.group_names
    res = explain.attribute_modules(ens.modules, prep.X, prep.targets, "deeplift", groups=codes, n_groups=len(groups),
                                    references="mean", store_cells=False, progress=False)
    lfc = expression_logfoldchanges(prep.X, codes, len(groups), linear=True)[1]
    S = res.group_means.astype(float)
    P = res.presence_group_means.astype(float)
    return xl.metrics.direction_scores(S, P, "up", lfc), list(groups), ens.var_names


def top_overlap(a: np.ndarray, b: np.ndarray, k: int = 20) -> float:
    return float(np.mean([np.intersect1d(np.argsort(-x, kind="stable")[:k], np.argsort(-y, kind="stable")[:k]).size / k
                          for x, y in zip(a, b, strict=True)]))


def run(name, loader, groupby, truth, kind, candidates) -> list[dict]:
    base = loader()
    tsets = markers.truth_sets(base, groupby, truth)
    rows = []
    for label, patience, min_delta, chance, *size in candidates:
        scores, epochs, secs, accs, bals = [], [], [], [], []
        for seed in (0, 1):
            a = base.copy()
            t = time.perf_counter()
            xl.tl.train_classifier(a, groupby, n_models=10, random_state=seed, patience=patience, min_delta=min_delta,
                                   min_delta_chance=chance, epoch_size=size[0] if size else "auto")
            secs.append(time.perf_counter() - t)
            h = xl.get.ensemble(a).history
            epochs.append(h.groupby("model")["epoch"].max().mean())
            accs.append(float(xl.get.training_metrics(a).loc["ensemble", "accuracy"]))
            bals.append(float(xl.get.training_metrics(a).loc["ensemble", "balanced_accuracy"]))
            s, groups, genes = default_scores(a, groupby)
            scores.append(s)
        ap, rank = markers.ap_and_ranks(scores[0], groups, genes, tsets)
        rows.append({"data": name, "set": kind, "rule": label, "epochs/member": np.mean(epochs),
                     "train s": np.mean(secs), "accuracy": np.mean(accs), "balanced accuracy": np.mean(bals), "AP": ap,
                     "median marker rank": rank,
                     "top-20 overlap (seeds 0, 1)": top_overlap(*scores)})
        print(f"  {name} | {label}: {np.mean(epochs):.1f} epochs, {np.mean(secs):.1f} s, AP {ap:.3f}, "
              f"overlap {rows[-1]['top-20 overlap (seeds 0, 1)']:.3f}", flush=True)
    return rows


def summarise(t: pd.DataFrame) -> str:
    out = []
    cols = [c for c in ("epochs/member", "train s", "accuracy", "balanced accuracy", "AP", "top-20 overlap (seeds 0, 1)")
            if c in t]  # (tables recorded before 2026-12-07 have no balanced accuracy)
    for kind in ("tuning", "held out", "real", "atlas", "large", "many groups"):
        sub = t[t["set"] == kind]
        if sub.empty:
            continue
        out.append(f"## {kind}: mean over {sub['data'].nunique()} data set(s)\n")
        out.append(sub.groupby("rule", sort=False)[cols].mean().round(3).to_string())
        out.append("")
    out.append("## Every data set\n")
    out.append(t.round(3).to_string(index=False))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated data-set name prefixes")
    parser.add_argument("--out", default=None)
    parser.add_argument("--csv", default=None, help="every row, written after each data set")
    parser.add_argument("--rules", default=None, help="comma-separated indices into CANDIDATES (default: all)")
    args = parser.parse_args()
    import torch

    xl.settings.progress = False
    if "SCXL_DATASETDIR" not in os.environ and (HERE.parent.parent / "shared" / "data").is_dir():
        xl.settings.datasetdir = HERE.parent.parent / "shared" / "data"  # as benchmarks/markers.py
    flags = "".join(f" --{k} {v}" for k, v in (("only", args.only), ("rules", args.rules)) if v)
    header = (f"python benchmarks/early_stopping.py{' --quick' if args.quick else ''}{flags} — {time.strftime('%Y-%m-%d')}, "
              f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
              f"scxl {xl.__version__}, 10 MLPs per ensemble, max_epochs 100, epoch_size 'auto'")
    print(header, flush=True)
    rows = []
    for name, loader, groupby, truth, kind in data_sets(quick=args.quick) + (EXTRA if args.only else []):
        if args.only and not any(name.startswith(p) for p in args.only.split(",")):
            continue
        rules = CANDIDATES if args.rules is None else [CANDIDATES[int(i)] for i in args.rules.split(",")]
        rows += run(name, loader, groupby, truth, kind, rules)
        if args.csv:
            pd.DataFrame(rows).to_csv(args.csv, index=False)  # after every data set
    text = header + "\n\n" + summarise(pd.DataFrame(rows))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
