from __future__ import annotations

import anndata as ad

from scxl.cli import main


def test_run_on_file(synth, tmp_path, capsys):
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    out = tmp_path / "out"
    code = main(["run", str(path), "--groupby", "group", "--n-models", "2", "--max-epochs", "3", "--out", str(out), "--quiet"])
    assert code == 0
    for f in ("scxl_result.h5ad", "ensemble.npz", "predictions.csv", "summary.txt"):
        assert (out / f).exists(), f
    result = ad.read_h5ad(out / "scxl_result.h5ad")
    assert "xl" in result.uns and "xl_prediction" in result.obs
    summary = (out / "summary.txt").read_text()
    assert "Validation metrics" in summary and "ensemble" in summary
    assert "scxl run — summary" in capsys.readouterr().out


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
