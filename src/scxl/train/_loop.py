"""The training loop of one ensemble member (arrays in, trained module out)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._logging import deferred_interrupt, progress
from .._subnormal import FLUSH_EVERY, flush_tiny_
from ._split import balanced_epoch

#: Class-balancing strategies (``balance=`` of :func:`scxl.tl.train_classifier`).
BALANCE = ("upsample", "weights", "none")

#: Samples per epoch at most with ``epoch_size="auto"`` (:func:`scxl.tl.train_classifier`): epochs of
#: data sets up to this size are whole passes; on atlases the validation checks come every this many samples.
AUTO_EPOCH_SIZE = 100_000

#: The columns of a member's training history, one row per finished epoch.
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"]


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C, a notebook's stop button) after at least one epoch.

    Raised by :func:`fit_member` and :func:`~scxl.train.fit_members` in place of the
    ``KeyboardInterrupt`` (of which it is a subclass, so code that does not look for it stops as
    before) once every member in training has finished an epoch: the members are handed over
    with their best weights so far.

    Attributes
    ----------
    results
        ``(module, history)`` of each member, best weights so far restored (eval mode), as the
        training function would have returned them; a history holds the finished epochs.
    finished
        Per member, whether its training had ended (early stopping or ``max_epochs``) before the
        interruption.

    Examples
    --------
    >>> from scxl.train import TrainingInterrupted
    >>> try:
    ...     raise TrainingInterrupted([], [])
    ... except KeyboardInterrupt as stop:  # what code that does not know it catches
    ...     print(type(stop).__name__, stop.finished)
    TrainingInterrupted []
    """

    def __init__(self, results: list[tuple[nn.Module, pd.DataFrame]], finished: list[bool]) -> None:
        super().__init__("training interrupted")
        self.results, self.finished = results, finished

    def __reduce__(self):  # (pickling: e.g. raised in a Dask task)
        return type(self), (self.results, self.finished)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the paper's defaults).

    :func:`scxl.tl.train_classifier` sets its own measured ones where these are off, e.g.
    ``epoch_size=100_000`` and ``min_delta_chance=0.003``.

    Adam with cross-entropy and L2 weight decay; the learning rate is multiplied by
    ``lr_factor`` after ``lr_patience`` epochs without improvement of the validation loss
    (``ReduceLROnPlateau``'s own rule: ``min_delta`` does not touch it); training stops after
    ``patience`` epochs without improvement, and the weights of the epoch with the lowest
    validation loss are restored. For the patience count, an epoch improves when its validation
    loss is below ``best × (1 - min_delta)`` and more than ``max(1e-6, min_delta_chance × ln K)``
    below ``best``, the loss of the last epoch that counted (:func:`improved`; ``ln K`` is the
    cross-entropy of a uniform guess over the ``K`` classes); with both at 0 that epoch is also
    the one restored. On small data the batch size is lowered so that every epoch has at least
    :data:`MIN_STEPS` optimiser steps (one step per epoch makes early stopping fire on noise).

    ``epoch_size`` caps the samples of an epoch (``None``: all of them): an epoch is then the
    first ``epoch_size`` samples of the member's shuffled (up-sampled) epoch — a fresh random draw
    each epoch — and early stopping watches a fixed subset of at most ``epoch_size // 4`` of the
    member's validation rows (:func:`monitored_rows`). On atlases this makes the validation
    checks, the learning-rate schedule and early stopping react every ``epoch_size`` samples
    instead of once per pass over millions of cells.
    """

    max_epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    balance: str = "upsample"
    patience: int = 10
    lr_patience: int = 5
    lr_factor: float = 0.25
    epoch_size: int | None = None
    min_delta: float = 0.0
    min_delta_chance: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_epochs", "batch_size", "patience", "lr_patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.epoch_size is not None and int(self.epoch_size) < 2:
            raise ValueError(f"epoch_size must be None or an integer >= 2, got {self.epoch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")
        if isinstance(self.min_delta, bool) or not isinstance(self.min_delta, int | float | np.integer | np.floating):
            raise ValueError(f"min_delta must be a number (a fraction in [0, 1)), got {self.min_delta!r}")
        if not 0 <= self.min_delta < 1:
            raise ValueError(f"min_delta must be a fraction in [0, 1), got {self.min_delta}")
        v = self.min_delta_chance
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not 0 <= v < 1:
            raise ValueError(f"min_delta_chance must be a fraction in [0, 1) of the chance loss ln K, got {v!r}")
        if self.balance not in BALANCE:
            raise ValueError(f"balance={self.balance!r} is not valid; choose one of {list(BALANCE)}")

    def asdict(self) -> dict:
        """The settings as a plain dict."""
        return asdict(self)


def improved(loss: float, best: float, min_delta: float, floor: float = 0.0) -> bool:
    """Whether a validation ``loss`` improves on the ``best`` so far: by the fraction ``min_delta`` and by ``floor``.

    ``min_delta=0, floor=0``: any fall of more than 1e-6 counts (the absolute floor of 1e-6 keeps
    rounding noise from resetting the patience count). The training loops pass
    ``floor = min_delta_chance × ln K`` (:class:`TrainConfig`).

    Examples
    --------
    >>> from scxl.train import improved
    >>> improved(0.0099, 0.01, 0.0), improved(0.0099, 0.01, 0.05), improved(0.5, float("inf"), 0.05)
    (True, False, True)
    >>> improved(0.497, 0.5, 0.0, floor=0.002), improved(0.499, 0.5, 0.0, floor=0.002)
    (True, False)
    """
    return loss < best - max(1e-6, floor) and loss < best * (1.0 - min_delta)


def chance_floor(config: TrainConfig, n_classes: int) -> float:
    """The absolute improvement floor of early stopping: ``min_delta_chance × ln K`` (0 for one class)."""
    return float(config.min_delta_chance) * float(np.log(max(int(n_classes), 1)))


#: Minimum optimiser steps per epoch: ``batch_size`` is lowered (to no less than 16) for small data.
MIN_STEPS = 8

Fetch = Callable[[np.ndarray], torch.Tensor]


@torch.no_grad()
def evaluate(module: nn.Module, fetch: Fetch, idx: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and predicted class of rows ``idx`` (eval mode)."""
    module.eval()
    losses, preds = [], []
    read = getattr(fetch, "validation_rows", fetch)  # a TrainRows: into a reused buffer
    for start in range(0, idx.size, batch_size):
        b = idx[start : start + batch_size]
        logits = module(read(b))
        target = torch.as_tensor(y[b], device=logits.device)
        losses.append(nn.functional.cross_entropy(logits, target, reduction="sum").item())
        preds.append(logits.argmax(1).cpu().numpy())
    return sum(losses) / max(idx.size, 1), np.concatenate(preds) if preds else np.empty(0, dtype=int)


def epoch_order(y_train: np.ndarray, n_classes: int, balance: str, rng: np.random.Generator) -> np.ndarray:
    """One epoch's draw of a member: class-balanced up-sampling or a permutation (positions in ``y_train``)."""
    return balanced_epoch(y_train, n_classes, rng) if balance == "upsample" else rng.permutation(y_train.size)


def monitored_rows(val_idx: np.ndarray, epoch_size: int | None) -> np.ndarray:
    """The validation rows early stopping watches: all, or ``epoch_size // 4`` evenly spaced ones.

    Deterministic (no random draw), so a member sees the same rows whichever way it is trained.

    Examples
    --------
    >>> import numpy as np
    >>> from scxl.train import monitored_rows
    >>> monitored_rows(np.arange(10), None).size, monitored_rows(np.arange(100), 40).tolist()
    (10, [0, 11, 22, 33, 44, 55, 66, 77, 88, 99])
    """
    cap = None if epoch_size is None else max(1, int(epoch_size) // 4)
    if cap is None or val_idx.size <= cap:
        return val_idx
    return val_idx[np.linspace(0, val_idx.size - 1, cap).round().astype(np.int64)]


def epoch_batch_size(batch_size: int, n: int) -> int:
    """Mini-batch size of an epoch of ``n`` samples: small data gets at least :data:`MIN_STEPS` steps."""
    return min(batch_size, max(16, -(-n // MIN_STEPS)))


_FUSED_ADAM: dict[str, bool] = {}


def fused_adam(device: torch.device) -> bool:
    """Whether torch's fused Adam kernel (``torch.optim.Adam(fused=True)``) runs on ``device``.

    The fused kernel makes one pass over each parameter, its gradient and Adam's two moments; the
    default CPU path makes about ten. Measured on a 2-core CPU for the default ensemble (10 MLPs,
    2,000 genes): 0.8 ms a step against 6.4 ms, a quarter of a training step
    (``benchmarks/results/train_2core_cpu.txt``). Torch has it on the CPU since 2.4 and on CUDA
    since 2.0; elsewhere (and on older versions) the default Adam runs. Checked once per device type.
    """
    key = torch.device(device).type
    if key not in _FUSED_ADAM:
        try:
            p = torch.zeros(2, device=device, requires_grad=True)
            p.grad = torch.ones_like(p)
            torch.optim.Adam([p], lr=1e-3, weight_decay=1e-4, fused=True).step()
            _FUSED_ADAM[key] = bool(torch.isfinite(p).all())
        except (RuntimeError, TypeError, ValueError):
            _FUSED_ADAM[key] = False
    return _FUSED_ADAM[key]


def adam(parameters, config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """The optimiser of one member: Adam with ``config``'s learning rate and weight decay, fused where torch has it.

    The fused kernel takes floating-point parameters on one device; a module with others (a custom
    model's complex or half-precision weights, parameters left on another device) gets the default Adam.
    """
    parameters = list(parameters)
    device = torch.device(device)
    fused = fused_adam(device) and all(
        p.dtype in (torch.float32, torch.float64) and p.device.type == device.type for p in parameters)
    if fused:
        try:
            return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):  # a parameter the fused kernel does not take
            pass
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)


def _adam_moments(opt: torch.optim.Optimizer, p: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Adam's first and second moments of ``p`` (none before its first step)."""
    state = opt.state.get(p, {})
    return tuple(state[k] for k in ("exp_avg", "exp_avg_sq") if k in state)


def fit_member(
    module: nn.Module,
    fetch: Fetch,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    n_classes: int,
    config: TrainConfig,
    rng: np.random.Generator,
    device: torch.device,
    desc: str = "epochs",
) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``module`` in place and return it (best weights restored) with its history.

    Parameters
    ----------
    module
        A freshly initialised module.
    fetch
        Maps row indices to a float32 tensor on ``device``. A :class:`scxl._inputs.TrainRows`
        (what :func:`scxl.tl.train_classifier` passes) also orders each epoch for block-shuffled
        reading from disk (:meth:`~scxl._inputs.TrainRows.arrange`, :meth:`~scxl._inputs.TrainRows.batch`).
    y
        Integer class codes of all rows.
    train_idx, val_idx
        Rows used for training and for early stopping (``val_idx`` may be empty: the training
        loss is monitored then).
    n_classes
        Number of classes.
    config
        Optimisation settings.
    rng
        Source of the sampling randomness (torch's RNG must be seeded by the caller).
    device
        Device of ``module`` and of the fetched tensors.
    desc
        Progress bar label.

    Raises
    ------
    TrainingInterrupted
        On a ``KeyboardInterrupt`` (Ctrl-C) after the first epoch, with the module and its best
        weights so far (before that, the ``KeyboardInterrupt`` itself).
    """
    module.to(device)
    y_train = y[train_idx]
    val_idx = monitored_rows(val_idx, config.epoch_size)
    weight = None
    if config.balance == "weights":
        counts = np.bincount(y_train, minlength=n_classes).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
        weight = torch.as_tensor(w, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = adam(module.parameters(), config, device)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=config.lr_factor, patience=config.lr_patience)
    best_loss, lowest, best_state, best_epoch, bad = np.inf, np.inf, None, 0, 0
    floor = chance_floor(config, n_classes)
    n_steps = 0
    rows = []
    arrange = getattr(fetch, "arrange", None)
    read_batch = getattr(fetch, "batch", fetch)
    if val_idx.size and hasattr(fetch, "hold"):  # the validation rows, read once rather than every epoch
        fetch.hold(val_idx)
    bar = progress(range(config.max_epochs), desc=desc, leave=False)
    interrupted = False
    try:
        for epoch in bar:
            module.train()
            positions = train_idx[epoch_order(y_train, n_classes, config.balance, rng)]
            if arrange is not None:  # block-shuffled reading from disk
                positions = arrange(epoch, positions)
            positions = positions[: config.epoch_size]  # None: the whole epoch
            total, seen, correct = 0.0, 0, 0
            bs = epoch_batch_size(config.batch_size, positions.size)
            for start in range(0, positions.size, bs):
                b = positions[start : start + bs]
                if b.size < 2:  # BatchNorm needs two samples in training mode
                    continue
                xb = read_batch(b)
                target = torch.as_tensor(y[b], device=device)
                opt.zero_grad(set_to_none=True)
                logits = module(xb)
                loss = loss_fn(logits, target)
                loss.backward()
                opt.step()
                n_steps += 1
                if n_steps % FLUSH_EVERY == 0:  # subnormal weights slow the CPU several times
                    flush_tiny_([t for p in module.parameters() for t in (p, *_adam_moments(opt, p))])
                total += loss.item() * b.size
                seen += b.size
                correct += int((logits.argmax(1) == target).sum())
            train_loss = total / max(seen, 1)
            if val_idx.size:
                val_loss, pred = evaluate(module, fetch, val_idx, y, 4 * config.batch_size)
                val_acc = float((pred == y[val_idx]).mean())
            else:
                val_loss, val_acc = train_loss, float("nan")
            monitored = val_loss
            rows.append(
                {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": correct / max(seen, 1),
                 "val_loss": val_loss if val_idx.size else np.nan, "val_accuracy": val_acc, "lr": opt.param_groups[0]["lr"]}
            )
            bar.set_postfix(val_loss=f"{val_loss:.3f}")
            if improved(monitored, lowest, 0.0):  # the weights restored: lowest validation loss
                best_state, lowest, best_epoch = copy.deepcopy(module.state_dict()), monitored, epoch + 1
            if improved(monitored, best_loss, config.min_delta, floor):  # the patience counter: min_delta(_chance)
                best_loss, bad = monitored, 0
            else:
                bad += 1
            sched.step(monitored)
            if bad >= config.patience:
                break
    except KeyboardInterrupt:  # Ctrl-C: stop here, the best weights so far restored below
        interrupted = True
    with deferred_interrupt("the member", reraise=False) as late:  # a Ctrl-C from here on: the member is kept
        bar.close()
        if hasattr(fetch, "release"):  # the batch buffers; the held validation rows stay for the evaluation that follows
            fetch.release(held=False)
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
        history["best"] = history["epoch"] == best_epoch
    if interrupted:
        if not rows:  # not one epoch finished: nothing worth handing over
            raise KeyboardInterrupt("training interrupted before its first epoch finished: no member to keep") from None
        if best_state is None:  # interrupted before the first epoch's weights were kept: the module holds them
            history["best"] = history["epoch"] == history["epoch"].iloc[-1]
    if interrupted or late.received:  # (after its training ended: the member is finished, and the call stops)
        raise TrainingInterrupted([(module, history)], [not interrupted])
    return module, history
