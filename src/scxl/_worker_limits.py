"""What a Dask worker is asked about its memory (``client.run``): this module imports only Dask.

``client.run`` sends a function by reference, so the worker imports the function's module: were
it :mod:`scxl.explain._distributed`, the worker would import torch and the rest of scxl just to
answer, which alone pauses a worker with a few hundred MiB (the very workers the question is
meant to find).
"""

from __future__ import annotations

from typing import Any


def _own_limits(dask_worker: Any) -> tuple[int | None, int, float, str]:
    """Run on a worker (``client.run``): its memory limit, threads and the fraction at which it stops."""
    import dask

    memory = getattr(dask_worker, "memory_manager", dask_worker)
    pause = getattr(memory, "memory_pause_fraction", None)
    # the nanny restarts a worker past the terminate fraction; without a nanny nothing does
    terminate = dask.config.get("distributed.worker.memory.terminate", 0.95) if getattr(dask_worker, "nanny", None) else None
    nthreads = getattr(getattr(dask_worker, "state", None), "nthreads", None) or getattr(dask_worker, "nthreads", 1)
    return (getattr(memory, "memory_limit", None), nthreads, *_stop_fraction(pause, terminate))


def _stop_fraction(pause: Any = "config", terminate: Any = "config") -> tuple[float, str]:
    """The fraction of ``memory_limit`` at which a worker stops running tasks, and how.

    ``"config"``: the fraction in this process's Dask config; ``False`` or ``None``: not set.
    """
    import dask

    if pause == "config":
        pause = dask.config.get("distributed.worker.memory.pause", 0.8)
    if terminate == "config":
        terminate = dask.config.get("distributed.worker.memory.terminate", 0.95)
    if pause is not False and pause is not None:
        return float(pause), "pauses"
    if terminate is not False and terminate is not None:
        return float(terminate), "restarts"
    return 1.0, "runs out of memory"
