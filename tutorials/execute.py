"""Execute the tutorials and store their outputs in the notebooks (the docs render them as stored).

Run from the repository root after changing a tutorial, or when the package's results changed::

    .venv/bin/python tutorials/execute.py                    # every notebook in tutorials/
    .venv/bin/python tutorials/execute.py pbmc_single_cell   # only this one (name or path)
    .venv/bin/python tutorials/execute.py --check            # exit 1 if stored outputs are missing or stale

Each notebook runs top to bottom in a fresh kernel with this interpreter, in a temporary working
directory, on the small data copies in ``tests/data`` (as the test suite runs them; ``--datasetdir``
takes another folder), one thread per library, without progress bars. It is written back with its
outputs, cleaned so that a re-run changes only what really changed: no execution timestamps, no
local paths (the repository root is cut from every printed path), and every figure a PNG at the
notebook's own dpi. An output over ``MAX_OUTPUT_BYTES`` or a notebook over ``MAX_NOTEBOOK_BYTES``
is refused (print less, or lower the dpi), so the repository stays small.

The notebook's metadata records ``scxl.code_sha256``, a fingerprint of its code cells.
``tests/test_tutorials.py`` fails when a notebook has no stored outputs or its code changed since
they were stored (run this script), and, when it executes the tutorials, when a fresh run produces
other kinds of output (a figure, a table, printed text) than the stored one in any cell.
The functions here are shared with that test, so both run the notebooks the same way.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
TEST_DATA = ROOT / "tests" / "data"
CELL_TIMEOUT = 600  # seconds per cell
MAX_OUTPUT_BYTES = 300_000  # one output (a figure, a table)
MAX_NOTEBOOK_BYTES = 2_500_000  # one stored notebook, outputs included
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# where a warning raised in a cell says it comes from: the kernel's temporary file of the cell
CELL_FILE = re.compile(r"[^\s'\"]*ipykernel_\d+[/\\]\d+\.py")
METADATA_KEY = "scxl"


def notebooks() -> list[Path]:
    """The tutorial notebooks, sorted by name."""
    return sorted(TUTORIALS.glob("*.ipynb"))


def code_fingerprint(nb) -> str:
    """sha256 of the sources of the notebook's code cells, in order (markdown edits do not count)."""
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode("utf-8")).hexdigest()


