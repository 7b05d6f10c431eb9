"""Sphinx configuration of the scxl documentation.

Build (from the repository root, warnings are errors)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

Works offline and fast: no intersphinx, and the tutorials are rendered with the outputs and
figures stored in them, not executed here (``nb_execution_mode = "off"``). The outputs are
written into the notebooks by ``tutorials/execute.py``; ``tests/test_tutorials.py`` fails when
they are missing or older than the notebook's code, and ``tests/test_docs.py`` checks that every
tutorial page shows them. ``nitpicky`` is off so that references to objects of other packages
(AnnData, NumPy, torch) render as plain text instead of failing.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))  # document the working tree, also without an install
sys.path.insert(0, str(HERE / "_ext"))

import scxl  # noqa: E402

# -- generated sources: start from a clean slate, so that no stale stub outlives its object --
GENERATED = HERE / "generated"
shutil.rmtree(GENERATED, ignore_errors=True)
(GENERATED / "tutorials").mkdir(parents=True)

# tutorials live in <repo>/tutorials, stored with their outputs (tutorials/execute.py); copy the
# notebooks in as sources. A notebook without language_info makes myst-nb warn that it has no
# lexer for its code cells: fill in Python.
TUTORIALS = Path(os.environ.get("SCXL_DOCS_TUTORIALS", ROOT / "tutorials"))
for nb in sorted(TUTORIALS.glob("*.ipynb")):
    content = json.loads(nb.read_text(encoding="utf-8"))
    content.setdefault("metadata", {}).setdefault("language_info", {"name": "python"})
    (GENERATED / "tutorials" / nb.name).write_text(json.dumps(content, indent=1), encoding="utf-8")

# -- project ---------------------------------------------------------------------------------
project = "scxl"
author = "scxl developers"
copyright = f"{date.today().year}, {author}"
version = release = scxl.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # numpy-style docstrings
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "scxl_docs",  # docs/_ext: xl-api tables from __all__, tutorials toctree
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "README.md", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
nitpicky = False
default_role = "code"

# -- autodoc / autosummary -------------------------------------------------------------------
autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_preserve_defaults = False  # show values ("xl"), not source expressions (Key.ENSEMBLE)
autodoc_inherit_docstrings = False  # torch.nn.Module's docstrings are not ours
autoclass_content = "class"

# -- numpy-style docstrings (napoleon) -------------------------------------------------------
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = False
napoleon_use_param = True
napoleon_use_ivar = True  # "Attributes" as fields: no duplicate descriptions of dataclass fields
# scxl's Returns sections are prose listing every slot written (Scanpy's convention), not
# "name : type" fields: render them as a plain section
napoleon_custom_sections = ["Returns"]

# -- type hints: Sphinx's own, next to each parameter's description ---------------------------
# (sphinx-autodoc-typehints is not used: it rewrites numpydoc "Returns" sections, which in scxl
# are prose listing the slots written)
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
python_use_unqualified_type_names = True

# -- MyST / notebooks ------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist", "substitution"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # render the stored outputs (tutorials/execute.py writes them; the tests check them)
nb_merge_streams = True

# -- HTML ------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"scxl {release}"
html_theme_options = {"show_navbar_depth": 1, "home_page_in_toc": True}
html_show_sourcelink = False
