import numpy as np
import pytest
import torch

from scxl.explain import BlockIndex, attribute_modules, correct_gradients, fold_mlp
from scxl.explain import _fast as F


def _plane_angle(g):
    """Angle between g and the simplex plane {v: sum v = 0}, via the projection (arccos form)."""
    proj = g - g.mean()
    return np.degrees(np.arccos(np.clip(np.linalg.norm(proj) / np.linalg.norm(g), 0, 1)))


def test_correct_gradients_blocks():
    rng = np.random.default_rng(0)
    blocks = np.array([-1, 3, 3, 3, 3, -1, 7, 7, 7, -1])
    g = torch.as_tensor(rng.normal(size=(6, 10)) + 0.5)
    corr, ang = correct_gradients(g, BlockIndex(blocks))
    assert ang.shape == (6, 2)
    for j, b in enumerate([3, 7]):
        sel = blocks == b
        torch.testing.assert_close(corr[:, sel].sum(1), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
        for i in range(6):
            assert ang[i, j].item() == pytest.approx(_plane_angle(g[i, sel].numpy()), abs=1e-6)
    assert torch.equal(corr[:, blocks == -1], g[:, blocks == -1])
    assert (ang >= 0).all() and (ang <= 90).all()


def test_angle_extremes():
    idx = BlockIndex(np.array([0, 0, 0]))
    _, ang = correct_gradients(torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]), idx)
    torch.testing.assert_close(ang[:, 0], torch.tensor([90.0, 0.0, 0.0]))


def test_block_validation():
    with pytest.raises(ValueError, match="at least 2 features"):
        BlockIndex(np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="integer"):
        BlockIndex(np.array([0.5, 1.0]))


def test_engine_gradient_correction_on_one_hot_model(make_mlp):
    """A model on 4 continuous genes + a one-hot block of 4 categories + a block of 3."""
    g = 11
    blocks = np.array([-1] * 4 + [0] * 4 + [1] * 3)
    m = make_mlp(g, 8, 3, seed=4)
    rng = np.random.default_rng(0)
    x = np.zeros((40, g))
    x[:, :4] = rng.gamma(1, 1, (40, 4))
    x[np.arange(40), 4 + rng.integers(0, 4, 40)] = 1.0
    x[np.arange(40), 8 + rng.integers(0, 3, 40)] = 1.0
    t = rng.integers(0, 3, 40)
    res = attribute_modules([m], x, t, "saliency", blocks=blocks, absolute=False, precision="double", progress=False)
    a = res.attributions
    for b in (0, 1):
        np.testing.assert_allclose(a[:, blocks == b].sum(1), 0, atol=1e-6)
    assert res.angles.shape == (40, 2) and res.block_ids.tolist() == [0, 1]
    assert (res.angles >= 0).all() and (res.angles <= 90).all() and res.angles.max() > 0
    # the uncorrected gradient differs, and input×gradient uses the corrected gradient
    grad = F.gradient(fold_mlp(m), torch.as_tensor(x), torch.as_tensor(t)).numpy()
    assert not np.allclose(grad[:, blocks == 0].sum(1), 0)
    ixg = attribute_modules([m], x, t, "input_x_gradient", blocks=blocks, precision="double", progress=False)
    np.testing.assert_allclose(ixg.attributions, (x * a).astype(np.float32), rtol=1e-5, atol=1e-7)
    # the Captum path gives the same corrected gradients
    slow = attribute_modules([m], x, t, "saliency", blocks=blocks, absolute=False, precision="double",
                             use_fast=False, progress=False)
    np.testing.assert_allclose(slow.attributions, a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(slow.angles, res.angles, rtol=1e-5, atol=1e-4)


def test_correction_only_for_gradient_methods(make_mlp):
    m = make_mlp(6, 4, 2)
    with pytest.raises(ValueError, match="gradient-based"):
        attribute_modules([m], np.ones((3, 6)), np.zeros(3, int), "deeplift", blocks=np.array([0, 0, -1, -1, 1, 1]))
