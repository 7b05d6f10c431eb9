"""Shared fixtures: small seeded data sets and the data folders of the real data sets.

The real data sets are read from ``tests/data``, the small documented copies that ship with the
repository (``tests/data/README.md``): the suite passes on a fresh clone. Where the full data
folder is present (``SCXL_DATASETDIR``, else ``../shared/data`` beside the checkout), the tests
that need the full files (``full_data`` fixture, ``full_data`` marker) run against it in
addition; elsewhere they are skipped, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import scxl as xl
from scxl.datasets import _real

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"


def _full_data_folder() -> Path | None:
    """The full data folder: ``SCXL_DATASETDIR`` if set, else ``../shared/data``; None if absent."""
    env = os.environ.get("SCXL_DATASETDIR")
    folder = Path(env).expanduser() if env else ROOT.parent / "shared" / "data"
    folder = folder.resolve()
    if folder == TEST_DATA.resolve() or not all((folder / name).is_file() for name in _real._FILES):
        return None
    return folder


FULL_DATA = _full_data_folder()
FULL_DATA_MISSING = (
    "needs the full data folder (SCXL_DATASETDIR, or ../shared/data beside the checkout, holding "
    "every file of the scxl.datasets registry), which is absent here; the trimmed copies in "
    "tests/data were tested instead"
)

xl.settings.datasetdir = TEST_DATA
xl.settings.progress = False


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "full_data: runs on the full real data sets; skipped when the full data folder is absent",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:  # tests on the full data carry the marker (deselect: -m "not full_data")
        if {"full_data", "full_data_dir"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.full_data)


def pytest_report_header(config):
    where = str(FULL_DATA) if FULL_DATA is not None else "absent (full-data tests are skipped)"
    return [f"scxl real data: {TEST_DATA} (trimmed copies); full data folder: {where}"]


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """The full data folder (skips the test when it is absent)."""
    if FULL_DATA is None:
        pytest.skip(FULL_DATA_MISSING)
    return FULL_DATA


@pytest.fixture
def full_data(full_data_dir, monkeypatch):
    """Point ``xl.settings.datasetdir`` at the full data folder for one test (skips without it)."""
    monkeypatch.setattr(xl.settings, "datasetdir", full_data_dir)
    return full_data_dir


@pytest.fixture(scope="session")
def synth():
    """400 cells × 60 genes, 3 groups with planted markers (read-only: copy before writing)."""
    return xl.datasets.synthetic(400, 60, 3, n_markers=5, random_state=0)


@pytest.fixture
def adata(synth):
    return synth.copy()


@pytest.fixture(scope="session")
def trained(synth):
    """A small trained MLP ensemble on ``synth`` (read-only: copy before writing)."""
    a = synth.copy()
    xl.tl.train_classifier(a, "group", n_models=3, max_epochs=15, random_state=0)
    return a


@pytest.fixture(scope="session")
def pbmc():
    return xl.datasets.pbmc68k()
