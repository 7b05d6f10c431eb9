from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from scxl.cli import main


def test_run_on_file(synth, tmp_path, capsys):
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    out = tmp_path / "out"
    code = main(["run", str(path), "--groupby", "group", "--n-models", "2", "--max-epochs", "3", "--out", str(out), "--quiet"])
    assert code == 0
    for f in ("scxl_result.h5ad", "ensemble.npz", "predictions.csv", "summary.txt", "top_genes.csv", "report.html",
              "figures/training.png", "figures/training.svg", "figures/reproducibility.png", "figures/top_genes.png",
              "figures/specificity.png", "figures/dotplot.png"):
        assert (out / f).exists(), f
    result = ad.read_h5ad(out / "scxl_result.h5ad")
    assert "xl" in result.uns and "xl_prediction" in result.obs
    assert "xl_deeplift" in result.layers and "xl_reproducibility" in result.uns and "xl_tau" in result.var
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") == 5 and "Top genes per group" in html
    summary = (out / "summary.txt").read_text()
    assert "Validation metrics" in summary and "Top contributing genes" in summary and "Reproducibility" in summary
    assert "scxl run — summary" in capsys.readouterr().out


def test_run_without_attribution(synth, tmp_path):
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--groupby", "group", "--n-models", "1", "--max-epochs", "2", "--method", "none",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "report.html").exists() and not (out / "top_genes.csv").exists()


def test_run_passes_early_stopping_options(synth, tmp_path):
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--groupby", "group", "--n-models", "1", "--max-epochs", "2", "--patience", "3",
                 "--min-delta", "0.02", "--min-delta-chance", "0.003", "--method", "none", "--out", str(out),
                 "--quiet"]) == 0
    params = ad.read_h5ad(out / "scxl_result.h5ad").uns["xl"]["params"]
    assert params["patience"] == 3 and params["min_delta"] == 0.02 and params["min_delta_chance"] == 0.003


@pytest.mark.parametrize(("call", "extra", "said"), [
    (2, [], "interrupted in training; the 2 member(s) trained so far (0 of them finished) are saved"),
    (5, ["--cv", "2"], "interrupted during the cross-validation; the 2 trained member(s), without it, are saved")])
def test_run_interrupted_in_training_saves_the_members_and_stops(synth, tmp_path, capsys, monkeypatch, call, extra, said):
    """Ctrl-C in the second epoch, or in the first cross-validation fold (after 3 epochs of training)."""
    from scxl._logging import ScxlWarning
    from scxl.train import _stacked

    real, calls = _stacked._evaluate, []

    def stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(_stacked, "_evaluate", stop)
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    out = tmp_path / "out"
    with pytest.warns(ScxlWarning, match="interrupted"):
        try:
            code = main(["run", str(path), "--groupby", "group", "--n-models", "2", "--max-epochs", "3", "--patience", "9",
                         "--out", str(out), "--quiet", *extra])
        except KeyboardInterrupt:  # pragma: no cover - would otherwise stop pytest itself
            pytest.fail("the KeyboardInterrupt escaped scxl run")
    assert code == 130
    assert (out / "ensemble.npz").exists() and not (out / "predictions.csv").exists()
    assert ad.read_h5ad(out / "scxl_result.h5ad").uns["xl"]["params"]["interrupted"]
    assert said in capsys.readouterr().err


