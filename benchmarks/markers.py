"""Which explainer, reference and ranking give marker-grade top genes? Measured, against Wilcoxon.

For every data set, a 10-MLP ensemble (scxl's defaults) is trained once; then every explainer ×
reference × ranking direction is compared with Scanpy's Wilcoxon, t-test and logistic regression:

* simulators with planted truth (``xl.datasets.synthetic`` — negative-binomial counts with planted
  up/down markers; ``synthetic_pathways`` — sparse program-driven compositional counts;
  ``synthetic_combinatorial`` — markers that act only in combination): mean over groups of the
  average precision (AP) of the group's planted up-markers in the group's ranking. Seeds 0 and 1
  are the *tuning* cases the defaults were chosen on; seeds 2 and 3 and the unbalanced and bulk
  variants are *held out* (looked at only after the choice) and reported separately;
* real data with known markers: PBMC (pbmc68k, canonical markers), mouse pancreas (hormones and
  ductal genes) and 7 human tissues (microarray; HPA tissue-enriched genes of the matching tissue):
  AP of the known markers and their median rank; for PBMC also the fraction of each group's top 20
  genes that are *lower* in the group than in the rest (absence evidence in the list);
* faithfulness: deletion AUC (lower is better) of each group ranking, replacing a cell's top-k
  genes of its group's ranking by the gene means (tuning simulators and PBMC).

Ranking directions (every contribution of a reference-based explainer splits into a part from
genes above the reference, *presence* P, and below it, *absence* A = S - P; see
``xl.metrics.direction_scores``): ``total`` ranks by S (the contribution), ``presence`` by P,
``up`` by max(P, 0) ± max(A, 0), with the minus sign for genes lower in the group than in the rest
(absence markers at the bottom, as ``rank_genes_groups`` puts down-regulated genes last; genes
acting in combination keep their evidence).

    python benchmarks/markers.py [--quick] [--stability] [--out benchmarks/results/markers_2core_cpu.txt]

The full run takes about 40 minutes on 2 CPU cores; ``--quick`` uses fewer data sets and models.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

import scxl as xl
from scxl import explain
from scxl.tl._attribute import expression_logfoldchanges, prepare_targets

HERE = Path(__file__).resolve().parent

CONFIGS = [  # (label, method, reference, n_baselines)
    ("saliency", "saliency", None, None),
    ("input_x_gradient", "input_x_gradient", None, None),
    ("guided_backprop", "guided_backprop", None, None),
    ("deeplift / zero", "deeplift", "zero", None),
    ("deeplift / mean", "deeplift", "mean", None),
    ("deeplift / rest_mean", "deeplift", "rest_mean", None),
    ("deeplift_shap / sample", "deeplift_shap", "sample", 20),
    ("deeplift_shap / marginal", "deeplift_shap", "marginal", 20),
    ("deeplift_shap / rest", "deeplift_shap", "rest", 20),
    ("deeplift_shap / universal", "deeplift_shap", "universal", 20),
    ("deeplift_shap / specific", "deeplift_shap", "specific", 20),
    ("deeplift_shap / normal", "deeplift_shap", "normal", 20),
    ("feature_ablation / mean", "feature_ablation", "mean", None),
]
# Integrated Gradients equals DeepLift exactly on these one-hidden-layer MLPs (same numbers).

PBMC_MARKERS = {
    "CD19+ B": ["MS4A1", "CD79A", "CD79B"],
    "CD56+ NK": ["GNLY", "NKG7", "PRF1", "GZMB"],
    "CD14+ Monocyte": ["LYZ", "S100A8", "S100A9"],
    "Dendritic": ["FCER1A", "CST3", "HLA-DRA"],
    "CD8+ Cytotoxic T": ["CD8A", "CD8B", "GZMK"],
    "CD8+/CD45RA+ Naive Cytotoxic": ["CD8A", "CD8B", "CCR7"],
    "CD4+/CD45RO+ Memory": ["IL7R", "CD3D", "CD3E"],
    "CD4+/CD45RA+/CD25- Naive T": ["CCR7", "CD3D", "CD3E"],
}
PANCREAS_MARKERS = {"Beta": ["Ins2", "Iapp"], "Alpha": ["Gcg"], "Epsilon": ["Ghrl"], "Ductal": ["Krt19", "Sox9", "Spp1"],
                    "Pre-endocrine": ["Pax4"]}
TISSUES7_HPA = {"liver": "Liver", "kidney": "Kidney", "colon": "Colon", "cerebellum": "Cerebral Cortex",
                "hippocampus": "Cerebral Cortex", "endometrium": "Endometrium", "placenta": "Placenta"}


# --------------------------------------------------------------------------------------------
# data sets


def simulated(design: str, seed: int, *, quick: bool):
    n = 1200 if quick else 2000
    if design == "markers":
        return xl.datasets.synthetic(n, 1000, 5, n_markers=10, effect=0.8, random_state=seed)
    if design == "markers_unbalanced":
        return xl.datasets.synthetic(n, 1000, 5, n_markers=10, effect=0.8, group_sizes=[8, 4, 2, 1, 1], random_state=seed)
    if design == "markers_bulk":
        return xl.datasets.synthetic(300, 1000, 5, kind="bulk", n_markers=10, random_state=seed)
    if design == "pathways":
        return xl.datasets.synthetic_pathways(n, random_state=seed)
    if design == "combinatorial":
        return xl.datasets.synthetic_combinatorial(n, random_state=seed)
    raise ValueError(design)


def datasets(*, quick: bool):
    """(name, loader, groupby, truth, tuning) with truth: {group: [marker genes]}."""
    out = []
    seeds = (0, 2) if quick else (0, 1, 2, 3)
    for design in ("markers", "pathways", "combinatorial"):
        for s in seeds:
            out.append((f"{design} (seed {s})", lambda d=design, s=s: simulated(d, s, quick=quick), "group", "planted", s < 2))
    if not quick:
        out.append(("markers_unbalanced (seed 4)", lambda: simulated("markers_unbalanced", 4, quick=quick), "group", "planted", False))
        out.append(("markers_bulk (seed 5)", lambda: simulated("markers_bulk", 5, quick=quick), "group", "planted", False))
    out.append(("PBMC (pbmc68k)", xl.datasets.pbmc68k, "cell_type", PBMC_MARKERS, None))
    if not quick:
        out.append(("mouse pancreas", xl.datasets.pancreas, "clusters", PANCREAS_MARKERS, None))
        out.append(("7 tissues (microarray)", xl.datasets.tissues7, "tissue", "hpa", None))
    return out


def truth_sets(adata, groupby: str, truth) -> dict[str, set[str]]:
    groups = list(adata.obs[groupby].cat.categories)
    if truth == "planted":
        up = adata.var["marker_direction"] == "up"
        return {g: set(adata.var_names[up & (adata.var["marker_of"] == g)]) for g in groups}
    if truth == "hpa":
        t = xl.datasets.tissue_specific_genes()
        t = t[t["group"].isin(["Tissue-Enriched", "Group-Enriched"])]
        return {g: set(t.loc[t["tissue"] == TISSUES7_HPA[g], "symbol"]) & set(adata.var_names) for g in groups}
    return {g: set(m) & set(adata.var_names) for g, m in truth.items() if g in groups}


# --------------------------------------------------------------------------------------------
# rankings


def directions(S: np.ndarray, P: np.ndarray | None, lfc: np.ndarray) -> dict[str, np.ndarray]:
    """The three rankings of ``xl.tl.attribute(rank_by=...)``, from the same numbers it uses."""
    if P is None:
        return {"total": S}
    return {d: xl.metrics.direction_scores(S, P, d, lfc) for d in ("total", "presence", "up")}


def scanpy_scores(adata, groupby: str, method: str, genes: pd.Index) -> np.ndarray:
    import scanpy as sc

    kw = {"max_iter": 1000} if method == "logreg" else {}
    b = adata.copy()
    sc.tl.rank_genes_groups(b, groupby, method=method, key_added="rg", **kw)
    groups = list(adata.obs[groupby].cat.categories)
    out = np.full((len(groups), len(genes)), -np.inf)
    for i, g in enumerate(groups):
        names = pd.Index(np.asarray(b.uns["rg"]["names"][g]).astype(str))
        out[i, genes.get_indexer(names)] = np.asarray(b.uns["rg"]["scores"][g], dtype=float)
    return out


def ap_and_ranks(scores: np.ndarray, groups, genes: pd.Index, truth: dict[str, set[str]]) -> tuple[float, float]:
    aps, ranks = [], []
    for i, g in enumerate(groups):
        t = truth.get(g, set())
        if not t:
            continue
        y = genes.isin(list(t))
        s = np.nan_to_num(scores[i], nan=-np.inf, neginf=-1e30)
        aps.append(average_precision_score(y, s))
        order = np.argsort(-s, kind="stable")
        pos = np.empty_like(order)
        pos[order] = np.arange(1, order.size + 1)
        ranks += list(pos[y])
    return float(np.mean(aps)), float(np.median(ranks))


def frac_lower(scores, groups, X: np.ndarray, codes: np.ndarray, k: int = 20) -> float:
    """Fraction of each group's top-k genes whose mean expression is lower in the group than in the rest."""
    low = []
    for i, _ in enumerate(groups):
        top = np.argsort(-np.nan_to_num(scores[i], nan=-np.inf), kind="stable")[:k]
        inside, rest = X[codes == i][:, top].mean(0), X[codes != i][:, top].mean(0)
        low.append(np.mean(inside < rest))
    return float(np.mean(low))


