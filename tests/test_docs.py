"""The Sphinx site in docs/ builds without a single warning and documents every public name."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# submodules whose whole __all__ the API page lists (``.. xl-api::`` in docs/api.md)
API_MODULES = [
    "scxl.tl",
    "scxl.pp",
    "scxl.get",
    "scxl.pl",
    "scxl.datasets",
    "scxl.models",
    "scxl.metrics",
    "scxl.explain",
    "scxl.train",
]


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    missing = [m for m in ("sphinx", "myst_nb", "sphinx_book_theme") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(
            f"building the docs needs {', '.join(missing)}: install the doc extra "
            '(pip install -e ".[doc]")',
            pytrace=False,
        )
    out = tmp_path_factory.mktemp("docs")
    env = {k: v for k, v in os.environ.items() if k != "SCXL_DOCS_TUTORIALS"}
    cmd = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
        "-d", str(out / "doctrees"), str(DOCS), str(out / "html"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, (
        f"`{' '.join(cmd)}` failed (warnings are errors):\n{proc.stderr[-8000:]}\n{proc.stdout[-2000:]}"
    )
    return out / "html"


@pytest.mark.slow
def test_docs_build_without_warnings(html):
    for page in ("index", "api", "results", "methods", "tutorials"):
        assert (html / f"{page}.html").is_file(), page


@pytest.mark.slow
@pytest.mark.parametrize("module", API_MODULES)
def test_api_page_lists_every_public_name(html, module):
    api = (html / "api.html").read_text(encoding="utf-8")
    mod = importlib.import_module(module)
    for name in mod.__all__:
        full = f"{module}.{name}"
        assert f'href="generated/{full}.html' in api, f"{full} is not in the API tables"
        assert (html / "generated" / f"{full}.html").is_file(), f"no page for {full}"


@pytest.mark.slow
def test_settings_documented(html):
    api = (html / "api.html").read_text(encoding="utf-8")
    assert 'id="scxl.settings"' in api
    for attr in ("datasetdir", "progress", "device", "verbosity"):
        assert attr in api


@pytest.mark.slow
def test_no_unfilled_placeholders(html):
    """``{{key_added}}`` in a rendered page: a docstring escaped braces but is not run through doc_params."""
    bad = {}
    for page in sorted((html / "generated").glob("*.html")):
        found = re.findall(r"\{\{\s*\w+\s*\}\}", page.read_text(encoding="utf-8"))
        if found:
            bad[page.stem] = sorted(set(found))
    assert not bad, f"literal doubled braces in rendered docstrings: {bad}"


@pytest.mark.slow
def test_every_tutorial_rendered(html):
    for nb in sorted((ROOT / "tutorials").glob("*.ipynb")):
        page = html / "generated" / "tutorials" / f"{nb.stem}.html"
        assert page.is_file(), f"tutorial {nb.name} is not in the docs"
        assert f"generated/tutorials/{nb.stem}.html" in (html / "tutorials.html").read_text(encoding="utf-8")


_IMG = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]+)\"")


@pytest.mark.slow
@pytest.mark.parametrize("nb", sorted((ROOT / "tutorials").glob("*.ipynb")), ids=lambda p: p.stem)
def test_tutorial_pages_show_outputs_and_figures(html, nb):
    """Every stored output of a tutorial is on its page, every figure as a PNG that exists."""
    import nbformat

    page = html / "generated" / "tutorials" / f"{nb.stem}.html"
    text = page.read_text(encoding="utf-8")
    cells = [c for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"]
    with_output = sum(1 for c in cells if c.outputs)
    figures = sum(1 for c in cells for o in c.outputs if "image/png" in o.get("data", {}))
    assert with_output and figures, f"{nb.name} has no stored outputs: run tutorials/execute.py"

    rendered = text.count('<div class="cell_output')
    assert rendered == with_output, f"{page.name}: {rendered} cell outputs rendered, the notebook has {with_output}"
    assert 'class="output text_html"' in text or 'class="output text_plain' in text, f"{page.name}: no table or value shown"
    pngs = []
    for src in _IMG.findall(text):
        if src.startswith("data:image/png"):
            pngs.append(src)
        elif src.endswith(".png"):
            assert (page.parent / src).resolve().is_file(), f"{page.name}: figure {src} is missing from the build"
            pngs.append(src)
    assert len(pngs) == figures, f"{page.name}: {len(pngs)} PNG figures shown, the notebook has {figures}"


def test_front_pages_name_existing_functions():
    """Every ``xl.<module>.<name>`` on the index page and in the README exists; no plot is "in development"."""
    import scxl

    for page in (DOCS / "index.md", ROOT / "README.md"):
        text = page.read_text(encoding="utf-8")
        assert "in development" not in text, f"{page.name} calls something 'in development'"
        for module, name in set(re.findall(r"\bxl\.(tl|pp|pl|get|datasets|models|explain|metrics|train|settings)\.(\w+)", text)):
            assert hasattr(getattr(scxl, module), name), f"{page.name} names xl.{module}.{name}, which does not exist"
