"""The Examples of every xl.pl function run, and every function documents its sections."""

from __future__ import annotations

import doctest

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import scxl as xl

NEW = ["reproducibility", "top_genes", "specificity", "explainers", "contribution_vs_expression", "faithfulness",
       "contributions"]


@pytest.mark.parametrize("name", NEW)
def test_examples_run(name):
    func = getattr(xl.pl, name)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    tests = finder.find(func, name, globs={})
    try:
        for t in tests:
            runner.run(t)
    finally:
        plt.close("all")
    res = runner.summarize(verbose=False)
    assert res.attempted > 0 and res.failed == 0


@pytest.mark.parametrize("name", xl.pl.__all__)
def test_documented(name):
    doc = getattr(xl.pl, name).__doc__ or ""
    for section in ("Parameters", "Returns", "Examples"):
        assert section in doc, f"xl.pl.{name} lacks a {section} section"
