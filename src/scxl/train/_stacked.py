"""All members of an MLP ensemble trained at once: one vectorised pass per mini-batch.

The weights of the members are stacked (``(M, out, in)`` per linear layer) and every mini-batch
of every member goes through one batched matrix product (``torch.baddbmm``/``torch.bmm``), so the
data are read once per step for all members (from memory, or from a disk buffer that all
members share) and the per-step overhead of Python, autograd and the optimiser is paid once.

Each member keeps everything that makes it a member: its own training/validation split, its own
initialisation, dropout stream and up-sampling order (its own seeds), its own learning-rate
schedule (ReduceLROnPlateau), early stopping and best weights. The optimiser is Adam written
over (slices of) the stacked tensors, with per-member step counts and learning rates,
applied to the active members only; a member that has stopped is taken out of the stack, so
nothing (neither a gradient nor Adam's momentum) moves it any more.

Every operation computes a member from that member's data alone with the very kernels that
:func:`scxl.train.fit_member` uses — a batched product is used for a layer only where it was
checked to compute each matrix exactly as the plain product does (true of the large layers on
the CPU; small ones may be computed member by member) — so the members are bit-identical to those
trained one after another, and do not depend on which other members share the stack
(``extend=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from .._logging import deferred_interrupt
from .._logging import progress as _progress_bar
from .._subnormal import FLUSH_EVERY, flush_tiny_
from ..models._modules import Dropout, dropout_noise
from ._loop import (
    HISTORY_COLUMNS,
    Fetch,
    TrainConfig,
    TrainingInterrupted,
    chance_floor,
    epoch_batch_size,
    epoch_order,
    fused_adam,
    improved,
    monitored_rows,
)

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def stackable(module: nn.Module) -> bool:
    """Whether a member can be trained in the stacked pass: a :class:`~scxl.models.MLP`.

    Parameters
    ----------
    module
        A member.

    Returns
    -------
    ``True`` for an MLP (any hidden sizes, with or without BatchNorm), ``False`` otherwise.

    Examples
    --------
    >>> from scxl.models import MLP, GridCNN
    >>> from scxl.train import stackable
    >>> stackable(MLP(20, 3)), stackable(GridCNN(16, 3))
    (True, False)
    """
    from ..models import MLP

    if type(module) is not MLP:
        return False
    kinds = (nn.Linear, nn.BatchNorm1d, nn.ReLU, Dropout)
    return all(type(layer) in kinds for layer in module.net) and not any(
        isinstance(layer, nn.BatchNorm1d) and (not layer.affine or not layer.track_running_stats or layer.momentum is None)
        for layer in module.net
    )


def _lone_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, g: torch.Tensor, *, needs_gx: bool):
    """``nn.Linear``'s own gradients of one member (``autograd`` on a fresh graph)."""
    with torch.enable_grad():
        w, b = w.detach().requires_grad_(), b.detach().requires_grad_()
        x = x.detach().requires_grad_(needs_gx)
        out = F.linear(x, w, b)
        grads = torch.autograd.grad(out, [x, w, b] if needs_gx else [w, b], g)
    return (grads if needs_gx else (None, *grads)), out.detach()


