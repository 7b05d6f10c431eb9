"""The ``scxl`` command line: ``scxl run`` trains, predicts and writes results to a folder."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scxl",
        description="Explainable classifier ensembles for AnnData. Run 'scxl run --help' for the main job.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser(
        "run",
        help="train an ensemble, predict, and write the annotated data and a summary",
        description=(
            "Train a classifier ensemble on DATA (.h5ad or .h5mu) against obs[GROUPBY], predict every "
            "observation, and write the annotated data, predictions, the standalone ensemble and a "
            "text summary into --out. Without DATA, runs on the built-in PBMC data "
            "(scanpy's pbmc68k_reduced, 700 cells, 10 cell types)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("data", nargs="?", default=None, help="input .h5ad or .h5mu (default: built-in PBMC data)")
    run.add_argument("--groupby", default=None, help="obs column with the labels (default for PBMC: cell_type)")
    run.add_argument("--model", default="mlp", choices=["mlp", "cnn"], help="member architecture")
    run.add_argument("--n-models", type=int, default=10, help="ensemble size")
    run.add_argument("--layer", default=None, help="layer to train on instead of X")
    run.add_argument("--use-raw", action="store_true", help="train on adata.raw")
    run.add_argument("--genes", default=None, help="boolean var column selecting genes, e.g. highly_variable")
    run.add_argument("--max-epochs", type=int, default=100, help="maximum epochs per member")
    run.add_argument("--validation", type=float, default=0.1, help="validation fraction per class")
    run.add_argument("--cv", type=int, default=None, help="also estimate accuracy by k-fold cross-validation")
    run.add_argument("--random-state", type=int, default=0, help="seed")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--out", default="scxl_output", help="output folder")
    run.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    return parser


def _load(path: str | None, groupby: str | None):
    from . import datasets

    if path is None:
        return datasets.pbmc68k(), groupby or "cell_type", "built-in PBMC data (scanpy pbmc68k_reduced)"
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file {path!r} does not exist")
    if groupby is None:
        raise ValueError("--groupby is required with an input file (the obs column holding the labels)")
    if p.suffix == ".h5mu":
        import mudata

        return mudata.read_h5mu(p), groupby, str(p)
    if p.suffix == ".h5ad":
        import anndata

        return anndata.read_h5ad(p), groupby, str(p)
    raise ValueError(f"unsupported input {p.suffix!r}: give an .h5ad or .h5mu file")


def run(args: argparse.Namespace) -> int:
    """Execute ``scxl run``."""
    import scxl as xl

    xl.settings.progress = not args.quiet
    if not args.quiet:
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
        xl.settings.verbosity = "info"
    if args.n_models < 1:
        raise ValueError(f"--n-models must be at least 1, got {args.n_models}")
    out = Path(args.out)
    t0 = time.perf_counter()
    adata, groupby, source = _load(args.data, args.groupby)
    xl.tl.train_classifier(
        adata, groupby, model=args.model, n_models=args.n_models, layer=args.layer, use_raw=args.use_raw,
        genes=args.genes, max_epochs=args.max_epochs, validation=args.validation, cv=args.cv,
        random_state=args.random_state, device=args.device,
    )
    xl.tl.predict(adata)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".h5mu" if type(adata).__name__ == "MuData" else ".h5ad"
    result = out / f"scxl_result{suffix}"
    adata.write(result) if suffix == ".h5mu" else adata.write_h5ad(result)
    ens = xl.get.ensemble(adata)
    ens.save(out / "ensemble.npz")
    pred = adata.obs[["xl_prediction", "xl_confidence", "xl_uncertainty"]].copy()
    pred.insert(0, groupby, adata.obs[groupby])
    pred.to_csv(out / "predictions.csv")
    summary = _summary(adata, ens, groupby, source, time.perf_counter() - t0, out)
    (out / "summary.txt").write_text(summary)
    print(summary)
    return 0


def _summary(adata, ens, groupby: str, source: str, seconds: float, out: Path) -> str:
    import numpy as np

    p = ens.params
    lines = [
        "scxl run — summary",
        "==================",
        f"data:        {source}: {adata.n_obs} observations; {len(ens.var_names)} features used",
        f"labels:      obs[{groupby!r}], {len(ens.classes)} classes",
        f"ensemble:    {ens.n_models} × {ens.model_type.upper()} (seed {p.get('random_state')}, device {p.get('device')})",
        f"split:       {p.get('n_train')} training / {p.get('n_validation')} validation cells (stratified)",
        f"time:        {seconds:.1f} s",
        "",
    ]
    if ens.metrics is not None:
        m = ens.metrics
        lines.append("Validation metrics (held-out cells; per member and soft-voting ensemble):")
        lines.append(m[["accuracy", "balanced_accuracy", "macro_f1", "evaluated_on"]].round(3).to_string())
        lines.append("")
    if ens.recall is not None and "ensemble" in ens.recall:
        lines.append("Per-class recall of the ensemble (validation cells):")
        lines.append(ens.recall["ensemble"].round(3).to_string())
        lines.append("")
    truth = adata.obs[groupby].astype(str).to_numpy()
    pred = adata.obs["xl_prediction"].astype(str).to_numpy()
    ok = adata.obs[groupby].notna().to_numpy()
    lines.append(
        f"Agreement of predictions with {groupby!r} on all labelled cells (mostly training cells, optimistic): "
        f"{np.mean(truth[ok] == pred[ok]):.3f}"
    )
    lines.append(f"Median confidence {np.nanmedian(adata.obs['xl_confidence']):.3f}; "
                 f"cells where members disagree: {np.mean(adata.obs['xl_uncertainty'] > 0):.1%}")
    lines += [
        "",
        "Files:",
        f"  {out / ('scxl_result' + ('.h5mu' if type(adata).__name__ == 'MuData' else '.h5ad'))}  annotated data (ensemble in uns['xl'], predictions in obs/obsm)",
        f"  {out / 'ensemble.npz'}  standalone ensemble (xl.models.Ensemble.load)",
        f"  {out / 'predictions.csv'}  per-observation predictions",
        f"  {out / 'summary.txt'}  this summary",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scxl`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"scxl {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return run(args)
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"scxl run: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