def deletion_auc(ens, X: np.ndarray, codes: np.ndarray, targets: np.ndarray, scores: np.ndarray, rng, n_cells=300) -> float:
    cells = rng.choice(X.shape[0], size=min(n_cells, X.shape[0]), replace=False)
    steps = np.unique(np.round(np.geomspace(1, 100, 10)).astype(int))
    steps = np.concatenate([[0], steps])
    rankings = np.stack([np.argsort(-np.nan_to_num(scores[codes[c]], nan=-np.inf), kind="stable")[: steps.max()] for c in cells])
    curve = xl.metrics.deletion_curve(ens.predict_proba, X[cells], rankings, X.mean(0), targets[cells], steps)
    return float(np.mean(xl.metrics.curve_auc(steps, curve)))


# --------------------------------------------------------------------------------------------


def run_dataset(name, loader, groupby, truth, tuning, *, n_models, faithfulness, seed=0) -> list[dict]:
    t0 = time.perf_counter()
    adata = loader()
    xl.tl.train_classifier(adata, groupby, n_models=n_models, random_state=seed)
    acc = float(xl.get.training_metrics(adata).loc["ensemble", "accuracy"])
    ens = xl.get.ensemble(adata)
    prep = prepare_targets(adata, ens)
    genes = ens.var_names
    groups = prep.group_names
    X = prep.X.rows(slice(None))
    codes = prep.group_codes
    tsets = truth_sets(adata, groupby, truth)
    lfc = expression_logfoldchanges(prep.X, codes, len(groups), linear=True)[1]
    rng = np.random.default_rng(0)
    kind = "tuning" if tuning else ("held out" if tuning is False else "real")
    rows = []

    def record(label, direction, scores, seconds):
        ap, rank = ap_and_ranks(scores, groups, genes, tsets)
        row = {"data": name, "set": kind, "ranking": label, "direction": direction, "AP": ap, "median marker rank": rank,
               "seconds": round(seconds, 2), "accuracy": acc}
        if name.startswith("PBMC"):
            row["top-20 lower in group"] = frac_lower(scores, groups, X, codes)
        if faithfulness and (tuning or name.startswith("PBMC")):
            row["deletion AUC"] = deletion_auc(ens, X, codes, prep.targets, scores, rng)
        rows.append(row)

    for method in ("wilcoxon", "t-test", "logreg"):
        t = time.perf_counter()
        s = scanpy_scores(adata, groupby, method, genes)
        record(f"scanpy {method}", "up", s, time.perf_counter() - t)
    for label, method, ref, nb in CONFIGS:
        t = time.perf_counter()
        res = explain.attribute_modules(ens.modules, prep.X, prep.targets, method, groups=codes, n_groups=len(groups),
                                        references=ref, n_baselines=nb, store_cells=False, progress=False,
                                        random_state=seed)
        secs = time.perf_counter() - t
        for direction, s in directions(res.group_means.astype(float), None if res.presence_group_means is None
                                       else res.presence_group_means.astype(float), lfc).items():
            record(label, direction, s, secs)
    print(f"  {name}: accuracy {acc:.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def stability(n_models: int, configs, seeds=(1, 2)) -> pd.DataFrame:
    """Two independent default runs on PBMC (training and attribution seeds differ)."""
    runs = []
    for seed in seeds:
        a = xl.datasets.pbmc68k()
        xl.tl.train_classifier(a, "cell_type", n_models=n_models, random_state=seed)
        ens = xl.get.ensemble(a)
        prep = prepare_targets(a, ens)
        out = {}
        for label, method, ref, nb in configs:
            res = explain.attribute_modules(ens.modules, prep.X, prep.targets, method, groups=prep.group_codes,
                                            n_groups=len(prep.group_names), references=ref, n_baselines=nb,
                                            store_cells=False, progress=False, random_state=seed)
            P = None if res.presence_group_means is None else res.presence_group_means.astype(float)
            lfc = expression_logfoldchanges(prep.X, prep.group_codes, len(prep.group_names), linear=True)[1]
            for d, s in directions(res.group_means.astype(float), P, lfc).items():
                out[(label, d)] = s
        runs.append(out)
    rows = []
    for key in runs[0]:
        a, b = runs[0][key], runs[1][key]
        rho = xl.metrics.spearman_rows(a, b)
        ov = xl.metrics.topk_overlap(a, b, 100)
        rows.append({"ranking": key[0], "direction": key[1], "n_models": n_models,
                     "median group Spearman": float(np.median(rho)), "min group Spearman": float(np.min(rho)),
                     "median top-100 overlap": float(np.median(ov))})
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> str:
    lines = []
    fmt = {"AP": "{:.3f}".format, "median marker rank": "{:.0f}".format, "deletion AUC": "{:.3f}".format,
           "top-20 lower in group": "{:.2f}".format}
    for kind in ("tuning", "held out"):
        sub = table[table["set"] == kind]
        if sub.empty:
            continue
        design = sub["data"].str.split(" ").str[0]
        piv = sub.assign(design=design).pivot_table(index=["ranking", "direction"], columns="design", values="AP", aggfunc="mean")
        wil = piv.loc[("scanpy wilcoxon", "up")]
        piv = piv.sort_values(piv.columns[0], ascending=False)
        lines += [f"\n## Simulators, {kind} seeds: mean AP of planted up-markers (rows sorted by the first column)", ""]
        lines.append(piv.map("{:.3f}".format).to_string())
        lines.append("\nratio to Wilcoxon:\n" + (piv / wil).map("{:.2f}".format).head(12).to_string())
        if "deletion AUC" in sub.columns and sub["deletion AUC"].notna().any():
            dl = sub.assign(design=design).pivot_table(index=["ranking", "direction"], columns="design", values="deletion AUC")
            lines += ["\ndeletion AUC (lower = the ranking's genes matter more to the ensemble):", dl.map("{:.3f}".format).to_string()]
    for name, d in table[table["set"] == "real"].groupby("data", sort=False):
        cols = [c for c in ("AP", "median marker rank", "top-20 lower in group", "deletion AUC") if c in d and d[c].notna().any()]
        d = d.set_index(["ranking", "direction"])[cols].sort_values("AP", ascending=False)
        lines += [f"\n## {name}: known markers", "", d.apply(lambda c: c.map(fmt.get(c.name, "{:.3f}".format))).to_string()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--stability", action="store_true", help="also two independent PBMC runs per candidate")
    parser.add_argument("--only", default=None, help="comma-separated data-set name prefixes")
    parser.add_argument("--out", default=None)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args()
    xl.settings.progress = False
    if "SCXL_DATASETDIR" not in os.environ and (HERE.parent.parent / "shared" / "data").is_dir():
        xl.settings.datasetdir = HERE.parent.parent / "shared" / "data"
    n_models = 5 if args.quick else 10
    header = (f"python benchmarks/markers.py{' --quick' if args.quick else ''}{' --stability' if args.stability else ''}"
              f" — {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"torch {__import__('torch').__version__}, scxl {xl.__version__}, {n_models} MLPs per ensemble")
    print(header, flush=True)
    rows = []
    for name, loader, groupby, truth, tuning in datasets(quick=args.quick):
        if args.only and not any(name.startswith(p) for p in args.only.split(",")):
            continue
        rows += run_dataset(name, loader, groupby, truth, tuning, n_models=n_models, faithfulness=True)
    table = pd.DataFrame(rows)
    text = header + "\n" + summarise(table)
    if args.stability:
        cands = [c for c in CONFIGS if c[0] in ("deeplift / zero", "deeplift / mean", "deeplift_shap / sample",
                                                   "deeplift_shap / marginal", "deeplift / rest_mean", "input_x_gradient")]
        stab = pd.concat([stability(n, cands) for n in (10, 20)], ignore_index=True)
        text += "\n\n## Stability: two independent runs on PBMC (training and attribution seeds 1 vs 2)\n\n" + stab.to_string(
            index=False, float_format="{:.3f}".format)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