class _StackedLinear(torch.autograd.Function):
    """``x @ W.T + b`` for stacked members, with the results ``nn.Linear`` computes, member by member.

    ``plan`` says, for the forward product, the weight gradient, the input gradient and the bias
    gradient, how each is computed so that it is exact (:func:`_plan`): batched over the members,
    member by member with the plain product, or (where neither is) with ``nn.Linear``'s own autograd.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, plan):
        ctx.save_for_backward(x, weight, bias)
        ctx.plan = plan
        if plan[0] == BATCHED:
            return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        return torch.stack([F.linear(xi, wi, bi) for xi, wi, bi in zip(x.unbind(0), weight.unbind(0), bias.unbind(0), strict=True)])

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        _, mode_gw, mode_gx, mode_gb = ctx.plan
        grad = grad.contiguous()
        needs_gx = ctx.needs_input_grad[0]
        m = x.shape[0]
        gx = None
        if needs_gx:
            gx = _product(mode_gx, lambda: torch.bmm(grad, weight), lambda i: torch.mm(grad[i], weight[i]), m)
        gw = _product(mode_gw, lambda: torch.bmm(grad.transpose(1, 2), x), lambda i: torch.mm(grad[i].t(), x[i]), m)
        gb = _product(mode_gb, lambda: grad.sum(1), lambda i: grad[i].sum(0), m)
        if gw is None or gb is None or (needs_gx and gx is None):
            lone = [_lone_linear(x[i], weight[i], bias[i], grad[i], needs_gx=needs_gx)[0] for i in range(x.shape[0])]
            if needs_gx and gx is None:
                gx = torch.stack([g[0] for g in lone])
            gw = torch.stack([g[1] for g in lone]) if gw is None else gw
            gb = torch.stack([g[2] for g in lone]) if gb is None else gb
        return gx, gw, gb, None


#: How a product of :class:`_StackedLinear` is computed: one batched product, the plain product member
#: by member, or ``nn.Linear``'s autograd member by member (always exact, slowest).
BATCHED, PER_MEMBER, AUTOGRAD = "batched", "per member", "autograd"


def _product(mode: str, batched, member, m: int):
    """A stacked product of ``m`` members by ``mode`` (``None`` for :data:`AUTOGRAD`: the caller runs it)."""
    if mode == BATCHED:
        return batched()
    if mode == PER_MEMBER:
        return torch.stack([member(i) for i in range(m)])
    return None


#: (device, M, B, in, out, needs input grad, gradients needed) -> how each product equals nn.Linear's, member by member
_EXACT: dict[tuple, tuple[str, str, str, str]] = {}


def _plan(device: torch.device, m: int, b: int, k: int, n: int, *, needs_gx: bool,
          grads: bool = True) -> tuple[str, str, str, str]:
    """How each product is computed, for these shapes, to give exactly what ``nn.Linear`` gives member by member.

    The four are the forward product (``baddbmm``), the weight and input gradients (``bmm``) and
    the bias gradient (a stacked sum).

    BLAS libraries compute a batched product matrix by matrix with the kernel of the plain product
    for most shapes, but pick other kernels for some (small ones, or with several threads). This is
    checked once per shape on random data (different kernels round differently): where the batched
    form differs, the plain product member by member (``mm(grad.T, x)``: the product ``nn.Linear``'s
    backward uses) is checked; where that differs too, ``nn.Linear``'s autograd runs member by
    member. Without ``grads`` (inference) only the forward product is checked.
    """
    key = (str(device), m, b, k, n, needs_gx, grads)
    if key in _EXACT:
        return _EXACT[key]
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(m, b, k, generator=gen).to(device), torch.randn(m, n, k, generator=gen).to(device)
    bias = torch.randn(m, n, generator=gen).to(device)
    out = torch.baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2))
    if not grads:  # inference (validation): only the forward product matters
        fwd = all(torch.equal(F.linear(x[i], w[i], bias[i]), out[i]) for i in range(m))
        _EXACT[key] = (BATCHED if fwd else PER_MEMBER, BATCHED, BATCHED, BATCHED)
        return _EXACT[key]
    g = torch.randn(m, b, n, generator=gen).to(device)
    lone = [_lone_linear(x[i], w[i], bias[i], g[i], needs_gx=needs_gx) for i in range(m)]
    candidates = {  # product -> (batched, plain product of member i), compared with nn.Linear's
        "gw": (torch.bmm(g.transpose(1, 2), x), lambda i: torch.mm(g[i].t(), x[i]), 1),
        "gx": (torch.bmm(g, w), lambda i: torch.mm(g[i], w[i]), 0),
        "gb": (g.sum(1), lambda i: g[i].sum(0), 2),
    }
    modes = [BATCHED if all(torch.equal(lone[i][1], out[i]) for i in range(m)) else PER_MEMBER]
    for name, (batched, member, pos) in candidates.items():
        if name == "gx" and not needs_gx:
            modes.append(AUTOGRAD)  # not computed
            continue
        ref = [lone[i][0][pos] for i in range(m)]
        if all(torch.equal(batched[i], ref[i]) for i in range(m)):
            modes.append(BATCHED)
        elif all(torch.equal(member(i), ref[i]) for i in range(m)):
            modes.append(PER_MEMBER)
        else:
            modes.append(AUTOGRAD)
    _EXACT[key] = tuple(modes)
    return _EXACT[key]


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Stacked ``nn.Linear``: batched where that is exact, else member by member."""
    m, b, k = x.shape
    grads = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad)
    plan = _plan(x.device, m, b, k, weight.shape[1], needs_gx=x.requires_grad, grads=grads)
    return _StackedLinear.apply(x, weight, bias, plan)


