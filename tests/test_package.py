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
    # anndata itself imports dask (and zarr) where they are installed: only what scxl adds counts
    code = (
        "import sys, anndata; base = set(sys.modules); import scxl as xl; xl.tl; xl.get; xl.pp; xl.datasets; "
        "heavy = [m for m in ('captum', 'matplotlib', 'scanpy', 'dask', 'distributed') "
        "if m in sys.modules and m not in base]; print(','.join(heavy))"
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


def test_warning_class_is_public():
    """``xl.ScxlWarning`` is the class of scxl's own warnings, and its example runs."""
    import doctest
    import warnings

    from scxl._logging import warn

    assert "ScxlWarning" in xl.__all__ and issubclass(xl.ScxlWarning, UserWarning)
    with pytest.warns(xl.ScxlWarning, match="checked"):
        warn("checked")
    with warnings.catch_warnings():
        warnings.simplefilter("error", xl.ScxlWarning)
        with pytest.raises(xl.ScxlWarning):
            warn("now an error")
    # every warnings.warn in the package names ScxlWarning (FutureWarning for deprecations)
    import ast

    other = []
    for path in (ROOT / "src" / "scxl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "warnings.warn":
                cat = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "category"), None)
                if cat is None or ast.unparse(cat) not in ("ScxlWarning", "FutureWarning", "category or ScxlWarning"):
                    other.append(f"{path.name}:{node.lineno}")
    assert not other, f"warnings that are not ScxlWarning: {other}"
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(xl.ScxlWarning):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


def test_scale_warnings_have_a_class_of_their_own():
    """Every warning about the values' scale is an ``xl.DataScaleWarning``: silenced alone, the others stay."""
    import warnings

    import numpy as np

    assert "DataScaleWarning" in xl.__all__ and issubclass(xl.DataScaleWarning, xl.ScxlWarning)
    a = xl.datasets.synthetic(120, 60, 2, random_state=0)
    a.X = np.random.default_rng(0).poisson(1.0, a.shape).astype(np.float32)  # whole numbers 0..~6: shallow counts?
    with pytest.warns(xl.DataScaleWarning, match="whole numbers"):
        xl.tl.train_classifier(a, "group", n_models=1, max_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=xl.DataScaleWarning)
        xl.tl.train_classifier(a, "group", n_models=1, max_epochs=1, min_delta=0.5, overwrite=True)
    kinds = [type(w.message) for w in caught]
    assert xl.DataScaleWarning not in kinds and xl.ScxlWarning in kinds  # (min_delta=0.5 still warns)
    b = xl.datasets.synthetic(120, 60, 2, random_state=0)  # log-normalised values
    with pytest.warns(xl.DataScaleWarning, match="looks log-transformed"):
        xl.tl.specificity(b, "group", values="linear")
    runner = __import__("doctest").DocTestRunner()
    for test in __import__("doctest").DocTestFinder().find(xl.DataScaleWarning):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


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


@pytest.mark.parametrize("module", ["scxl.explain", "scxl.metrics", "scxl.models", "scxl.train"])
def test_kernels_do_not_import_anndata(module):
    """Kernels are pure: arrays and tensors in, arrays out; the AnnData glue lives in tl/pp/get."""
    code = f"import sys, {module}; print(','.join(m for m in ('anndata', 'scanpy', 'captum', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_tools_do_not_import_captum_or_matplotlib():
    code = "import sys, scxl.tl; print(','.join(m for m in ('captum', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("module", ["tl", "get", "pl"])
def test_key_always_names_a_ranking(module):
    """One meaning per parameter name: ``key`` is a ranking/attribution, the ensemble is ``ensemble_key``."""
    for f in _public_functions(getattr(xl, module)):
        params = inspect.signature(f).parameters
        if "key" in params:
            assert params["key"].default != "xl", f"{module}.{f.__name__}: key= must not name the ensemble"
        if "ensemble_key" in params:
            assert params["ensemble_key"].default == "xl", f.__name__


def test_deprecated_key_for_the_ensemble_still_works(trained):
    a = trained.copy()
    with pytest.warns(FutureWarning, match="ensemble_key"):
        xl.tl.predict(a, key="xl")
    assert "xl_prediction" in a.obs
    with pytest.raises(TypeError, match="both key= .* and ensemble_key="):
        xl.tl.predict(a, key="xl", ensemble_key="xl")