def test_bad_arguments_exit_nonzero(synth, tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.h5ad"), "--groupby", "x", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    assert main(["run", str(path), "--quiet"]) == 2
    assert "--groupby is required" in capsys.readouterr().err
    assert main(["run", str(path), "--groupby", "nope", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "--groupby nope is not a column" in capsys.readouterr().err
    assert main(["run", "--n-models", "0", "--quiet"]) == 2
    assert main([]) == 2
    assert main(["run", str(path), "--groupby", "group", "--method", "lime", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "error: --method lime is not a known explainer" in capsys.readouterr().err


def test_options_checked_before_reading_the_data(tmp_path, capsys, monkeypatch):
    """Out-of-range options fail at once, named as on the command line (the data are never read)."""
    import scxl.cli as cli

    def no_load(*args):
        raise AssertionError("the data were read before the options were checked")

    monkeypatch.setattr(cli, "_load", no_load)
    for option, value, message in (("--patience", "0", "--patience must be at least 1, got 0"),
                                   ("--min-delta", "1.5", "--min-delta must be a fraction in [0, 1), e.g. --min-delta 0.01; got 1.5"),
                                   ("--min-delta", "-0.1", "--min-delta must be a fraction in [0, 1)"),
                                   ("--min-delta-chance", "2", "--min-delta-chance must be a fraction in [0, 1), e.g. --min-delta-chance 0.003"),
                                   ("--validation", "1", "--validation must be a fraction in [0, 1)"),
                                   ("--max-epochs", "0", "--max-epochs must be at least 1"),
                                   ("--cv", "1", "--cv must be at least 2"),
                                   ("--n-models", "0", "--n-models must be at least 1"),
                                   ("--method", "lime", "error: --method lime is not a known explainer"),
                                   ("--method", "guided_gradcam", "--method guided_gradcam applies to CNN models; give --model cnn"),
                                   ("--baseline", "median", "--baseline must be one of zero, normal"),
                                   ("--epoch-size", "0", "--epoch-size must be 'auto', 'none' (whole passes) or an integer >= 2")):
        assert main(["run", "--quiet", option, value, "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err, option


def test_help_shows_numeric_defaults(capsys):
    """Defaults equal to 0 are shown (0.0 == False must not hide them); flags and None are not."""
    import pytest

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "counts as an improvement (default: 0.0)" in text
    assert "(default: 10)" in text and "(default: None)" not in text and "(default: False)" not in text


def test_run_backed_without_a_layer(synth, tmp_path, capsys):
    """An atlas-style run: the file opened backed, rankings only (no cells × genes layer)."""
    import scanpy as sc

    path = tmp_path / "in.h5ad"
    a = synth.copy()
    sc.pp.pca(a, n_comps=5)
    sc.pp.neighbors(a, n_neighbors=5)
    a.write_h5ad(path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--groupby", "group", "--backed", "--no-layer", "--n-models", "2", "--max-epochs",
                 "2", "--no-reproducibility", "--out", str(out), "--quiet"]) == 0
    result = ad.read_h5ad(out / "scxl_result.h5ad")
    assert "xl_deeplift" not in result.layers and result.uns["xl_deeplift"]["params"]["store_layer"] == "no"
    assert result.X is None and result.shape == synth.shape  # the expression stays in the input file, not copied
    assert "connectivities" in result.obsp and "X_pca" in result.obsm  # (uns['neighbors'] points at them)
    assert "xl_prediction" in result.obs and list(result.var_names) == list(synth.var_names)
    assert result.uns["xl"]["params"]["streamed"]  # rows read from the file, not loaded
    assert "(backed)" in (out / "summary.txt").read_text() and (out / "top_genes.csv").exists()


def test_run_passes_the_layer_options(synth, tmp_path):
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--groupby", "group", "--layer-dtype", "float16", "--layer-genes", "top",
                 "--top-k", "5", "--n-models", "2", "--max-epochs", "2", "--no-reproducibility", "--out", str(out),
                 "--quiet"]) == 0
    result = ad.read_h5ad(out / "scxl_result.h5ad")
    assert result.layers["xl_deeplift"].dtype == "float16"
    assert 5 <= len(result.uns["xl_deeplift"]["layer_var_names"]) < result.n_vars


def test_a_layer_that_cannot_fit_is_refused_before_training(synth, tmp_path, capsys, monkeypatch):
    import scxl._validation as validation
    import scxl.tl as tl

    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    monkeypatch.setattr(validation, "available_memory", lambda *a, **k: (10_000, "ulimit"))
    monkeypatch.setattr(tl, "train_classifier", lambda *a, **k: pytest.fail("trained before the layer was checked"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--groupby", "group", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the contributions layer would need about" in err and "ulimit -v" in err and "nothing was trained" in err
    assert "--no-layer" in err and "--layer-genes top" in err and "--layer-dtype float16" in err
    assert not out.exists()


def test_the_layer_check_before_training_counts_what_attribute_will_store(synth, tmp_path, capsys, monkeypatch):
    """A dense layer spans every variable (also with --genes); a zero reference on sparse data stores a sparse one."""
    import scipy.sparse as sp

    import scxl._validation as validation
    import scxl.tl as tl

    a = synth.copy()
    a.var["some"] = np.arange(a.n_vars) < 10
    a.X = sp.csr_matrix(a.X * (np.random.default_rng(0).random(a.shape) < 0.3))  # 30 % or fewer non-zero
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    dense = a.n_obs * a.n_vars * 4  # what attribute allocates: 96,000 bytes
    monkeypatch.setattr(validation, "available_memory", lambda *a, **k: (int(dense / 0.8) - 1, "ulimit"))
    monkeypatch.setattr(tl, "train_classifier", lambda *a, **k: pytest.fail("trained before the layer was checked"))
    for extra in ([], ["--genes", "some"]):  # 10 of 60 genes trained on: still the full-width layer
        assert main(["run", str(path), "--groupby", "group", "--out", str(tmp_path / "o"), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert f"{a.n_obs} observations × {a.n_vars} genes, float32, dense" in err, extra

    class Trained(Exception):
        pass

    def stop(*args, **kwargs):
        raise Trained  # the check let it through to training

    monkeypatch.setattr(tl, "train_classifier", stop)
    with pytest.raises(Trained):  # zero reference on sparse data: a sparse layer, the stored values at most
        main(["run", str(path), "--groupby", "group", "--out", str(tmp_path / "o"), "--quiet", "--baseline", "zero"])


def test_layer_options_that_contradict_each_other_are_refused(synth, tmp_path, capsys):
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    assert main(["run", str(path), "--groupby", "group", "--no-layer", "--layer-dtype", "float16", "--quiet"]) == 2
    assert "which --no-layer turns off" in capsys.readouterr().err
    assert main(["run", "--backed", "--quiet"]) == 2
    assert "--backed opens an .h5ad file backed" in capsys.readouterr().err


def test_a_second_run_into_the_same_folder_leaves_none_of_the_first_runs_files(synth, tmp_path):
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    out = tmp_path / "out"
    base = ["run", str(path), "--groupby", "group", "--n-models", "2", "--max-epochs", "2", "--out", str(out), "--quiet"]
    assert main(base + ["--no-reproducibility"]) == 0
    assert (out / "top_genes.csv").exists() and (out / "figures" / "dotplot.png").exists()
    (out / "notes.txt").write_text("mine")
    assert main(base + ["--method", "none"]) == 0  # no attribution this time
    assert not (out / "top_genes.csv").exists() and not (out / "figures" / "dotplot.png").exists()
    assert (out / "figures" / "training.png").exists() and (out / "notes.txt").read_text() == "mine"


def test_a_run_reading_its_input_from_out_keeps_it(synth, tmp_path, monkeypatch):
    import scxl.cli as cli

    out = tmp_path / "out"
    out.mkdir()
    path = out / "scxl_result.h5ad"
    synth.write_h5ad(path)
    monkeypatch.setattr(cli, "_write_result", lambda adata, out: out / "scxl_result.h5ad")  # (would rewrite it)
    assert main(["run", str(path), "--groupby", "group", "--n-models", "1", "--max-epochs", "1", "--method", "none",
                 "--out", str(out), "--quiet"]) == 0  # (the earlier run's files are cleared, never the input)
    assert path.exists() and ad.read_h5ad(path).n_obs == synth.n_obs


@pytest.mark.parametrize("extra", [[], ["--cv", "2"]])  # (with --cv, no fold had started: not "during the cross-validation")
def test_a_ctrl_c_just_after_training_stops_the_run(synth, tmp_path, monkeypatch, capsys, extra):
    import os
    import signal

    from scxl.train import _stacked

    real = _stacked._progress_bar

    def bar(*args, **kwargs):
        b = real(*args, **kwargs)
        close = b.close
        b.close = lambda: (os.kill(os.getpid(), signal.SIGINT), close())
        return b

    monkeypatch.setattr(_stacked, "_progress_bar", bar)
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="interrupted just after"):
        code = main(["run", str(path), "--groupby", "group", "--n-models", "2", "--max-epochs", "2", "--out", str(out),
                     "--quiet", *extra])
    assert code == 130 and (out / "ensemble.npz").exists() and not (out / "top_genes.csv").exists()
    assert "scxl run: interrupted just after training; the 2 trained member(s) are saved" in capsys.readouterr().err


def _refused_before_training(monkeypatch, free):
    import scxl._validation as validation
    import scxl.tl as tl

    monkeypatch.setattr(validation, "available_memory", lambda *a, **k: (int(free), "ulimit"))
    monkeypatch.setattr(tl, "train_classifier", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("trained")))


def test_the_layer_check_reads_what_training_and_attribute_read(synth, tmp_path, capsys, monkeypatch):
    """From a review: --use-raw columns, --genes ∩ --layer-genes, backed sparse files, 'top', typos; only useful advice."""
    import scipy.sparse as sp

    a = synth.copy()
    a.X = sp.csr_matrix(a.X * (np.random.default_rng(0).random(a.shape) < 0.3))
    a.var["some"] = np.arange(a.n_vars) < 30
    a.var["lg"] = np.arange(a.n_vars) >= 25
    a.var["as_int"] = (np.arange(a.n_vars) < 5).astype(int)
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    run = ["run", str(path), "--groupby", "group", "--out", str(tmp_path / "o"), "--quiet"]
    _refused_before_training(monkeypatch, 0)  # nothing fits: every estimate is printed
    for extra, shape in ((["--genes", "some", "--layer-genes", "lg"], "× 5 genes, float32, sparse"),  # their intersection
                         (["--layer-genes", "top", "--top-k", "2"], "× 6 genes, float32, sparse"),  # 3 groups × 2
                         (["--layer-genes", "top", "--layer-dtype", "float16"], f"× {a.n_vars} genes, float16, dense"),
                         (["--backed", "--baseline", "zero"], "× 60 genes, float32, sparse")):  # backed CSR: sparse
        assert main(run + extra) == 2, extra
        err = capsys.readouterr().err
        assert shape in err and "nothing was trained" in err and "may be used (80 % of" in err, (extra, err)
        assert ("--layer-dtype float16" in err) == (shape.endswith("float32, dense")), err  # float16 only where it halves
        assert "layer_genes=" not in err and "store_layer" not in err  # the CLI's own flags, not Python's
    assert main(run + ["--layer-genes", "highly_variabel"]) == 2  # a typo: refused before training, not after it
    assert "--layer-genes highly_variabel: not a boolean column of var" in capsys.readouterr().err
    assert main(run + ["--layer-genes", "as_int"]) == 2
    assert "not a boolean column" in capsys.readouterr().err
    monkeypatch.undo()  # (real training from here)
    b = synth.copy()
    b.raw = None
    b.write_h5ad(tmp_path / "noraw.h5ad")
    assert main(["run", str(tmp_path / "noraw.h5ad"), "--groupby", "group", "--use-raw", "--quiet",
                 "--out", str(tmp_path / "o")]) == 2  # (a regression: an AttributeError from the layer check)
    assert "--use-raw: " in (err := capsys.readouterr().err) and "has no raw; leave out --use-raw" in err
    assert main(["run", "--quiet", "--method", "saliency", "--baseline", "zero", "--out", str(tmp_path / "o")]) == 2
    assert "--method saliency takes no reference: leave out --baseline" in capsys.readouterr().err


def test_the_layer_check_with_use_raw_counts_the_genes_of_raw(synth, tmp_path, capsys, monkeypatch):
    a = synth.copy()
    a.var["hv"] = np.arange(a.n_vars) < 5
    a.raw = a
    a = a[:, :20].copy()  # X: 20 genes; raw: 60, 5 of them hv
    a.var["hv"] = True
    a.write_h5ad(tmp_path / "in.h5ad")
    _refused_before_training(monkeypatch, 0)
    assert main(["run", str(tmp_path / "in.h5ad"), "--groupby", "group", "--use-raw", "--genes", "hv",
                 "--layer-genes", "hv", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert f"{a.n_obs} observations × 5 genes, float32, sparse" in capsys.readouterr().err  # (20 would be dense)


def test_python_dash_m_scxl_runs_the_command():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "scxl", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "scxl" in done.stdout + done.stderr


@pytest.mark.parametrize(("python", "command_line"), [
    ("train on it with use_raw=True", "train on it with --use-raw"),
    ("or store_layer=False, or layer_dtype='float16'", "or --no-layer, or --layer-dtype float16"),
    ("groupby='nope' is not a column of adata.obs", "--groupby nope is not a column of adata.obs"),
    ("epoch_size=None, top_k=20, min_delta_chance=0.003", "--epoch-size none, --top-k 20, --min-delta-chance 0.003"),
    ("layer=None, layer_format='dense'", "layer=None, layer_format='dense'"),  # no flag sets these: left as they are
    ("groupby='cell type' is not a column", "--groupby 'cell type' is not a column"),  # (as the shell takes it)
    ("then xl.tl.train_classifier(adata, n_models=4, extend=True), or n_models=4",
     "then xl.tl.train_classifier(adata, n_models=4, extend=True), or --n-models 4"),  # a Python call stays Python
])
def test_messages_name_the_flags_of_the_command(python, command_line):
    from scxl.cli import _for_the_command_line

    assert _for_the_command_line(python) == command_line


def test_a_fix_in_python_says_how_to_apply_it_to_the_file():
    from scxl.cli import _for_the_command_line

    said = _for_the_command_line("convert it: adata.obs['num'] = pd.Categorical(adata.obs['num'])")
    assert said.startswith("convert it: adata.obs['num'] = pd.Categorical(") and "anndata.read_h5ad or mudata.read_h5mu" in said
    assert "read_h5ad" not in _for_the_command_line("groupby='x' is not a column of adata.obs (columns: 'a')")
    flagged = _for_the_command_line("scaled (e.g. sc.pp.scale(adata)); raw is set: train on it with use_raw=True")
    assert flagged.endswith("with --use-raw")  # a flag is the fix: no note on Python


def test_the_command_prints_warnings_and_log_lines_in_its_own_terms_each_once(capsys, recwarn):
    import warnings

    from scxl._logging import DataScaleWarning, ScxlWarning, logger
    from scxl.cli import _command_line_messages

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        with _command_line_messages():
            warnings.warn("adata.X contains negative values (-2 to 3): train on raw with use_raw=True", DataScaleWarning,
                          stacklevel=1)
            warnings.warn("adata.X contains negative values (-2 to 3): references are truncated", DataScaleWarning,
                          stacklevel=1)
            warnings.warn("a warning of its own", ScxlWarning, stacklevel=1)
            for _ in range(3):
                warnings.warn("another library's", FutureWarning, stacklevel=1)
            logger.warning("references=%r: use baseline='mean'", "universal")
        assert warnings.showwarning is before  # (restored)
        logger.warning("after: baseline='mean'")
    err = capsys.readouterr().err
    assert err.count("negative values") == 1 and "WARNING: adata.X contains negative" in err
    assert "with --use-raw" in err and "WARNING: a warning of its own" in err
    assert "scxl/cli.py" not in err and "warnings.warn(" not in err  # (no source line)
    shown = [w for w in recwarn if issubclass(w.category, FutureWarning)]  # (pytest records what Python would print)
    assert len(shown) == 1 and "another library's" not in err
    assert "references='universal': use --baseline mean" in err
    assert "after: baseline='mean'" in err  # (the filter is removed)


def test_use_raw_trains_on_raw_genes_marked_in_var_and_computes_specificity_on_raw(synth, tmp_path, capsys):
    """Scanpy's processed files: X scaled on the highly variable genes, raw the log-normalised values of all."""
    import scanpy as sc

    a = synth.copy()
    a.raw = a
    a.var["highly_variable"] = np.arange(a.n_vars) < 40
    a = a[:, a.var["highly_variable"].to_numpy()].copy()
    sc.pp.scale(a)  # X now has negative values: specificity on it would be refused
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--groupby", "group", "--use-raw", "--genes", "highly_variable", "--n-models", "2",
                 "--max-epochs", "2", "--no-reproducibility", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "copied to raw.var['highly_variable']" in captured.err
    assert "Specificity skipped" not in captured.out and "specific to their own group" in captured.out
    result = ad.read_h5ad(out / "scxl_result.h5ad")
    import scxl as xl

    assert len(xl.get.ensemble(result).var_names) == 40  # raw's genes marked in var
    assert "xl_tau" in result.raw.var and "xl_tau" not in result.var  # computed on raw's values, stored with raw's genes
    assert list(result.uns["xl_specificity"]["profile"].columns) == list(result.raw.var_names)
    assert "xl_deeplift_overlap" in result.uns


def test_run_on_a_mudata_writes_the_report_with_figures_per_modality(tmp_path, capsys):
    """From a review: the report failed at its expression figures, and samples missing from a modality counted as wrong."""
    from pathlib import Path

    import pandas as pd

    data = Path(__file__).parent / "data" / "tcga_brca_multiomics_mixomics.h5mu"  # protein: 150 of the 220 samples
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="contains negative values"), \
            pytest.warns(UserWarning, match="missing from a modality the ensemble uses and got no prediction"):
        assert main(["run", str(data), "--groupby", "subtype", "--n-models", "2", "--max-epochs", "3",
                     "--no-reproducibility", "--out", str(out), "--quiet"]) == 0
    assert (out / "report.html").exists() and (out / "scxl_result.h5mu").exists()
    for name in ("top_genes", "dotplot"):
        assert {p.stem for p in (out / "figures").glob(f"{name}_*.png")} == {f"{name}_{m}" for m in ("mrna", "mirna", "protein")}
    said = capsys.readouterr().out
    pred = pd.read_csv(out / "predictions.csv", index_col=0)
    scored = pred.dropna(subset=["xl_prediction"])
    agreement = (scored["subtype"] == scored["xl_prediction"]).mean()
    assert "70 without a prediction (missing from a modality) left out" in said and f"): {agreement:.3f}" in said


def test_the_unit_is_read_on_the_values_before_scaling():
    import scanpy as sc

    from scxl.cli import _unit

    a = sc.datasets.pbmc68k_reduced()  # X scaled (dense, no zeros), raw log-normalised (sparse)
    assert _unit(a) == "cells" and _unit(a, use_raw=True) == "cells"
    bulk = ad.AnnData(np.random.default_rng(0).gamma(2.0, size=(60, 300)).astype(np.float32))
    assert _unit(bulk) == "samples"


def test_scxl_csr_copies_a_csc_file_as_csr_and_the_hint_names_it(tmp_path, capsys, monkeypatch):
    from scipy import sparse

    from scxl import _inputs
    from scxl.cli import _for_the_command_line

    a = ad.AnnData(sparse.csc_matrix(np.eye(30, 8, dtype=np.float32)))
    a.write_h5ad(tmp_path / "csc.h5ad")
    assert main(["csr", str(tmp_path / "csc.h5ad"), str(tmp_path / "csr.h5ad")]) == 0
    assert type(ad.read_h5ad(tmp_path / "csr.h5ad", backed="r").X).__name__.endswith("CSRDataset")
    assert main(["csr", str(tmp_path / "csc.h5ad"), str(tmp_path / "csr.h5ad")]) == 2
    assert "exists; give --overwrite to replace it" in capsys.readouterr().err
    assert main(["csr", str(tmp_path / "csc.h5ad"), str(tmp_path / "csr.h5ad"), "--overwrite", "--max-mib", "8"]) == 2
    assert "--max-mib must be at least 16" in capsys.readouterr().err
    assert main(["csr", str(tmp_path / "missing.h5ad"), str(tmp_path / "x.h5ad")]) == 2
    assert "scxl csr: error: " in capsys.readouterr().err
    hint = []
    monkeypatch.setattr(_inputs, "CSC_HINT_ROWS", 10)
    monkeypatch.setattr(_inputs.logger, "warning", lambda msg, *args: hint.append(msg % args))
    _inputs.get_matrix(ad.read_h5ad(tmp_path / "csc.h5ad", backed="r"))
    said = _for_the_command_line(hint[0])
    assert "scxl csr INPUT.h5ad copy.h5ad" in said and "the fix is Python" not in said


def test_sigterm_is_taken_as_ctrl_c_and_saves_the_members(tmp_path):
    """A batch scheduler's time limit (SIGTERM, then SIGKILL seconds later) keeps the training done so far."""
    import signal
    import subprocess
    import sys
    import time

    import scxl as xl

    xl.datasets.synthetic(6000, 200, 4, random_state=0).write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "scxl", "run", str(tmp_path / "in.h5ad"), "--groupby", "group",
                             "--n-models", "2", "--max-epochs", "1000", "--patience", "1000", "--min-delta-chance", "0",
                             "--out", str(out)], stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # the log, line by line, until training has started
            if line.startswith("training 2 MLP"):
                break
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        err = proc.stderr.read()
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert code == 130, err[-2000:]
    assert "interrupted in training" in err and (out / "ensemble.npz").exists()
