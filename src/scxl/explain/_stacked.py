r"""Exact kernels for all members of an ensemble at once: stacked one-hidden-layer MLPs.

The members' folded weights (:class:`~scxl.explain.FoldedMLP`) are stacked into
``W1: (M, H, G)`` and friends, so a chunk of ``n`` cells is pushed through every member with one
GEMM (``x @ W1_cat^T`` with ``W1_cat = W1.reshape(M·H, G)``) and pulled back with one batched
GEMM (``(M, n, H) @ (M, H, G)``), instead of ``M`` small products with Python in between. The
arithmetic is that of :mod:`scxl.explain._fast` member by member (results agree to float
rounding); every kernel returns ``(M, n, G)`` — one slice per member — or the pair
``(total, presence)`` with ``opts.split`` (see :func:`scxl.explain._fast.deeplift`).

For DeepLift with one or two shared references, :func:`deeplift_group_sums` returns only the
members' group sums, added block by block without forming the ``(M, n, G)`` attributions
(the engine's path when no per-cell output is wanted).

Inputs may be shared by all members, ``x: (n, G)``, or per member, ``x: (M, n, G)`` (SmoothGrad
draws its noise per member); references are shared, ``(B, G)``, or per member, ``(M, B, G)``
(random kinds are drawn per member).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch

from ._fast import DEEPLIFT_EPS, FoldedMLP, rescale_multipliers


@dataclass(frozen=True)
class StackedMLP:
    """``M`` one-hidden-layer ReLU MLPs of the same shape, their folded weights stacked.

    Attributes
    ----------
    w1
        ``(M, H, G)`` first-layer weights (unscaled, as in :class:`~scxl.explain.FoldedMLP`).
    s1, b1
        ``(M, H)`` BatchNorm scale and folded bias.
    w2
        ``(M, C, H)`` output weights.
    b2
        ``(M, C)`` output biases.
    """

    w1: torch.Tensor
    s1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    _ref_cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_folded(cls, members: list[FoldedMLP]) -> StackedMLP | None:
        """Stack folded members; ``None`` if their shapes, dtypes or devices differ."""
        if not members:
            return None
        first = members[0]
        same = all(m.w1.shape == first.w1.shape and m.w2.shape == first.w2.shape and m.w1.dtype == first.w1.dtype
                   and m.w1.device == first.w1.device for m in members)
        if not same:
            return None
        return cls(*(torch.stack([getattr(m, f) for m in members]) for f in ("w1", "s1", "b1", "w2", "b2")))

    @property
    def n_members(self) -> int:
        """Number of members ``M``."""
        return self.w1.shape[0]

    @property
    def n_hidden(self) -> int:
        """Hidden units ``H`` per member."""
        return self.w1.shape[1]

    @property
    def n_features(self) -> int:
        """Input genes ``G``."""
        return self.w1.shape[2]

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, n, H)`` pre-activations of shared ``(n, G)`` or per-member ``(M, n, G)`` inputs."""
        m, h, g = self.w1.shape
        if x.ndim == 2:
            z = (x @ self.w1.reshape(m * h, g).T).view(x.shape[0], m, h).transpose(0, 1)
        else:
            z = torch.bmm(x, self.w1.transpose(1, 2))
        return z * self.s1[:, None, :] + self.b1[:, None, :]

    def reference_pre_activation(self, refs: torch.Tensor) -> torch.Tensor:
        """``(M, B, H)`` pre-activations of shared ``(B, G)`` or per-member ``(M, B, G)`` references.

        Taken from the cache for a tensor passed to :meth:`keep_references` (by identity), else
        computed.
        """
        hit = self._ref_cache.get(id(refs))
        if hit is not None and hit[0] is refs:
            return hit[1]
        if refs.ndim == 3:
            return torch.bmm(refs, self.w1.transpose(1, 2)) * self.s1[:, None, :] + self.b1[:, None, :]
        return self.pre_activation(refs)

    def keep_references(self, refs: torch.Tensor) -> None:
        """Remember the pre-activations of ``refs``, a tensor the caller passes unchanged to every chunk.

        The engine does so for a run's one fixed set of references, so each member's ``W1`` is
        not read again for them chunk after chunk. The tensor is kept alive with its entry, so
        its identity cannot be taken by another; it must not be changed in place afterwards.
        """
        self._ref_cache[id(refs)] = (refs, self.reference_pre_activation(refs))

    def target_weights(self, targets: torch.Tensor, *, positive: bool = False) -> torch.Tensor:
        """``(M, n, H)``: ``W2[target] ⊙ s1`` per member (``relu(W2[target]) ⊙ s1`` with ``positive``)."""
        w = self.w2[:, targets, :]
        return (torch.relu(w) if positive else w) * self.s1[:, None, :]

    def backward(self, a: torch.Tensor) -> torch.Tensor:
        """``(M, n, G)``: hidden-side weights ``a: (M, n, H)`` pulled back through every member's ``W1``."""
        return torch.bmm(a, self.w1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, n, C)`` logits."""
        return torch.bmm(torch.relu(self.pre_activation(x)), self.w2.transpose(1, 2)) + self.b2[:, None, :]


def gradient(st: StackedMLP, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(M, n, G)`` gradient of every member's target logit w.r.t. the input."""
    return st.backward(st.target_weights(targets) * (st.pre_activation(x) > 0))


