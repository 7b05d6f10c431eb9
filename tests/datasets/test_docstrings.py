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


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__name__)
def test_examples_run(func):
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    tests = finder.find(func, func.__name__, globs={})
    assert tests and tests[0].examples
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{func.__name__}: {result.failed} example(s) failed"


def test_boolean_parameters_are_keyword_only():
    for func in PUBLIC:
        for p in inspect.signature(func).parameters.values():
            if isinstance(p.default, bool):
                assert p.kind == p.KEYWORD_ONLY, f"{func.__name__}: {p.name}"
