"""The ``scxl`` command line: ``scxl run`` trains, predicts and writes results to a folder."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import time
import warnings
from pathlib import Path

EXIT_BAD_INPUT = 2

#: Switches of the Python API named in scxl's messages, and the ``scxl run`` flags that set them.
_SWITCHES = {"use_raw=True": "--use-raw", "store_layer=False": "--no-layer"}
#: Options of the Python API that ``scxl run`` takes as ``--name VALUE`` (``min_delta`` after ``min_delta_chance``).
_OPTIONS = ("layer_dtype", "layer_genes", "n_models", "max_epochs", "epoch_size", "patience", "min_delta_chance",
            "min_delta", "validation", "method", "baseline", "n_baselines", "rank_by", "top_k", "values", "min_expr",
            "genes", "layer", "groupby", "device", "random_state", "cv", "model")
_OPTION = re.compile(r"(?<![\w.\[])(" + "|".join(_OPTIONS) + r")=(?:'([^']*)'|\"([^\"]*)\"|(-?\d[\d.e+-]*|None)\b)")
#: A Python call with keyword arguments, e.g. ``xl.tl.train_classifier(adata, n_models=4)``: left as it is.
_CALL = re.compile(r"\b[\w.]+\((?:[^()]|\([^()]*\))*=(?:[^()]|\([^()]*\))*\)")
#: A fix written as Python code: an assignment to or a call on adata, a library call, a copy.
_PYTHON = re.compile(r"\badata\b[\w.\[\]'\"]*\s=\s|\badata\.\w+\(|\b(?:sc|xl|pd|np|anndata)\.[\w.]+\(|\.copy\(|\.to_memory\(")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
#: Python calls of scxl's messages that a command does.
_COMMANDS = {"xl.pp.rewrite_as_csr(adata, 'copy.h5ad')": "scxl csr INPUT.h5ad copy.h5ad"}


def _for_the_command_line(message: str) -> str:
    """A message of the Python API as a user of ``scxl run`` can act on it.

    Options the command takes are named as its flags (``use_raw=True`` → ``--use-raw``,
    ``top_k=20`` → ``--top-k 20``), except inside a Python call quoted as such. A message whose
    only fix is Python code (an operation on the data, no flag) is followed by how to apply it
    to the input file.
    """
    import shlex

    def flag(m: re.Match) -> str:
        value = next(v for v in m.groups()[1:] if v is not None)
        if value == "None":
            if m[1] != "epoch_size":
                return m[0]  # (no flag gives None)
            value = "none"
        return f"--{m[1].replace('_', '-')} {shlex.quote(value)}"

    def options(text: str) -> str:
        for python, switch in _SWITCHES.items():
            text = text.replace(python, switch)
        return _OPTION.sub(flag, text)

    for python, command in _COMMANDS.items():
        message = message.replace(python, command)
    parts, last = [], 0
    for call in _CALL.finditer(message):  # (calls stay Python)
        parts += [options(message[last:call.start()]), call[0]]
        last = call.end()
    message = "".join([*parts, options(message[last:])])
    if _PYTHON.search(message) and not _FLAG.search(message) and not any(c in message for c in _COMMANDS.values()):
        message += (" [the fix is Python: apply it to the input file (anndata.read_h5ad or mudata.read_h5mu, then "
                    "write it back) and run scxl again]")
    return message


class _CommandLineLog:
    """A logging filter: scxl's log lines in the command's terms (see :func:`_for_the_command_line`)."""

    def filter(self, record) -> bool:
        if record.levelno >= logging.WARNING:
            record.msg, record.args = _for_the_command_line(record.getMessage()), ()
        return True


@contextlib.contextmanager
def _command_line_messages():
    """Warnings and log lines in the command's terms: ``WARNING: ...`` as scxl's log, each once.

    The default display of a warning names a line of scxl's source and repeats it
    (``xl.tl.train_classifier(``), which means nothing to a user of the command. A data-scale
    warning is printed once (training, then specificity, say it of the same matrix), another
    library's warning once per text, as Python shows it.
    """
    from ._logging import DataScaleWarning, ScxlWarning, logger

    shown: set[str] = set()
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # (showwarning's signature)
        text = str(message)
        seen = text.split(":", 1)[0] if issubclass(category, DataScaleWarning) else f"{category.__name__}: {text}"
        if seen in shown:
            return
        shown.add(seen)
        if not issubclass(category, ScxlWarning):
            previous(message, category, filename, lineno, file, line)
            return
        print(f"WARNING: {_for_the_command_line(text)}", file=sys.stderr if file is None else file)

    log = _CommandLineLog()
    warnings.showwarning = show
    logger.addFilter(log)
    try:
        yield
    finally:
        warnings.showwarning = previous
        logger.removeFilter(log)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only where it says something (not for flags, not for ``None``, not twice)."""

    def _get_help_string(self, action):
        default = action.default  # by identity: 0 and 0.0 equal False but are defaults worth showing
        if default is None or default is False or default is argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


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
            "observation, attribute (per-gene contributions, aggregated over models), measure their "
            "reproducibility against the number of models, compute gene specificity and the overlap of "
            "top genes with group-specific and housekeeping genes, and write the annotated data, "
            "figures (PNG and SVG), top genes (CSV), a text summary and an HTML report into --out. "
            "Without DATA, runs on the built-in PBMC data (scanpy's pbmc68k_reduced, 700 cells, "
            "10 cell types)."
        ),
        formatter_class=_HelpFormatter,
    )
    run.add_argument("data", nargs="?", default=None, help="input .h5ad or .h5mu (default: built-in PBMC data)")
    run.add_argument("--groupby", default=None, help="obs column with the labels (default for PBMC: cell_type)")
    run.add_argument("--model", default="mlp", choices=["mlp", "cnn"], help="member architecture")
    run.add_argument("--n-models", type=int, default=10, help="ensemble size")
    run.add_argument("--layer", default=None, help="layer to train on instead of X")
    run.add_argument("--use-raw", action="store_true", help="train on adata.raw")
    run.add_argument("--genes", default=None, help="boolean var column selecting genes, e.g. highly_variable")
    run.add_argument("--max-epochs", type=int, default=100, help="maximum epochs per member")
    run.add_argument("--epoch-size", default="auto",
                     help="samples per epoch at most: 'auto' (100,000), 'none' (whole passes) or an integer")
    run.add_argument("--patience", type=int, default=10,
                     help="epochs without improvement of the validation loss before a member stops "
                          "(5 stops large, well-separated atlases sooner; see docs/atlas.md)")
    run.add_argument("--min-delta", type=float, default=0.0,
                     help="smallest relative fall of the validation loss that counts as an improvement")
    run.add_argument("--min-delta-chance", type=float, default=0.003,
                     help="smallest absolute fall of the validation loss that counts, as a fraction of ln K "
                          "(the loss of a uniform guess over the K groups); 0 turns it off")
    run.add_argument("--validation", type=float, default=0.1, help="validation fraction per class")
    run.add_argument("--cv", type=int, default=None, help="also estimate accuracy by k-fold cross-validation")
    run.add_argument("--method", default="deeplift", help="explainer (see xl.tl.explainers()); 'none' skips attribution")
    run.add_argument("--baseline", default=None,
                     help="reference of the explainer: mean, zero, sample, marginal, rest, rest_mean, or the paper's "
                          "universal, specific, normal (default: xl.tl.attribute's, chosen in benchmarks/markers.py)")
    run.add_argument("--n-baselines", type=int, default=None, help="references per cell (default: 20 for random kinds, else 1)")
    run.add_argument("--rank-by", default="up", choices=["up", "presence", "total"],
                     help="how genes are ranked: up = expression that supports the group first, absence evidence last")
    run.add_argument("--top-k", type=int, default=100, help="top genes per group for overlaps and stability")
    run.add_argument("--values", default="log1p", choices=["log1p", "log2p", "linear"], help="scale of the expression, for specificity")
    run.add_argument("--min-expr", type=float, default=1.0, help="expression threshold on the linear scale, for specificity")
    run.add_argument("--no-layer", action="store_true",
                     help="store no per-cell contributions layer, only the per-group rankings (memory flat in the "
                          "number of cells: for atlases)")
    run.add_argument("--layer-dtype", default="float32", choices=["float32", "float16"],
                     help="precision of the contributions layer (float16: half the memory)")
    run.add_argument("--layer-genes", default=None,
                     help="store the layer for these genes only: 'top' (the union of every group's top genes) or a "
                          "boolean var column")
    run.add_argument("--backed", action="store_true",
                     help="open an .h5ad backed (read-only; rows are streamed from the file instead of loading X "
                          "into memory: for files larger than memory); scxl_result.h5ad then holds the results "
                          "without X and raw, which stay in the input file")
    run.add_argument("--no-reproducibility", action="store_true", help="skip the reproducibility curves")
    run.add_argument("--random-state", type=int, default=0, help="seed")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--out", default="scxl_output",
                     help="output folder (the files an earlier run wrote there are replaced once training has ended)")
    run.add_argument("--unit", default="auto", choices=["auto", "cells", "samples"],
                     help="what the observations are called in the outputs (auto: samples for dense bulk-like data)")
    run.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    csr = sub.add_parser(
        "csr",
        help="copy an .h5ad file with its CSC matrices stored as CSR (faster to stream), without loading them",
        description=("Copy SOURCE to DEST with every CSC (column-compressed) matrix among X, the layers and raw/X "
                     "stored as CSR, a bounded block at a time (xl.pp.rewrite_as_csr): for files larger than memory. "
                     "scxl reads files by blocks of rows, which CSC stores scattered over every column."),
        formatter_class=_HelpFormatter,
    )
    csr.add_argument("source", help="input .h5ad")
    csr.add_argument("dest", help="output .h5ad")
    csr.add_argument("--max-mib", type=int, default=256, help="working memory in MiB")
    csr.add_argument("--overwrite", action="store_true", help="replace DEST if it exists")
    return parser


