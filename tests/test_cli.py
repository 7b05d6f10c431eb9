from __future__ import annotations

import anndata as ad

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
                 "--min-delta", "0.02", "--method", "none", "--out", str(out), "--quiet"]) == 0
    params = ad.read_h5ad(out / "scxl_result.h5ad").uns["xl"]["params"]
    assert params["patience"] == 3 and params["min_delta"] == 0.02


def test_bad_arguments_exit_nonzero(synth, tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.h5ad"), "--groupby", "x", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    assert main(["run", str(path), "--quiet"]) == 2
    assert "--groupby is required" in capsys.readouterr().err
    assert main(["run", str(path), "--groupby", "nope", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "groupby='nope' is not a column" in capsys.readouterr().err
    assert main(["run", "--n-models", "0", "--quiet"]) == 2
    assert main([]) == 2
    assert main(["run", str(path), "--groupby", "group", "--method", "lime", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "method='lime'" in capsys.readouterr().err
