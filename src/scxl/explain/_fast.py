r"""Exact closed-form attribution kernels for one-hidden-layer ReLU MLPs in eval mode.

With BatchNorm folded into the first linear layer (:func:`fold_mlp`), the network is

.. math::

    z = W_1' x + b_1', \quad h = \mathrm{relu}(z), \quad \mathrm{logit}_c = W_2[c] \cdot h + b_2[c],

so every explainer is a few matrix products. Notation: ``n`` cells, ``G`` genes, ``H`` hidden
units, ``B`` references, ``w = W_2[target]`` per cell.

* **Saliency** — ``grad = W1'^T (w ⊙ 1[z > 0])`` (``abs`` as Captum's default).
* **InputXGradient** — ``x ⊙ grad``.
* **GuidedBackprop** — Captum replaces the gradient leaving each ReLU by its positive part:
  ``relu(w ⊙ 1[z > 0]) = relu(w) ⊙ 1[z > 0]``, so ``W1'^T (relu(w) ⊙ 1[z > 0])``.
* **DeepLift (Rescale)** — the ReLU multiplier is ``m = (relu(z) - relu(z0)) / (z - z0)``, or the
  plain gradient ``1[z > 0]`` where ``|z - z0| < eps`` (Captum's rule, ``eps = 1e-10``);
  ``attr = (x - r) ⊙ W1'^T (w ⊙ m)``, averaged over references (= DeepLiftShap).
* **Integrated Gradients** — along ``x(α) = r + α (x - r)`` every pre-activation is linear in
  ``α`` and crosses 0 at most once, so the integral of ``1[z(α) > 0]`` over ``α ∈ [0, 1]`` is the
  fraction of the path on which the unit is active: 1 or 0 if the unit does not switch,
  ``z / (z - z0)`` (``z > 0 ≥ z0``) or ``z0 / (z0 - z)`` (``z0 > 0 ≥ z``) if it does — which is
  exactly the Rescale multiplier ``m``. IG of a logit therefore *equals* DeepLift-Rescale, with
  no steps (up to the measure-zero case ``0 < |z - z0| < eps``).
* **FeatureAblation** — ``logit(x) - logit(x with gene g set to r_g)``, with the ablated
  pre-activations ``z + (r_g - x_g) W1'[:, g]`` formed for a block of genes at a time.

For ``B`` shared references the mean over references is taken without materialising
``n × B × G``: with ``A = w ⊙ m`` of shape ``(n, B, H)``,

.. math::

    \mathrm{attr}_{ig} = x_{ig} \sum_h \bar A_{ih} W_{hg}
        - \frac1B \sum_{b,h} A_{ibh}\, R_{bg} W_{hg},

where the second term is one GEMM ``A.reshape(n, B·H) @ K`` with
``K[(b, h), g] = R_{bg} W_{hg}`` built in a reusable workspace (in blocks of references when the
whole ``K`` would exceed the memory budget). Each reference is forwarded once
(``z0 = W1' r + b1'``), not once per cell. When the references are mostly zeros (real single
cells, the default for DeepLiftShap), ``R_bg = 0`` terms are skipped instead: one GEMM per
reference on the rows of ``W1ᵀ`` of the genes it expresses, ``density × n·B·H·G`` work
(:func:`_sparse_reference_term`). (In the code ``W1'`` is never formed: the BatchNorm
scale ``s1`` is applied on the hidden side, see :class:`FoldedMLP`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from .._subnormal import without_tiny

DEEPLIFT_EPS = 1e-10
"""Captum's default ``eps`` of DeepLift's Rescale rule."""


@dataclass(frozen=True)
class FoldedMLP:
    """A one-hidden-layer ReLU MLP with BatchNorm folded in (eval-mode semantics).

    The folded first layer is ``W1' = diag(s1) W1`` with ``b1'`` the folded bias; ``W1`` is kept
    unscaled (no ``H × G`` copy) and the per-unit scale ``s1`` is applied on the hidden side,
    ``z = s1 ⊙ (W1 x) + b1'``.

    Attributes
    ----------
    w1
        ``(H, G)`` first-layer weights (unscaled; shared with the module where dtype and device
        allow).
    s1
        ``(H,)`` BatchNorm scale ``γ / sqrt(σ² + eps)`` (ones without BatchNorm).
    b1
        ``(H,)`` folded bias ``s1 ⊙ (b - μ) + β``.
    w2
        ``(C, H)`` output weights.
    b2
        ``(C,)`` output bias.
    """

    w1: torch.Tensor
    s1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor

    @property
    def n_features(self) -> int:
        """Number of input genes."""
        return self.w1.shape[1]

    @property
    def n_hidden(self) -> int:
        """Number of hidden units."""
        return self.w1.shape[0]

    @property
    def n_classes(self) -> int:
        """Number of output classes."""
        return self.w2.shape[0]

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> FoldedMLP:
        """Copy to a dtype and/or device.

        Parameters
        ----------
        dtype
            Target floating dtype.
        device
            Target device.

        Returns
        -------
        The converted :class:`FoldedMLP`.
        """
        return FoldedMLP(*(t.to(dtype=dtype, device=device) for t in (self.w1, self.s1, self.b1, self.w2, self.b2)))

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden pre-activations ``z = s1 ⊙ (W1 x) + b1'``, shape ``(..., H)``."""
        return (x @ self.w1.T) * self.s1 + self.b1

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(n, C)``."""
        return torch.relu(self.pre_activation(x)) @ self.w2.T + self.b2

    def folded_w1(self) -> torch.Tensor:
        """The folded weights ``W1' = diag(s1) W1`` (an ``H × G`` copy)."""
        return self.w1 * self.s1[:, None]

    @cached_property
    def w1_t(self) -> torch.Tensor:
        """``W1ᵀ`` as a contiguous ``(G, H)`` copy (made once), for gathering gene rows."""
        return self.w1.T.contiguous()


