import doctest
import importlib

import pytest

MODULES = ["_agreement", "_specificity", "_enrichment", "_consistency", "_faithfulness"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    mod = importlib.import_module(f"scxl.metrics.{name}")
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert res.attempted > 0
    assert res.failed == 0


def test_public_functions_documented():
    import scxl.metrics as m

    for name in m.__all__:
        obj = getattr(m, name)
        if callable(obj) and not isinstance(obj, type):
            doc = obj.__doc__ or ""
            for section in ("Parameters", "Returns", "Examples"):
                assert section in doc, f"{name} lacks a {section} section"
