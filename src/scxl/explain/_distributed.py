"""The attribution engine over a Dask array: one task per block of rows, on a cluster if one is active.

:func:`attribute_dask` splits the cells by the row chunks of a :class:`dask.array.Array`, runs
:func:`~scxl.explain.attribute_modules` on every block as a task (on the workers of the active
``dask.distributed`` client, else on Dask's local scheduler), and adds the float64 group sums of
the blocks. Everything random is fixed before the tasks start, so the result is the in-memory
one (to float rounding of differently chunked sums): per-gene statistics come from Dask
reductions, the references of every member and repeat are drawn once on the client
(:class:`~scxl.explain.FixedReferences`) and SmoothGrad noise is keyed by each cell's position in
the whole data set. The per-cell layer stays a *lazy* Dask array, one block per task, computed
chunk by chunk when written (e.g. ``AnnData.write_zarr``) or indexed: computing it runs each block's
attribution again (with the same seeds, so the same numbers), so a stored layer costs a second
pass; the group summaries alone (``store_cells=False``) cost one. Note that anndata writes Dask
arrays with Dask's threaded scheduler (on the client machine); to write the layer with the cluster,
``adata.layers[key].to_zarr(...)`` under the client.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._worker_limits import _own_limits, _stop_fraction
from ._engine import AttributionConfig, AttributionResult, attribute_modules
from ._references import GeneStats, get_reference_kind, make_reference_sampler
from ._registry import get_explainer, resolve_n_baselines, resolve_reference


def active_client():
    """The current ``dask.distributed`` client, or ``None`` (no cluster, or distributed not installed)."""
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - distributed is optional
        return None
    try:
        return get_client()
    except ValueError:
        return None


#: What a Dask worker process holds before a task's own data, once torch and scxl are imported
#: (325-345 MiB measured on Linux with torch 2.13 CPU and distributed 2026.8; a worker with a
#: 400 MiB limit paused there and its task never ran).
WORKER_BASELINE_BYTES = 384 * 2**20
#: The smallest attribution workspace a worker is given (``AttributionConfig.memory_limit_bytes``).
MIN_TASK_WORKSPACE = 32 * 2**20


def worker_room(client: Any) -> int | None:
    """Bytes one task may use on the tightest worker of ``client``, or ``None`` (no limit set, or no worker yet).

    Dask pauses a worker whose process memory passes its pause fraction
    (``distributed.worker.memory.pause``, 80 % by default) of its ``memory_limit``, and the tasks of
    a paused worker wait until memory falls, which, when the worker's baseline plus one task is
    above that mark, is never. The room is that mark less :data:`WORKER_BASELINE_BYTES`, shared by
    the worker's threads (a task each). Each worker's own limit and fractions are asked for (workers
    may run with another Dask config than the client's); where they cannot be asked, the
    scheduler's record and the client's config are used.
    """
    tightest = _tightest(client)
    return tightest[0] if tightest else None


def _tightest(client: Any) -> tuple[int, float, str] | None:
    """``(room, stop fraction, how it stops)`` of the tightest worker with a memory limit, or ``None``."""
    rooms = [(int((frac * limit - WORKER_BASELINE_BYTES) / nthreads), frac, how)
             for limit, nthreads, frac, how in _limits(client)]
    return min(rooms, key=lambda r: r[0]) if rooms else None


def _limits(client: Any) -> list[tuple[int, int, float, str]]:
    """``(memory_limit, nthreads, stop fraction, how it stops)`` of every worker that has a memory limit."""
    try:
        found = client.run(_own_limits).values()
    except Exception:  # an old, restricted or stand-in client: the scheduler's record and our config
        try:
            workers = client.scheduler_info(n_workers=-1).get("workers", {})
        except TypeError:  # distributed before 2025.1 has no n_workers and lists every worker
            workers = client.scheduler_info().get("workers", {})
        found = [(w.get("memory_limit"), w.get("nthreads"), *_stop_fraction()) for w in workers.values()]
    return [(int(limit), max(int(nthreads or 1), 1), float(frac), how) for limit, nthreads, frac, how in found if limit]


def check_worker_room(client: Any, need: int, what: str, hint: str = "") -> int | None:
    """Refuse, before submitting, tasks that would pause a worker for ever; return :func:`worker_room`."""
    from .._validation import format_bytes as _size

    room = worker_room(client)
    if room is not None and need > room:
        frac, how = (_tightest(client) or (None, *_stop_fraction()))[1:]
        raise MemoryError(
            f"{what} needs about {_size(need)} per task on a Dask worker beside the worker's own "
            f"{_size(WORKER_BASELINE_BYTES)} (Python, torch, scxl), but the tightest worker allows "
            f"{_size(max(room, 0))} per thread: "
            + (f"Dask {how} a worker at {frac:.0%} of its memory_limit" if how != "runs out of memory" else
               "a worker without a pause or terminate fraction runs out of memory at its memory_limit")
            + f" ({'and its tasks then wait for ever' if how == 'pauses' else 'and its tasks fail'}). Give the workers more memory (at least 2 GiB each, e.g. "
            "LocalCluster(memory_limit='4GiB') or dask worker --memory-limit 4GiB) or fewer threads per worker"
            + hint)
    return room


def refuse_small_workers(what: str, adata: Any = None) -> None:
    """Before the first Dask computation on the active client: refuse workers that cannot run a task at all.

    With a client active, every ``compute`` of Dask data (reading a lazy ``obs``, the value checks,
    the statistics) runs on its workers, so a worker that pauses before its first task would hang
    the call right there. With ``adata``, only when it holds Dask data (a lazy AnnData, a Dask
    ``X`` or layer). The workers are asked for their limits by a function that imports neither
    torch nor the rest of scxl, so the question itself does not fill a small worker.
    """
    client = active_client()
    if client is not None and (adata is None or has_dask_data(adata)):
        check_worker_room(client, MIN_TASK_WORKSPACE, what)


def has_dask_data(adata: Any) -> bool:
    """Whether an AnnData (or a MuData's modalities) holds Dask data: a lazy ``obs``, a Dask ``X``, ``raw.X`` or layer."""
    import pandas as pd

    from .._inputs import _is_dask

    parts = list(adata.mod.values()) if hasattr(adata, "mod") else [adata]
    return any(not isinstance(getattr(a, "obs", None), pd.DataFrame) or _is_dask(getattr(a, "X", None))
               or _is_dask(getattr(getattr(a, "raw", None), "X", None))
               or any(_is_dask(v) for v in getattr(a, "layers", {}).values()) for a in parts)


def _dask_stats(X, groups: np.ndarray, n_groups: int, *, per_group: bool) -> GeneStats:
    """Per-gene (and per-group) mean and population sd through Dask reductions."""
    import dask.array as da

    X = X.map_blocks(lambda b: np.asarray(b.todense() if hasattr(b, "todense") else b, dtype=np.float64),  # sparse chunks
                     dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64))
    n = X.shape[0]
    mean, sq = da.compute(X.sum(0), (X * X).sum(0))
    mean, sq = np.asarray(mean) / n, np.asarray(sq) / n
    sd = np.sqrt(np.maximum(sq - mean**2, 0.0))
    if not per_group:
        return GeneStats(n, mean, sd)
    onehot = da.from_array((groups[:, None] == np.arange(n_groups)[None]).astype(np.float64), chunks=(X.chunks[0], n_groups))
    gs, gsq = da.compute(onehot.T @ X, onehot.T @ (X * X))
    counts = np.bincount(groups[groups >= 0], minlength=n_groups).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        gmean = np.asarray(gs) / np.maximum(counts, 1)[:, None]
        gsd = np.sqrt(np.maximum(np.asarray(gsq) / np.maximum(counts, 1)[:, None] - gmean**2, 0.0))
    return GeneStats(n, mean, sd, counts.astype(np.int64), gmean, gsd)


def _block(modules, x, targets, groups, n_groups, method, config, offset, total, store_cells, gene_sd):
    """One task: the engine on one block of rows; returns its float64 sums (and its cells)."""
    x = np.asarray(x.todense() if hasattr(x, "todense") else x, dtype=np.float32)
    res = attribute_modules(modules, x, targets, method, groups=groups, n_groups=n_groups, config=config, gene_sd=gene_sd,
                            store_cells=store_cells, progress=False, row_offset=offset, total_obs=total)
    return res.sums, res.attributions, res.params


def attribute_dask(
    modules: Sequence[Any],
    X: Any,
    targets: np.ndarray,
    method: str = "deeplift",
    *,
    groups: np.ndarray | None = None,
    n_groups: int | None = None,
    config: AttributionConfig | None = None,
    store_cells: bool = True,
    client: Any = None,
) -> tuple[AttributionResult, Any]:
    """Attributions of every member for the cells of a Dask array, block by block, on a cluster.

    Parameters
    ----------
    modules
        Ensemble members (shipped to the workers with the tasks).
    X
        ``(n_cells, G)`` :class:`dask.array.Array` (dense or sparse chunks); its row chunks are
        the tasks.
    targets, groups, n_groups, method
        As for :func:`~scxl.explain.attribute_modules`.
    config
        :class:`~scxl.explain.AttributionConfig`.
    store_cells
        Return the per-cell, member-aggregated attributions as a Dask array (one chunk per task).
    client
        A ``dask.distributed`` client; default: the active one, else Dask's local scheduler.

    Returns
    -------
    ``(result, cells)``: an :class:`~scxl.explain.AttributionResult` with the group summaries
    (``attributions`` is ``None``) and the Dask array of cells (``None`` without ``store_cells``).

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from scxl.models import MLP
    >>> from scxl.explain import attribute_dask, attribute_modules
    >>> X = np.random.default_rng(0).random((40, 6), dtype=np.float32)
    >>> t = np.arange(40) % 2
    >>> mods = [MLP(6, 2, [8]), MLP(6, 2, [8])]
    >>> res, cells = attribute_dask(mods, da.from_array(X, chunks=(15, 6)), t, "deeplift")
    >>> ref = attribute_modules(mods, X, t, "deeplift", progress=False)
    >>> bool(np.allclose(res.group_means, ref.group_means, atol=1e-6)), cells.shape
    (True, (40, 6))
    """
    import dask
    import dask.array as da

    config = config or AttributionConfig()
    targets = np.asarray(targets, dtype=np.int64)
    groups = targets.copy() if groups is None else np.asarray(groups, dtype=np.int64)
    if n_groups is None:
        n_groups = int(max(groups.max(initial=-1), targets.max(initial=-1))) + 1
    n_obs = X.shape[0]
    if targets.shape[0] != n_obs or groups.shape[0] != n_obs:
        raise ValueError(f"targets and groups need {n_obs} entries, one per row of X")
    spec = get_explainer(method)
    kind = resolve_reference(spec, config.references)
    entropy = int(config.random_state) if config.random_state is not None else int(np.random.SeedSequence().entropy)
    cfg = config.replace(random_state=entropy)
    client = client or active_client()
    if client is not None:  # before any computation: a task holds its block (float32, densified), its cells, a workspace
        block = max(X.chunks[0]) * X.shape[1] * 4 * (3 if store_cells else 2)
        weights = sum(int(p.numel()) * 4 for m in modules for p in m.parameters())
        room = check_worker_room(client, block + weights + MIN_TASK_WORKSPACE, "attribution",
                                 f", or split X into smaller row blocks (e.g. X.rechunk(({max(1, max(X.chunks[0]) // 4)}, -1)))")
        if room is not None and block + weights + cfg.memory_limit_bytes > room:  # a smaller workspace: smaller chunks
            cfg = cfg.replace(memory_limit_bytes=int(room - block - weights))
    if kind is not None:  # draw every reference of the run now, on the client
        stats = None
        if isinstance(kind, str):
            ref_kind = get_reference_kind(kind)
            if set(ref_kind.needs) & {"stats", "group_stats"} or cfg.smoothgrad is not None:
                stats = _dask_stats(X, groups, n_groups, per_group="group_stats" in ref_kind.needs)

            def read_rows(idx):
                block = X[np.asarray(idx)].compute()
                return np.asarray(block.todense() if hasattr(block, "todense") else block, dtype=np.float32)
        else:
            read_rows = None
        sampler = make_reference_sampler(kind, n_features=X.shape[1], n_baselines=resolve_n_baselines(spec, kind, cfg.n_baselines),
                                         stats=stats, read_rows=read_rows, n_obs=n_obs, groups=groups, n_groups=n_groups)
        cfg = cfg.replace(references=sampler.fixed(entropy, len(modules), max(int(cfg.n_repeats), 1)))
    gene_sd = None
    if cfg.smoothgrad is not None:
        gene_sd = _dask_stats(X, groups, n_groups, per_group=False).sd
    run = dask.delayed(_block, nout=3, pure=False)
    mods = dask.delayed(list(modules), traverse=False)
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).astype(int)
    tasks = [run(mods, blk, targets[s:s + n], groups[s:s + n], n_groups, method, cfg, int(s), n_obs, store_cells, gene_sd)
             for blk, s, n in zip(X.to_delayed().ravel(), starts, X.chunks[0], strict=True)]
    parts = [t[0] for t in tasks] + [tasks[0][2]]
    if client is None:
        out = dask.compute(*parts)
    else:
        futures = client.compute(parts)
        try:
            wait_for(futures)
        except KeyboardInterrupt:  # Ctrl-C: the workers stop too, instead of finishing blocks no one will read
            client.cancel(futures)
            raise
        out = client.gather(futures)
    sums, params = list(out[:-1]), out[-1]
    cells = None
    if store_cells:  # lazy: computing it runs each block's task again (same seeds, same numbers)
        cells = da.concatenate([da.from_delayed(t[1], shape=(n, X.shape[1]), dtype=np.float32)
                                for t, n in zip(tasks, X.chunks[0], strict=True)])
    return _combine(sums, groups, n_groups, spec.name, params), cells


