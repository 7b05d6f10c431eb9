"""Keep subnormal floats out of the weights: on CPUs they make arithmetic several times slower.

A float32 below about 1.2e-38 in magnitude is *subnormal*, and x86 CPUs compute with it through
a slow microcode path unless flush-to-zero is set, which ``torch.set_flush_denormal`` does for
the calling thread only, not for the threads that run a matrix product. Training produces such
values: the first-layer weights of genes that are (almost) never expressed, and their Adam
momentum, decay geometrically towards zero under weight decay. Measured on a 2-core AVX-512 CPU
(50,000 cells × 2,000 genes, 10 MLPs): after 8 epochs (about 1,400 steps) about 1 % of the
first-layer weights were below 1e-30 and some were subnormal; a training epoch took 6.8 s
instead of 3.5 s, and attribution's forward product took 3.3× and its pull-back through the
first layer 5× as long.

Values below :data:`TINY` (1e-30) are set to exactly 0, in float32, bfloat16 and float64 tensors
(float16 is left alone: its subnormals start at 6e-5, which are real values, and CPUs compute
half precision in float32 anyway). 1e-30 is far below anything float32 can add to the weights
that matter (about 0.01–1, 24-bit mantissas), so a flushed value changes results at the level
of rounding only — but it does change rounding: members trained with the flush are not
bit-identical to members trained by scxl versions without it. The interval
:data:`FLUSH_EVERY` is set by measurement (``benchmarks/subnormal_decay.py``): under Adam with
weight decay and no gradient from the data, the fastest a weight or its momentum went from 1e-30
to subnormal was 59 steps (learning rates 1e-3–1e-1, weight decays 1e-4–1e-2), so a flush every
32 steps catches every value before it becomes subnormal.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch

#: Magnitudes below this are set to 0 (:func:`flush_tiny_`).
TINY = 1e-30

#: Optimiser steps between two flushes during training (each member by its own step count).
FLUSH_EVERY = 32


def _applies(t: torch.Tensor) -> bool:
    """Floating-point dtypes whose subnormal range lies below :data:`TINY` (not float16)."""
    return t.is_floating_point() and float(torch.finfo(t.dtype).tiny) < TINY


@torch.no_grad()
def flush_tiny_(tensors: Iterable[torch.Tensor]) -> None:
    """Set every value of magnitude below :data:`TINY` to 0, in place (float32, bfloat16, float64 tensors)."""
    for t in tensors:
        if _applies(t):
            t.masked_fill_(t.abs() < TINY, 0)


@torch.no_grad()
def has_tiny(t: torch.Tensor) -> bool:
    """Whether ``t`` holds a value below :data:`TINY` in magnitude that is not 0 (see :func:`flush_tiny_`)."""
    return _applies(t) and bool(((t.abs() < TINY) & (t != 0)).any())


@torch.no_grad()
def without_tiny(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when no value is tiny (:func:`has_tiny`); else a copy with those values at 0."""
    return t.masked_fill(t.abs() < TINY, 0) if has_tiny(t) else t


@torch.no_grad()
def module_without_tiny(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` itself when no parameter holds a tiny value (:func:`has_tiny`), else a flushed copy.

    The module is never changed (e.g. the members of an ensemble trained before the flush).
    """
    if not any(has_tiny(p) for p in module.parameters()):
        return module
    flushed = copy.deepcopy(module)
    flush_tiny_(flushed.parameters())
    return flushed