def _epoch_size(value: str):
    """``--epoch-size``: 'auto', 'none' or an integer (errors say what is valid)."""
    low = str(value).strip().lower()
    if low in ("auto", "none"):
        return None if low == "none" else "auto"
    try:
        return int(low)
    except ValueError:
        raise SystemExit(f"scxl: --epoch-size {value!r} is not valid: give 'auto', 'none' or an integer") from None


def _check_args(args: argparse.Namespace) -> None:
    """Raise on option values out of range, named as on the command line, before any data are read."""
    for name in ("n_models", "max_epochs", "patience"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name, example in (("min_delta", "0.01"), ("min_delta_chance", "0.003"), ("validation", "0.1")):
        v = getattr(args, name)
        if not 0 <= v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a fraction in [0, 1), e.g. "
                             f"--{name.replace('_', '-')} {example}; got {v}")
    if args.cv is not None and args.cv < 2:
        raise ValueError(f"--cv must be at least 2 (folds), got {args.cv}")
    if args.use_raw and args.layer is not None:
        raise ValueError("--use-raw and --layer both name the matrix to train on: give one or the other")
    if args.no_layer and (args.layer_genes is not None or args.layer_dtype != "float32"):
        raise ValueError("--layer-genes and --layer-dtype set the contributions layer, which --no-layer turns off: "
                         "give one or the other")
    if args.backed and (args.data is None or not str(args.data).endswith(".h5ad")):
        raise ValueError("--backed opens an .h5ad file backed; give one (the built-in data and .h5mu files are read "
                         "into memory)")
    if args.method != "none":  # an unknown explainer would fail only after the training
        from .explain import REFERENCE_KINDS, get_explainer

        try:
            spec = get_explainer(args.method)
        except (KeyError, ValueError) as e:
            raise ValueError(f"{e.args[0] if e.args else e} ('none' skips attribution)") from None  # (method=... → --method)
        if args.model not in spec.model_types:
            raise ValueError(f"--method {args.method} applies to {' and '.join(spec.model_types).upper()} models; "
                             f"give --model {spec.model_types[0]} or another --method")
        if args.baseline is not None and not spec.needs_reference:
            raise ValueError(f"--method {args.method} takes no reference: leave out --baseline")
        if args.baseline is not None and args.baseline not in REFERENCE_KINDS:
            raise ValueError(f"--baseline must be one of {', '.join(REFERENCE_KINDS)}; got {args.baseline!r}")
    args.epoch_size = _epoch_size(args.epoch_size)
    if isinstance(args.epoch_size, int) and args.epoch_size < 2:
        raise ValueError(f"--epoch-size must be 'auto', 'none' (whole passes) or an integer >= 2, got {args.epoch_size}")