def wait_for(futures: list, poll: float = 0.1) -> None:
    """Wait in this thread until every future is done (finished, failed or cancelled).

    Polled rather than through ``client.gather``, so that a Ctrl-C lands here, between two looks,
    and not inside the client's own wait, whose coroutines then die unheard ("Task exception was
    never retrieved ... AllExit" on the console).
    """
    while not all(f.done() for f in futures):
        if any(f.status == "error" for f in futures):  # as gather: the first failure is raised at once
            return
        time.sleep(poll)


def _combine(sums: list[dict], groups: np.ndarray, n_groups: int, method: str, params: dict) -> AttributionResult:
    total = {k: np.sum([s[k] for s in sums], axis=0) for k in sums[0]}
    counts = np.bincount(groups[groups >= 0], minlength=n_groups).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.where(counts > 0, counts, np.nan)[:, None]
        mean = {k: (v / (denom[None] if v.ndim == 3 else denom)).astype(np.float32) for k, v in total.items()}
    n_members = total["member"].shape[0]
    return AttributionResult(
        method=method, attributions=None, group_means=mean["aggregated"], member_group_means=mean["member"],
        group_counts=counts, angles=None, block_ids=None, fast=np.ones(n_members, dtype=bool), seconds=float("nan"),
        member_seconds=np.full(n_members, np.nan), params=dict(params) | {"n_blocks": len(sums), "backend": "dask"},
        presence_group_means=mean.get("presence"), member_presence_group_means=mean.get("member_presence"), sums=total,
    )