def saliency_kernel(st: StackedMLP, x, targets, refs, opts) -> torch.Tensor:
    """Saliency of every member (absolute gradient with ``opts.absolute``)."""
    grad = gradient(st, x, targets)
    return grad.abs() if opts.absolute else grad


def input_x_gradient_kernel(st: StackedMLP, x, targets, refs, opts) -> torch.Tensor:
    """Input × gradient of every member."""
    return x * gradient(st, x, targets)


def guided_backprop_kernel(st: StackedMLP, x, targets, refs, opts) -> torch.Tensor:
    """Guided backpropagation of every member."""
    return st.backward(st.target_weights(targets, positive=True) * (st.pre_activation(x) > 0))


def deeplift_kernel(st: StackedMLP, x, targets, refs, opts, *, eps: float = DEEPLIFT_EPS):
    """DeepLift-Rescale of every member, averaged over references (= DeepLiftShap, = exact IG).

    Up to :data:`LOOP_MAX_REFS` references are taken one at a time over all genes. With more,
    the genes are taken in blocks (:func:`_blocked_references`), so the ``B × n × block``
    products and their element-wise passes stay in the cache.

    Parameters
    ----------
    st
        The stacked members.
    x
        ``(n, G)`` or ``(M, n, G)`` inputs.
    targets
        ``(n,)`` target classes.
    refs
        ``(B, G)`` references shared by the members, or ``(M, B, G)`` per member.
    opts
        :class:`~scxl.explain.KernelOptions` (``split``: also the presence part).
    eps
        Captum's threshold below which the plain gradient replaces the Rescale ratio.

    Returns
    -------
    ``(M, n, G)`` attributions, or ``(total, presence)`` with ``opts.split``.
    """
    per_member = refs.ndim == 3
    z = st.pre_activation(x)  # (M, n, H)
    w = st.target_weights(targets)  # (M, n, H)
    n_refs = refs.shape[-2]
    z0 = st.reference_pre_activation(refs)  # (M, B, H): each reference forwarded once per member
    if n_refs > LOOP_MAX_REFS:
        return _blocked_references(st, x, refs, z, z0, w, split=opts.split, eps=eps)
    out = pres = None
    for b in range(n_refs):
        r = refs[:, b : b + 1, :] if per_member else refs[b]
        v = st.backward(rescale_multipliers(z, z0[:, b : b + 1, :], eps=eps) * w)  # (M, n, G)
        d = x - r
        if opts.split:  # the part from genes above the reference: v * max(d, 0) (one product, no mask)
            above = v * d.clamp_min(0)
            pres = above if pres is None else pres.add_(above)
        part = v.mul_(d)
        out = part if out is None else out.add_(part)
    if n_refs > 1:
        out /= n_refs
        if pres is not None:
            pres /= n_refs
    return (out, pres) if opts.split else out