def _load(path: str | None, groupby: str | None, *, backed: bool = False):
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

        return anndata.read_h5ad(p, backed="r" if backed else None), groupby, str(p) + (" (backed)" if backed else "")
    raise ValueError(f"unsupported input {p.suffix!r}: give an .h5ad or .h5mu file")


def run(args: argparse.Namespace) -> int:
    """Execute ``scxl run``."""
    import scxl as xl

    previous = xl.settings.progress, xl.settings.verbosity
    xl.settings.progress = not args.quiet and sys.stderr.isatty()  # bars on a terminal only, not in logs
    if not args.quiet:
        xl.settings.verbosity = "info"  # the "scxl" logger prints to stderr itself: no logging.basicConfig
    try:
        return _run(args)
    finally:
        xl.settings.progress, xl.settings.verbosity = previous


def _run(args: argparse.Namespace) -> int:
    import scxl as xl

    _check_args(args)  # before the data are read
    out = Path(args.out)
    t0 = time.perf_counter()
    adata, groupby, source = _load(args.data, args.groupby, backed=args.backed)
    args.unit = _unit(adata, args.layer, use_raw=args.use_raw) if args.unit == "auto" else args.unit
    if args.use_raw and not hasattr(adata, "mod") and getattr(adata, "raw", None) is None:
        raise ValueError(f"--use-raw: {source} has no raw; leave out --use-raw (to train on X) or give --layer NAME")
    _genes_for_raw(adata, args)
    _check_layer_room(adata, args, groupby)  # before training: a layer that cannot fit would fail only after it
    xl.tl.train_classifier(
        adata, groupby, model=args.model, n_models=args.n_models, layer=args.layer, use_raw=args.use_raw,
        genes=args.genes, max_epochs=args.max_epochs, epoch_size=args.epoch_size,
        validation=args.validation, cv=args.cv, patience=args.patience, min_delta=args.min_delta,
        min_delta_chance=args.min_delta_chance,
        random_state=args.random_state, device=args.device,
    )
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous_run(out, args.data)  # only now: a run that fails before training leaves an earlier run's results as they were
    ens = xl.get.ensemble(adata)
    if ens.params.get("interrupted") or ens.params.get("stopped"):  # Ctrl-C: keep what was trained, run nothing more
        ens.save(out / "ensemble.npz")
        result = _write_result(adata, out)
        if not all(ens.finished) or ens.n_models < ens.params.get("n_models_requested", ens.n_models):
            what = f"in training; the {ens.n_models} member(s) trained so far ({sum(ens.finished)} of them finished) are"
        elif ens.metrics is None and args.validation > 0:
            what = f"while evaluating the trained members; the {ens.n_models} trained member(s), without metrics, are"
        elif ens.params.get("cv_interrupted_fold"):  # every member finished and was evaluated: the cross-validation
            what = f"during the cross-validation; the {ens.n_models} trained member(s), without it, are"
        else:
            what = f"just after training; the {ens.n_models} trained member(s) are"
        print(f"scxl run: interrupted {what} saved in {out / 'ensemble.npz'} and {result} "
              "(uns['xl']); nothing else was run", file=sys.stderr)
        return 130
    xl.tl.predict(adata)
    ens.save(out / "ensemble.npz")
    pred = adata.obs[["xl_prediction", "xl_confidence", "xl_uncertainty"]].copy()
    pred.insert(0, groupby, adata.obs[groupby])
    pred.to_csv(out / "predictions.csv")
    analysis = _analyse(adata, args, groupby, out) if args.method != "none" else {}
    _write_result(adata, out)
    seconds = time.perf_counter() - t0
    summary = _summary(adata, ens, groupby, source, seconds, out, analysis, args.unit)
    (out / "summary.txt").write_text(summary)
    _report(adata, ens, groupby, source, seconds, out, analysis, args)
    print(summary)
    return 0