def _layers(module: nn.Module) -> list[nn.Module] | None:
    from ..models._modules import MLP

    if isinstance(module, MLP):
        seq = module.net
    elif type(module) is nn.Sequential:
        seq = module
    else:
        return None
    layers = []
    for layer in seq:
        if type(layer) is nn.Sequential:
            return None
        if isinstance(layer, nn.Dropout | nn.Identity):
            continue  # identity in eval mode
        layers.append(layer)
    return layers


def is_foldable(module: nn.Module) -> bool:
    """Whether ``module`` is a one-hidden-layer ReLU MLP the fast kernels handle exactly.

    That is an :class:`scxl.models.MLP` or a plain :class:`torch.nn.Sequential` of
    ``Linear → [BatchNorm1d with running statistics] → ReLU → [Dropout] → Linear``.

    Parameters
    ----------
    module
        A torch module.

    Returns
    -------
    ``True`` when :func:`fold_mlp` applies.
    """
    layers = _layers(module)
    if layers is None:
        return False
    types = [type(layer) for layer in layers]
    if types == [nn.Linear, nn.ReLU, nn.Linear]:
        return True
    if types == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]:
        bn = layers[1]
        return bool(bn.track_running_stats and bn.running_mean is not None)
    return False


@torch.no_grad()
def fold_mlp(module: nn.Module, *, dtype: torch.dtype = torch.float64, device=None) -> FoldedMLP:
    """Fold an eval-mode one-hidden-layer MLP into ``(W1, s1, b1', W2, b2)``.

    BatchNorm in eval mode is the affine map ``γ (z - μ) / sqrt(σ² + eps) + β``; its per-unit scale
    and the folded bias are computed in float64 and cast to ``dtype``; ``W1`` itself is not
    copied when it already has the requested dtype and device. Magnitudes below 1e-30 are set
    to 0 (in a copy): subnormal weights, which long training leaves on genes that are never
    expressed, make CPU matrix products several times slower (:mod:`scxl._subnormal`).

    Parameters
    ----------
    module
        A module for which :func:`is_foldable` is true.
    dtype
        Dtype of the returned weights.
    device
        Device of the returned weights (default: the module's).

    Returns
    -------
    The :class:`FoldedMLP`.
    """
    if not is_foldable(module):
        raise ValueError("fold_mlp needs a Linear → [BatchNorm1d] → ReLU → Linear MLP")
    layers = _layers(module)
    lin1, lin2 = layers[0], layers[-1]
    device = lin1.weight.device if device is None else device
    h = lin1.weight.shape[0]
    f64 = dict(dtype=torch.float64, device=lin1.weight.device)
    b1 = lin1.bias.detach().double() if lin1.bias is not None else torch.zeros(h, **f64)
    scale = torch.ones(h, **f64)
    if isinstance(layers[1], nn.BatchNorm1d):
        bn = layers[1]
        scale = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = -bn.running_mean.double() * scale
        if bn.affine:
            scale = scale * bn.weight.double()
            shift = shift * bn.weight.double() + bn.bias.double()
        b1 = b1 * scale + shift
    w2 = lin2.weight.detach()
    b2 = lin2.bias.detach() if lin2.bias is not None else torch.zeros(w2.shape[0], device=w2.device)
    conv = dict(dtype=dtype, device=device)
    parts = (lin1.weight.detach(), scale, b1, w2, b2)
    return FoldedMLP(*(without_tiny(t.to(**conv)) for t in parts))


