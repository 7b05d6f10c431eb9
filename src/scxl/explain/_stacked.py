r"""Exact kernels for all members of an ensemble at once: stacked one-hidden-layer MLPs.

The members' folded weights (:class:`~scxl.explain.FoldedMLP`) are stacked into
``W1: (M, H, G)`` and friends, so a chunk of ``n`` cells is pushed through every member with one
GEMM (``x @ W1_cat^T`` with ``W1_cat = W1.reshape(M·H, G)``) and pulled back with one batched
GEMM (``(M, n, H) @ (M, H, G)``), instead of ``M`` small products with Python in between. The
arithmetic is that of :mod:`scxl.explain._fast` member by member (results agree to float
rounding); every kernel returns ``(M, n, G)`` — one slice per member — or the pair
``(total, presence)`` with ``opts.split`` (see :func:`scxl.explain._fast.deeplift`).

Inputs may be shared by all members, ``x: (n, G)``, or per member, ``x: (M, n, G)`` (SmoothGrad
draws its noise per member); references are shared, ``(B, G)``, or per member, ``(M, B, G)``
(random kinds are drawn per member).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    if per_member:
        z0 = torch.bmm(refs, st.w1.transpose(1, 2)) * st.s1[:, None, :] + st.b1[:, None, :]  # (M, B, H)
    else:
        z0 = st.pre_activation(refs)  # (M, B, H): each reference forwarded once per member
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
