"""Package-level conventions: light import, public API shape, lint."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import scxl as xl

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = (
        "import sys, scxl as xl; xl.tl; xl.get; xl.pp; xl.datasets; "
        "heavy = [m for m in ('captum', 'matplotlib', 'scanpy', 'dask') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version_and_settings():
    assert xl.__version__ == "0.1.0"
    assert "datasetdir" in repr(xl.settings)
    with pytest.raises(ValueError, match="device must be one of"):
        xl.settings.device = "tpu"
    with pytest.raises(ValueError, match="verbosity must be one of"):
        xl.settings.verbosity = "loud"


def _public_functions(module):
    return [getattr(module, n) for n in module.__all__ if inspect.isfunction(getattr(module, n))]


@pytest.mark.parametrize("module", ["tl", "pp"])
def test_signature_conventions(module):
    funcs = _public_functions(getattr(xl, module))
    assert funcs, f"xl.{module} exports no functions"
    for f in funcs:
        params = list(inspect.signature(f).parameters.values())
        if not params:  # e.g. xl.tl.explainers(): a table of options, not a tool
            continue
        assert params[0].name == "adata", f"{f.__name__}: first parameter must be adata"
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert len(positional) <= 3, f"{f.__name__}: at most three positional parameters"
        for p in params:
            if isinstance(p.default, bool):
                assert p.kind == p.KEYWORD_ONLY, f"{f.__name__}: boolean {p.name} must be keyword-only"


@pytest.mark.parametrize("module", ["tl", "pp", "get", "pl", "datasets"])
def test_public_functions_have_numpydoc_examples(module):
    for f in _public_functions(getattr(xl, module)):
        doc = inspect.getdoc(f) or ""
        assert "Parameters" in doc or not inspect.signature(f).parameters, f.__name__
        assert "Examples" in doc, f"{module}.{f.__name__} has no Examples section"
        assert "Returns" in doc, f"{module}.{f.__name__} has no Returns section"


def test_ruff_clean():
    ruff = Path(sys.executable).with_name("ruff")
    cmd = [str(ruff)] if ruff.exists() else [sys.executable, "-m", "ruff"]
    out = subprocess.run([*cmd, "check", "src", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
