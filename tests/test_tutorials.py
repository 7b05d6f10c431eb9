"""The tutorials in ``tutorials/``: stored with current outputs, and running from top to bottom.

The notebooks are stored *with* their outputs (the docs render them as stored);
``tutorials/execute.py`` runs them and writes them back. Two checks:

- every notebook has stored outputs, produced from its current code (a fingerprint of the code
  cells is recorded when they are stored), without errors, with at least one figure, and small;
- (slow) every notebook runs in a fresh kernel, in a temporary working directory, with the
  interpreter that runs the tests (a kernel spec pointing at ``sys.executable`` is put first on
  ``JUPYTER_PATH``, and the kernel's ``sys.prefix`` is checked at the end), on the data copies in
  ``tests/data``. A failing cell fails the test with its number, source and traceback. Each cell
  must show the same kinds of output as stored (a figure, a table, printed text): a cell that lost
  its figure or started printing means the stored outputs are stale. Differing numbers are listed
  but do not fail (results may differ in the last digits between machines), unless
  ``SCXL_TUTORIALS_STRICT=1``.

Refresh the stored outputs with ``.venv/bin/python tutorials/execute.py``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest

import scxl as xl

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
_PREFIX_MARK = "scxl-test-kernel-prefix:"
REFRESH = "run `.venv/bin/python tutorials/execute.py {}` and commit the notebook"


def _load_execute():
    spec = importlib.util.spec_from_file_location("scxl_tutorials_execute", TUTORIALS / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


execute = _load_execute()


def test_tutorials_exist():
    names = {nb.name for nb in NOTEBOOKS}
    assert {"pbmc_single_cell.ipynb", "mudata_multiomics.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_outputs_stored_and_current(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "start with a '# Title' cell"
    found = execute.problems(nb, path.name)
    assert not found, "\n".join(found) + "\n" + REFRESH.format(path.stem)


def test_fingerprint_ignores_markdown_and_outputs():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("1 + 1")])
    before = execute.code_fingerprint(nb)
    nb.cells[0].source = "# Another title"
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    assert execute.code_fingerprint(nb) == before
    nb.cells[1].source = "1 + 2"
    assert execute.code_fingerprint(nb) != before


def test_problems_name_what_is_wrong():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("x = 1")])
    found = "\n".join(execute.problems(nb, "t.ipynb"))
    assert "not been executed" in found and "no stored outputs" in found and "no figure" in found
    nb.metadata["scxl"] = {"code_sha256": execute.code_fingerprint(nb)}
    nb.cells[1].source = "x = 2"
    assert any("code changed" in p for p in execute.problems(nb, "t.ipynb"))


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """Environment of the notebook kernels, as tutorials/execute.py sets it; returns the working directory."""
    for name, value in execute.kernel_environment(tmp_path, xl.settings.datasetdir).items():
        monkeypatch.setenv(name, value)
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_runs(path, kernel_env, capsys):
    stored = nbformat.read(path, as_version=4)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # appended check: the kernel runs the interpreter of the tests (e.g. the project's venv)
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys; print({_PREFIX_MARK!r} + sys.prefix)"))
    try:
        seconds = execute.execute(nb, kernel_env, name=path.name)
    except execute.NotebookFailed as err:
        pytest.fail(str(err), pytrace=False)
    check = nb.cells.pop()
    execute.clean(nb, kernel_env)

    printed = "".join(o.get("text", "") for o in check.outputs if o.get("output_type") == "stream")
    prefix = printed.split(_PREFIX_MARK, 1)[-1].strip()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve(), (
        f"the notebook kernel ran in {prefix!r}, not in the test interpreter's {sys.prefix!r}"
    )

    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    kinds = [i for i in code if execute.output_kinds(nb.cells[i]) != execute.output_kinds(stored.cells[i])]
    texts = [i for i in code if _text(nb.cells[i]) != _text(stored.cells[i])]
    with capsys.disabled():
        print(f"\n{path.name}: executed in {seconds:.1f} s"
              + (f"; printed output differs from the stored one in cells {texts}" if texts else ""))
    assert not kinds, (
        f"{path.name}: cells {kinds} show other kinds of output than stored "
        f"({[(execute.output_kinds(stored.cells[i]), execute.output_kinds(nb.cells[i])) for i in kinds]}: "
        f"stored, now); the stored outputs are stale: " + REFRESH.format(path.stem)
    )
    if os.environ.get("SCXL_TUTORIALS_STRICT") == "1":
        assert not texts, f"{path.name}: cells {texts} print other values than stored: " + REFRESH.format(path.stem)
    assert seconds < 300, f"{path.name} took {seconds:.0f} s; tutorials should run in well under 5 minutes"


def _text(cell) -> tuple[str, list[str]]:
    """What a code cell prints (stdout) and displays as text (text/plain), figures left out."""
    printed, shown = [], []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream" and o.get("name") == "stdout":
            printed.append(o.get("text", ""))
        elif o.get("output_type") in ("execute_result", "display_data") and "image/png" not in o.get("data", {}):
            shown.append(o.get("data", {}).get("text/plain", ""))
    return "".join(printed), shown