#: What ``scxl run`` writes into ``--out`` (figures: ``figures/NAME.png`` and ``.svg``).
OUTPUT_FILES = ("scxl_result.h5ad", "scxl_result.h5mu", "ensemble.npz", "predictions.csv", "top_genes.csv",
                "summary.txt", "report.html")
FIGURES = ("training", "reproducibility", "top_genes", "dotplot", "specificity")


def _clear_previous_run(out: Path, data: str | None = None) -> None:
    """Remove the files an earlier ``scxl run`` left in ``out``, so none of them sits beside this run's as if it were its.

    Only the names this command writes are touched; anything else in the folder stays.
    """
    old = [out / f for f in OUTPUT_FILES] + [out / "figures" / f"{f}.{ext}" for f in FIGURES for ext in ("png", "svg")]
    old += [f for f in (out / "figures").glob("*_*.*") if f.stem.startswith(("top_genes_", "dotplot_"))]  # (per modality)
    keep = {Path(data).resolve()} if data else set()  # never the input itself
    old = [f for f in old if f.is_file() and f.resolve() not in keep]
    if old:
        from ._logging import logger

        logger.info("replacing the results of an earlier run in %s (%d file(s))", out, len(old))
    for f in old:
        f.unlink()


def _write_result(adata, out: Path) -> Path:
    """Write ``adata`` (AnnData or MuData) as ``out/scxl_result.h5ad`` (``.h5mu``); return the path.

    A backed AnnData (``--backed``) is written without its ``X`` and ``raw``, which stay in the
    input file: an atlas's expression is not copied next to its results (``obs``, ``var``,
    ``uns``, ``obsm``, ``obsp``, ``varm``, ``varp`` and the layers are all there).
    """
    if type(adata).__name__ == "MuData":
        adata.write(out / "scxl_result.h5mu")
        return out / "scxl_result.h5mu"
    if getattr(adata, "isbacked", False):
        import anndata as ad

        results = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy(), uns=dict(adata.uns), obsm=dict(adata.obsm),
                             varm=dict(adata.varm), obsp=dict(adata.obsp), varp=dict(adata.varp), layers=dict(adata.layers))
        results.write_h5ad(out / "scxl_result.h5ad")
    else:
        adata.write_h5ad(out / "scxl_result.h5ad")
    return out / "scxl_result.h5ad"


