"""The attribution engine: every member of an ensemble, chunked over cells, seeded, memory-bound.

:func:`attribute_modules` is the one entry point the AnnData glue (``xl.tl.attribute``) calls.
It takes arrays (or a row reader) and modules and returns an :class:`AttributionResult`; it
knows nothing of AnnData.

Loop structure: ``chunks of cells → members → repeats → SmoothGrad samples``. Per chunk, the
per-member attributions (averaged over repeats and noise samples) are reduced to per-member
per-group sums and aggregated over members (mean or median), so neither the per-member per-cell
values nor the ``cells × references × genes`` products ever exist for more than one chunk.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._logging import logger, warn
from .._logging import progress as _progress_bar
from ._captum import captum_attribute
from ._correction import BlockIndex, correct_gradients
from ._fast import FAST_KERNELS, FoldedMLP, fold_mlp, gradient, is_foldable
from ._references import (
    GROUPED_KINDS,
    GeneStats,
    ReferenceSet,
    compute_gene_stats,
    make_reference_sampler,
)
from ._registry import get_explainer

DEFAULT_MEMORY_LIMIT = 2**30
"""Default memory bound of one chunk (bytes)."""

NOISE_BLOCK = 64
"""Cells per SmoothGrad noise block (the unit of noise seeding)."""

DEFAULT_SHAP_BASELINES = 20
"""Default number of references of ``deeplift_shap``."""


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


# --------------------------------------------------------------------------------------------
# input adapters


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
) -> int:
    """Estimated peak bytes per cell of one chunk (the engine's memory model).

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
        Whether the fast kernel runs (else Captum).
    activation_bytes
        Bytes of one sample's activations (Captum path).
    itemsize
        Bytes per value of the computation dtype.
    n_steps
        Integration steps (Captum Integrated Gradients).
    aggregate
        ``"mean"`` or ``"median"``.
    gene_block
        Genes ablated at once (fast feature ablation).

    Returns
    -------
    Bytes per cell.
    """
    g, h, b, d = n_features, max(n_hidden, 1), max(n_baselines, 1), itemsize
    # input, noisy input, output accumulators and engine buffers (float32 + float64 sums)
    base = g * d * 6 + g * 4 * 2
    base += g * 4 * n_members if aggregate == "median" else g * 4 * 2
    if fast:
        if method == "feature_ablation":
            kern = min(g, gene_block) * h * d * 3 + h * d * 4
        elif method in ("deeplift", "deeplift_shap", "integrated_gradients"):
            kern = b * h * d * 6 + h * d * 4 + g * d * 3
        else:
            kern = h * d * 4 + g * d * 2
    else:
        act = max(activation_bytes, g * d)
        if method in ("deeplift", "deeplift_shap"):
            kern = b * (2 * act * 3 + g * d * 8)
        elif method == "integrated_gradients":
            # expanded inputs/baselines/sums + one integration step of all rows at a time
            kern = b * (g * d * 8 + act * 3)
        elif method == "feature_ablation":
            kern = b * (g * d * 6 + act * 3)
        else:
            kern = act * 4 + g * d * 4
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
# members


class _Member:
    """One ensemble member prepared for attribution (folded weights or an eval-mode module)."""

    def __init__(self, module: nn.Module, spec, *, device, dtype, use_fast: bool) -> None:
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
            self.module = module if same else copy.deepcopy(module).to(device=device, dtype=dtype).eval()
        except Exception:
            self.restore()
            raise

    @property
    def n_hidden(self) -> int:
        return self.folded.n_hidden if self.folded is not None else 0

    def restore(self) -> None:
        self.original.train(self.was_training)


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


def _rng(entropy: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=tuple(int(k) for k in key)))


# --------------------------------------------------------------------------------------------
# the engine


def attribute_modules(
    modules: Sequence[nn.Module] | nn.Module,
    X: Any,
    targets: np.ndarray | Sequence[int],
    method: str = "deeplift",
    *,
    groups: np.ndarray | None = None,
    n_groups: int | None = None,
    references: str | np.ndarray | None = None,
    n_baselines: int | None = None,
    stats: GeneStats | None = None,
    smoothgrad: tuple[int, float] | None = None,
    gene_sd: np.ndarray | None = None,
    n_repeats: int = 1,
    aggregate: str = "mean",
    absolute: bool = True,
    blocks: np.ndarray | None = None,
    n_steps: int = 50,
    store_cells: bool = True,
    on_chunk: Callable[[slice, np.ndarray], None] | None = None,
    batch_size: int | None = None,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT,
    device: str | torch.device | None = None,
    precision: str = "single",
    use_fast: bool = True,
    random_state: int | np.random.Generator | None = 0,
    progress: bool = True,
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
        ``references="specific"``/``"rest"``. Defaults to ``targets``.
    n_groups
        Number of groups (default: ``groups.max() + 1``, or the number of classes when
        ``groups`` defaults to ``targets``).
    references
        Reference kind (``"zero"``, ``"normal"``, ``"universal"``, ``"specific"``,
        ``"sample"``, ``"rest"``) or an array ``(n_baselines, G)``; default: the explainer's
        (``"zero"``; ``"sample"`` for ``deeplift_shap``). Must be ``None`` for explainers that
        take no reference.
    n_baselines
        References per cell and draw (default 1; 20 for ``deeplift_shap``). Ignored for
        ``"zero"`` and arrays.
    stats
        Precomputed :class:`~scxl.explain.GeneStats` (with per-group statistics for
        ``"specific"``); computed by streaming over ``X`` when needed and not given.
    smoothgrad
        ``(n_samples, noise_frac)``: average over ``n_samples`` noisy copies of each cell with
        Gaussian noise of sd ``noise_frac × sd`` of each gene (SmoothGrad, as Captum's
        ``NoiseTunnel(..., nt_type="smoothgrad")``).
    gene_sd
        Per-gene sd for SmoothGrad (default: from ``stats`` or streamed over ``X``).
    n_repeats
        Independent repeats (new references and noise) averaged per member. Only stochastic
        settings are repeated: a deterministic setting asked for ``n_repeats > 1`` is computed
        once, with a warning.
    aggregate
        ``"mean"`` or ``"median"`` over members, per cell and gene.
    absolute
        Absolute value of the saliency map (Captum's default).
    blocks
        Gradient correction for one-hot features: block id of every gene (``-1``: none). Only
        for ``"saliency"`` and ``"input_x_gradient"``.
    n_steps
        Integration steps of Captum's Integrated Gradients (models without the exact kernel).
    store_cells
        Keep the ``(n_cells, G)`` per-cell attributions; with ``False`` only the group
        summaries (and ``on_chunk``) are produced, so memory does not grow with the cells.
    on_chunk
        Called as ``on_chunk(slice_of_cells, aggregated_float32_chunk)`` after every chunk.
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
        Use the exact fast kernels where they apply (``False`` forces Captum).
    random_state
        Seed (or Generator) of all randomness.
    progress
        Show a progress bar (also subject to ``xl.settings.progress``).

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
    from .._validation import resolve_device

    t_start = time.perf_counter()
    spec = get_explainer(method)
    if isinstance(modules, nn.Module):
        modules = [modules]
    modules = list(modules)
    if not modules:
        raise ValueError("modules is empty: pass at least one trained module")
    for m in modules:
        if not isinstance(m, nn.Module):
            raise TypeError(f"modules must be torch.nn.Module objects, got {type(m).__name__}")
    if aggregate not in ("mean", "median"):
        raise ValueError(f"aggregate={aggregate!r} is not valid; choose one of ['mean', 'median']")
    if precision not in ("single", "double"):
        raise ValueError(f"precision={precision!r} is not valid; choose one of ['single', 'double']")
    if int(n_repeats) < 1:
        raise ValueError(f"n_repeats must be at least 1, got {n_repeats}")
    n_repeats = int(n_repeats)
    dtype = torch.float32 if precision == "single" else torch.float64
    dev = resolve_device(device)

    targets = np.asarray(targets)
    if targets.ndim != 1 or not (np.issubdtype(targets.dtype, np.integer)):
        raise TypeError("targets must be a 1-D integer array (class index per cell)")
    rows = _Rows(X, len(targets))
    n_obs, n_features = rows.n_obs, rows.n_features
    if targets.shape[0] != n_obs:
        raise ValueError(f"targets has {targets.shape[0]} entries but X has {n_obs} cells")

    if spec.model_types == ("cnn",):
        for m in modules:
            if not _is_grid_cnn(m):
                raise ValueError(f"method={method!r} applies to grid CNN models only (scxl.models.GridCNN), got {type(m).__name__}")

    # ---- members
    members: list[_Member] = []
    try:
        for m in modules:
            members.append(_Member(m, spec, device=dev, dtype=dtype, use_fast=use_fast))
        n_classes = None
        act_bytes = 0
        for mem in members:
            if mem.fast:
                if mem.folded.n_features != n_features:
                    raise ValueError(f"a module takes {mem.folded.n_features} genes but X has {n_features}")
                c = mem.folded.n_classes
            else:
                nf = getattr(mem.module, "n_features", n_features)
                if nf != n_features:
                    raise ValueError(f"a module takes {nf} genes but X has {n_features}")
                with torch.no_grad():
                    c = mem.module(torch.zeros(2, n_features, device=dev, dtype=dtype)).shape[1]
                act_bytes = max(act_bytes, _activation_bytes(mem.module, n_features, dev, dtype))
            if n_classes is not None and c != n_classes:
                raise ValueError("all modules must have the same number of classes")
            n_classes = c
        if targets.size and (targets.min() < 0 or targets.max() >= n_classes):
            raise ValueError(f"targets must be class indices in [0, {n_classes}); got values in [{targets.min()}, {targets.max()}]")

        # ---- groups
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

        # ---- references and statistics (streamed in row blocks within the memory bound)
        stat_rows = int(max(1, min(4096, memory_limit_bytes // (n_features * 8 * 4))))
        sampler = None
        kind = None
        if spec.needs_reference:
            kind = spec.default_reference if references is None else references
            if n_baselines is None:
                n_baselines = DEFAULT_SHAP_BASELINES if method == "deeplift_shap" else 1
            if isinstance(kind, str) and kind in GROUPED_KINDS and (groups < 0).any():
                raise ValueError(f"references={kind!r} needs a group for every cell; some groups are -1")
            need_stats = isinstance(kind, str) and kind in ("universal", "specific")
            if need_stats and (stats is None or (kind == "specific" and stats.group_mean is None)):
                stats = compute_gene_stats(rows.chunks(stat_rows), groups if kind == "specific" else None, n_groups=n_groups)
            sampler = make_reference_sampler(
                kind, n_features=n_features, n_baselines=int(n_baselines), stats=stats,
                read_rows=rows, n_obs=n_obs, groups=groups, n_groups=n_groups,
            )
        elif references is not None:
            raise ValueError(f"method={method!r} takes no reference; pass references=None")

        noise_sd = None
        if smoothgrad is not None:
            try:
                n_samples, noise_frac = int(smoothgrad[0]), float(smoothgrad[1])
            except (TypeError, ValueError, IndexError):
                raise ValueError("smoothgrad must be (n_samples, noise_frac)") from None
            if n_samples < 1 or noise_frac < 0:
                raise ValueError(f"smoothgrad needs n_samples >= 1 and noise_frac >= 0, got {smoothgrad}")
            if gene_sd is None:
                if stats is None:
                    stats = compute_gene_stats(rows.chunks(stat_rows))
                gene_sd = stats.sd
            gene_sd = np.asarray(gene_sd, dtype=np.float64)
            if gene_sd.shape != (n_features,):
                raise ValueError(f"gene_sd must have shape ({n_features},)")
            noise_sd = torch.as_tensor(noise_frac * gene_sd, dtype=dtype, device=dev)
            smoothgrad = (n_samples, noise_frac)
        n_noise = smoothgrad[0] if smoothgrad is not None else 1

        block_index = None
        if blocks is not None:
            if not spec.gradient_based:
                raise ValueError(
                    f"gradient correction (blocks=) applies to gradient-based explainers "
                    f"('saliency', 'input_x_gradient'), not {method!r}"
                )
            blocks = np.asarray(blocks)
            if blocks.shape != (n_features,):
                raise ValueError(f"blocks must have one entry per gene ({n_features}), got shape {blocks.shape}")
            block_index = BlockIndex(blocks, device=dev)

        stochastic = smoothgrad is not None or (sampler is not None and sampler.random)
        if n_repeats > 1 and not stochastic:
            warn(
                f"method={method!r} with references={getattr(sampler, 'kind', None)!r} and no SmoothGrad "
                f"is deterministic: n_repeats={n_repeats} would repeat the same computation; computing it once"
            )
            n_repeats = 1

        # ---- memory model
        itemsize = torch.tensor([], dtype=dtype).element_size()
        n_b = sampler.n_baselines if sampler is not None else 1
        n_hidden = max([mem.n_hidden for mem in members] + [1])
        k_block = 0
        fixed = 0
        if any(mem.fast for mem in members) and method in ("deeplift", "deeplift_shap", "integrated_gradients") and n_b > 2:
            # K workspace of k_block references: at most a quarter of the budget
            per_ref = n_hidden * n_features * itemsize
            k_block = int(min(n_b, max(1, (memory_limit_bytes // 4) // per_ref)))
            fixed = k_block * per_ref
        per_cell = chunk_bytes_per_cell(
            method, n_features, n_hidden=n_hidden, n_baselines=n_b, n_members=len(members),
            fast=all(mem.fast for mem in members), activation_bytes=act_bytes, itemsize=itemsize,
            n_steps=n_steps, aggregate=aggregate,
        )
        if batch_size is None:
            batch_size = choose_batch_size(per_cell, memory_limit_bytes, fixed_bytes=fixed, n_cells=n_obs)
            if smoothgrad is not None and batch_size > NOISE_BLOCK:
                batch_size -= batch_size % NOISE_BLOCK
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        workspace = torch.empty(k_block * n_hidden * n_features, dtype=dtype, device=dev) if k_block else None
        # genes ablated at once by the fast feature ablation: at most the 256 the estimate assumed
        gene_block = int(max(1, min(n_features, 256, (memory_limit_bytes // 2) // max(batch_size * n_hidden * itemsize * 3, 1))))
        ig_rows = None
        if method == "integrated_gradients":
            ig_rows = batch_size * n_b  # one integration step of all expanded rows per pass

        entropy = _entropy(random_state)

        # ---- references: one draw per (member, repeat), cached when small
        ref_cache: dict[tuple[int, int], ReferenceSet] = {}
        if sampler is not None:
            one = sampler.n_baselines * n_features * 4 * (1 if sampler.shared else n_groups)
            cache_refs = one * len(members) * n_repeats <= memory_limit_bytes // 4
        else:
            cache_refs = False

        def refset(m: int, r: int) -> ReferenceSet:
            key = (m, r) if sampler.random else (0, 0)
            if key in ref_cache:
                return ref_cache[key]
            rs = sampler.draw(_rng(entropy, 0, *key))
            if cache_refs or not sampler.random:
                ref_cache[key] = rs
            return rs

        # ---- accumulators
        n_members = len(members)
        member_sums = np.zeros((n_members, n_groups, n_features), dtype=np.float64)
        agg_sums = np.zeros((n_groups, n_features), dtype=np.float64)
        counts = np.bincount(groups[groups >= 0], minlength=n_groups).astype(np.int64)
        out = np.empty((n_obs, n_features), dtype=np.float32) if store_cells else None
        angles = np.zeros((n_obs, block_index.n_blocks), dtype=np.float32) if block_index is not None else None
        member_seconds = np.zeros(n_members)

        ctx = dict(
            method=method, spec=spec, dev=dev, dtype=dtype, absolute=absolute, n_steps=n_steps,
            block_index=block_index, workspace=workspace, k_block=k_block, gene_block=gene_block,
            ig_rows=ig_rows,
        )

        n_chunks = math.ceil(n_obs / batch_size) if n_obs else 0
        logger.info(
            "attributing %d cells with %r on %d member(s): %d chunk(s) of %d cells, device %s",
            n_obs, method, n_members, n_chunks, batch_size, dev,
        )
        bar = _progress_bar(range(n_chunks), total=n_chunks, desc=f"xl {method}") if progress else range(n_chunks)
        for ci in bar:
            start, stop = ci * batch_size, min((ci + 1) * batch_size, n_obs)
            sl = slice(start, stop)
            x_np = rows(sl)
            x = torch.as_tensor(x_np, device=dev).to(dtype)
            t = torch.as_tensor(targets[sl], dtype=torch.int64, device=dev)
            g_chunk = groups[sl]
            per_member = []
            ang_acc = None
            for mi, mem in enumerate(members):
                t0 = time.perf_counter()
                acc = None
                for r in range(n_repeats):
                    rs = refset(mi, r) if sampler is not None else None
                    for s in range(n_noise):
                        xs = x
                        if noise_sd is not None:
                            xs = x + _noise(entropy, mi, r, s, start, stop, n_obs, n_features, dev, dtype) * noise_sd
                        a, ang = _attribute_one(mem, xs, t, g_chunk, rs, ctx)
                        acc = a if acc is None else acc.add_(a)
                        if ang is not None:
                            ang_acc = ang if ang_acc is None else ang_acc + ang
                if n_repeats * n_noise > 1:
                    acc /= n_repeats * n_noise
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                member_seconds[mi] += time.perf_counter() - t0
                per_member.append(acc)
            if aggregate == "mean":
                agg = per_member[0]
                if n_members > 1:
                    agg = per_member[0] + per_member[1]
                    for a in per_member[2:]:
                        agg += a
                    agg /= n_members
            else:
                agg = _median(torch.stack(per_member))
            _group_sums(per_member, agg, g_chunk, n_groups, member_sums, agg_sums, dev)
            agg_np = agg.to(torch.float32).cpu().numpy()
            if out is not None:
                out[sl] = agg_np
            if angles is not None:
                angles[sl] = (ang_acc / (n_members * n_repeats * n_noise)).to(torch.float32).cpu().numpy()
            if on_chunk is not None:
                on_chunk(sl, agg_np)
        if hasattr(bar, "close"):
            bar.close()
    finally:
        for mem in members:
            mem.restore()

    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.where(counts > 0, counts, np.nan)[:, None]
        group_means = (agg_sums / denom).astype(np.float32)
        member_group_means = (member_sums / denom[None]).astype(np.float32)
    seconds = time.perf_counter() - t_start
    params = dict(
        method=method,
        references=(sampler.kind if sampler is not None else None),
        n_baselines=(sampler.n_baselines if sampler is not None else 0),
        n_repeats=n_repeats,
        stochastic=bool(stochastic),
        smoothgrad=list(smoothgrad) if smoothgrad is not None else None,
        aggregate=aggregate,
        absolute=bool(absolute),
        gradient_correction=block_index is not None,
        n_steps=int(n_steps),
        exact_integrated_gradients=bool(method == "integrated_gradients" and all(mem.fast for mem in members)),
        batch_size=batch_size,
        memory_limit_bytes=int(memory_limit_bytes),
        device=str(dev),
        precision=precision,
        random_state=entropy,
        n_members=n_members,
        n_groups=int(n_groups),
    )
    logger.info("finished %r attribution in %.2f s", method, seconds)
    return AttributionResult(
        method=method,
        attributions=out,
        group_means=group_means,
        member_group_means=member_group_means,
        group_counts=counts,
        angles=angles,
        block_ids=block_index.block_ids if block_index is not None else None,
        fast=np.array([mem.fast for mem in members]),
        seconds=seconds,
        member_seconds=member_seconds,
        params=params,
    )


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


def _group_sums(per_member, agg, g_chunk, n_groups, member_sums, agg_sums, dev) -> None:
    """Add per-group column sums, accumulated over chunks in float64.

    On CUDA a one-hot matmul per chunk keeps this deterministic (unlike atomic scatter-adds).
    """
    present = np.unique(g_chunk[g_chunk >= 0])
    if present.size == 0:
        return
    if dev.type == "cpu":  # sequential scatter-add: deterministic on CPU
        keep = np.flatnonzero(g_chunk >= 0)
        pos = torch.as_tensor(np.searchsorted(present, g_chunk[keep]))
        keep_t = torch.as_tensor(keep)

        def sums(a):
            return torch.zeros(present.size, a.shape[1], dtype=a.dtype).index_add_(0, pos, a[keep_t]).numpy()
    else:
        onehot = torch.as_tensor(g_chunk[None, :] == present[:, None], dtype=agg.dtype, device=dev)

        def sums(a):
            return (onehot @ a).cpu().numpy()

    agg_sums[present] += sums(agg)
    for mi, a in enumerate(per_member):
        member_sums[mi, present] += sums(a)


def _attribute_one(mem: _Member, x, t, g_chunk, rs: ReferenceSet | None, ctx) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attributions of one member for one chunk, one repeat and one noise sample."""
    dev, dtype = ctx["dev"], ctx["dtype"]
    if rs is None:
        return _no_reference(mem, x, t, ctx)
    if rs.shared is not None:
        refs = torch.as_tensor(rs.shared, device=dev).to(dtype)
        return _with_reference(mem, x, t, refs, ctx), None
    out = torch.empty_like(x)
    for k in np.unique(g_chunk):
        idx = torch.as_tensor(np.flatnonzero(g_chunk == k), device=dev)
        refs = torch.as_tensor(rs.per_group[k], device=dev).to(dtype)
        out[idx] = _with_reference(mem, x[idx], t[idx], refs, ctx)
    return out, None


def _no_reference(mem: _Member, x, t, ctx):
    method = ctx["method"]
    bi = ctx["block_index"]
    if method in ("guided_gradcam", "guided_gradcam_pp"):
        from ._gradcam import guided_gradcam, guided_gradcam_pp

        fn = guided_gradcam if method == "guided_gradcam" else guided_gradcam_pp
        return fn(mem.module, x, t), None
    if bi is not None:
        grad = gradient(mem.folded, x, t) if mem.fast else captum_attribute(mem.module, x, t, "gradient")
        grad, ang = correct_gradients(grad, bi)
        if method == "saliency":
            return (grad.abs() if ctx["absolute"] else grad), ang
        return x * grad, ang
    if mem.fast:
        if method == "saliency":
            return FAST_KERNELS[method](mem.folded, x, t, abs=ctx["absolute"]), None
        return FAST_KERNELS[method](mem.folded, x, t), None
    return captum_attribute(mem.module, x, t, method, abs=ctx["absolute"]), None


def _with_reference(mem: _Member, x, t, refs, ctx):
    method = ctx["method"]
    if mem.fast:
        from ._fast import deeplift, feature_ablation

        if method == "feature_ablation":
            return feature_ablation(mem.folded, x, t, refs, gene_block=ctx["gene_block"])
        return deeplift(mem.folded, x, t, refs, k_block=ctx["k_block"], workspace=ctx["workspace"])
    return captum_attribute(
        mem.module, x, t, method, refs, n_steps=ctx["n_steps"], internal_batch_size=ctx["ig_rows"],
        perturbations_per_eval=1,
    )
