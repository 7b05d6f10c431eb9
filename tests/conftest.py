"""Shared fixtures: small seeded data sets and the data cache used by CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import scxl as xl

SHARED_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()

if "SCXL_DATASETDIR" not in os.environ:
    xl.settings.datasetdir = SHARED_DATA
xl.settings.progress = False


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
