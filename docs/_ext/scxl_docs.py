"""Small Sphinx extension for the scxl docs.

``xl-api``
    An autosummary table of every name in a module's ``__all__``, with generated stub pages.
    In a MyST page it must sit in an ``eval-rst`` block (autosummary builds its table from
    reStructuredText)::

        ```{eval-rst}
        .. xl-api:: scxl.tl
        ```

    Adding a function to a module's ``__all__`` adds it to the API page; nothing else to edit.
    ``:exclude:`` takes a comma-separated list of names to leave out.

``xl-tutorials``
    A toctree of the notebooks that ``conf.py`` copied into ``generated/tutorials``, or a short
    note when there are none (a glob that matches nothing would be a warning).

Stub pages for ``xl-api`` tables are written at ``builder-inited``, next to autosummary's own
stubs (``generated/``), by scanning the sources for the directive.
"""

from __future__ import annotations

import importlib
import posixpath
import re
import tempfile
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.ext.autosummary import Autosummary
from sphinx.util import logging

logger = logging.getLogger(__name__)

STUB_DIR = "generated"
TUTORIAL_DIR = "generated/tutorials"

# `.. xl-api:: scxl.tl` (also inside a MyST eval-rst block), optionally followed by `:exclude: a, b`
_DIRECTIVE = re.compile(r"^\s*\.\.\s+xl-api::\s*([\w.]+)\s*$")
_EXCLUDE = re.compile(r"^\s*:exclude:\s*(.*)$")


def _excluded(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


def public_names(module: str, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Fully qualified names of ``module.__all__``, in the order of ``__all__``, minus ``exclude``."""
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:
        raise ValueError(f"{module} has no __all__: list its public names there to document them")
    return [f"{module}.{name}" for name in names if name not in exclude]


class XlApi(Autosummary):
    """Autosummary table (with stubs under ``generated/``) of a module's ``__all__``."""

    required_arguments = 1
    has_content = False
    option_spec = {**Autosummary.option_spec, "exclude": directives.unchanged}

    def run(self):
        module = self.arguments[0]
        try:
            names = public_names(module, _excluded(self.options.get("exclude")))
        except Exception as exc:  # reported as a Sphinx warning
            logger.warning("xl-api: cannot list the public names of %s: %s", module, exc,
                           location=self.get_location())
            return []
        self.options.setdefault("toctree", STUB_DIR)
        self.options.setdefault("nosignatures", None)
        self.content = StringList(names, source=self.get_source_info()[0])
        return super().run()


class XlTutorials(TocTree):
    """A toctree of the copied tutorial notebooks, or a note when there are none."""

    has_content = False

    def run(self):
        found = sorted(
            d for d in self.env.found_docs if d.startswith(TUTORIAL_DIR + "/")
        )
        if not found:
            return [nodes.paragraph(text="No tutorial notebooks yet: they are added to "
                                         "tutorials/ in the repository.")]
        current = getattr(self.env, "current_document", None)  # Sphinx >= 8.2; env.docname before
        here = posixpath.dirname(current.docname if current is not None else self.env.docname)
        rel = [posixpath.relpath(d, here or ".") for d in found]
        self.options.setdefault("maxdepth", 1)
        self.content = StringList(rel, source=self.get_source_info()[0])
        return super().run()


def _scan_sources(srcdir: Path) -> list[tuple[str, str, set[str]]]:
    """``(docname, module, exclude)`` of every ``xl-api`` directive in the top-level sources."""
    found = []
    for path in sorted([*srcdir.glob("*.md"), *srcdir.glob("*.rst")]):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = _DIRECTIVE.match(line)
            if not m:
                continue
            exclude: set[str] = set()
            for nxt in lines[i + 1 : i + 4]:
                e = _EXCLUDE.match(nxt)
                if e:
                    exclude = _excluded(e.group(1))
                    break
            found.append((path.stem, m.group(1), exclude))
    return found


def generate_stubs(app: Sphinx) -> None:
    """Write autosummary stubs for every name listed by an ``xl-api`` directive."""
    from sphinx.ext.autosummary.generate import generate_autosummary_docs

    srcdir = Path(app.srcdir)
    names: list[str] = []
    for _, module, exclude in _scan_sources(srcdir):
        try:
            names += public_names(module, exclude)
        except Exception as exc:  # reported as a Sphinx warning
            logger.warning("xl-api: cannot list the public names of %s: %s", module, exc)
    if not names:
        return
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "xl_api.rst"
        listing.write_text(
            ".. autosummary::\n   :toctree: .\n\n" + "".join(f"   {n}\n" for n in dict.fromkeys(names)),
            encoding="utf-8",
        )
        generate_autosummary_docs(
            [str(listing)], output_dir=srcdir / STUB_DIR, suffix=".rst", app=app,
            imported_members=app.config.autosummary_imported_members,
            overwrite=app.config.autosummary_generate_overwrite,
        )


_SHORT_REPR = 120


def _attribute_doc(name: str, obj) -> list[str] | None:
    """The ``#:`` comment or string literal documenting a constant where it is *defined*.

    ``scxl.explain.EXPLAINERS`` is defined in ``scxl.explain._registry`` and re-exported; autodoc
    looks for the docstring only in ``scxl.explain`` and falls back to ``dict.__doc__``.
    """
    import sys

    from sphinx.pycode import ModuleAnalyzer

    modname, _, attr = name.rpartition(".")
    candidates = [modname] + sorted(m for m in list(sys.modules) if m.startswith(modname + "."))
    for mod in candidates:
        module = sys.modules.get(mod)
        if module is None or getattr(module, attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(mod).find_attr_docs()
        except Exception:  # no source: try the next module
            continue
        if ("", attr) in docs:
            return list(docs[("", attr)])
    return None


def _data_doc(app, what, name, obj, options, lines) -> None:
    """Docstrings of re-exported constants, and the value of short ones.

    A constant of a built-in type (dict, tuple, int, str) has no docstring of its own: use the
    one written where it is defined, never the type's (``dict() -> new empty dictionary ...``).
    Stub pages of data use ``:no-value:`` so that large objects (registries) are not dumped into
    the signature; short values are worth showing.
    """
    if what != "data" or type(obj).__module__ != "builtins":
        return
    doc = _attribute_doc(name, obj)
    lines[:] = [line.rstrip() for line in doc] if doc else []
    if isinstance(obj, tuple | str | int | float):
        text = repr(obj)
        if len(text) <= _SHORT_REPR:
            lines += ["", f"Value ``{text}``"]


def _always_reread(app, env, added, changed, removed) -> list[str]:
    """Re-read pages with ``xl-api`` or ``xl-tutorials`` on every build.

    Their output depends on ``__all__`` and on the notebooks present, which Sphinx does not track.
    """
    srcdir = Path(app.srcdir)
    docs = {
        path.stem
        for path in [*srcdir.glob("*.md"), *srcdir.glob("*.rst")]
        if re.search(r"xl-(api|tutorials)\b", path.read_text(encoding="utf-8"))
    }
    return sorted(docs - set(removed))


def setup(app: Sphinx) -> dict:
    """Register the directives and the stub generator."""
    app.setup_extension("sphinx.ext.autosummary")
    app.add_directive("xl-api", XlApi)
    app.add_directive("xl-tutorials", XlTutorials)
    # after autosummary's own stub generation (priority 500)
    app.connect("builder-inited", generate_stubs, priority=600)
    app.connect("env-get-outdated", _always_reread)
    app.connect("autodoc-process-docstring", _data_doc, priority=400)  # before napoleon
    return {"parallel_read_safe": True, "parallel_write_safe": True}