def kernel_environment(tmp: Path, datasetdir: Path | str = TEST_DATA) -> dict[str, str]:
    """Environment variables for executing the tutorials; writes a kernel spec below ``tmp``.

    The kernel spec ``python3`` points at this interpreter (``JUPYTER_PATH`` puts it first), so the
    notebooks run with the interpreter that runs the script or the tests (e.g. the project's venv).
    """
    spec_dir = Path(tmp) / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    env = {
        "JUPYTER_PATH": str(Path(tmp) / "jupyter"),
        "SCXL_DATASETDIR": str(Path(datasetdir).resolve()),
        "SCXL_PROGRESS": "0",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    # the models are tiny: one thread each avoids oversubscribing small machines (2 CPUs in CI)
    # when several processes run at once; it does not change the results
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = os.environ.get(var, "1")
    return env


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` (the kernel inherits it) and restore it afterwards."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class NotebookFailed(RuntimeError):
    """A cell raised; the message names the notebook, the cell and the traceback."""


def execute(nb, workdir: Path, *, name: str = "notebook") -> float:
    """Execute ``nb`` in place in a fresh ``python3`` kernel in ``workdir``; returns the seconds taken.

    The caller sets up the environment (:func:`kernel_environment`, :func:`environment`).
    """
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False, coalesce_streams=True,
        store_widget_state=False, resources={"metadata": {"path": str(workdir)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        where = next(
            (i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and any(o.get("output_type") == "error" for o in cell.get("outputs", []))),
            None,
        )
        head = f"{name}: cell {where} failed" if where is not None else f"{name}: a cell failed"
        raise NotebookFailed(f"{head}\n{ANSI.sub('', str(err))}") from None
    return time.perf_counter() - start


def _replace_paths(text: str, paths: list[tuple[str, str]]) -> str:
    for old, new in paths:
        text = text.replace(old, new)
    return CELL_FILE.sub("<cell>", text)


def shrink_png(data: str) -> str:
    """A base64 PNG re-encoded with a 256-colour palette, if that is smaller (about a quarter).

    Plots have few colours: the palette is indistinguishable at the notebook's dpi.
    """
    from PIL import Image

    raw = base64.b64decode(data)
    image = Image.open(io.BytesIO(raw))
    image.load()
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB")  # opaque: the palette needs no alpha
    if image.mode == "RGB":
        image = image.quantize(256, method=Image.Quantize.MEDIANCUT)
    elif image.mode == "RGBA":
        image = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    else:
        return data
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii") + "\n" if buf.tell() < len(raw) else data


def clean(nb, workdir: Path) -> None:
    """Make the executed ``nb`` fit for storing: no timestamps, no local paths, no ANSI colours, small PNGs."""
    paths = [(str(workdir) + os.sep, ""), (str(workdir), "."), (str(ROOT) + os.sep, ""), (str(ROOT), ".")]
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            if "text" in out:
                out.text = ANSI.sub("", _replace_paths(out.text, paths))
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in out.get("data", {}):
                    out.data[mime] = _replace_paths(out.data[mime], paths)
            if "image/png" in out.get("data", {}):
                out.data["image/png"] = shrink_png(out.data["image/png"])
            if out.get("output_type") == "error":
                out.traceback = [ANSI.sub("", _replace_paths(t, paths)) for t in out.traceback]


def output_kinds(cell) -> list[str]:
    """What a code cell shows: ``"figure"``, ``"table"`` (HTML), ``"text"`` (a value) and ``"stdout"``.

    Stderr (log lines, warnings) is left out: which warnings appear can depend on the versions of
    other packages.
    """
    kinds = set()
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            if out.get("name") == "stdout":
                kinds.add("stdout")
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "image/png" in data or "image/svg+xml" in data:
                kinds.add("figure")
            elif "text/html" in data:
                kinds.add("table")
            elif data:
                kinds.add("text")
        elif kind == "error":
            kinds.add("error")
    return sorted(kinds)


def problems(nb, name: str = "notebook") -> list[str]:
    """Why the stored outputs of ``nb`` cannot be shown as they are (empty list: fine)."""
    found = []
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    unexecuted = [i for i, c in code if c.execution_count is None]
    if unexecuted:
        found.append(f"{name}: cells {unexecuted} have not been executed")
    recorded = nb.metadata.get(METADATA_KEY, {}).get("code_sha256")
    if recorded is None:
        found.append(f"{name}: no stored outputs (no metadata.{METADATA_KEY}.code_sha256)")
    elif recorded != code_fingerprint(nb):
        found.append(f"{name}: the code changed since its outputs were stored")
    errors = [i for i, c in code if "error" in output_kinds(c)]
    if errors:
        found.append(f"{name}: cells {errors} stored an error")
    if not any("figure" in output_kinds(c) for _, c in code):
        found.append(f"{name}: no figure among the stored outputs")
    for i, cell in code:
        for out in cell.outputs:
            size = len(json.dumps(out))
            if size > MAX_OUTPUT_BYTES:
                found.append(f"{name}: cell {i} has an output of {size / 1e3:.0f} kB (limit {MAX_OUTPUT_BYTES / 1e3:.0f} kB)")
    size = len(nbformat.writes(nb).encode("utf-8"))
    if size > MAX_NOTEBOOK_BYTES:
        found.append(f"{name}: {size / 1e6:.1f} MB with outputs (limit {MAX_NOTEBOOK_BYTES / 1e6:.1f} MB)")
    return found


def png_sizes(nb) -> list[int]:
    """Bytes of every stored PNG."""
    return [
        len(base64.b64decode(out.data["image/png"]))
        for cell in nb.cells if cell.cell_type == "code"
        for out in cell.outputs if "image/png" in out.get("data", {})
    ]


def run(path: Path, *, datasetdir: Path | str = TEST_DATA, write: bool = True) -> tuple[object, float]:
    """Execute the notebook at ``path``, clean it, record its fingerprint and (``write``) store it."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # a clean start: nothing of an earlier run survives a failure
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    with tempfile.TemporaryDirectory(prefix="scxl-tutorial-") as tmp:
        tmp = Path(tmp).resolve()
        workdir = tmp / "work"
        workdir.mkdir()
        with environment(kernel_environment(tmp, datasetdir)):
            seconds = execute(nb, workdir, name=path.name)
        clean(nb, workdir)
    nb.metadata[METADATA_KEY] = {"code_sha256": code_fingerprint(nb)}
    nb.metadata["language_info"] = {"name": "python"}  # not the executing machine's exact version
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nbformat.validate(nb)
    if write:
        found = problems(nb, path.name)
        if found:
            raise NotebookFailed("\n".join(found))
        nbformat.write(nb, path)
    return nb, seconds


def _resolve(name: str) -> Path:
    path = Path(name)
    if path.suffix != ".ipynb":
        path = TUTORIALS / f"{name}.ipynb"
    if not path.is_file():
        raise SystemExit(f"no notebook {path}")
    return path.resolve()


def main(argv: list[str] | None = None) -> int:
    """Command line: execute and store, or ``--check``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="names (pbmc_single_cell) or paths; default: all")
    parser.add_argument("--check", action="store_true", help="only check the stored outputs, execute nothing")
    parser.add_argument("--datasetdir", default=str(TEST_DATA), help="data folder (default: tests/data)")
    args = parser.parse_args(argv)
    paths = [_resolve(n) for n in args.notebooks] or notebooks()
    if args.check:
        found = [p for path in paths for p in problems(nbformat.read(path, as_version=4), path.name)]
        print("\n".join(found) or f"stored outputs of {len(paths)} notebooks are current")
        return 1 if found else 0
    status = 0
    for path in paths:
        try:
            nb, seconds = run(path, datasetdir=args.datasetdir)
        except NotebookFailed as err:
            print(err, file=sys.stderr)
            status = 1
            continue
        pngs = png_sizes(nb)
        print(f"{path.name}: executed in {seconds:.1f} s; {len(pngs)} figures, {sum(pngs) / 1e3:.0f} kB of PNG; "
              f"{path.stat().st_size / 1e3:.0f} kB stored")
    return status


if __name__ == "__main__":
    sys.exit(main())
