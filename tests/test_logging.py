"""``xl.settings.verbosity`` prints like Scanpy: a handler on the "scxl" logger only, added once."""

from __future__ import annotations

import logging

import pytest

import scxl as xl
from scxl.cli import main

FAST = {"n_models": 1, "max_epochs": 1}


@pytest.fixture
def verbosity():
    before = xl.settings.verbosity
    yield
    xl.settings.verbosity = before


def _scxl_handlers():
    return [h for h in logging.getLogger("scxl").handlers if getattr(h, "_scxl_handler", False)]


def test_info_prints_to_stderr(adata, capsys, verbosity):
    xl.settings.verbosity = "info"
    xl.tl.train_classifier(adata, "group", **FAST)
    err = capsys.readouterr().err
    assert "training 1 MLP models on 400 labelled cells × 60 features (3 classes; each member holds out 10% of every class" in err
    assert err.count("finished training") == 1 and "added uns['xl']" in err


def test_default_prints_warnings_only(trained, capsys, verbosity):
    assert xl.settings.verbosity == "warning"
    q = trained[:, 5:].copy()
    xl.tl.predict(q)
    err = capsys.readouterr().err
    assert "WARNING: 5 of 60 ensemble features (8.3%) are missing" in err
    assert "finished predicting" not in err
    xl.settings.verbosity = "error"
    xl.tl.predict(q)
    assert capsys.readouterr().err == ""


def test_handler_added_once_and_root_untouched(verbosity):
    root = list(logging.getLogger().handlers)
    for v in ("info", "debug", "warning", "info"):
        xl.settings.verbosity = v
    assert len(_scxl_handlers()) == 1
    assert logging.getLogger().handlers == root
    assert logging.getLogger("scxl").level == logging.INFO


def test_records_still_reach_caplog(trained, caplog, verbosity):
    xl.settings.verbosity = "info"
    with caplog.at_level("INFO", logger="scxl"):
        xl.tl.predict(trained.copy())
    assert "finished predicting 400 observations" in caplog.text


def test_not_printed_twice_with_a_root_handler(trained, capsys, verbosity):
    """After the user's own logging.basicConfig(), a line is printed once (by the root handler)."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    try:
        xl.settings.verbosity = "info"
        xl.tl.predict(trained.copy())
    finally:
        logging.getLogger().removeHandler(handler)
    assert capsys.readouterr().err.count("finished predicting") == 1


def test_cli_prints_each_line_once(synth, tmp_path, capsys, verbosity):
    path = tmp_path / "in.h5ad"
    synth.write_h5ad(path)
    root = list(logging.getLogger().handlers)
    code = main(["run", str(path), "--groupby", "group", "--n-models", "1", "--max-epochs", "1", "--method", "none",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("finished training") == 1 and err.count("finished predicting") == 1
    assert logging.getLogger().handlers == root  # no basicConfig
    assert xl.settings.verbosity == "warning" and xl.settings.progress is False  # restored after the run
