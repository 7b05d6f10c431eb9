"""The attribution engine: every member of an ensemble, chunked over cells, seeded, memory-bound.

:func:`attribute_modules` is the one entry point the AnnData glue (``xl.tl.attribute``) calls.
It takes arrays (or a row reader) and modules and returns an :class:`AttributionResult`; it
knows nothing of AnnData. Everything explainer- or reference-specific comes from the registries
(:data:`~scxl.explain.EXPLAINERS`, :data:`~scxl.explain.REFERENCE_KINDS`): the engine is one
generic loop, ``chunks of cells → members → draws (repeats × SmoothGrad samples)``.

Per chunk, the per-member attributions (averaged over draws) are reduced to per-member per-group
sums and aggregated over members (mean or median), so neither the per-member per-cell values nor
the ``cells × references × genes`` products ever exist for more than one chunk.

Randomness comes from one entropy value (``random_state``) through
:class:`numpy.random.SeedSequence` keys that do not depend on the chunking:

* references of member ``m``, repeat ``r``: key ``(0, m, r)`` — drawn once per (member, repeat);
* SmoothGrad noise of member ``m``, repeat ``r``, sample ``s`` for the ``j``-th block of
  :data:`NOISE_BLOCK` consecutive cells: key ``(1, m, r, s, j)``.

Hence the same seed gives the same output for any ``batch_size`` (up to floating-point rounding
of differently-shaped matrix products) and bit-identical output for the same ``batch_size`` and
device.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .._device import resolve_device
from .._logging import logger, warn
from .._logging import progress as _progress_bar
from .._subnormal import flush_tiny_, module_without_tiny
from .._types import Aggregate, Precision
from ._correction import BlockIndex, correct_gradients
from ._fast import FoldedMLP, fold_mlp, gradient, is_foldable
from ._references import (
    FixedReferences,
    GeneStats,
    ReferenceSampler,
    ReferenceSet,
    compute_gene_stats,
    make_reference_sampler,
    seeded,
)
from ._registry import (
    ExplainerSpec,
    KernelOptions,
    get_explainer,
    resolve_n_baselines,
    resolve_reference,
)

DEFAULT_MEMORY_LIMIT = 2**30
"""Default memory bound of one chunk (bytes)."""

NOISE_BLOCK = 64
"""Cells per SmoothGrad noise block (the unit of noise seeding)."""


@dataclass
class AttributionResult:
    """Output of :func:`attribute_modules`.

    Attributes
    ----------
    method
        Explainer name.
    attributions
        ``(n_cells, n_genes)`` float32: per-cell attribution towards the cell's target,
        averaged over references, repeats and noise samples, then aggregated over members
        (``aggregate``); ``None`` with ``store_cells=False``.
    group_means
        ``(n_groups, n_genes)`` float32: mean of the aggregated per-cell attributions over the
        cells of each group (``NaN`` for empty groups).
    member_group_means
        ``(n_members, n_groups, n_genes)`` float32: the same per member (for ``scores_std`` and
        top-k agreement across members).
    group_counts
        ``(n_groups,)`` cells per group.
    angles
        ``(n_cells, n_blocks)`` float32 mean off-simplex angle (degrees) per one-hot block, with
        gradient correction; else ``None``.
    block_ids
        Block ids matching the columns of ``angles``; else ``None``.
    fast
        ``(n_members,)`` bool: whether the member ran through an exact fast kernel.
    seconds
        Wall time of the whole call.
    member_seconds
        ``(n_members,)`` time spent in each member's kernels.
    presence_group_means, member_presence_group_means
        The same as ``group_means`` and ``member_group_means`` for the *presence* part of the
        contributions (genes above their reference, see :attr:`ExplainerSpec.direction
        <scxl.explain.ExplainerSpec>`); the rest is the *absence* part. ``None`` for explainers
        without a direction or with ``split=False``.
    sums
        The float64 group sums behind the means (``"member"``, ``"aggregated"`` and, with a
        direction, ``"member_presence"``, ``"presence"``), for combining runs over blocks of
        cells (:func:`scxl.explain.attribute_dask`).
    params
        Effective settings (method, references, n_baselines, n_repeats actually run,
        stochastic, smoothgrad, aggregate, batch_size, device, precision, random_state, ...).
    """

    method: str
    attributions: np.ndarray | None
    group_means: np.ndarray
    member_group_means: np.ndarray
    group_counts: np.ndarray
    angles: np.ndarray | None
    block_ids: np.ndarray | None
    fast: np.ndarray
    seconds: float
    member_seconds: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    presence_group_means: np.ndarray | None = None
    member_presence_group_means: np.ndarray | None = None
    sums: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class AttributionConfig:
    """Settings of one attribution run (what :func:`attribute_modules` accepts as keywords).

    Attributes
    ----------
    references
        Reference kind (a name in :data:`~scxl.explain.REFERENCE_KINDS`, e.g. ``"zero"``,
        ``"universal"``, ``"sample"``, ``"rest"``) or an array ``(n_baselines, G)``; default: the
        explainer's (``"mean"``; ``"sample"`` for ``deeplift_shap``). Must be ``None`` for
        explainers that take no reference.
    n_baselines
        References per cell and draw; default: the explainer's, else the kind's (20 for random
        kinds, 1 for ``"mean"`` and ``"zero"``; an array is used as given).
    smoothgrad
        ``(n_samples, noise_frac)``: average over ``n_samples`` noisy copies of each cell with
        Gaussian noise of sd ``noise_frac × sd`` of each gene (SmoothGrad, as Captum's
        ``NoiseTunnel(..., nt_type="smoothgrad")``).
    n_repeats
        Independent repeats (new references and noise) averaged per member. Only stochastic
        settings are repeated: a deterministic setting asked for ``n_repeats > 1`` is computed
        once, with a warning.
    aggregate
        ``"mean"`` or ``"median"`` over members, per cell and gene.
    absolute
        Absolute value of the saliency map (Captum's default).
    n_steps
        Integration steps of Captum's Integrated Gradients (models without the exact kernel).
    batch_size
        Cells per chunk; default: the largest chunk within ``memory_limit_bytes``.
    memory_limit_bytes
        Memory bound of one chunk (see :func:`chunk_bytes_per_cell`).
    device
        ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA when available) or ``None`` (``xl.settings.device``,
        ``"auto"`` by default).
    precision
        ``"single"`` (float32) or ``"double"`` (float64) computation; results are float32.
    use_fast
        Use the exact fast kernels where they apply (``False`` forces the general route).
    random_state
        Seed (or Generator) of all randomness.
    split
        Also compute the presence part of every contribution (explainers with a direction).
    """

    references: str | np.ndarray | None = None
    n_baselines: int | None = None
    smoothgrad: tuple[int, float] | None = None
    n_repeats: int = 1
    aggregate: Aggregate = "mean"
    absolute: bool = True
    n_steps: int = 50
    batch_size: int | None = None
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT
    device: str | torch.device | None = None
    precision: Precision = "single"
    use_fast: bool = True
    random_state: int | np.random.Generator | None = 0
    split: bool = True

    def replace(self, **changes: Any) -> AttributionConfig:
        """A copy with some fields changed."""
        return AttributionConfig(**{**asdict(self), **changes})


# --------------------------------------------------------------------------------------------
# input adapter


class _Rows:
    """Uniform row access to an array, sparse matrix, ``Matrix``-like object or callable."""

    def __init__(self, X: Any, n_obs: int | None) -> None:
        self.X = X
        if hasattr(X, "rows") and callable(X.rows) and hasattr(X, "shape"):
            self._read = X.rows
            self.n_obs, self.n_features = int(X.shape[0]), int(X.shape[1])
        elif hasattr(X, "shape") and hasattr(X, "__getitem__"):
            self._read = self._index
            self.n_obs, self.n_features = int(X.shape[0]), int(X.shape[1])
        elif callable(X):
            if n_obs is None:
                raise ValueError("pass targets so the number of cells of a callable reader is known")
            self._read = X
            self.n_obs = int(n_obs)
            self.n_features = int(np.asarray(X(np.arange(min(1, self.n_obs)))).shape[1])
        else:
            raise TypeError(f"X must be an array, a sparse matrix, a Matrix or a callable, got {type(X).__name__}")

    def _index(self, idx):
        block = self.X[idx]
        if hasattr(block, "toarray"):
            block = block.toarray()
        return block

    def __call__(self, idx: slice | np.ndarray) -> np.ndarray:
        block = np.asarray(self._read(idx), dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.n_features:
            raise ValueError(f"row reader returned shape {block.shape}, expected (k, {self.n_features})")
        return block

    def chunks(self, size: int):
        for start in range(0, self.n_obs, size):
            yield self(slice(start, min(start + size, self.n_obs)))

    def stored_chunks(self, size: int):
        """Row blocks as stored, for :func:`~scxl.explain.compute_gene_stats`.

        SciPy CSR where the data are sparse (their statistics come from the stored values,
        without densifying), dense otherwise.
        """
        stored = getattr(self.X, "stored_rows", None)
        for start in range(0, self.n_obs, size):
            sl = slice(start, min(start + size, self.n_obs))
            if stored is not None:
                block = stored(sl)
            elif sparse.issparse(self.X):
                block = sparse.csr_matrix(self.X[sl], dtype=np.float32)
            else:
                yield self(sl)
                continue
            if block.ndim != 2 or block.shape != (sl.stop - sl.start, self.n_features):
                raise ValueError(f"row reader returned shape {block.shape}, expected ({sl.stop - sl.start}, {self.n_features})")
            yield block


# --------------------------------------------------------------------------------------------
# memory model


def _activation_bytes(module: nn.Module, n_features: int, device, dtype) -> int:
    """Bytes of all leaf-module outputs for one sample (dry forward)."""
    total = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in module.modules() if len(list(m.children())) == 0]
    try:
        with torch.no_grad():
            module(torch.zeros(2, n_features, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return max(total[0] // 2, 1)


def chunk_bytes_per_cell(
    method: str,
    n_features: int,
    *,
    n_hidden: int = 0,
    n_baselines: int = 1,
    n_members: int = 1,
    fast: bool = True,
    activation_bytes: int = 0,
    itemsize: int = 4,
    n_steps: int = 50,
    aggregate: str = "mean",
    gene_block: int = 256,
    stacked: bool = False,
) -> int:
    """Estimated peak bytes per cell of one chunk (the engine's memory model).

    The engine's own buffers (input, noisy input, accumulators, per-member values for the
    median) plus the explainer's kernel temporaries from its registry entry
    (:attr:`ExplainerSpec.cost <scxl.explain.ExplainerSpec>`).

    Parameters
    ----------
    method
        Explainer name.
    n_features
        Genes ``G``.
    n_hidden
        Hidden units ``H`` (fast path).
    n_baselines
        References per cell ``B``.
    n_members
        Ensemble size (per-member values are held for one chunk).
    fast
        Whether the fast kernel runs (else the general route).
    activation_bytes
        Bytes of one sample's activations (general route).
    itemsize
        Bytes per value of the computation dtype.
    n_steps
        Integration steps (Captum Integrated Gradients; kept for the signature, the cost model
        runs one step at a time).
    aggregate
        ``"mean"`` or ``"median"``.
    gene_block
        Genes ablated at once (fast feature ablation).
    stacked
        All members run at once (:mod:`scxl.explain._stacked`): their temporaries coexist.

    Returns
    -------
    Bytes per cell.
    """
    cost = get_explainer(method).cost
    g, h, b, d = n_features, max(n_hidden, 1), max(n_baselines, 1), itemsize
    # input, noisy input, output accumulators and engine buffers (float32 + float64 sums)
    base = g * d * 6 + g * 4 * 2
    base += g * 4 * n_members if aggregate == "median" else g * 4 * 2
    kern = cost.fast_bytes(g, h, b, d) if fast else cost.general_bytes(g, max(activation_bytes, g * d), b, d)
    if stacked:  # per member: output, presence, one reference's product, difference, pull-back; hidden buffers
        kern = n_members * (g * d * 5 + h * d * 6 * b) + g * 4 * 2 * n_members
    return int(base + kern)


def choose_batch_size(bytes_per_cell: int, memory_limit_bytes: int, *, fixed_bytes: int = 0, n_cells: int | None = None) -> int:
    """Largest chunk of cells whose estimated memory stays within the limit (at least 1).

    Parameters
    ----------
    bytes_per_cell
        From :func:`chunk_bytes_per_cell`.
    memory_limit_bytes
        Memory bound of one chunk.
    fixed_bytes
        Memory that does not scale with the chunk (workspaces).
    n_cells
        Upper bound (the number of cells).

    Returns
    -------
    Chunk size ``c`` with ``fixed_bytes + c * bytes_per_cell <= memory_limit_bytes`` (or 1
    when even one cell exceeds the limit).
    """
    free = memory_limit_bytes - fixed_bytes
    size = max(1, free // max(bytes_per_cell, 1))
    if n_cells is not None:
        size = min(size, max(n_cells, 1))
    return int(size)


# --------------------------------------------------------------------------------------------
# members and seeding


class _Member:
    """One ensemble member prepared for attribution (folded weights or an eval-mode module)."""

    def __init__(self, module: nn.Module, spec: ExplainerSpec, *, device, dtype, use_fast: bool) -> None:
        self.original = module
        self.was_training = module.training
        self.fast = bool(use_fast and spec.fast_kernel and is_foldable(module))
        self.folded: FoldedMLP | None = None
        self.module: nn.Module | None = None
        module.eval()
        try:
            if self.fast:
                self.folded = fold_mlp(module, dtype=dtype, device=device)
                return
            params = list(module.parameters()) + list(module.buffers())
            same = all(p.device == device for p in params) and all(
                p.dtype == dtype for p in module.parameters()
            )
            # subnormal-range weights slow CPU products (scxl._subnormal): dropped in a copy
            self.module = module_without_tiny(module)
            if not same:
                self.module = (copy.deepcopy(module) if self.module is module else self.module).to(device=device, dtype=dtype).eval()
                flush_tiny_(self.module.parameters())  # (values the dtype conversion made tiny)
        except Exception:
            self.restore()
            raise

    @property
    def n_hidden(self) -> int:
        return self.folded.n_hidden if self.folded is not None else 0

    def restore(self) -> None:
        self.original.train(self.was_training)

    def n_features_and_classes(self, n_features: int, device, dtype) -> tuple[int, int]:
        if self.fast:
            return self.folded.n_features, self.folded.n_classes
        with torch.no_grad():
            c = self.module(torch.zeros(2, n_features, device=device, dtype=dtype)).shape[1]
        return getattr(self.module, "n_features", n_features), c


def _is_grid_cnn(module: nn.Module) -> bool:
    return hasattr(module, "index") and hasattr(module, "side") and hasattr(module, "last_conv")


def _entropy(random_state) -> int:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, np.integer | int) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    raise TypeError(f"random_state must be an int, a numpy Generator or None, got {random_state!r}")


_rng = seeded  # the generator of one draw, keyed by (purpose, member, repeat, ...)


def _noise(entropy, m, r, s, start, stop, n_obs, n_features, dev, dtype) -> torch.Tensor:
    """Standard normal noise for cells ``start:stop``, seeded per block of NOISE_BLOCK cells."""
    parts = []
    first, last = start // NOISE_BLOCK, (stop - 1) // NOISE_BLOCK
    for j in range(first, last + 1):
        b0 = j * NOISE_BLOCK
        size = min(NOISE_BLOCK, n_obs - b0)
        block = _rng(entropy, 1, m, r, s, j).standard_normal((size, n_features), dtype=np.float32)
        lo, hi = max(start, b0) - b0, min(stop, b0 + size) - b0
        parts.append(block[lo:hi])
    return torch.as_tensor(np.concatenate(parts), device=dev).to(dtype)


def _median(stack: torch.Tensor) -> torch.Tensor:
    """Median over dim 0, averaging the two middle values for an even count (as NumPy)."""
    k = stack.shape[0]
    srt = stack.sort(0).values
    if k % 2:
        return srt[k // 2]
    return (srt[k // 2 - 1] + srt[k // 2]) / 2


# --------------------------------------------------------------------------------------------
# the plan: everything validated and resolved before the loop


@dataclass
class _Plan:
    spec: ExplainerSpec
    members: list[_Member]
    rows: _Rows
    targets: np.ndarray
    groups: np.ndarray
    n_groups: int
    sampler: ReferenceSampler | None
    noise_sd: torch.Tensor | None
    n_noise: int
    n_repeats: int
    block_index: BlockIndex | None
    batch_size: int
    opts: KernelOptions
    entropy: int
    device: torch.device
    dtype: torch.dtype
    cfg: AttributionConfig
    ref_cache: dict = field(default_factory=dict)
    fixed_refs: torch.Tensor | None = None  # the stacked kernels' tensor of a run's one draw (fixed_reference_tensor)
    cache_refs: bool = False
    stats: GeneStats | None = None
    stack: Any = None  # StackedMLP when every member runs through one stacked kernel
    group_only: bool = False  # group sums straight from the kernel (_stacked.GROUP_SUMS)
    row_offset: int = 0  # position of the first row in the whole data set (SmoothGrad noise keys)
    total_obs: int | None = None

    @property
    def n_obs(self) -> int:
        return self.rows.n_obs

    @property
    def n_features(self) -> int:
        return self.rows.n_features

    def fixed_reference_tensor(self) -> torch.Tensor:
        """The one draw of a sampler that is not random, as one tensor for every chunk and repeat.

        Registered with the stack, whose kernels then compute its pre-activations once.
        """
        if self.fixed_refs is None:
            self.fixed_refs = torch.as_tensor(self.references(0, 0).shared, device=self.device).to(self.dtype)
            self.stack.keep_references(self.fixed_refs)
        return self.fixed_refs

    def references(self, m: int, r: int) -> ReferenceSet | None:
        """References of member ``m``, repeat ``r`` (one draw, cached when small or fixed)."""
        if self.sampler is None:
            return None
        key = (m, r) if self.sampler.random else (0, 0)
        if key not in self.ref_cache:
            rs = self.sampler.draw_for(self.entropy, *key)
            if not (self.cache_refs or not self.sampler.random):
                return rs
            self.ref_cache[key] = rs
        return self.ref_cache[key]


def _prepare_members(modules, spec, cfg, n_features, dev, dtype) -> tuple[list[_Member], int, int]:
    """Members in eval mode (folded where a fast kernel applies); their classes and activation bytes."""
    if isinstance(modules, nn.Module):
        modules = [modules]
    modules = list(modules)
    if not modules:
        raise ValueError("modules is empty: pass at least one trained module")
    for m in modules:
        if not isinstance(m, nn.Module):
            raise TypeError(f"modules must be torch.nn.Module objects, got {type(m).__name__}")
    if spec.model_types == ("cnn",):
        for m in modules:
            if not _is_grid_cnn(m):
                raise ValueError(f"method={spec.name!r} applies to grid CNN models only (scxl.models.GridCNN), got {type(m).__name__}")
    members: list[_Member] = []
    try:
        n_classes, act_bytes = None, 0
        for m in modules:
            mem = _Member(m, spec, device=dev, dtype=dtype, use_fast=cfg.use_fast)
            members.append(mem)
            nf, c = mem.n_features_and_classes(n_features, dev, dtype)
            if nf != n_features:
                raise ValueError(f"a module takes {nf} genes but X has {n_features}")
            if not mem.fast:
                act_bytes = max(act_bytes, _activation_bytes(mem.module, n_features, dev, dtype))
            if n_classes is not None and c != n_classes:
                raise ValueError("all modules must have the same number of classes")
            n_classes = c
    except Exception:
        for mem in members:
            mem.restore()
        raise
    return members, n_classes, act_bytes


def _prepare_groups(targets, groups, n_groups, n_obs, n_classes) -> tuple[np.ndarray, int]:
    if targets.size and (targets.min() < 0 or targets.max() >= n_classes):
        raise ValueError(f"targets must be class indices in [0, {n_classes}); got values in [{targets.min()}, {targets.max()}]")
    if groups is None:
        groups = targets.astype(np.int64)
        n_groups = n_classes if n_groups is None else n_groups
    groups = np.asarray(groups)
    if groups.shape != (n_obs,) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"groups must be an integer array of length {n_obs}")
    groups = groups.astype(np.int64)
    if n_groups is None:
        n_groups = int(groups.max()) + 1 if groups.size else 0
    if groups.size and (groups.min() < -1 or groups.max() >= n_groups):
        raise ValueError(f"groups must be in [-1, {n_groups})")
    return groups, int(n_groups)


def _prepare_sampler(spec, cfg, rows, groups, n_groups, stats, stat_rows) -> tuple[ReferenceSampler | None, GeneStats | None]:
    """The reference sampler of the run (statistics streamed over the rows when the kind needs them)."""
    from ._references import get_reference_kind

    if isinstance(cfg.references, ReferenceSampler):  # e.g. FixedReferences drawn on a Dask client
        if not spec.needs_reference:
            raise ValueError(f"method={spec.name!r} takes no reference; pass references=None")
        return cfg.references, stats
    kind = resolve_reference(spec, cfg.references)
    if kind is None:
        return None, stats
    n_baselines = resolve_n_baselines(spec, kind, cfg.n_baselines)
    if isinstance(kind, str):
        ref_kind = get_reference_kind(kind)
        if ref_kind.per_group and (groups < 0).any():
            raise ValueError(f"references={kind!r} needs a group for every cell; some groups are -1")
        needs = set(ref_kind.needs)
        if needs & {"stats", "group_stats"} and (stats is None or ("group_stats" in needs and stats.group_mean is None)):
            stats = compute_gene_stats(rows.stored_chunks(stat_rows), groups if "group_stats" in needs else None, n_groups=n_groups)
    sampler = make_reference_sampler(
        kind, n_features=rows.n_features, n_baselines=n_baselines, stats=stats, read_rows=rows,
        n_obs=rows.n_obs, groups=groups, n_groups=n_groups,
    )
    return sampler, stats


def _prepare_noise(smoothgrad, gene_sd, stats, rows, stat_rows, dev, dtype):
    if smoothgrad is None:
        return None, 1, None
    try:
        n_samples, noise_frac = int(smoothgrad[0]), float(smoothgrad[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError("smoothgrad must be (n_samples, noise_frac)") from None
    if n_samples < 1 or noise_frac < 0:
        raise ValueError(f"smoothgrad needs n_samples >= 1 and noise_frac >= 0, got {smoothgrad}")
    if gene_sd is None:
        gene_sd = (stats if stats is not None else compute_gene_stats(rows.stored_chunks(stat_rows))).sd
    gene_sd = np.asarray(gene_sd, dtype=np.float64)
    if gene_sd.shape != (rows.n_features,):
        raise ValueError(f"gene_sd must have shape ({rows.n_features},)")
    return torch.as_tensor(noise_frac * gene_sd, dtype=dtype, device=dev), n_samples, (n_samples, noise_frac)


def _prepare_blocks(spec, blocks, n_features, dev) -> BlockIndex | None:
    if blocks is None:
        return None
    if not spec.gradient_based:
        raise ValueError(
            f"gradient correction (blocks=) applies to gradient-based explainers "
            f"('saliency', 'input_x_gradient'), not {spec.name!r}"
        )
    blocks = np.asarray(blocks)
    if blocks.shape != (n_features,):
        raise ValueError(f"blocks must have one entry per gene ({n_features}), got shape {blocks.shape}")
    return BlockIndex(blocks, device=dev)


#: On the CPU, the stacked kernels' chunks are cut so that one ``(members, cells, genes)`` temporary
#: holds at most this many bytes: the kernels' element-wise passes then run from the cache, not from
#: memory (measured: 10 members × 2,000 genes, 256-cell chunks 1.6× faster than 1,500-cell chunks).
CPU_STACKED_BYTES = 16 * 2**20
#: ... but no fewer rows than this (the products need some rows to run at full speed).
CPU_STACKED_MIN_ROWS = 64


def _memory(spec, cfg, members, sampler, n_features, n_obs, act_bytes, dev, dtype, smoothgrad, *,
            stacked: bool = False) -> tuple[int, KernelOptions]:
    """Chunk size and kernel options (workspace, gene block) within ``cfg.memory_limit_bytes``."""
    limit = cfg.memory_limit_bytes
    itemsize = torch.tensor([], dtype=dtype).element_size()
    n_b = sampler.n_baselines if sampler is not None else 1
    n_hidden = max([mem.n_hidden for mem in members] + [1])
    k_block = fixed = 0
    if not stacked and any(mem.fast for mem in members) and spec.cost.k_workspace and n_b > 2:
        per_ref = n_hidden * n_features * itemsize  # K workspace of k_block references: <= 1/4 of the budget
        k_block = int(min(n_b, max(1, (limit // 4) // per_ref)))
        fixed = k_block * per_ref
    if stacked and n_b > 2:  # the gene-blocked kernel's buffers
        from ._stacked import BLOCK_BUFFERS, BLOCK_VALUES

        fixed += BLOCK_BUFFERS * BLOCK_VALUES.get(dev.type, BLOCK_VALUES["cuda"]) * itemsize
    per_cell = chunk_bytes_per_cell(
        spec.name, n_features, n_hidden=n_hidden, n_baselines=n_b, n_members=len(members),
        fast=all(mem.fast for mem in members), activation_bytes=act_bytes, itemsize=itemsize,
        n_steps=cfg.n_steps, aggregate=cfg.aggregate, stacked=stacked,
    )
    batch_size = cfg.batch_size
    if batch_size is None:
        batch_size = choose_batch_size(per_cell, limit, fixed_bytes=fixed, n_cells=n_obs)
        if stacked and dev.type == "cpu":  # the (members, cells, genes) temporaries stay in the CPU's cache
            batch_size = min(batch_size, max(CPU_STACKED_MIN_ROWS, CPU_STACKED_BYTES // (len(members) * n_features * itemsize)))
        if smoothgrad is not None and batch_size > NOISE_BLOCK:
            batch_size -= batch_size % NOISE_BLOCK
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    opts = KernelOptions(
        absolute=bool(cfg.absolute), n_steps=int(cfg.n_steps), rows_per_pass=batch_size * n_b, k_block=k_block,
        workspace=torch.empty(k_block * n_hidden * n_features, dtype=dtype, device=dev) if k_block else None,
        # genes ablated at once by the fast feature ablation: at most the 256 the estimate assumed
        gene_block=int(max(1, min(n_features, 256, (limit // 2) // max(batch_size * n_hidden * itemsize * 3, 1)))),
        split=bool(cfg.split and spec.direction == "reference"),
    )
    return batch_size, opts


def _plan(modules, X, targets, method, cfg: AttributionConfig, *, groups, n_groups, stats, gene_sd, blocks,
          row_offset=0, total_obs=None) -> _Plan:
    """Validate the inputs and resolve every setting (members are put in eval mode)."""
    spec = get_explainer(method)
    if cfg.aggregate not in ("mean", "median"):
        raise ValueError(f"aggregate={cfg.aggregate!r} is not valid; choose one of ['mean', 'median']")
    if cfg.precision not in ("single", "double"):
        raise ValueError(f"precision={cfg.precision!r} is not valid; choose one of ['single', 'double']")
    if int(cfg.n_repeats) < 1:
        raise ValueError(f"n_repeats must be at least 1, got {cfg.n_repeats}")
    dtype = torch.float32 if cfg.precision == "single" else torch.float64
    dev = resolve_device(cfg.device)
    targets = np.asarray(targets)
    if targets.ndim != 1 or not (np.issubdtype(targets.dtype, np.integer)):
        raise TypeError("targets must be a 1-D integer array (class index per cell)")
    rows = _Rows(X, len(targets))
    if targets.shape[0] != rows.n_obs:
        raise ValueError(f"targets has {targets.shape[0]} entries but X has {rows.n_obs} cells")
    members, n_classes, act_bytes = _prepare_members(modules, spec, cfg, rows.n_features, dev, dtype)
    try:
        groups, n_groups = _prepare_groups(targets, groups, n_groups, rows.n_obs, n_classes)
        stat_rows = int(max(1, min(4096, cfg.memory_limit_bytes // (rows.n_features * 8 * 4))))
        sampler, stats = _prepare_sampler(spec, cfg, rows, groups, n_groups, stats, stat_rows)
        noise_sd, n_noise, smoothgrad = _prepare_noise(cfg.smoothgrad, gene_sd, stats, rows, stat_rows, dev, dtype)
        block_index = _prepare_blocks(spec, blocks, rows.n_features, dev)
        n_repeats = int(cfg.n_repeats)
        if n_repeats > 1 and not (smoothgrad is not None or (sampler.random if sampler is not None else spec.stochastic)):
            warn(
                f"method={method!r} with references={getattr(sampler, 'kind', None)!r} and no SmoothGrad "
                f"is deterministic: n_repeats={n_repeats} would repeat the same computation; computing it once"
            )
            n_repeats = 1
        entropy = _entropy(cfg.random_state)
        stack = _stack(spec, members, sampler, block_index, cfg, entropy)
        batch_size, opts = _memory(spec, cfg, members, sampler, rows.n_features, rows.n_obs, act_bytes, dev, dtype,
                                   smoothgrad, stacked=stack is not None)
    except Exception:
        for mem in members:
            mem.restore()
        raise
    cache = False
    if sampler is not None:
        one = sampler.n_baselines * rows.n_features * 4 * (1 if sampler.shared else n_groups)
        cache = one * len(members) * n_repeats <= cfg.memory_limit_bytes // 4
    return _Plan(spec, members, rows, targets, groups, n_groups, sampler, noise_sd, n_noise, n_repeats, block_index,
                 batch_size, opts, entropy, dev, dtype, cfg.replace(smoothgrad=smoothgrad),
                 cache_refs=cache, stats=stats, stack=stack, row_offset=int(row_offset), total_obs=total_obs)


#: With more than two references, the stacked kernel runs when more than this fraction of the
#: reference values is non-zero; sparser references (real cells) go member by member, whose
#: kernel skips the genes a reference does not express. Measured (DeepLiftShap, 20 references
#: drawn from the cells, 10 members, 200 cells): at 20,000 genes the per-member path is 1.6×
#: faster at 5 % non-zero, even at 15 % and 1.5× slower at 35 %; at 2,000 genes 1.4× faster at
#: 10 %, 1.2× slower at 35 %.
STACK_MIN_REF_DENSITY = 0.25


def _stack(spec, members, sampler, block_index, cfg, entropy: int = 0):
    """The members stacked for one pass, when the explainer has a stacked kernel and the settings allow it.

    Not for gradient correction, per-group references, or more than two references that are
    mostly zeros (:data:`STACK_MIN_REF_DENSITY`, judged on the first draw), and only with
    ``cfg.use_fast``.
    """
    from ._stacked import StackedMLP

    if spec.stacked is None or not cfg.use_fast or block_index is not None or not all(m.fast for m in members):
        return None
    if sampler is not None:
        if not sampler.shared:
            return None
        if sampler.n_baselines > 2:
            refs = sampler.draw_for(entropy, 0, 0).shared
            if np.count_nonzero(refs) <= STACK_MIN_REF_DENSITY * refs.size:
                return None
    return StackedMLP.from_folded([m.folded for m in members])


#: Median shift (in sd) of the references' mean above the data's beyond which the engine warns.
SHIFT_WARNING = 0.25


def _check_shift(plan: _Plan) -> float | None:
    """Warn (in the log) when the references' mean lies far from the data's (see :func:`reference_shift`)."""
    from ._references import reference_shift

    kind = plan.sampler.spec if plan.sampler is not None else None
    if kind is None or not kind.check_shift or isinstance(plan.sampler, FixedReferences):
        return None  # (drawn in advance, e.g. on a Dask client: checked there, not on every block)
    stats = plan.stats
    if stats is None or (kind.per_group and stats.group_mean is None):
        stat_rows = int(max(1, min(4096, plan.cfg.memory_limit_bytes // (plan.n_features * 8 * 4))))
        stats = compute_gene_stats(plan.rows.stored_chunks(stat_rows), plan.groups if kind.per_group else None,
                                   n_groups=plan.n_groups)
    shift = reference_shift(plan.references(0, 0), stats)
    if shift > SHIFT_WARNING:
        logger.warning(
            "references=%r: their mean lies %.2f sd above the data's (median over genes), so x - reference is "
            "negative for most cells and genes the models weigh negatively rise to the top (absence evidence). "
            "For rankings of marker genes use baseline='mean' (or 'sample'/'marginal' draws from the data)",
            kind.name, shift,
        )
    return shift


# --------------------------------------------------------------------------------------------
# the loop


def _kernel(plan: _Plan, mem: _Member, x, t, g_chunk, rs: ReferenceSet | None):
    """One member, one chunk, one draw: ``(attributions, presence part or None, angles or None)``."""
    spec, opts = plan.spec, plan.opts

    def call(xx, tt, refs):
        out = spec.fast(mem.folded, xx, tt, refs, opts) if mem.fast else spec.general(mem.module, xx, tt, refs, opts)
        return out if opts.split else (out, None)

    ang = None
    if rs is not None and rs.per_group is not None:
        out = torch.empty_like(x)
        pres = torch.empty_like(x) if opts.split else None
        for k in np.unique(g_chunk):
            idx = torch.as_tensor(np.flatnonzero(g_chunk == k), device=plan.device)
            a, p = call(x[idx], t[idx], torch.as_tensor(rs.per_group[k], device=plan.device).to(plan.dtype))
            out[idx] = a
            if pres is not None:
                pres[idx] = p
        return out, pres, None
    if plan.block_index is not None:  # gradient correction: correct the plain gradient, then build
        from ._captum import gradient as module_gradient

        grad = gradient(mem.folded, x, t) if mem.fast else module_gradient(mem.module, x, t)
        grad, ang = correct_gradients(grad, plan.block_index)
        a, p = spec.from_gradient(grad, x, opts), None
    else:
        a, p = call(x, t, None if rs is None else torch.as_tensor(rs.shared, device=plan.device).to(plan.dtype))
    if plan.cfg.split and spec.direction == "input":
        p = a * (x > 0)
    return a, p, ang


def _member_attribution(plan: _Plan, mi: int, x, t, g_chunk, sl: slice):
    """Attributions of member ``mi`` for a chunk, averaged over repeats and SmoothGrad samples."""
    mem = plan.members[mi]
    acc = pres_acc = ang_acc = None
    for r in range(plan.n_repeats):
        rs = plan.references(mi, r)
        for s in range(plan.n_noise):
            xs = x
            if plan.noise_sd is not None:
                noise = _noise(plan.entropy, mi, r, s, sl.start + plan.row_offset, sl.stop + plan.row_offset,
                               plan.total_obs or plan.n_obs, plan.n_features, plan.device, plan.dtype)
                xs = x + noise * plan.noise_sd
            a, p, ang = _kernel(plan, mem, xs, t, g_chunk, rs)
            acc = a if acc is None else acc.add_(a)
            if p is not None:
                pres_acc = p if pres_acc is None else pres_acc.add_(p)
            if ang is not None:
                ang_acc = ang if ang_acc is None else ang_acc + ang
    n_draws = plan.n_repeats * plan.n_noise
    if n_draws > 1:
        acc /= n_draws
        if pres_acc is not None:
            pres_acc /= n_draws
    return acc, pres_acc, ang_acc


class _Sums:
    """Per-member and aggregated per-group sums (float64), the per-cell output and angles."""

    def __init__(self, plan: _Plan, *, store_cells: bool, per_cell: bool | None = None) -> None:
        n_members, g, k = len(plan.members), plan.n_features, plan.n_groups
        self.plan = plan
        # The aggregated group sums of a mean are the mean of the members' sums: without a per-cell
        # output (stored cells, on_chunk) the per-chunk mean over members is skipped (:meth:`finish`).
        self.per_cell = bool(store_cells or plan.cfg.aggregate != "mean") if per_cell is None else bool(per_cell)
        self.member = np.zeros((n_members, k, g), dtype=np.float64)
        self.agg = np.zeros((k, g), dtype=np.float64)
        self.counts = np.bincount(plan.groups[plan.groups >= 0], minlength=k).astype(np.int64)
        self.cells = np.empty((plan.n_obs, g), dtype=np.float32) if store_cells else None
        nb = plan.block_index.n_blocks if plan.block_index is not None else 0
        self.angles = np.zeros((plan.n_obs, nb), dtype=np.float32) if nb else None
        self.seconds = np.zeros(n_members)
        self.presence: tuple[np.ndarray, np.ndarray] | None = None  # (members, aggregated) sums
        # The aggregated sums come from the members' in finish(): set when per-cell means are taken
        # without add() (the group-sums path with a per-cell output).
        self.agg_from_members = not self.per_cell

    def _aggregate(self, stacked: torch.Tensor) -> torch.Tensor:
        return stacked.mean(0) if self.plan.cfg.aggregate == "mean" else _median(stacked)

    def add(self, sl: slice, stacked: torch.Tensor, ang_sum, g_chunk: np.ndarray, presence=None) -> np.ndarray:
        """Add one chunk: ``stacked`` (and ``presence``) hold every member's ``(M, n, G)`` attributions.

        Returns the chunk's aggregated ``(n, G)`` float32 attributions (``None`` without :attr:`per_cell`).
        """
        k = self.plan.n_groups
        group_sums(stacked, g_chunk, k, out=self.member)
        if presence is not None:
            if self.presence is None:
                self.presence = (np.zeros_like(self.member), np.zeros_like(self.agg))
            group_sums(presence, g_chunk, k, out=self.presence[0])
        if self.angles is not None:
            n = stacked.shape[0] * self.plan.n_repeats * self.plan.n_noise
            self.angles[sl] = (ang_sum / n).to(torch.float32).cpu().numpy()
        if not self.per_cell:
            return None
        agg = self._aggregate(stacked)
        group_sums(agg, g_chunk, k, out=self.agg)
        if presence is not None:
            group_sums(self._aggregate(presence), g_chunk, k, out=self.presence[1])
        agg_np = agg.to(torch.float32).cpu().numpy()
        if self.cells is not None:
            self.cells[sl] = agg_np
        return agg_np

    def finish(self) -> None:
        """After the last chunk: the aggregated sums of a mean, where :meth:`add` skipped them."""
        if not self.agg_from_members:
            return
        self.agg[:] = self.member.mean(0)
        if self.presence is not None:
            self.presence[1][:] = self.presence[0].mean(0)

    def means(self, which: str = "total") -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        if which == "presence" and self.presence is None:
            return None, None
        member, agg = (self.member, self.agg) if which == "total" else self.presence
        denom = np.where(self.counts > 0, self.counts, np.nan)[:, None]

        def divide(sums, d):  # straight into float32: one pass, no float64 temporary
            return np.divide(sums, d, out=np.empty(sums.shape, dtype=np.float32), casting="same_kind")

        with np.errstate(invalid="ignore", divide="ignore"):
            return divide(agg, denom), divide(member, denom[None])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stacked_attribution(plan: _Plan, x, t, sl: slice):
    """Every member at once (:mod:`scxl.explain._stacked`), averaged over repeats and SmoothGrad samples."""
    m_all = range(len(plan.members))
    acc = pres_acc = None
    for r in range(plan.n_repeats):
        refs = None
        if plan.sampler is not None and not plan.sampler.random:
            refs = plan.fixed_reference_tensor()
        elif plan.sampler is not None:
            arr = np.stack([plan.references(m, r).shared for m in m_all])
            refs = torch.as_tensor(arr, device=plan.device).to(plan.dtype)
        for s in range(plan.n_noise):
            xs = x
            if plan.noise_sd is not None:
                xs = torch.stack([x + _noise(plan.entropy, m, r, s, sl.start + plan.row_offset, sl.stop + plan.row_offset,
                                             plan.total_obs or plan.n_obs, plan.n_features, plan.device, plan.dtype)
                                  * plan.noise_sd for m in m_all])
            out = plan.spec.stacked(plan.stack, xs, t, refs, plan.opts)
            a, p = out if plan.opts.split else (out, None)
            if plan.cfg.split and plan.spec.direction == "input":
                p = a * (xs > 0)
            acc = a if acc is None else acc.add_(a)
            if p is not None:
                pres_acc = p if pres_acc is None else pres_acc.add_(p)
    n_draws = plan.n_repeats * plan.n_noise
    if n_draws > 1:
        acc /= n_draws
        if pres_acc is not None:
            pres_acc /= n_draws
    return acc, pres_acc


#: Cells per chunk of the group-sums path (no ``(members, cells, genes)`` values are formed).
GROUP_PATH_ROWS = 1024
#: Fewest cells per chunk for which the group-sums path is taken (every chunk fills and copies out
#: the members' sums of every group: with smaller chunks the stacked path is faster).
GROUP_PATH_MIN_ROWS = 64


def _use_group_path(plan: _Plan, sums: _Sums) -> None:
    """Take the gene-blocked group-sums kernels (:data:`~scxl.explain._stacked.GROUP_SUMS`) where they apply.

    That is: stacked members; the DeepLift kernel (DeepLift, Integrated Gradients, DeepLiftShap)
    with one or two references shared by the members, or a gradient kernel (Saliency,
    InputXGradient, GuidedBackprop); no SmoothGrad, no chunk size set by the caller, and a
    per-cell output (stored cells, ``on_chunk``) only as the mean over members, which the kernel
    takes block by block (the median needs every member's values of a cell). The ``(members,
    cells, genes)`` attributions are then never formed. Measured with a per-cell output against
    the stacked path's cache-sized chunks (10 members, 2-core AMD EPYC, best of three, one
    process): at 20,000 genes and 1,000 cells (chunks of 64 there) DeepLift 1.36 s against
    2.51 s (1.85×), Saliency 1.29 s against 2.37 s (1.83×), InputXGradient 1.40 s against
    3.14 s (2.24×), GuidedBackprop 1.05 s against 1.72 s (1.63×); at 2,000 genes and 4,000
    cells 0.99-1.20× (the chunks of 209 cells fit the cache there).
    """
    from . import _stacked

    sampler = plan.sampler
    kernel = _stacked.GROUP_SUMS.get(plan.spec.stacked)
    if (plan.stack is None or kernel is None or (sums.per_cell and plan.cfg.aggregate != "mean")
            or plan.noise_sd is not None or plan.cfg.batch_size is not None):
        return
    if plan.spec.stacked is _stacked.deeplift_kernel and (
            sampler is None or sampler.random or not sampler.shared or sampler.n_baselines > 2):
        return
    itemsize = torch.tensor([], dtype=plan.dtype).element_size()
    m_h = plan.stack.n_members * plan.stack.n_hidden
    per_cell = itemsize * (3 * plan.n_features + 8 * m_h)  # rows (read, converted, a difference); z, w, a
    if sums.per_cell:  # the members' mean, in the computation dtype and as float32 on the host
        per_cell += (itemsize + 4) * plan.n_features
    fixed = _stacked.BLOCK_BUFFERS * _stacked.BLOCK_VALUES.get(plan.device.type, _stacked.BLOCK_VALUES["cuda"]) * itemsize
    # A chunk's sums (computation dtype, twice, and float64 once): a row per group of the chunk,
    # so for at most as many groups as it has cells, plus the row of the cells in no group.
    per_row = (2 * 2 * itemsize + 8) * len(plan.members) * plan.n_features
    rows = choose_batch_size(per_cell, plan.cfg.memory_limit_bytes, fixed_bytes=fixed + per_row * (plan.n_groups + 1),
                             n_cells=plan.n_obs)
    if rows < min(plan.n_groups + 1, plan.n_obs):  # more groups than cells in a chunk: charge the sums by the cell
        rows = choose_batch_size(per_cell + per_row, plan.cfg.memory_limit_bytes, fixed_bytes=fixed + per_row,
                                 n_cells=plan.n_obs)
    if rows < min(GROUP_PATH_MIN_ROWS, plan.n_obs):
        # Chunks of a few cells only (a small memory limit with many genes): each would pay the
        # kernels' fixed costs; the stacked path runs (300 cells, 400 groups, 5,000 genes, 256 MiB:
        # chunks of 1 cell took 52 s against 1.6 s there, before the sums were cut to the chunk's groups).
        return
    plan.batch_size = int(min(rows, GROUP_PATH_ROWS))
    plan.group_only = True
    sums.agg_from_members = True


def _group_sums_only(plan: _Plan, sums: _Sums, x, t, g_chunk, sl: slice) -> np.ndarray | None:
    """One chunk of the group-sums path: every member's sums added to ``sums.member`` (and presence).

    Returns the chunk's float32 mean over members per cell where a per-cell output is wanted
    (also put in ``sums.cells``), else ``None``.
    """
    from ._stacked import GROUP_SUMS

    refs = plan.fixed_reference_tensor() if plan.sampler is not None else None  # (not random on this path)
    # Only the groups of this chunk get rows (a chunk of 64 cells among 400 groups fills 64 rows,
    # not 400), and row P of every member collects the cells in no group (dropped).
    present, compact = np.unique(np.where(g_chunk >= 0, g_chunk, plan.n_groups), return_inverse=True)
    k1 = present.size
    if present[-1] == plan.n_groups:
        present = present[:-1]
    else:
        k1 += 1  # (an empty row: every member's rows have the same layout)
    index = torch.as_tensor((compact.reshape(-1)[None, :] + k1 * np.arange(len(plan.members))[:, None]).reshape(-1),
                            dtype=torch.int64, device=plan.device)
    cells = torch.empty(x.shape, dtype=plan.dtype, device=plan.device) if sums.per_cell else None
    split = plan.opts.split or bool(plan.cfg.split and plan.spec.direction == "input")
    out = GROUP_SUMS[plan.spec.stacked](plan.stack, x, t, refs, index, len(plan.members) * k1, split=split,
                                        cells=cells, opts=plan.opts)
    out = out.view(out.shape[0], len(plan.members), k1, -1)[:, :, : present.size].cpu()
    _add_rows(sums.member, present, out[0])
    if split:
        if sums.presence is None:
            sums.presence = (np.zeros_like(sums.member), np.zeros_like(sums.agg))
        _add_rows(sums.presence[0], present, out[1])
    if cells is None:
        return None
    agg_np = cells.to(torch.float32).cpu().numpy()
    if sums.cells is not None:
        sums.cells[sl] = agg_np
    return agg_np


def _loop(plan: _Plan, sums: _Sums, on_chunk, *, progress: bool, on_rows=None) -> None:
    """Chunks of cells × members × draws: the one loop of the engine."""
    n_chunks = math.ceil(plan.n_obs / plan.batch_size) if plan.n_obs else 0
    logger.debug("attributing %d cells with %r on %d member(s): %d chunk(s) of %d cells, device %s",
                 plan.n_obs, plan.spec.name, len(plan.members), n_chunks, plan.batch_size, plan.device)
    bar = _progress_bar(range(n_chunks), total=n_chunks, desc=f"xl {plan.spec.name}") if progress else range(n_chunks)
    for ci in bar:
        sl = slice(ci * plan.batch_size, min((ci + 1) * plan.batch_size, plan.n_obs))
        rows = plan.rows(sl)
        if on_rows is not None:
            on_rows(sl, rows)
        x = torch.as_tensor(rows, device=plan.device).to(plan.dtype)
        t = torch.as_tensor(plan.targets[sl], dtype=torch.int64, device=plan.device)
        g_chunk = plan.groups[sl]
        if plan.group_only:  # every member's group sums (and the members' mean per cell where wanted)
            t0 = time.perf_counter()
            agg_np = _group_sums_only(plan, sums, x, t, g_chunk, sl)
            _sync(plan.device)
            sums.seconds += (time.perf_counter() - t0) / len(plan.members)
            if on_chunk is not None:
                on_chunk(sl, agg_np)
            continue
        if plan.stack is not None:  # all members in one pass
            t0 = time.perf_counter()
            stacked, presence = _stacked_attribution(plan, x, t, sl)
            _sync(plan.device)
            sums.seconds += (time.perf_counter() - t0) / len(plan.members)
            ang_sum = None
        else:
            per_member, per_presence, ang_sum = [], [], None
            for mi in range(len(plan.members)):
                t0 = time.perf_counter()
                a, p, ang = _member_attribution(plan, mi, x, t, g_chunk, sl)
                _sync(plan.device)
                sums.seconds[mi] += time.perf_counter() - t0
                per_member.append(a)
                per_presence.append(p)
                if ang is not None:
                    ang_sum = ang if ang_sum is None else ang_sum + ang
            stacked = torch.stack(per_member)
            presence = torch.stack(per_presence) if per_presence[0] is not None else None
        agg_np = sums.add(sl, stacked, ang_sum, g_chunk, presence)
        if on_chunk is not None:
            on_chunk(sl, agg_np)
    if hasattr(bar, "close"):
        bar.close()


def group_sums(values, codes, n_groups: int, *, out: np.ndarray | None = None):
    """Column sums of ``values`` per group: the group-sum kernel of the package.

    Rows with code ``-1`` are ignored. Works on NumPy arrays and torch tensors (any device), of
    shape ``(n, G)`` or stacked ``(M, n, G)`` (every member's values at once). Deterministic on
    every device: on the CPU one ``index_add_`` (rows added in order; one pass over the values,
    about twice as fast as a product with a one-hot matrix, which is memory-bound with few groups),
    elsewhere one one-hot matrix product (CUDA's ``index_add_`` uses atomic adds, whose order varies).

    Parameters
    ----------
    values
        ``(n, G)`` or ``(M, n, G)`` array or tensor.
    codes
        ``(n,)`` integer group codes (``-1``: none).
    n_groups
        Number of groups.
    out
        Optional float64 ``(n_groups, G)`` (or ``(M, n_groups, G)``) array the sums are added to
        (in place, and returned). Only the rows of the groups present in ``codes`` are touched,
        so a chunk of a few cells costs in proportion to its groups, not to all of them (a
        chunk-by-chunk accumulation over hundreds of groups at 20,000 genes).

    Returns
    -------
    ``(n_groups, G)`` (or ``(M, n_groups, G)``) float64 NumPy array: ``out`` if given.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.explain import group_sums
    >>> group_sums(np.eye(3), np.array([0, 1, 0]), 2).tolist()
    [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    >>> total = np.zeros((3, 2))
    >>> _ = group_sums(np.ones((2, 2)), np.array([2, 2]), 3, out=total)
    >>> total.tolist()
    [[0.0, 0.0], [0.0, 0.0], [2.0, 2.0]]
    """
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(np.asarray(values))
    codes_np = codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    shape = (*values.shape[:-2], n_groups, values.shape[-1])
    if out is None:
        out = np.zeros(shape, dtype=np.float64)
    elif out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-ordered float64 array of shape {shape}, got {out.dtype} {out.shape}")
    keep = codes_np >= 0
    present, compact = np.unique(codes_np[keep], return_inverse=True)  # the groups of this chunk, and 0..P-1
    n_present = present.size
    if n_present == 0:
        return out
    if values.device.type == "cpu":
        if not keep.all():
            values = values.index_select(-2, torch.as_tensor(np.flatnonzero(keep)))
        index = torch.as_tensor(compact.reshape(-1), dtype=torch.int64)
        lead = values.shape[:-2]
        if lead:  # stacked (M, n, G): one index_add_ over (M·n, G) rows, member m's codes shifted by m·P
            n_lead = math.prod(lead)  # (twice as fast as index_add_ along the middle axis, same order of additions)
            index = (index[None, :] + n_present * torch.arange(n_lead)[:, None]).reshape(-1)
            values = values.reshape(n_lead * values.shape[-2], values.shape[-1])
        sums = torch.zeros((math.prod(lead) * n_present, values.shape[-1]), dtype=values.dtype)
        sums.index_add_(0, index, values)
        part = sums.view(*lead, n_present, values.shape[-1])
    else:
        onehot = torch.as_tensor(codes_np[None, :] == present[:, None], dtype=values.dtype, device=values.device)
        part = torch.matmul(onehot, values).cpu()
    _add_rows(out, present, part)
    return out


def _add_rows(total: np.ndarray, rows: np.ndarray, part) -> None:
    """``total[..., rows, :] += part`` for a C-ordered float64 ``total``.

    Torch's ``index_add_`` on a view of it: one pass, where NumPy's fancy-indexed add gathers,
    adds and scatters.
    """
    part = torch.as_tensor(part).to(torch.float64)
    if rows.size == total.shape[-2]:  # every row (rows are sorted and unique)
        torch.from_numpy(total).add_(part.view(total.shape))
        return
    lead = math.prod(total.shape[:-2])
    index = torch.as_tensor((rows[None, :] + total.shape[-2] * np.arange(lead)[:, None]).reshape(-1), dtype=torch.int64)
    torch.from_numpy(total).view(-1, total.shape[-1]).index_add_(0, index, part.reshape(-1, total.shape[-1]))


def group_means(chunks, codes: np.ndarray, n_groups: int, *, transform: Callable | None = None) -> np.ndarray:
    """Per-group mean of every column over row chunks (rows with code ``-1`` ignored).

    Parameters
    ----------
    chunks
        An array, or an iterable of dense row blocks (or ``(slice, block)`` pairs) in row order.
    codes
        Group code of every row.
    n_groups
        Number of groups.
    transform
        Applied to every block (as float64) before averaging, e.g. ``np.expm1``.

    Returns
    -------
    ``(n_groups, G)`` float64 means (NaN for empty groups).

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.explain import group_means
    >>> group_means(np.arange(6.0).reshape(3, 2), np.array([0, 0, 1]), 2).tolist()
    [[1.0, 2.0], [4.0, 5.0]]
    """
    from ._references import _iter_blocks

    codes = np.asarray(codes)
    blocks = [chunks] if isinstance(chunks, np.ndarray) else _iter_blocks(chunks)
    sums, offset = None, 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        if transform is not None:
            block = transform(block)
        if sums is None:
            sums = np.zeros((n_groups, block.shape[1]))
        group_sums(block, codes[offset : offset + block.shape[0]], n_groups, out=sums)
        offset += block.shape[0]
    counts = np.bincount(codes[codes >= 0], minlength=n_groups).astype(np.float64)
    if sums is None:
        return np.full((n_groups, 0), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


# --------------------------------------------------------------------------------------------
# the entry point


def attribute_modules(
    modules: Sequence[nn.Module] | nn.Module,
    X: Any,
    targets: np.ndarray | Sequence[int],
    method: str = "deeplift",
    *,
    groups: np.ndarray | None = None,
    n_groups: int | None = None,
    stats: GeneStats | None = None,
    gene_sd: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    store_cells: bool = True,
    on_chunk: Callable[[slice, np.ndarray], None] | None = None,
    on_rows: Callable[[slice, np.ndarray], None] | None = None,
    progress: bool = True,
    config: AttributionConfig | None = None,
    row_offset: int = 0,
    total_obs: int | None = None,
    **settings: Any,
) -> AttributionResult:
    """Attributions of every ensemble member for every cell, aggregated and summarised by group.

    Parameters
    ----------
    modules
        Trained ensemble members (an :class:`scxl.models.MLP`/:class:`~scxl.models.GridCNN` or
        any module mapping ``(n, G)`` to logits). They are put in eval mode for the call and
        their training flag is restored afterwards; they are never modified otherwise.
    X
        Cells × genes expression: a dense array, a SciPy sparse matrix, an object with
        ``rows(idx)`` and ``shape`` (:class:`scxl._validation.Matrix`, backed data) or a callable
        ``read(idx) -> dense rows`` taking a slice or an integer array. Only chunks are read.
    targets
        Target class (logit index) of every cell.
    method
        Explainer name, see :func:`scxl.explain.explainers_table`.
    groups
        Group code of every cell (``-1``: in no group) for the per-group summaries and for
        per-group references (``"specific"``, ``"rest"``). Defaults to ``targets``.
    n_groups
        Number of groups (default: ``groups.max() + 1``, or the number of classes when
        ``groups`` defaults to ``targets``).
    stats
        Precomputed :class:`~scxl.explain.GeneStats` (with per-group statistics for
        ``"specific"``); computed by streaming over ``X`` when needed and not given.
    gene_sd
        Per-gene sd for SmoothGrad (default: from ``stats`` or streamed over ``X``).
    blocks
        Gradient correction for one-hot features: block id of every gene (``-1``: none). Only
        for gradient-based explainers (``"saliency"``, ``"input_x_gradient"``).
    store_cells
        Keep the ``(n_cells, G)`` per-cell attributions; with ``False`` only the group
        summaries (and ``on_chunk``) are produced, so memory does not grow with the cells.
    on_chunk
        Called as ``on_chunk(slice_of_cells, aggregated_float32_chunk)`` after every chunk.
    on_rows
        Called as ``on_rows(slice_of_cells, float32_rows)`` with the expression of every chunk as it
        is read, so other per-cell summaries can share the one pass over the data (e.g. fold changes).
    progress
        Show a progress bar (also subject to ``xl.settings.progress``).
    config
        An :class:`AttributionConfig`; keyword ``settings`` override its fields.
    row_offset, total_obs
        When ``X`` is one block of a larger data set (e.g. a Dask chunk on a worker): the position
        of its first row and the number of rows of the whole, so SmoothGrad noise is that of an
        in-memory run. With random references, pass the run's draws as
        ``references=sampler.fixed(...)`` (:class:`~scxl.explain.FixedReferences`).
    **settings
        Fields of :class:`AttributionConfig`: ``references``, ``n_baselines``, ``smoothgrad``,
        ``n_repeats``, ``aggregate``, ``absolute``, ``n_steps``, ``batch_size``,
        ``memory_limit_bytes``, ``device``, ``precision``, ``use_fast``, ``random_state``.

    Returns
    -------
    :class:`AttributionResult`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scxl.models import MLP
    >>> from scxl.explain import attribute_modules
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> X = np.random.default_rng(0).random((30, 8), dtype=np.float32)
    >>> res = attribute_modules([MLP(8, 3, [16]), MLP(8, 3, [16])], X, np.arange(30) % 3,
    ...                         "deeplift", progress=False)
    >>> res.attributions.shape, res.member_group_means.shape
    ((30, 8), (2, 3, 8))
    """
    t_start = time.perf_counter()
    unknown = sorted(set(settings) - set(AttributionConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(f"attribute_modules got unknown settings {unknown}; see AttributionConfig")
    cfg = (config or AttributionConfig()).replace(**settings) if settings else (config or AttributionConfig())
    plan = _plan(modules, X, targets, method, cfg, groups=groups, n_groups=n_groups, stats=stats, gene_sd=gene_sd,
                 blocks=blocks, row_offset=row_offset, total_obs=total_obs)
    sums = _Sums(plan, store_cells=store_cells, per_cell=True if on_chunk is not None else None)
    _use_group_path(plan, sums)
    try:
        shift = _check_shift(plan)
        _loop(plan, sums, on_chunk, progress=progress, on_rows=on_rows)
    finally:
        for mem in plan.members:
            mem.restore()
    sums.finish()
    group_mean, member_group_means = sums.means()
    presence_mean, member_presence_means = sums.means("presence")
    seconds = time.perf_counter() - t_start
    logger.debug("finished %r attribution in %.2f s", method, seconds)
    return AttributionResult(
        method=method, attributions=sums.cells, group_means=group_mean, member_group_means=member_group_means,
        group_counts=sums.counts, angles=sums.angles,
        block_ids=plan.block_index.block_ids if plan.block_index is not None else None,
        fast=np.array([mem.fast for mem in plan.members]), seconds=seconds, member_seconds=sums.seconds,
        sums={"member": sums.member, "aggregated": sums.agg,
              **({"member_presence": sums.presence[0], "presence": sums.presence[1]} if sums.presence else {})},
        params=_params(plan) | {"reference_shift": shift}, presence_group_means=presence_mean, member_presence_group_means=member_presence_means,
    )


def _params(plan: _Plan) -> dict[str, Any]:
    """The effective settings of a run, for ``AttributionResult.params``."""
    cfg, sampler = plan.cfg, plan.sampler
    return dict(
        method=plan.spec.name,
        references=(sampler.kind if sampler is not None else None),
        n_baselines=(sampler.n_baselines if sampler is not None else 0),
        n_repeats=plan.n_repeats,
        stochastic=bool(cfg.smoothgrad is not None or (sampler is not None and sampler.random)),
        smoothgrad=list(cfg.smoothgrad) if cfg.smoothgrad is not None else None,
        aggregate=cfg.aggregate,
        absolute=bool(cfg.absolute),
        gradient_correction=plan.block_index is not None,
        n_steps=int(cfg.n_steps),
        exact_integrated_gradients=bool(plan.spec.name == "integrated_gradients" and all(m.fast for m in plan.members)),
        batch_size=plan.batch_size,
        memory_limit_bytes=int(cfg.memory_limit_bytes),
        device=str(plan.device),
        precision=cfg.precision,
        random_state=plan.entropy,
        n_members=len(plan.members),
        n_groups=int(plan.n_groups),
        direction=plan.spec.direction if (cfg.split and plan.spec.direction) else None,
    )