def _analyse(adata, args, groupby: str, out: Path) -> dict:
    """Attribution, reproducibility, specificity and overlaps; figures into ``out/figures``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import scxl as xl

    from ._keys import baseline_of

    key = f"xl_{args.method}"
    spec = xl.explain.get_explainer(args.method)
    baseline = args.baseline if spec.needs_reference else None
    xl.tl.attribute(adata, method=args.method, baseline=baseline, n_baselines=args.n_baselines,
                    rank_by=args.rank_by, top_k=args.top_k, random_state=args.random_state,
                    store_layer=not args.no_layer, layer_dtype=args.layer_dtype, layer_genes=args.layer_genes)
    baseline = baseline_of(adata.uns[key]["params"])
    top = xl.get.top_genes(adata, key, direction="all")
    top.to_csv(out / "top_genes.csv", index=False)
    result: dict = {"key": key, "baseline": baseline}
    n_models = xl.get.ensemble(adata).n_models
    if not args.no_reproducibility and n_models >= 2:
        n_values = [n for n in (1, 2, 5, 10, 20) if 2 * n <= n_models] or [1]
        xl.tl.reproducibility(adata, method=args.method, n_values=n_values, n_replicates=2, top_k=args.top_k,
                              baseline=baseline, n_baselines=args.n_baselines, random_state=args.random_state)
        result["reproducibility"] = "xl_reproducibility"
    elif not args.no_reproducibility:
        from ._logging import logger

        logger.warning("reproducibility skipped: it compares replicates of different members, and the ensemble has "
                       "one (--n-models 2 or more)")
    if type(adata).__name__ == "MuData":
        return result
    if args.use_raw and adata.isbacked:
        result["specificity_error"] = ("with --backed and --use-raw, specificity is not computed (it would read raw "
                                       "into memory); run without --backed, or xl.tl.specificity on a layer")
        return result
    # Specificity and the overlaps read the matrix the classifier read: with --use-raw, raw's genes and values
    # (X is then often scaled, as in scanpy's processed files); the results go to raw.var and uns.
    bio = adata
    if args.use_raw:
        bio = adata.raw.to_adata()
        bio.uns[key] = adata.uns[key]
    try:
        xl.tl.specificity(bio, groupby, values=args.values, min_expr=args.min_expr,
                          layer=adata.uns["xl"]["preprocessing"].get("layer"))
        xl.tl.gene_set_overlap(bio, key, top_k=args.top_k)
        result["overlap"] = f"{key}_overlap"
    except ValueError as err:  # e.g. scaled data: report and carry on
        result["specificity_error"] = str(err)
    if bio is not adata and "overlap" in result:
        from ._keys import Key
        from ._logging import logger

        for column in (Key.var.tau, Key.var.specificity, Key.var.enriched_in, Key.var.housekeeping):
            adata.raw.var[column("xl")] = bio.var[column("xl")]
        for entry in (Key.uns.specificity("xl"), result["overlap"]):
            adata.uns[entry] = bio.uns[entry]
        logger.info("--use-raw: specificity was computed on raw's values; its columns are in raw.var of the result")
        result["specificity_where"] = "raw.var"
    result["biology"] = bio  # (the figure of the specificity of the top genes reads its var)
    return result


def _genes_for_raw(adata, args: argparse.Namespace) -> None:
    """``--use-raw --genes COLUMN`` (or ``--layer-genes``) with the column on ``var`` only, as ``highly_variable`` usually is: copy it to ``raw.var``.

    Training with ``use_raw=True`` selects among raw's genes, in ``raw.var``; the command has no
    other way to name them.
    """
    import numpy as np

    from ._logging import logger

    if not args.use_raw or hasattr(adata, "mod"):  # (without raw, _run has refused)
        return
    for option, column in (("--genes", args.genes), ("--layer-genes", args.layer_genes)):
        if column is None or (column == "top" and option == "--layer-genes") or column in adata.raw.var.columns:
            continue
        if column not in adata.var.columns or adata.var[column].dtype != bool:
            continue  # (training or the layer check names what is wrong)
        chosen = adata.var_names[np.asarray(adata.var[column])]
        adata.raw.var[column] = adata.raw.var_names.isin(chosen)
        logger.info("%s %s with --use-raw: the %d genes marked in var, copied to raw.var[%r] (raw's %d genes)",
                    option, column, int(adata.raw.var[column].sum()), column, adata.raw.n_vars)


def _check_layer_room(adata, args: argparse.Namespace, groupby: str | None = None) -> None:
    """Refuse, before training, a contributions layer that cannot fit in memory, naming the options that would.

    The same estimate as :func:`scxl.tl.attribute` makes just before it computes (which would
    be after the training): a dense layer spans every variable, a sparse one (a zero reference
    on sparse data, or ``--layer-genes``) the attributed genes only, at most the input's stored
    values with exact zeros. A ``--layer-genes`` column that attribute would refuse is refused here.
    """
    import numpy as np

    import scxl as xl

    from ._inputs import is_sparse_storage, stored_nonzeros
    from .tl._attribute import (
        check_layer_room,
        layer_bytes,
        layer_options,
        sparse_is_smaller,
        zero_is_exact,
    )

    if args.method == "none" or args.no_layer or hasattr(adata, "mod"):
        return
    var = adata.raw.var if args.use_raw else adata.var  # where training and attribute look the columns up
    keep = np.ones(len(var), dtype=bool)
    if args.genes is not None and args.genes in var:
        keep &= np.asarray(var[args.genes].fillna(False), dtype=bool)
    top = args.layer_genes == "top"
    if args.layer_genes is not None and not top:
        if args.layer_genes not in var.columns or var[args.layer_genes].dtype != bool:
            raise ValueError(f"--layer-genes {args.layer_genes}: not a boolean column of "
                             f"{'raw.var' if args.use_raw else 'var'} (or 'top'); boolean columns: "
                             f"{[c for c in var.columns if var[c].dtype == bool][:10]}")
        keep &= var[args.layer_genes].to_numpy()
    n_genes = int(keep.sum())
    groupby = groupby or args.groupby
    if top and groupby in adata.obs:
        n_groups = adata.obs[groupby].dropna().nunique()
        n_genes = min(n_genes, n_groups * args.top_k)
    source = adata.layers[args.layer] if args.layer is not None and args.layer in adata.layers else \
        adata.raw.X if args.use_raw else adata.X
    spec = xl.explain.get_explainer(args.method)
    exact = zero_is_exact(spec, args.baseline if spec.needs_reference else None)
    on_sparse = is_sparse_storage(source)
    nonzeros = stored_nonzeros(source) if exact and on_sparse else None
    dense = layer_bytes(adata.n_obs, adata.n_vars, n_genes, args.layer_dtype, sparse=False)
    sparse = layer_bytes(adata.n_obs, adata.n_vars, n_genes, "float32", sparse=True, nonzeros=nonzeros)
    is_sparse = sparse_is_smaller(dense, sparse, subset=args.layer_genes is not None, exact_on_sparse=exact and on_sparse)
    dtype, need = ("float32", sparse) if is_sparse else (args.layer_dtype, dense)  # (a sparse layer is float32)
    check_layer_room(
        need, f"{adata.n_obs} observations × {n_genes if is_sparse else adata.n_vars} genes, {dtype}, "
              f"{'sparse' if is_sparse else 'dense'}",
        what="the contributions layer", done="; nothing was trained",
        options=layer_options(sparse=is_sparse, dtype=dtype, top=top, cli=True))


def _unit(adata, layer: str | None = None, *, use_raw: bool = False) -> str:
    """``"samples"`` for bulk-like data (few observations, mostly non-zero values), else ``"cells"``.

    Read on the matrix training reads; a scaled matrix (negative values: no zeros left) is judged
    by ``raw`` where there is one, which holds the values before scaling.
    """
    import numpy as np
    from scipy import sparse

    if hasattr(adata, "mod"):
        X = adata.mod[next(iter(adata.mod))].X
    elif use_raw and getattr(adata, "raw", None) is not None:
        X = adata.raw.X
    else:
        X = adata.layers[layer] if layer is not None and layer in adata.layers else adata.X
    if X is None or adata.n_obs > 5000:
        return "cells"

    def nonzero(matrix) -> tuple[float, bool]:
        block = matrix[: min(500, matrix.shape[0])]
        values = block.data if sparse.issparse(block) else np.asarray(block)
        share = block.nnz / max(np.prod(block.shape), 1) if sparse.issparse(block) else float(np.mean(values != 0))
        return share, bool(values.size and values.min() < 0)

    share, scaled = nonzero(X)
    if scaled and not hasattr(adata, "mod") and getattr(adata, "raw", None) is not None:
        share, _ = nonzero(adata.raw.X)
    return "samples" if share > 0.5 else "cells"


_MARK = {"absence": " (absent)", "pattern": " (pattern)"}


def _genes(d, *, mark_absence: bool) -> str:
    return ", ".join(f"{g}{_MARK.get(e, '') if mark_absence else ''}" for g, e in zip(d["gene"], d["evidence"], strict=True))


def _summary(adata, ens, groupby: str, source: str, seconds: float, out: Path, analysis: dict, unit: str = "cells") -> str:
    import numpy as np

    p = ens.params
    lines = [
        "scxl run — summary",
        "==================",
        f"data:        {source}: {adata.n_obs} observations; {len(ens.var_names)} features used",
        f"labels:      obs[{groupby!r}], {len(ens.classes)} classes",
        f"ensemble:    {ens.n_models} × {ens.model_type.upper()} (seed {p.get('random_state')}, device {p.get('device')})",
        f"split:       {p.get('n_train')} training / {p.get('n_validation')} validation {unit} (stratified"
        + (", drawn per member; ensemble metrics out-of-bag)" if p.get("split") == "per_model" else ", shared by all members)"),
        f"time:        {seconds:.1f} s",
        "",
    ]
    if ens.metrics is not None:
        m = ens.metrics
        lines.append(f"Validation metrics (held-out {unit}; per member and soft-voting ensemble):")
        lines.append(m[["accuracy", "balanced_accuracy", "macro_f1", "evaluated_on"]].round(3).to_string())
        lines.append("")
    if ens.recall is not None and "ensemble" in ens.recall:
        lines.append(f"Per-class recall of the ensemble (validation {unit}):")
        lines.append(ens.recall["ensemble"].round(3).to_string())
        lines.append("")
    truth = adata.obs[groupby].astype(str).to_numpy()
    pred = adata.obs["xl_prediction"].astype(str).to_numpy()
    predicted = adata.obs["xl_prediction"].notna().to_numpy()  # (a MuData: not those missing from a modality)
    ok = adata.obs[groupby].notna().to_numpy() & predicted
    unpredicted = f"; {int((~predicted).sum())} without a prediction (missing from a modality) left out" \
        if not predicted.all() else ""
    lines.append(
        f"Agreement of predictions with {groupby!r} on all labelled {unit} (mostly training {unit}, optimistic"
        f"{unpredicted}): {np.mean(truth[ok] == pred[ok]):.3f}"
    )
    lines.append(f"Median confidence {np.nanmedian(adata.obs['xl_confidence']):.3f}; {unit} where members disagree: "
                 f"{np.mean(adata.obs['xl_uncertainty'].to_numpy()[predicted] > 0):.1%}")
    if analysis:
        import scxl as xl

        key = analysis["key"]
        params = adata.uns[key]["params"]
        directed = "absence" in adata.uns[key]
        lines += ["", f"Top contributing genes per group ({key}, reference {analysis['baseline']}, ranked by {params.get('rank_by')!r}; "
                  f"mean over the group's {unit}):"]
        if directed:
            lines.append("  genes whose expression supports the group; '(pattern)' marks genes whose lack in some of the "
                         f"group's {unit} supports it, although the group does not express them less (genes acting in combination):")
        top = xl.get.top_genes(adata, key, n=5)
        for g, d in top.groupby("group", observed=True):
            lines.append(f"  {g}: " + _genes(d, mark_absence=directed))
        if directed:
            lines += ["", "Absence evidence: genes whose lack in the group supports it (xl.get.top_genes(..., direction='down')):"]
            down = xl.get.top_genes(adata, key, n=3, direction="down")
            for g, d in down.groupby("group", observed=True):
                lines.append(f"  {g}: " + (", ".join(d["gene"]) if len(d) else "none"))
        if "reproducibility" in analysis:
            conv = adata.uns["xl_reproducibility"]["convergence"]
            lines += ["", "Reproducibility of the contributions (median Spearman between disjoint replicates):"]
            for _, r in conv.iterrows():
                reached = f"reaches {r['target']} at n = {int(r['n_converged'])} models" if r["n_converged"] == r["n_converged"] else f"does not reach {r['target']} (max {r['max_spearman']:.2f} at n = {r['at_n']})"
                lines.append(f"  {r['method']}, per {r['level']}: {reached}")
        if "overlap" in analysis:
            t = adata.uns[analysis["overlap"]]["table"]
            spec = t[t["gene_set"] == "specific to group"].set_index("group")
            where = " (specificity on raw's values, in raw.var)" if analysis.get("specificity_where") == "raw.var" else ""
            lines += ["", f"Top genes that are specific to their own group (observed / expected by chance){where}:"]
            for g, r in spec.iterrows():
                if int(r["set_size"]) == 0:
                    lines.append(f"  {g}: no gene specific to this group among the ranked genes")
                    continue
                lines.append(f"  {g}: {int(r['overlap'])} / {r['expected']:.1f} (fold {r['fold_enrichment']:.1f}, adj. p {r['pvalue_adj']:.2g})")
        if "specificity_error" in analysis:
            lines += ["", f"Specificity skipped: {_for_the_command_line(analysis['specificity_error'])}"]
    lines += [
        "",
        "Files:",
        f"  {out / ('scxl_result' + ('.h5mu' if type(adata).__name__ == 'MuData' else '.h5ad'))}  annotated data (ensemble in uns['xl'], predictions in obs/obsm)",
        f"  {out / 'ensemble.npz'}  standalone ensemble (xl.models.Ensemble.load)",
        f"  {out / 'predictions.csv'}  per-observation predictions",
        f"  {out / 'summary.txt'}  this summary",
        f"  {out / 'report.html'}  report with figures (figures also in {out / 'figures'})",
    ] + ([f"  {out / 'top_genes.csv'}  ranked genes per group"] if analysis else [])
    return "\n".join(lines) + "\n"


def _report(adata, ens, groupby, source, seconds, out: Path, analysis: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    import scxl as xl

    from ._report import Report

    figs = out / "figures"
    unit = getattr(args, "unit", "cells")  # "cells" or "samples"
    rep = Report("scxl run report")
    rep.text(f"Data: <code>{source}</code>, {adata.n_obs} observations, {len(ens.var_names)} features; labels "
             f"<code>obs['{groupby}']</code> ({len(ens.classes)} classes). Ensemble of {ens.n_models} "
             f"{ens.model_type.upper()} models. Run time {seconds:.0f} s.")
    rep.heading("Accuracy")
    if ens.metrics is not None:
        rep.text(f"Held-out validation {unit} (stratified, per class): each member on its own; the soft-voting "
                 f"ensemble on every held-out {unit[:-1]}, averaging the members that did not train on it.", note=True)
        rep.table(ens.metrics[["accuracy", "balanced_accuracy", "macro_f1"]])
    rep.figure(xl.pl.training(adata, return_fig=True), "training", figs,
               "Loss per member (dashed: training, solid: validation; dots: restored best epoch) and the ensemble's confusion matrix.")
    if analysis:
        key = analysis["key"]
        if "reproducibility" in analysis:
            rep.heading("Stability of the contributions")
            rep.text("Replicate estimates aggregate disjoint sets of n models; agreement is the median Spearman "
                     "correlation (all genes) and top-k overlap between replicates, per group and per cell.", note=True)
            rep.figure(xl.pl.reproducibility(adata, return_fig=True), "reproducibility", figs)
            rep.table(adata.uns["xl_reproducibility"]["convergence"], index=False)
        rep.heading(f"Top genes per group ({key})")
        directed = "absence" in adata.uns[key]
        if directed:
            rep.text(f"Ranked by {adata.uns[key]['params'].get('rank_by')!r}: genes whose expression supports the group "
                     f"first; '◇' marks a gene that acts in a pattern (its lack in some of the group's {unit} "
                     "supports the group). The second table lists each group's "
                     "absence evidence (genes the group lacks, which the models use to tell it apart).", note=True)
        for direction in ("up", "down") if directed else ("up",):
            top = xl.get.top_genes(adata, key, n=10, direction=direction)
            if top.empty:
                continue
            top["label"] = [f"{g} ◇" if e == "pattern" and direction == "up" else g for g, e in zip(top["gene"], top["evidence"], strict=True)]
            many = top["group"].nunique() > 8  # many groups: one row per group keeps the table narrow
            wide = top.pivot(index="group", columns="rank", values="label") if many else top.pivot(index="rank", columns="group", values="label")
            if direction == "down":
                rep.text("Absence evidence (xl.get.top_genes(..., direction='down')):", note=True)
            rep.table(wide.fillna(""))
        import scanpy as sc

        for name, view in _expression_views(adata, key, groupby):  # (a MuData: one figure per modality)
            of = "" if name is None else f" ({name})"
            suffix = "" if name is None else f"_{name}"
            rep.figure(xl.pl.top_genes(view, key, n_genes=5, return_fig=True), f"top_genes{suffix}", figs,
                       f"Mean expression{of} (scaled per gene) of each group's top contributing genes across all groups.")
            sc.pl.rank_genes_groups_dotplot(view, key=key, n_genes=3, dendrogram=False, show=False)
            rep.figure(plt.gcf(), f"dotplot{suffix}", figs, f"Scanpy's dot plot of the same ranking{of}: each group's "
                       f"top 3 genes ({'expression that supports the group' if directed else 'by attribution'}).")
        if "overlap" in analysis:
            rep.heading("Biology: specificity of the top genes")
            rep.figure(xl.pl.specificity(analysis["biology"], key, return_fig=True), "specificity", figs,
                       "Fraction of each group's top genes that are specific to the group / housekeeping, against chance.")
            t = adata.uns[analysis["overlap"]]["table"]
            rep.table(t[["group", "gene_set", "overlap", "expected", "fold_enrichment", "pvalue_adj"]], index=False)
    rep.heading("Parameters")
    rep.params({"command": vars(args), "ensemble": ens.params, "preprocessing": ens.preprocessing,
                "versions": ens.versions})
    rep.write(out / "report.html")


def _expression_views(adata, key: str, groupby: str) -> list:
    """``[(modality or None, AnnData)]`` to draw expression from: the data, or each modality of a MuData.

    A MuData's ranking is split by :func:`scxl.tl.attribute` into each modality's ``uns[key]``; the
    labels, in ``mdata.obs``, are copied to the modality's obs where it lacks them.
    """
    if not hasattr(adata, "mod"):
        return [(None, adata)]
    views = []
    for name, mod in adata.mod.items():
        if key not in mod.uns:
            continue
        if groupby not in mod.obs:
            mod = mod.copy()
            mod.obs[groupby] = adata.obs.loc[mod.obs_names, groupby]
        views.append((name, mod))
    return views


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
        return run(args) if args.command == "run" else _csr(args)
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, MemoryError) as err:  # (OSError: files, folders)
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"scxl {args.command}: error: {_for_the_command_line(msg)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _csr(args: argparse.Namespace) -> int:
    """Execute ``scxl csr``."""
    import scxl as xl

    if args.max_mib < 16:
        raise ValueError(f"--max-mib must be at least 16, got {args.max_mib}")
    previous = xl.settings.verbosity
    xl.settings.verbosity = "info"
    try:
        xl.pp.rewrite_as_csr(args.source, args.dest, max_bytes=args.max_mib * 2**20, overwrite=args.overwrite)
    except FileExistsError:
        raise FileExistsError(f"{args.dest!r} exists; give --overwrite to replace it") from None
    finally:
        xl.settings.verbosity = previous
    return 0


def console() -> None:
    """The ``scxl`` console script (and ``python -m scxl``): :func:`main`, warnings in the command's terms.

    ``SIGTERM`` (what ``kill``, ``timeout`` and a batch scheduler's time limit send) is taken as a
    Ctrl-C: ``scxl run`` saves the members trained so far, ``scxl csr`` removes its partial copy.
    """
    import signal

    def as_interrupt(signum, frame):
        signal.raise_signal(signal.SIGINT)  # (to whichever SIGINT handler holds: scxl's deferral, or Python's)

    previous = signal.signal(signal.SIGTERM, as_interrupt)
    try:
        with _command_line_messages():
            code = main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
