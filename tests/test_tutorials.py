"""Execute every notebook in ``tutorials/`` from top to bottom (they are saved without outputs).

Each notebook runs in a fresh kernel, in a temporary working directory, with the interpreter that
runs the tests (a kernel spec pointing at ``sys.executable`` is put first on ``JUPYTER_PATH``, and
the kernel's ``sys.prefix`` is checked at the end). A failing cell fails the test with its number,
source and traceback.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import scxl as xl

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PREFIX_MARK = "scxl-test-kernel-prefix:"


def test_tutorials_exist():
    names = {nb.name for nb in NOTEBOOKS}
    assert {"pbmc_single_cell.ipynb", "mudata_multiomics.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_saved_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not with_outputs, f"{path.name}: clear the outputs before saving (cells {with_outputs})"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "start with a '# Title' cell"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """Environment of the notebook kernels: this interpreter, the test data folder, quiet, 1 thread."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (scxl tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # conftest.py points xl.settings at the data copies in tests/data; the kernel is another process
    monkeypatch.setenv("SCXL_DATASETDIR", str(xl.settings.datasetdir))
    monkeypatch.setenv("SCXL_PROGRESS", "0")
    # the models are tiny: one thread each avoids oversubscribing small CI machines (2 CPUs)
    # when several test processes run at once; it does not change the results
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var not in os.environ:
            monkeypatch.setenv(var, "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir


def _failed_cell(nb) -> tuple[int, str] | None:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                return i, cell.source
    return None


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_runs(path, kernel_env, capsys):
    nb = nbformat.read(path, as_version=4)
    # appended check: the kernel runs the interpreter of the tests (e.g. the project's venv)
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys; print({_PREFIX_MARK!r} + sys.prefix)"))
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(kernel_env)}}
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        where = _failed_cell(nb)
        head = f"{path.name}: cell {where[0]} failed" if where else f"{path.name}: a cell failed"
        pytest.fail(f"{head}\n{_ANSI.sub('', str(err))}", pytrace=False)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n{path.name}: executed in {seconds:.1f} s")

    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    prefix = printed.split(_PREFIX_MARK, 1)[-1].strip()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve(), (
        f"the notebook kernel ran in {prefix!r}, not in the test interpreter's {sys.prefix!r}"
    )
    assert seconds < 300, f"{path.name} took {seconds:.0f} s; tutorials should run in well under 5 minutes"