def rescale_multipliers(z: torch.Tensor, z0: torch.Tensor, *, eps: float = DEEPLIFT_EPS) -> torch.Tensor:
    """DeepLift-Rescale multipliers of a ReLU (Captum's rule), broadcasting ``z`` against ``z0``.

    Parameters
    ----------
    z
        Pre-activations of the inputs.
    z0
        Pre-activations of the references.
    eps
        Where ``|z - z0| < eps`` the plain gradient ``1[z > 0]`` is used.

    Returns
    -------
    ``(relu(z) - relu(z0)) / (z - z0)`` (in ``[0, 1]``), or ``1[z > 0]`` where ``|z - z0| < eps``.
    """
    dz = z - z0
    ratio = (torch.relu(z) - torch.relu(z0)) / dz  # inf/nan where dz == 0: replaced below
    return torch.where(dz.abs() < eps, (z > 0).to(z.dtype), ratio)


def _target_weights(f: FoldedMLP, targets: torch.Tensor) -> torch.Tensor:
    """``W2[target] ⊙ s1``: the hidden-side weights of the (unscaled) ``W1`` rows, ``(n, H)``."""
    return f.w2[targets] * f.s1


def gradient(f: FoldedMLP, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of the target logit w.r.t. the input.

    Parameters
    ----------
    f
        Folded MLP.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell, ``(n,)`` int64.

    Returns
    -------
    ``(n, G)`` gradients.
    """
    mask = f.pre_activation(x) > 0
    return (_target_weights(f, targets) * mask) @ f.w1


def saliency(f: FoldedMLP, x: torch.Tensor, targets: torch.Tensor, *, abs: bool = True) -> torch.Tensor:
    """Saliency: the (absolute, by default) input gradient; as :class:`captum.attr.Saliency`.

    Parameters
    ----------
    f
        Folded MLP.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    abs
        Return the absolute gradient (Captum's default).

    Returns
    -------
    ``(n, G)`` attributions.
    """
    grad = gradient(f, x, targets)
    return grad.abs() if abs else grad


def input_x_gradient(f: FoldedMLP, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Input × gradient; as :class:`captum.attr.InputXGradient`.

    Parameters
    ----------
    f
        Folded MLP.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.

    Returns
    -------
    ``(n, G)`` attributions.
    """
    return x * gradient(f, x, targets)


def guided_backprop(f: FoldedMLP, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Guided backpropagation; as :class:`captum.attr.GuidedBackprop`.

    Parameters
    ----------
    f
        Folded MLP.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.

    Returns
    -------
    ``(n, G)`` attributions.
    """
    mask = f.pre_activation(x) > 0
    # Captum clamps the gradient leaving each ReLU (relu(W2[c]) ⊙ 1[z > 0]); BatchNorm then scales it
    return (torch.relu(f.w2[targets]) * f.s1 * mask) @ f.w1


def k_matrix_bytes(n_baselines: int, n_hidden: int, n_features: int, itemsize: int) -> int:
    """Bytes of the ``K`` matrix (``n_baselines × n_hidden × n_features`` values)."""
    return n_baselines * n_hidden * n_features * itemsize


def deeplift(
    f: FoldedMLP,
    x: torch.Tensor,
    targets: torch.Tensor,
    refs: torch.Tensor,
    *,
    eps: float = DEEPLIFT_EPS,
    k_block: int | None = None,
    workspace: torch.Tensor | None = None,
    sparse_refs: bool | None = None,
    split: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """DeepLift-Rescale attributions averaged over references.

    Equals :class:`captum.attr.DeepLift` for one reference, :class:`captum.attr.DeepLiftShap`
    for a reference distribution, and exact Integrated Gradients (see the module docstring).

    Parameters
    ----------
    f
        Folded MLP.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    refs
        Shared references ``(B, G)``, or per-cell references ``(n, B, G)``.
    eps
        Captum's threshold below which the plain gradient replaces the Rescale ratio.
    k_block
        For shared references: references per block of the ``K`` matrix
        (``K[(b, h), g] = refs[b, g] · W1[h, g]``, ``k_block × H × G`` values; the BatchNorm
        scale rides on the multipliers), so the mean over
        references is one GEMM per block. ``0`` loops over references instead; default: all
        references in one block when ``B > 2``, else the loop.
    workspace
        Preallocated buffer of at least ``k_block × H × G`` values for ``K`` (reused across
        calls to avoid re-allocating it).
    sparse_refs
        For shared references: compute the reference term one reference at a time on its
        non-zero genes only (``R_bg = 0`` contributes nothing), which takes a fraction
        ``density`` of the dense GEMM's work. Real cells used as references (``"sample"``,
        ``"rest"``) are mostly zeros in single-cell data. Default: when at most
        :data:`SPARSE_REFS_DENSITY` of the reference values are non-zero.
    split
        Also return the *presence* part: the mean over references of the contribution where
        the gene is above the reference (``x > r``), ``mean_b[(x - r_b)⁺ ⊙ (a_b W1)]``; the rest
        (``total - presence``) comes from being below it (absence).

    Returns
    -------
    ``(n, G)`` attributions (mean over the ``B`` references); with ``split``, the pair
    ``(total, presence)``.
    """
    w = _target_weights(f, targets)  # (n, H)
    z = f.pre_activation(x)  # (n, H)
    if refs.ndim == 3:
        z0 = f.pre_activation(refs)  # (n, B, H)
        a = rescale_multipliers(z[:, None, :], z0, eps=eps) * w[:, None, :]
        return _loop_references(f, x, a, lambda b: refs[:, b], refs.shape[1], split=split)
    refs = refs.reshape(-1, f.n_features)
    n_refs = refs.shape[0]
    z0 = f.pre_activation(refs)  # (B, H): each reference forwarded once
    a = rescale_multipliers(z[:, None, :], z0[None], eps=eps) * w[:, None, :]  # (n, B, H)
    if k_block is None:
        k_block = n_refs if n_refs > 2 else 0
    if n_refs == 1:
        d = x - refs[0]
        out = d * (a[:, 0] @ f.w1)
        return (out, out * (d > 0)) if split else out
    if sparse_refs is None:
        sparse_refs = bool((refs != 0).sum() <= SPARSE_REFS_DENSITY * refs.numel())
    if sparse_refs:
        if not split:
            return x * (a.mean(1) @ f.w1) - _sparse_reference_term(f, a, refs).T / n_refs
        term, above = _sparse_reference_term(f, a, refs, x)
        out = x * (a.mean(1) @ f.w1) - term.T / n_refs
        # presence: (x - r)+ = (x - r) + (r - x)+, and (r - x)+ > 0 only where r > 0
        return out, out + above.T / n_refs
    if k_block <= 0 or split:  # the per-reference loop: same work as K, and it splits by sign
        return _loop_references(f, x, a, lambda b: refs[b], n_refs, split=split)
    n, h, g = x.shape[0], f.n_hidden, f.n_features
    k_block = min(k_block, n_refs)
    if workspace is None or workspace.numel() < k_block * h * g:
        workspace = torch.empty(k_block * h * g, dtype=x.dtype, device=x.device)
    term2 = torch.zeros_like(x)
    for s in range(0, n_refs, k_block):
        bb = min(k_block, n_refs - s)
        k = workspace[: bb * h * g].view(bb, h, g)
        torch.mul(refs[s : s + bb, None, :], f.w1[None], out=k)
        term2.addmm_(a[:, s : s + bb].reshape(n, bb * h), k.view(bb * h, g))
    return (x * (a.mean(1) @ f.w1) - term2 / n_refs)


def _loop_references(f: FoldedMLP, x, a, ref, n_refs: int, *, split: bool):
    """Mean over references of ``(x - r_b) ⊙ (a_b W1)`` (and of its part where ``x > r_b``)."""
    out = torch.zeros_like(x)
    above = torch.zeros_like(x) if split else None
    for b in range(n_refs):
        d = x - ref(b)
        v = a[:, b] @ f.w1
        out += d * v
        if split:
            above += torch.relu(d) * v
    return (out / n_refs, above / n_refs) if split else out / n_refs


#: Largest fraction of non-zero reference values for which :func:`deeplift` takes the sparse path.
SPARSE_REFS_DENSITY = 0.5


def _sparse_reference_term(f: FoldedMLP, a: torch.Tensor, refs: torch.Tensor, x: torch.Tensor | None = None):
    """``Σ_b Σ_h a[i, b, h] R[b, g] W1[h, g]`` over the non-zero ``R[b, g]`` only, as ``(G, n)``.

    One GEMM per reference on the rows of ``W1ᵀ`` of its expressed genes (``s_b × H`` by
    ``H × n``), scattered into the transposed output (contiguous rows). With ``x``, also returns
    ``Σ_b (R[b, g] - x[i, g])⁺ (a_b W1)[i, g]`` from the same products (the presence correction).
    """
    out = torch.zeros(f.n_features, a.shape[0], dtype=a.dtype, device=a.device)
    above = torch.zeros_like(out) if x is not None else None
    rows, genes = refs.nonzero(as_tuple=True)  # sorted by reference
    bounds = torch.searchsorted(rows, torch.arange(refs.shape[0] + 1, device=rows.device)).tolist()
    for b in range(refs.shape[0]):
        idx = genes[bounds[b] : bounds[b + 1]]
        if idx.numel():
            v = f.w1_t.index_select(0, idx) @ a[:, b].T  # (s_b, n); W1ᵀ rows are contiguous
            r = refs[b, idx, None]
            if above is not None:
                above.index_add_(0, idx, torch.relu(r - x[:, idx].T) * v)
            out.index_add_(0, idx, v.mul_(r))
    return out if x is None else (out, above)


def integrated_gradients(
    f: FoldedMLP,
    x: torch.Tensor,
    targets: torch.Tensor,
    refs: torch.Tensor,
    *,
    eps: float = DEEPLIFT_EPS,
    k_block: int | None = None,
    workspace: torch.Tensor | None = None,
    sparse_refs: bool | None = None,
) -> torch.Tensor:
    """Exact Integrated Gradients (straight path, infinitely many steps), averaged over references.

    For a one-hidden-layer ReLU network this is DeepLift-Rescale (see the module docstring).

    Parameters
    ----------
    f
        Folded MLP.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    refs
        References, as for :func:`deeplift`.
    eps, k_block, workspace, sparse_refs
        As for :func:`deeplift`.

    Returns
    -------
    ``(n, G)`` attributions.
    """
    return deeplift(f, x, targets, refs, eps=eps, k_block=k_block, workspace=workspace, sparse_refs=sparse_refs)


def feature_ablation(
    f: FoldedMLP,
    x: torch.Tensor,
    targets: torch.Tensor,
    refs: torch.Tensor,
    *,
    gene_block: int = 256,
    split: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Single-gene ablation: ``logit(x) - logit(x with gene g := r_g)``, mean over references.

    Matches :class:`captum.attr.FeatureAblation` with one feature per gene.

    Parameters
    ----------
    f
        Folded MLP.
    x
        Inputs, ``(n, G)``.
    targets
        Target class per cell.
    refs
        Shared references ``(B, G)`` or per-cell references ``(n, B, G)``.
    gene_block
        Genes ablated at once (memory ``n × gene_block × H``).
    split
        Also return the part of genes above their reference (``x > r``), see :func:`deeplift`.

    Returns
    -------
    ``(n, G)`` attributions (with ``split``, ``(total, presence)``).
    """
    w = f.w2[targets]  # (n, H)
    z = f.pre_activation(x)
    full = (torch.relu(z) * w).sum(1, keepdim=True)  # (n, 1), b2 cancels
    per_cell = refs.ndim == 3
    n_refs = refs.shape[-2]
    out = torch.zeros_like(x)
    above = torch.zeros_like(x) if split else None
    for start in range(0, x.shape[1], gene_block):
        sl = slice(start, start + gene_block)
        w1t = f.w1[:, sl].T * f.s1  # (g, H) folded weights of this gene block
        for b in range(n_refs):
            r = refs[:, b, sl] if per_cell else refs[b, sl][None]
            zab = z[:, None, :] + (r - x[:, sl])[:, :, None] * w1t[None]  # (n, g, H)
            c = full - (torch.relu(zab) * w[:, None, :]).sum(-1)
            out[:, sl] += c
            if split:
                above[:, sl] += c * (x[:, sl] > r)
    return (out / n_refs, above / n_refs) if split else out / n_refs


# --------------------------------------------------------------------------------------------
# registry signature: kernel(folded, x, targets, refs, opts) -> (n, G)


def saliency_kernel(f: FoldedMLP, x, targets, refs, opts) -> torch.Tensor:
    """:func:`saliency` with the registry's signature (``opts.absolute``)."""
    return saliency(f, x, targets, abs=opts.absolute)


def input_x_gradient_kernel(f: FoldedMLP, x, targets, refs, opts) -> torch.Tensor:
    """:func:`input_x_gradient` with the registry's signature."""
    return input_x_gradient(f, x, targets)


def guided_backprop_kernel(f: FoldedMLP, x, targets, refs, opts) -> torch.Tensor:
    """:func:`guided_backprop` with the registry's signature."""
    return guided_backprop(f, x, targets)


def deeplift_kernel(f: FoldedMLP, x, targets, refs, opts):
    """:func:`deeplift` (= DeepLiftShap, = exact Integrated Gradients) with the registry's signature."""
    return deeplift(f, x, targets, refs, k_block=opts.k_block, workspace=opts.workspace, split=opts.split)


def feature_ablation_kernel(f: FoldedMLP, x, targets, refs, opts):
    """:func:`feature_ablation` with the registry's signature (``opts.gene_block``)."""
    return feature_ablation(f, x, targets, refs, gene_block=opts.gene_block, split=opts.split)
