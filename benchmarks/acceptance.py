"""Acceptance numbers from the issues, on real and synthetic data, printed as tables.

1. PBMC (pbmc68k, cell_type), three stratified 80/20 hold-outs: 10-MLP ensemble vs
   scikit-learn LogisticRegression on the same split.
2. TCGA 6 cancer types and GTEx 26 tissues: 5-fold cross-validated accuracy of the ensemble.
3. Stability: two independent runs (train + attribute, different seeds, 10 models each) on PBMC:
   group-level Spearman of DeepLift ("universal") scores.
4. Synthetic data with planted markers: marker recovery (AUPRC of each group's ranking against its
   planted up-markers) for DeepLift / IntegratedGradients vs Scanpy's Wilcoxon, and deletion-curve
   faithfulness (AUC; lower is better) of DeepLift vs Wilcoxon vs random.

    python benchmarks/acceptance.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

import scxl as xl


def pbmc_holdout(n_models: int, epochs: int, splits=(0, 1, 2)) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    a = xl.datasets.pbmc68k()
    rows = []
    for seed in splits:
        tr, te = train_test_split(np.arange(a.n_obs), test_size=0.2, stratify=a.obs["cell_type"], random_state=seed)
        train, test = a[tr].copy(), a[te].copy()
        xl.tl.train_classifier(train, "cell_type", n_models=n_models, max_epochs=epochs, random_state=0)
        xl.tl.predict(test, ensemble=xl.get.ensemble(train))
        truth = test.obs["cell_type"].astype(str)
        ens_acc = float((test.obs["xl_prediction"].astype(str) == truth).mean())
        lr = LogisticRegression(max_iter=2000).fit(train.X, train.obs["cell_type"].astype(str))
        lr_acc = float((lr.predict(test.X) == truth).mean())
        rows.append({"data": f"pbmc68k hold-out 20% (split {seed})", "scxl ensemble": ens_acc, "LogisticRegression": lr_acc})
    return rows


def cv_accuracy(name: str, adata, groupby: str, n_models: int, epochs: int) -> dict:
    xl.tl.train_classifier(adata, groupby, n_models=n_models, max_epochs=epochs, cv=5, random_state=0)
    m = xl.get.training_metrics(adata)
    return {"data": f"{name} 5-fold CV", "scxl ensemble": float(m.loc["cv", "accuracy"]), "LogisticRegression": np.nan}


def stability(n_models: int, epochs: int) -> float:
    runs = []
    for seed in (1, 2):
        a = xl.datasets.pbmc68k()
        xl.tl.train_classifier(a, "cell_type", n_models=n_models, max_epochs=epochs, random_state=seed)
        xl.tl.attribute(a, method="deeplift", baseline="universal", random_state=seed)
        runs.append(a)
    groups = runs[0].uns["xl_deeplift"]["names"].dtype.names
    rhos = []
    for g in groups:
        s = [pd.Series(np.asarray(r.uns["xl_deeplift"]["scores"][g], float),
                       index=np.asarray(r.uns["xl_deeplift"]["names"][g]).astype(str)) for r in runs]
        rhos.append(s[0].corr(s[1].reindex(s[0].index), method="spearman"))
    return float(np.median(rhos))


def synthetic_truth(n_models: int, epochs: int) -> pd.DataFrame:
    import scanpy as sc
    from sklearn.metrics import average_precision_score

    a = xl.datasets.synthetic(2000, 1000, 5, n_markers=20, random_state=0)
    xl.tl.train_classifier(a, "group", n_models=n_models, max_epochs=epochs, random_state=0)
    xl.tl.attribute(a, method="deeplift", baseline="universal")
    xl.tl.attribute(a, method="integrated_gradients", baseline="universal")
    sc.tl.rank_genes_groups(a, "group", method="wilcoxon")
    rows = []
    for key in ("xl_deeplift", "xl_integrated_gradients", "rank_genes_groups"):
        aps = []
        for g in a.obs["group"].cat.categories:
            names = np.asarray(a.uns[key]["names"][g]).astype(str)
            scores = np.asarray(a.uns[key]["scores"][g], float)
            truth = (a.var.loc[names, "marker_of"].astype(str) == g) & (a.var.loc[names, "marker_direction"] == "up")
            aps.append(average_precision_score(truth, scores))
        rows.append({"ranking": key, "AUPRC planted up-markers (mean over groups)": float(np.mean(aps))})
    xl.tl.faithfulness(a, "xl_deeplift", compare=("random", "rank_genes_groups"), steps=[0, 5, 10, 20, 50, 100])
    auc = a.uns["xl_deeplift_faithfulness"]["auc"].query("mode == 'deletion'").set_index("ranking")["auc"]
    out = pd.DataFrame(rows).set_index("ranking")
    out["deletion AUC (lower = more faithful)"] = auc.reindex(out.index)
    out.loc["random", "deletion AUC (lower = more faithful)"] = auc["random"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer epochs (numbers then understate accuracy)")
    args = parser.parse_args()
    xl.settings.progress = False
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if "SCXL_DATASETDIR" not in os.environ and shared.exists():
        xl.settings.datasetdir = shared
    epochs = 20 if args.quick else 100
    t0 = time.perf_counter()
    acc = pbmc_holdout(10, epochs)
    print(*acc, sep="\n", flush=True)
    acc.append(cv_accuracy("gtex26", xl.datasets.gtex26(), "tissue", 3, epochs))
    print(acc[-1], flush=True)
    tcga = xl.datasets.tcga6(protein_coding_only=True)
    import scanpy as sc

    sc.pp.highly_variable_genes(tcga, n_top_genes=2000, flavor="seurat")
    tcga = tcga[:, tcga.var["highly_variable"]].copy()
    acc.append(cv_accuracy("tcga6 (2,000 HVG)", tcga, "cancer_type", 3, epochs))
    print("\nAccuracy")
    print(pd.DataFrame(acc).to_string(index=False, float_format="{:.3f}".format))
    print(f"\nStability: median over cell types of the Spearman between two independent 10-model runs "
          f"(DeepLift, universal references): {stability(10, epochs):.3f}")
    print("\nSynthetic planted markers (2,000 cells × 1,000 genes, 5 groups)")
    print(synthetic_truth(5, epochs).to_string(float_format="{:.3f}".format))
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
