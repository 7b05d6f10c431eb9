import doctest
import inspect

import pytest

import scxl.datasets as datasets

PUBLIC = [getattr(datasets, name) for name in datasets.__all__]


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__name__)
def test_docstring_sections(func):
    doc = inspect.getdoc(func)
    assert "Returns\n-------" in doc
    assert "Examples\n--------" in doc and ">>> import scxl as xl" in doc
    params = [p for p in inspect.signature(func).parameters]
    if params:
        assert "Parameters\n----------" in doc
        for p in params:
            assert f"\n{p}\n" in doc, f"{func.__name__}: parameter {p} is not documented"


# The examples read the real data sets from tests/data (tests/conftest.py). Four of those are
# trimmed to fewer genes (tests/data/README.md), so an example printing the full file's
# dimensions cannot match there: on the trimmed copies the example still runs, and its output
# is compared with the copy's dimensions given here instead. test_examples_run_full_data checks
# the docstrings' own outputs on the full files.
TRIMMED_OUTPUT = {
    ("tcga6", "adata.shape"): "(364, 2345)",
    ("pancreas", "adata.shape"): "(739, 500)",
    ("hpa_tissue_profiles", "hpa.shape"): "(61, 3000)",
    ("eccite_pbmc", "{k: v.shape for k, v in mdata.mod.items()}"): (
        "{'rna': (500, 500), 'prot': (500, 49), 'hto': (500, 4)}"
    ),
}


def _run_examples(func, replace=None):
    """Run the docstring examples of ``func``; outputs in ``replace`` are compared with its values."""
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    tests = finder.find(func, func.__name__, globs={})
    assert tests and tests[0].examples
    replaced = set()
    for test in tests:
        for example in test.examples:
            key = (func.__name__, example.source.strip())
            if replace and key in replace:
                example.want = replace[key] + "\n"
                replaced.add(key)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{func.__name__}: {result.failed} example(s) failed"
    return replaced


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__name__)
def test_examples_run(func):
    replaced = _run_examples(func, TRIMMED_OUTPUT)
    assert replaced == {key for key in TRIMMED_OUTPUT if key[0] == func.__name__}  # none stale


@pytest.mark.parametrize("name", sorted({name for name, _ in TRIMMED_OUTPUT}))
def test_examples_run_full_data(name, full_data):
    _run_examples(getattr(datasets, name))


def test_boolean_parameters_are_keyword_only():
    for func in PUBLIC:
        for p in inspect.signature(func).parameters.values():
            if isinstance(p.default, bool):
                assert p.kind == p.KEYWORD_ONLY, f"{func.__name__}: {p.name}"