class _Stack:
    """Stacked parameters, buffers and Adam state of the active members."""

    def __init__(self, modules: Sequence[nn.Module], device: torch.device) -> None:
        net = modules[0].net
        self.layers: list[tuple[str, Any]] = []
        self.names: list[str] = []  # parameter names (state-dict keys), in stacking order
        self.buffers: list[str] = []
        for k, layer in enumerate(net):
            if isinstance(layer, nn.Linear):
                self.layers.append(("linear", (f"net.{k}.weight", f"net.{k}.bias")))
                self.names += [f"net.{k}.weight", f"net.{k}.bias"]
            elif isinstance(layer, nn.BatchNorm1d):
                keys = tuple(f"net.{k}.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
                self.layers.append(("bn", (keys, float(layer.momentum), float(layer.eps))))
                self.names += list(keys[:2])
                self.buffers += list(keys[2:])
            elif isinstance(layer, nn.ReLU):
                self.layers.append(("relu", None))
            else:
                self.layers.append(("dropout", float(layer.p)))
        states = [m.state_dict() for m in modules]
        self.params = {n: torch.stack([s[n] for s in states]).to(device).requires_grad_() for n in self.names}
        self.bufs = {n: torch.stack([s[n] for s in states]).to(device) for n in self.buffers}
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self._steps: tuple[list[float], torch.Tensor] | None = None  # Adam's step counts, on the device (fused step)
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}

    def keep(self, rows: list[int]) -> None:
        """Drop the members not in ``rows`` (positions in the stack) from every stacked tensor."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=next(iter(self.params.values())).device)
        with torch.no_grad():
            self.params = {n: p.detach().index_select(0, idx).requires_grad_() for n, p in self.params.items()}
        self.bufs = {n: b.index_select(0, idx) for n, b in self.bufs.items()}
        self.exp_avg = {n: t.index_select(0, idx) for n, t in self.exp_avg.items()}
        self.exp_avg_sq = {n: t.index_select(0, idx) for n, t in self.exp_avg_sq.items()}
        self._steps = None

    def state(self, row: int) -> dict[str, torch.Tensor]:
        """A copy of one member's state dict."""
        out = {n: p.detach()[row].clone() for n, p in self.params.items()}
        out.update({n: b[row].clone() for n, b in self.bufs.items()})
        return out

    def forward(self, x: torch.Tensor, *, train: bool, generators: Sequence[torch.Generator] = ()) -> torch.Tensor:
        """Logits ``(M, B, C)`` of the stacked members for their inputs ``x`` ``(M, B, G)``."""
        h = x
        for kind, arg in self.layers:
            if kind == "linear":
                h = _linear(h, self.params[arg[0]], self.params[arg[1]])
            elif kind == "bn":
                (w, b, rm, rv, nbt), momentum, eps = arg
                if train:
                    self.bufs[nbt].add_(1)
                outs = [F.batch_norm(hm, self.bufs[rm][m], self.bufs[rv][m], self.params[w][m], self.params[b][m],
                                     training=train, momentum=momentum, eps=eps) for m, hm in enumerate(h.unbind(0))]
                h = torch.stack(outs)
            elif kind == "relu":
                h = torch.relu(h)
            elif train and arg > 0:  # the MLP's Dropout, each member from its own generator
                noise = torch.stack([dropout_noise(h.shape[1:], arg, dtype=h.dtype, device=h.device, generator=g)
                                     for g in generators])
                h = h * noise
        return h

    @torch.no_grad()
    def adam_step(self, lrs: Sequence[float], steps: Sequence[int], weight_decay: float) -> None:
        """One Adam step of every stacked member (``torch.optim.Adam``'s arithmetic, per member).

        Members that share a learning rate and a step count and sit next to each other in the
        stack are updated by one operation on their slice of the stacked tensors where the
        element-wise kernels were checked to compute every element alike wherever it sits
        (:func:`_elementwise_is_exact`); else member by member.
        """
        beta1, beta2 = _ADAM_BETAS
        first = next(iter(self.params.values()))
        n = first.shape[0]
        if fused_adam(first.device):
            self._fused_adam_step(lrs, steps, weight_decay)
            return
        runs, r0 = [], 0
        together = _elementwise_is_exact(first.device)
        for r in range(1, n + 1):
            if r == n or not together or (lrs[r], steps[r]) != (lrs[r0], steps[r0]):
                runs.append((r0, r))
                r0 = r
        params, grads, avg, avg_sq, step_sizes, bc2_sqrts = [], [], [], [], [], []
        for name, p in self.params.items():
            for a, b in runs:
                params.append(p[a:b])
                grads.append(p.grad[a:b])
                avg.append(self.exp_avg[name][a:b])
                avg_sq.append(self.exp_avg_sq[name][a:b])
                step = float(steps[a])
                step_sizes.append(-(lrs[a] / (1 - beta1**step)))
                bc2_sqrts.append((1 - beta2**step) ** 0.5)
        if weight_decay != 0:  # in place: the gradients are dropped after the step
            torch._foreach_add_(grads, params, alpha=weight_decay)
        torch._foreach_lerp_(avg, grads, 1 - beta1)
        torch._foreach_mul_(avg_sq, beta2)
        torch._foreach_addcmul_(avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(avg_sq)
        torch._foreach_div_(denom, bc2_sqrts)
        torch._foreach_add_(denom, _ADAM_EPS)
        torch._foreach_addcdiv_(params, avg, denom, step_sizes)
        flush = [i for i, (a, _) in enumerate(runs * len(self.params)) if steps[a] % FLUSH_EVERY == 0]
        if flush:  # as fit_member: subnormal weights slow the CPU several times
            flush_tiny_([t[i] for t in (params, avg, avg_sq) for i in flush])
        for p in self.params.values():
            p.grad = None


    def _fused_adam_step(self, lrs: Sequence[float], steps: Sequence[int], weight_decay: float) -> None:
        """``torch.optim.Adam(fused=True)``'s step, member by member on its rows of the stacked tensors.

        One call per member: the fused kernel computes the elements at the end of a tensor
        (those short of a vector) through a scalar path that rounds differently, so a member's
        rows go through it as a tensor of their own, as in :func:`~scxl.train.fit_member`.
        """
        beta1, beta2 = _ADAM_BETAS
        names = list(self.params)
        first = self.params[names[0]]
        want = [float(s) for s in steps]
        if self._steps is not None and [s + 1 for s in self._steps[0]] == want:
            self._steps[1].add_(1)  # on the device: no copy from the host each step (a CUDA synchronisation)
        else:  # the first step, or after members stopped (keep)
            self._steps = (want, torch.tensor(want, dtype=torch.float32, device=first.device))
        self._steps = (want, self._steps[1])
        for r in range(first.shape[0]):
            step = self._steps[1][r]
            torch._fused_adam_([self.params[k].detach()[r] for k in names], [self.params[k].grad[r] for k in names],
                               [self.exp_avg[k][r] for k in names], [self.exp_avg_sq[k][r] for k in names], [],
                               [step] * len(names), amsgrad=False, lr=float(lrs[r]), beta1=beta1, beta2=beta2,
                               weight_decay=weight_decay, eps=_ADAM_EPS, maximize=False)
            if steps[r] % FLUSH_EVERY == 0:  # as fit_member: subnormal weights slow the CPU several times
                flush_tiny_([t[k].detach()[r] if t is self.params else t[k][r]
                             for t in (self.params, self.exp_avg, self.exp_avg_sq) for k in names])
        for p in self.params.values():
            p.grad = None


_ELEMENTWISE: dict[str, bool] = {}


def _elementwise_is_exact(device: torch.device) -> bool:
    """Whether Adam's element-wise kernels give every element the same bits wherever it sits in a tensor.

    Vectorised kernels and their scalar remainders may round fused operations (``a + s * b``)
    differently, which would make a member's update depend on its position in the stack. Checked
    once per device on random data at odd offsets.
    """
    key = str(device)
    if key not in _ELEMENTWISE:
        gen = torch.Generator().manual_seed(0)
        n = 70001
        a, b = torch.randn(n, generator=gen).to(device), torch.randn(n, generator=gen).to(device)
        c = (torch.rand(n, generator=gen) + 0.1).to(device)
        ops = [lambda a, b, c: a.add(b, alpha=1e-4), lambda a, b, c: a.clone().lerp_(b, 0.1),
               lambda a, b, c: a.clone().mul_(0.999).addcmul_(b, b, value=0.001),
               lambda a, b, c: (c.sqrt() / 0.03).add_(1e-8), lambda a, b, c: a.clone().addcdiv_(b, c, value=-1e-3)]
        ok = True
        for f in ops:
            full = f(a, b, c)
            for off, length in ((1, 5), (3, 37), (7, 40001), (13, 33333), (17, 50000)):
                part = f(a[off : off + length].clone(), b[off : off + length].clone(), c[off : off + length].clone())
                ok = ok and torch.equal(part, full[off : off + length])
        _ELEMENTWISE[key] = bool(ok)
    return _ELEMENTWISE[key]


def fit_members(
    modules: Sequence[nn.Module],
    fetch: Fetch,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    n_classes: int,
    config: TrainConfig,
    rngs: Sequence[np.random.Generator],
    generators: Sequence[torch.Generator],
    device: torch.device,
    desc: str = "epochs",
    progress: bool = True,
) -> list[tuple[nn.Module, pd.DataFrame]]:
    """Train MLP members all at once (stacked weights); each as :func:`~scxl.train.fit_member` would.

    Parameters
    ----------
    modules
        Freshly initialised :class:`~scxl.models.MLP` members of one architecture (see
        :func:`stackable`).
    fetch
        Row reader: positions to a float32 tensor; a :class:`scxl._inputs.TrainRows` also gathers
        stacked ``(M, B)`` batches and reads from disk by shared, shuffled blocks.
    y
        Integer class codes of all rows.
    splits
        ``(train_idx, val_idx)`` of each member. Members train in step, so every member's epoch
        must have the same length (true of stratified splits of the same labels).
    n_classes
        Number of classes.
    config
        Optimisation settings.
    rngs
        Each member's source of sampling randomness (up-sampling and shuffling).
    generators
        Each member's torch generator for dropout (in the state :func:`~scxl.train.fit_member`
        would find the global generator in after the member's initialisation).
    device
        Device of the stacked weights and of the fetched tensors.
    desc
        Progress bar label.
    progress
        Show a progress bar over the epochs (also subject to ``xl.settings.progress``).

    Returns
    -------
    ``(module, history)`` of every member, best weights restored (eval mode).

    Raises
    ------
    TrainingInterrupted
        On a ``KeyboardInterrupt`` (Ctrl-C) once every member has finished an epoch, with every
        member and its best weights so far (before that, the ``KeyboardInterrupt`` itself).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scxl.models import MLP
    >>> from scxl.train import TrainConfig, fit_members, stratified_split
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> X = torch.as_tensor(rng.normal(size=(200, 5)) + y[:, None], dtype=torch.float32)
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> members = [MLP(5, 2, (8,)) for _ in range(3)]
    >>> splits = [stratified_split(y, 0.2, np.random.default_rng(i)) for i in range(3)]
    >>> out = fit_members(members, lambda i: X[torch.as_tensor(i)], y, splits, n_classes=2,
    ...                   config=TrainConfig(max_epochs=3), rngs=[np.random.default_rng(i) for i in range(3)],
    ...                   generators=[torch.Generator().manual_seed(i) for i in range(3)], device=torch.device("cpu"))
    >>> [len(history) for _, history in out]
    [3, 3, 3]
    """
    n = len(modules)
    if not n:
        return []
    if not all(stackable(m) for m in modules):
        raise TypeError("fit_members trains MLP members only; train other modules with fit_member")
    y_trains = [y[tr] for tr, _ in splits]
    weights = None
    if config.balance == "weights":
        weights = []
        for yt in y_trains:
            counts = np.bincount(yt, minlength=n_classes).astype(np.float64)
            w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
            weights.append(torch.as_tensor(w, dtype=torch.float32, device=device))
    val = [monitored_rows(va, config.epoch_size) for _, va in splits]
    n_val = {v.size for v in val}
    if len(n_val) != 1:
        raise ValueError("fit_members needs validation sets of one size (stratified splits of the same labels)")
    n_val = n_val.pop()
    stack = _Stack(modules, device)
    # per-member schedule: a real ReduceLROnPlateau on a stand-in optimiser holding the member's lr
    dummies = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr) for _ in range(n)]
    scheds = [torch.optim.lr_scheduler.ReduceLROnPlateau(d, mode="min", factor=config.lr_factor, patience=config.lr_patience)
              for d in dummies]
    steps = [0] * n
    best_loss, lowest = [np.inf] * n, [np.inf] * n
    floor = chance_floor(config, n_classes)
    best_state: list[dict | None] = [None] * n
    best_epoch, bad = [0] * n, [0] * n
    rows: list[list[dict]] = [[] for _ in range(n)]
    final: list[dict | None] = [None] * n
    active = list(range(n))  # member index of each stack row
    arrange = getattr(fetch, "arrange", None)
    read_batch = getattr(fetch, "batch", None)
    if n_val and hasattr(fetch, "hold"):  # every member's validation rows, read once rather than every epoch
        fetch.hold(np.concatenate(val))
    bar = _progress_bar(range(config.max_epochs), desc=desc, leave=False, disable=not progress)
    interrupted = False
    try:
        for epoch in bar:
            orders = []
            for i in active:
                pos = splits[i][0][epoch_order(y_trains[i], n_classes, config.balance, rngs[i])]
                orders.append(arrange(epoch, pos) if arrange is not None else pos)
            if len({o.size for o in orders}) != 1:
                raise ValueError("fit_members needs epochs of one length for all members (stratified splits of the same labels)")
            order = np.stack(orders)[:, : config.epoch_size]  # None: the whole epoch
            length = order.shape[1]
            bs = epoch_batch_size(config.batch_size, length)
            total, seen, correct = np.zeros(len(active)), 0, np.zeros(len(active), dtype=np.int64)
            gens = [generators[i] for i in active]
            for start in range(0, length, bs):
                b = order[:, start : start + bs]
                if b.shape[1] < 2:  # BatchNorm needs two samples in training mode
                    continue
                xb = read_batch(b) if read_batch is not None else torch.stack([fetch(r) for r in b])
                target = torch.as_tensor(y[b], device=device)
                logits = stack.forward(xb, train=True, generators=gens)
                if weights is None and hasattr(torch, "_log_softmax_backward_data"):  # private: absent -> per member
                    losses = _cross_entropy_backward(logits, target)
                else:
                    losses = [F.cross_entropy(lg, t, weight=weights[i])
                              for lg, t, i in zip(logits.unbind(0), target.unbind(0), active, strict=True)]
                    torch.stack(losses).sum().backward()
                for i in active:
                    steps[i] += 1
                stack.adam_step([dummies[i].param_groups[0]["lr"] for i in active], [steps[i] for i in active],
                                config.weight_decay)
                values = torch.stack(losses).detach().cpu().tolist()
                total += np.asarray(values) * b.shape[1]
                seen += b.shape[1]
                correct += (logits.detach().argmax(2) == target).sum(1).cpu().numpy()
            val_loss, val_acc = _evaluate(stack, fetch, [val[i] for i in active], y, 4 * config.batch_size, n_val)
            stopped = []
            for r, i in enumerate(active):
                train_loss = total[r] / max(seen, 1)
                vl, va_ = (val_loss[r], val_acc[r]) if n_val else (train_loss, float("nan"))
                rows[i].append({"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": int(correct[r]) / max(seen, 1),
                                "val_loss": vl if n_val else np.nan, "val_accuracy": va_, "lr": dummies[i].param_groups[0]["lr"]})
                if improved(vl, lowest[i], 0.0):  # the weights restored: lowest validation loss
                    best_state[i], lowest[i], best_epoch[i] = stack.state(r), vl, epoch + 1
                if improved(vl, best_loss[i], config.min_delta, floor):  # the patience counter: min_delta(_chance)
                    best_loss[i], bad[i] = vl, 0
                else:
                    bad[i] += 1
                scheds[i].step(vl)
                if bad[i] >= config.patience or epoch + 1 == config.max_epochs:
                    stopped.append(r)
                    final[i] = stack.state(r)
            if active:
                bar.set_postfix(active=len(active) - len(stopped))
            if stopped:
                keep = [r for r in range(len(active)) if r not in stopped]
                active = [active[r] for r in keep]
                if not active:
                    break
                stack.keep(keep)
    except KeyboardInterrupt:  # Ctrl-C: stop here, every member's best weights so far restored below
        interrupted = True
    with deferred_interrupt("the members", reraise=False) as late:  # a Ctrl-C from here on: the members are kept
        bar.close()
        if hasattr(fetch, "release"):  # the batch buffers; the held validation rows stay for the evaluation that follows
            fetch.release(held=False)
        if interrupted and not all(rows):  # not one epoch finished by every member: nothing worth handing over
            raise KeyboardInterrupt("training interrupted before its first epoch finished: no member to keep") from None
        out = []
        for i, m in enumerate(modules):
            state = best_state[i] if best_state[i] is not None else final[i]
            if state is None and interrupted and i in active:  # before its first weights were kept: the stack holds them
                state, best_epoch[i] = stack.state(active.index(i)), len(rows[i])
            m.to(device).load_state_dict(state)
            m.eval()
            history = pd.DataFrame(rows[i], columns=HISTORY_COLUMNS)
            history["best"] = history["epoch"] == best_epoch[i]
            out.append((m, history))
    if interrupted or late.received:  # (a Ctrl-C after every member's training ended: all finished, the call stops)
        raise TrainingInterrupted(out, [f is not None for f in final])
    return out


