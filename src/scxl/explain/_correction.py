r"""Gradient correction for one-hot (simplex) features (Majdandzic, Rajesh & Koo, 2022).

A one-hot block of ``k`` categories lives on the simplex ``Σ x = 1``; the component of the
gradient along the simplex normal ``1/√k`` points off the data manifold and is noise. The
correction removes it: per block, subtract the mean gradient across the block's categories
(``g - mean(g)``), before the gradient is multiplied by the input.

The *off-simplex angle* of a block is the angle between the gradient ``g`` (restricted to the
block) and the simplex plane:

.. math::

    \theta = \arcsin\frac{|g \cdot \mathbf 1 / \sqrt k|}{\lVert g \rVert}
           = \arcsin\frac{|\bar g|\,\sqrt k}{\lVert g \rVert} \in [0°, 90°],

reported in degrees (0° when the gradient lies in the plane, 90° when it is orthogonal to it;
defined as 0° for a zero gradient). Large angles flag attributions dominated by off-manifold
noise.
"""

from __future__ import annotations

import numpy as np
import torch


class BlockIndex:
    """Precomputed index of one-hot blocks.

    Parameters
    ----------
    blocks
        Integer array of length ``G``: the block id of each feature, ``-1`` for features in no
        block. Block ids need not be contiguous.
    device
        Device of the index tensors.
    """

    def __init__(self, blocks: np.ndarray, device=None) -> None:
        blocks = np.asarray(blocks)
        if blocks.ndim != 1 or not np.issubdtype(blocks.dtype, np.integer):
            raise ValueError("blocks must be a 1-D integer array (block id per feature, -1 for none)")
        self.n_features = blocks.shape[0]
        members = np.flatnonzero(blocks >= 0)
        ids, codes = np.unique(blocks[members], return_inverse=True)
        self.block_ids = ids
        self.n_blocks = ids.size
        counts = np.bincount(codes, minlength=ids.size)
        if (counts < 2).any():
            bad = ids[counts < 2][:5].tolist()
            raise ValueError(f"every one-hot block needs at least 2 features; blocks {bad} have one")
        codes = codes.ravel()
        # (n_blocks, max_size) feature indices, padded with n_features (an appended zero column):
        # block sums become a gather + sum, deterministic on every device (no atomic adds)
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(members.size) - starts[codes[order]]
        padded = np.full((ids.size, int(counts.max()) if ids.size else 0), self.n_features, dtype=np.int64)
        padded[codes[order], slot] = members[order]
        self.members = torch.as_tensor(members, device=device)
        self.codes = torch.as_tensor(codes, device=device)
        self.counts = torch.as_tensor(counts, device=device)
        self.padded = torch.as_tensor(padded, device=device)


def correct_gradients(grad: torch.Tensor, index: BlockIndex) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove the off-simplex component of the gradient in every one-hot block.

    Parameters
    ----------
    grad
        Gradients, ``(n, G)``.
    index
        :class:`BlockIndex` of the features.

    Returns
    -------
    corrected
        ``(n, G)`` gradients with the block mean subtracted within every block (other features
        unchanged); they sum to zero within each block.
    angles
        ``(n, n_blocks)`` off-simplex angles in degrees (see the module docstring).
    """
    dtype = grad.dtype
    ext = torch.cat([grad, torch.zeros(grad.shape[0], 1, dtype=dtype, device=grad.device)], dim=1)
    blocks = ext[:, index.padded]  # (n, n_blocks, max_size), zero-padded
    sums = blocks.sum(-1)
    sq = (blocks * blocks).sum(-1)
    sub = grad[:, index.members]  # (n, m)
    counts = index.counts.to(dtype)
    means = sums / counts
    corrected = grad.clone()
    corrected[:, index.members] = sub - means[:, index.codes]
    norm = torch.sqrt(sq)
    ratio = torch.where(norm > 0, means.abs() * torch.sqrt(counts) / torch.where(norm > 0, norm, 1.0), 0.0)
    angles = torch.rad2deg(torch.asin(ratio.clamp(0.0, 1.0)))
    return corrected, angles