#: Most references :func:`deeplift_kernel` takes one at a time over all genes; beyond, genes go in blocks.
LOOP_MAX_REFS = 2

#: Values of one ``B × n × block`` product of :func:`_blocked_references` (and of one
#: ``M × n × block`` one of :func:`deeplift_group_sums`): on the CPU 2²¹ (8 MiB in float32), so the
#: product and its element-wise passes run from the cache (measured at 20,000 genes, 20
#: references, 64–256 cells: 2²¹ and 2²² fastest, 2²⁰ 10 % and 2¹⁸ 50–90 % slower); larger on a
#: GPU. The engine counts three such buffers against its memory limit (:data:`BLOCK_BUFFERS`).
BLOCK_VALUES = {"cpu": 2**21, "cuda": 2**24}
#: Devices whose group sums are added with ``index_add_``; elsewhere (CUDA, whose ``index_add_``
#: adds atomically in no fixed order) a one-hot product gives deterministic sums.
INDEX_ADD_DEVICES = frozenset({"cpu"})
#: Buffers of :data:`BLOCK_VALUES` values the blocked kernels hold at once.
BLOCK_BUFFERS = 3
#: Fewest genes per block (the products need some columns to run at full speed).
MIN_BLOCK = 32


def _blocked_references(st: StackedMLP, x, refs, z, z0, w, *, split: bool, eps: float):
    """Mean over ``B`` references of ``(x - r_b) ⊙ (a_b W1)`` (and of ``(x - r_b)⁺ ⊙ (a_b W1)``), gene block by block.

    ``a_b = w ⊙ m(z, z0_b)`` is formed once for all references, ``(M, B·n, H)``; for each block
    of genes and each member, one product ``(B·n, H) @ (H, block)`` into a reused buffer gives
    every reference's pull-back, and the differences ``x - r_b`` of the block (shared by the
    members when the inputs and references are) weight it, summed over references straight into
    the outputs. Every temporary is reused, so nothing is allocated (and page-faulted) per block.
    """
    m_count, n, h = z.shape
    g = st.n_features
    n_refs = refs.shape[-2]
    a = rescale_multipliers(z[:, None], z0[:, :, None], eps=eps).mul_(w[:, None])  # (M, B, n, H)
    a = a.reshape(m_count, n_refs * n, h)  # (a copy only where the broadcast left it non-contiguous)
    n_out = 2 if split else 1  # the total and its presence part, side by side: one pass reads each product once
    both = torch.empty(n_out, m_count, n, g, dtype=z.dtype, device=z.device)
    budget = BLOCK_VALUES.get(z.device.type, BLOCK_VALUES["cuda"])
    block = int(min(g, max(MIN_BLOCK, budget // max(n_refs * n, 1))))
    v_buf = torch.empty(n_refs * n * block, dtype=z.dtype, device=z.device)
    d_buf = torch.empty(n_out * n_refs * n * block, dtype=z.dtype, device=z.device)  # x - r_b and (x - r_b)⁺
    shared = x.ndim == 2 and refs.ndim == 2
    for start in range(0, g, block):
        sl = slice(start, min(g, start + block))
        width = sl.stop - sl.start
        v = v_buf[: n_refs * n * width].view(n_refs, 1, n, width)
        d = d_buf[: n_out * n_refs * n * width].view(n_refs, n_out, n, width)
        for m in range(m_count):
            if m == 0 or not shared:
                xm = x[m] if x.ndim == 3 else x
                rm = refs[m] if refs.ndim == 3 else refs
                torch.sub(xm[None, :, sl], rm[:, None, sl], out=d[:, 0])
                if split:
                    torch.clamp_min(d[:, 0], 0, out=d[:, 1])
            torch.mm(a[m], st.w1[m, :, sl], out=v.view(n_refs * n, width))  # every reference's pull-back
            acc = both[:, m, :, sl]
            torch.mul(v[0], d[0], out=acc)
            for b in range(1, n_refs):
                acc.addcmul_(v[b], d[b])
    both /= n_refs
    return (both[0], both[1]) if split else both[0]


def deeplift_group_sums(st: StackedMLP, x, targets, refs, index, n_rows: int, *, split: bool,
                        eps: float = DEEPLIFT_EPS, cells: torch.Tensor | None = None, opts=None):
    """Every member's group sums of DeepLift over a chunk, gene block by gene block, no per-member cell values.

    For one or two references shared by the members and inputs shared by them: the same
    arithmetic as :func:`deeplift_kernel`, through :func:`blocked_group_sums`.

    Parameters
    ----------
    st
        The stacked members.
    x
        ``(n, G)`` inputs.
    targets
        ``(n,)`` target classes.
    refs
        ``(B, G)`` shared references (``B`` of 1 or 2).
    index, n_rows, cells
        As in :func:`blocked_group_sums`.
    split
        Also the presence part (the genes above the reference).
    eps
        Captum's threshold of the Rescale rule.
    opts
        Unused (the signature of :data:`GROUP_SUMS`).

    Returns
    -------
    ``(parts, n_rows, G)`` sums in the computation dtype (the total, then the presence part).
    """
    z = st.pre_activation(x)
    w = st.target_weights(targets)
    z0 = st.reference_pre_activation(refs)
    hidden = [rescale_multipliers(z, z0[:, b : b + 1, :], eps=eps).mul_(w) for b in range(refs.shape[0])]
    return blocked_group_sums(st, x, hidden, index, n_rows, weight="reference", refs=refs, split=split, cells=cells)


def gradient_group_sums(st: StackedMLP, x, targets, refs, index, n_rows: int, *, split: bool,
                        cells: torch.Tensor | None = None, opts=None, weight: str = "none", positive: bool = False,
                        saliency: bool = False):
    """Group sums of the gradient methods (Saliency, InputXGradient, GuidedBackprop) through :func:`blocked_group_sums`.

    ``weight="input"`` multiplies by the input (InputXGradient; ``split``: the presence part is the
    attribution of the genes with a positive input); ``positive`` keeps only the positive output
    weights (GuidedBackprop); with ``saliency``, ``opts.absolute`` takes absolute values.
    """
    hidden = st.target_weights(targets, positive=positive).mul_(st.pre_activation(x) > 0)
    return blocked_group_sums(st, x, [hidden], index, n_rows, weight=weight, split=split, cells=cells,
                              absolute=bool(saliency and opts is not None and opts.absolute))


def blocked_group_sums(st: StackedMLP, x, hidden, index, n_rows: int, *, weight: str, refs=None, split: bool = False,
                       absolute: bool = False, cells: torch.Tensor | None = None):
    """Every member's group sums of a pull-back through the first layer, gene block by gene block.

    For each block of genes, the ``(M, n, block)`` pull-back ``v = hidden @ W1[:, :, block]`` is
    weighted and added into the group sums while it is in the cache, so the ``(M, n, G)``
    attributions are never formed (and chunks need not be cut to keep them small). With
    ``cells``, the members' mean of every cell's attributions (the per-cell output of the mean
    aggregate) is written there block by block as well.

    Parameters
    ----------
    st
        The stacked members.
    x
        ``(n, G)`` inputs shared by the members.
    hidden
        List of ``(M, n, H)`` hidden-side weights: one per reference with ``weight="reference"``,
        else one.
    index
        ``(M·n,)`` int64 row of the sums each member's cell goes to (member ``m``, group ``k``:
        ``m·K' + k``).
    n_rows
        Rows of the sums, ``M·K'``.
    weight
        ``"none"``: the pull-back itself; ``"input"``: times ``x``; ``"reference"``: the mean over
        the references ``r_b`` of ``(x - r_b) ⊙ v_b``.
    refs
        ``(B, G)`` references with ``weight="reference"``.
    split
        Also the presence part: ``(x - r_b)⁺ ⊙ v_b`` (``"reference"``) or the attribution where
        ``x > 0`` (``"input"``).
    absolute
        Absolute values of the attributions (``weight="none"`` only).
    cells
        Optional ``(n, G)`` tensor (the computation dtype, contiguous) that receives the mean
        over members of the total attribution of every cell.

    Returns
    -------
    ``(parts, n_rows, G)`` sums in the computation dtype (the total, then the presence part).
    """
    m_count, n, g = st.n_members, x.shape[0], st.n_features
    dtype, device = hidden[0].dtype, hidden[0].device
    n_a = len(hidden)
    n_parts = 2 if split else 1
    out = torch.zeros(n_parts, n_rows, g, dtype=dtype, device=device)
    budget = BLOCK_VALUES.get(device.type, BLOCK_VALUES["cuda"])
    block = int(min(g, max(MIN_BLOCK, budget // max(m_count * n, 1))))
    v_buf = torch.empty(m_count * n * block, dtype=dtype, device=device)
    p_buf = torch.empty(n_parts * m_count * n * block, dtype=dtype, device=device)
    s_buf = torch.empty(n_parts * n_rows * block, dtype=dtype, device=device)
    c_buf = torch.empty(n * block, dtype=dtype, device=device) if cells is not None else None
    onehot = None
    if device.type not in INDEX_ADD_DEVICES:  # member 0's rows of the sums are the groups' codes
        onehot = torch.zeros(n_rows // m_count, n, dtype=dtype, device=device)
        onehot[index[:n], torch.arange(n, device=device)] = 1
    for start in range(0, g, block):
        sl = slice(start, min(g, start + block))
        width = sl.stop - sl.start
        v = v_buf[: m_count * n * width].view(m_count, n, width)
        parts = p_buf[: n_parts * m_count * n * width].view(n_parts, m_count, n, width)
        if weight == "reference":
            for b in range(n_a):
                torch.bmm(hidden[b], st.w1[:, :, sl], out=v)
                d = x[:, sl] - refs[b, sl]
                if b == 0:
                    torch.mul(v, d, out=parts[0])
                    if split:
                        torch.mul(v, d.clamp_min_(0), out=parts[1])
                else:
                    parts[0].addcmul_(v, d)
                    if split:
                        parts[1].addcmul_(v, d.clamp_min_(0))
        else:
            torch.bmm(hidden[0], st.w1[:, :, sl], out=parts[0])
            if weight == "input":
                parts[0].mul_(x[:, sl])
            elif absolute:
                parts[0].abs_()
            if split:
                torch.mul(parts[0], x[:, sl] > 0, out=parts[1])
        if cells is not None:  # the members' mean while the block is in the cache
            c = c_buf[: n * width].view(n, width)
            torch.sum(parts[0], 0, out=c)
            cells[:, sl] = c
        if onehot is not None:
            out[:, :, sl] = torch.matmul(onehot, parts).view(n_parts, n_rows, width)
            continue
        sums = s_buf[: n_parts * n_rows * width].view(n_parts, n_rows, width).zero_()
        for p in range(n_parts):
            sums[p].index_add_(0, index, parts[p].view(m_count * n, width))
        out[:, :, sl] = sums
    if n_a > 1:
        out /= n_a
    if cells is not None:
        cells /= m_count * n_a
    return out


#: The group-sums function of each stacked kernel that has one (:func:`blocked_group_sums`).
GROUP_SUMS = {
    deeplift_kernel: deeplift_group_sums,
    saliency_kernel: partial(gradient_group_sums, saliency=True),
    input_x_gradient_kernel: partial(gradient_group_sums, weight="input"),
    guided_backprop_kernel: partial(gradient_group_sums, positive=True),
}