def _cross_entropy_backward(logits: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    """Back-propagate every member's mean cross-entropy from stacked ``(M, B, C)`` logits; the losses.

    ``nn.CrossEntropyLoss``'s arithmetic (log-softmax, then the mean negative log-likelihood,
    whose gradient is ``-1/B`` at each target), with the row-wise log-softmax and its backward
    run once for all members; each member's loss value is its own ``nll_loss``.
    """
    with torch.no_grad():
        logp = torch.log_softmax(logits.detach(), dim=-1)
        b = logits.shape[1]
        grad = torch.zeros_like(logp)
        grad.scatter_(2, target.unsqueeze(2), -(torch.ones((), dtype=logp.dtype) / b).item())  # -1/B in float32
        grad_logits = torch._log_softmax_backward_data(grad, logp, -1, logp.dtype)
        losses = [F.nll_loss(lp, t) for lp, t in zip(logp.unbind(0), target.unbind(0), strict=True)]
    logits.backward(grad_logits)
    return losses


@torch.no_grad()
def _evaluate(stack: _Stack, fetch: Fetch, val: list[np.ndarray], y: np.ndarray, batch_size: int, n_val: int,
              budget_bytes: int = 2**28) -> tuple[list[float], list[float]]:
    """Mean cross-entropy and accuracy of each stacked member on its own validation rows (eval mode).

    Each member's rows are cut into the batches :func:`~scxl.train.evaluate` uses, so the
    losses are those of the member trained alone; members are evaluated in groups that keep a
    stacked batch under ``budget_bytes``.
    """
    m = len(val)
    if not n_val or not m:
        return [float("nan")] * m, [float("nan")] * m
    losses = [[] for _ in range(m)]
    correct = np.zeros(m, dtype=np.int64)
    n_cols = int(stack.params[stack.layers[0][1][0]].shape[-1])
    group = max(1, budget_bytes // max(1, batch_size * n_cols * 4))
    V = np.stack(val)
    for g0 in range(0, m, group):
        rows = list(range(g0, min(m, g0 + group)))
        sub = _SubStack(stack, rows)
        for start in range(0, n_val, batch_size):
            b = V[rows, start : start + batch_size]
            read = getattr(fetch, "validation_rows", None)  # a TrainRows: into a reused buffer
            xb = read(b) if read is not None else torch.stack([fetch(r) for r in b])
            logits = sub.forward(xb)
            target = torch.as_tensor(y[b], device=logits.device)
            for k, (lg, t) in enumerate(zip(logits.unbind(0), target.unbind(0), strict=True)):
                losses[rows[k]].append(F.cross_entropy(lg, t, reduction="sum").item())
            correct[rows] += (logits.argmax(2) == target).sum(1).cpu().numpy()
    return [sum(v) / n_val for v in losses], [float(c) / n_val for c in correct]


class _SubStack:
    """Some rows of a :class:`_Stack`, evaluated in eval mode."""

    def __init__(self, stack: _Stack, rows: list[int]) -> None:
        n = next(iter(stack.params.values())).shape[0]
        if rows == list(range(n)):
            self.view = stack
            return
        idx = torch.as_tensor(rows, dtype=torch.long, device=next(iter(stack.params.values())).device)
        view = _Stack.__new__(_Stack)
        view.layers, view.names, view.buffers = stack.layers, stack.names, stack.buffers
        view.params = {k: p.detach().index_select(0, idx) for k, p in stack.params.items()}
        view.bufs = {k: b.index_select(0, idx) for k, b in stack.bufs.items()}
        self.view = view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.view.forward(x, train=False)
