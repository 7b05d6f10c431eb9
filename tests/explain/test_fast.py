"""Fast kernels against Captum on random one-hidden-layer MLPs (float64 on both sides)."""

import numpy as np
import pytest
import torch
from captum.attr import (
    DeepLift,
    DeepLiftShap,
    FeatureAblation,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    Saliency,
)

from scxl.explain import _fast as F
from scxl.explain import fold_mlp, is_foldable
from scxl.explain._captum import quiet_captum

SHAPES = [(7, 5, 2), (50, 32, 3), (300, 5, 5), (300, 32, 4)]


def close(a, b, rtol=1e-5):
    """Elementwise relative check with an absolute floor at rtol × scale."""
    a, b = (np.asarray(v.detach().cpu()) if torch.is_tensor(v) else np.asarray(v) for v in (a, b))
    scale = np.abs(b).max()
    assert scale > 0
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale * 1e-3)


def setup(make_mlp, expr, g, h, c, bn, seed=0, n=12):
    m = make_mlp(g, h, c, seed=seed, batchnorm=bn)
    x = torch.as_tensor(expr(n, g, seed=seed))
    t = torch.as_tensor(np.random.default_rng(seed).integers(0, c, n))
    return m, fold_mlp(m), x, t


@pytest.mark.parametrize("bn", [True, False])
@pytest.mark.parametrize("g,h,c", SHAPES)
def test_gradient_kernels_match_captum(make_mlp, expr, g, h, c, bn):
    m, f, x, t = setup(make_mlp, expr, g, h, c, bn)
    assert torch.allclose(f.logits(x), m(x), rtol=1e-12, atol=1e-12)
    with quiet_captum():
        close(F.saliency(f, x, t), Saliency(m).attribute(x, target=t))
        close(F.saliency(f, x, t, abs=False), Saliency(m).attribute(x, target=t, abs=False))
        close(F.input_x_gradient(f, x, t), InputXGradient(m).attribute(x, target=t))
        close(F.guided_backprop(f, x, t), GuidedBackprop(m).attribute(x, target=t))


def test_guided_backprop_differs_from_gradient(make_mlp, expr):
    m, f, x, t = setup(make_mlp, expr, 50, 32, 3, True)
    assert not torch.allclose(F.guided_backprop(f, x, t), F.gradient(f, x, t))


@pytest.mark.parametrize("bn", [True, False])
@pytest.mark.parametrize("g,h,c", SHAPES)
def test_deeplift_matches_captum(make_mlp, expr, g, h, c, bn):
    m, f, x, t = setup(make_mlp, expr, g, h, c, bn, seed=1)
    ref = torch.as_tensor(expr(1, g, seed=99))
    with quiet_captum():
        want = DeepLift(m).attribute(x, baselines=ref, target=t)
        close(F.deeplift(f, x, t, ref), want)
        close(F.deeplift(f, x, t, torch.zeros(1, g, dtype=torch.float64)),
              DeepLift(m).attribute(x, baselines=0.0, target=t))


@pytest.mark.parametrize("bn", [True, False])
@pytest.mark.parametrize("g,h,c", SHAPES)
def test_deeplift_shap_matches_captum(make_mlp, expr, g, h, c, bn):
    m, f, x, t = setup(make_mlp, expr, g, h, c, bn, seed=2)
    refs = torch.as_tensor(expr(6, g, seed=7))
    with quiet_captum():
        want = DeepLiftShap(m).attribute(x, baselines=refs, target=t)
    close(F.deeplift(f, x, t, refs), want)  # K matrix, one block
    close(F.deeplift(f, x, t, refs, k_block=4), want)  # two blocks, reused workspace
    close(F.deeplift(f, x, t, refs, k_block=0), want)  # loop over references
    close(F.deeplift(f, x, t, refs, sparse_refs=True), want)  # per reference, non-zero genes only


@pytest.mark.parametrize("g,h,c", SHAPES)
def test_deeplift_shap_sparse_references_match_captum(make_mlp, expr, g, h, c):
    """Mostly-zero references (real single cells) take the sparse path; an all-zero one is skipped."""
    m, f, x, t = setup(make_mlp, expr, g, h, c, True, seed=5)
    refs = torch.as_tensor(expr(6, g, seed=9)) * torch.as_tensor(np.random.default_rng(3).random((6, g)) < 0.2)
    refs[2] = 0
    assert (refs != 0).double().mean() <= F.SPARSE_REFS_DENSITY
    with quiet_captum():
        want = DeepLiftShap(m).attribute(x, baselines=refs, target=t)
    close(F.deeplift(f, x, t, refs), want)  # auto: sparse
    close(F.deeplift(f, x, t, refs, sparse_refs=False), want)
    close(F.integrated_gradients(f, x, t, refs, sparse_refs=True), want)


def test_deeplift_eps_rule_matches_captum(make_mlp, expr):
    """A reference equal to the input in some units exercises the |z - z0| < eps branch."""
    m, f, x, t = setup(make_mlp, expr, 50, 32, 3, True, seed=3)
    ref = x[:1].clone()
    with quiet_captum():
        want = DeepLift(m).attribute(x, baselines=ref, target=t)
    got = F.deeplift(f, x, t, ref)
    close(got, want)
    assert torch.all(got[0] == 0)  # x == r gives zero attribution


def test_deeplift_per_cell_references(make_mlp, expr):
    m, f, x, t = setup(make_mlp, expr, 50, 32, 3, True, seed=4)
    refs = torch.as_tensor(expr(12 * 3, 50, seed=8)).reshape(12, 3, 50)
    with quiet_captum():
        want = torch.stack([
            DeepLiftShap(m).attribute(x[i : i + 1], baselines=refs[i], target=t[i : i + 1])[0]
            for i in range(12)
        ])
    close(F.deeplift(f, x, t, refs), want)


def test_rescale_multipliers_in_unit_interval():
    z = torch.linspace(-3, 3, 61, dtype=torch.float64)
    m = F.rescale_multipliers(z[:, None], z[None, :])
    assert m.min() >= 0 and m.max() <= 1
    assert torch.all(m[z > 0][:, z > 0] == 1) and torch.all(m[z < 0][:, z < 0] == 0)


@pytest.mark.parametrize("g,h,c", [(7, 5, 2), (50, 32, 3)])
def test_integrated_gradients_closed_form(make_mlp, expr, g, h, c):
    """Exact IG == DeepLift-Rescale; Captum IG converges to it as steps grow."""
    m, f, x, t = setup(make_mlp, expr, g, h, c, True, seed=5)
    ref = torch.as_tensor(expr(1, g, seed=11))
    exact = F.integrated_gradients(f, x, t, ref)
    with quiet_captum():
        dl = DeepLift(m).attribute(x, baselines=ref, target=t)
        ig = IntegratedGradients(m)
        coarse = ig.attribute(x, baselines=ref, target=t, n_steps=50, method="riemann_middle")
        fine = ig.attribute(x, baselines=ref, target=t, n_steps=4000, method="riemann_middle")
    assert torch.equal(exact, F.deeplift(f, x, t, ref))
    close(exact, dl)
    scale = exact.abs().max()
    err_fine = (fine - exact).abs().max() / scale
    err_coarse = (coarse - exact).abs().max() / scale
    assert err_fine < 1e-3
    assert err_fine < err_coarse  # convergence towards the closed form
    # completeness: attributions sum to the logit difference
    diff = f.logits(x).gather(1, t[:, None])[:, 0] - f.logits(ref).expand(len(t), -1).gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(exact.sum(1), diff, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("g,h,c", [(7, 5, 2), (50, 32, 3)])
def test_feature_ablation_matches_captum(make_mlp, expr, g, h, c):
    m, f, x, t = setup(make_mlp, expr, g, h, c, True, seed=6, n=6)
    ref = torch.as_tensor(expr(1, g, seed=12))
    with quiet_captum():
        want = FeatureAblation(m).attribute(x, baselines=ref, target=t)
        want0 = FeatureAblation(m).attribute(x, target=t)
    close(F.feature_ablation(f, x, t, ref, gene_block=4), want)
    close(F.feature_ablation(f, x, t, torch.zeros(1, g, dtype=torch.float64)), want0)


def test_feature_ablation_per_cell_references(make_mlp, expr):
    m, f, x, t = setup(make_mlp, expr, 20, 8, 3, True, seed=7, n=5)
    refs = torch.as_tensor(expr(5 * 2, 20, seed=15)).reshape(5, 2, 20)
    with quiet_captum():
        want = torch.stack([
            FeatureAblation(m).attribute(x, baselines=refs[:, b], target=t) for b in range(2)
        ]).mean(0)
    close(F.feature_ablation(f, x, t, refs, gene_block=6), want)


def test_foldable_detection(make_mlp):
    assert is_foldable(make_mlp(7, 5, 2))
    assert is_foldable(make_mlp(7, 5, 2, batchnorm=False))
    assert not is_foldable(make_mlp(7, 5, 2, hidden=[5, 4]))
    seq = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    assert not is_foldable(seq)
    with pytest.raises(ValueError, match="fold_mlp needs"):
        fold_mlp(seq)


def test_single_precision_close_to_double(make_mlp, expr):
    m, f, x, t = setup(make_mlp, expr, 300, 32, 4, True, seed=9)
    refs = torch.as_tensor(expr(20, 300, seed=13))
    a64 = F.deeplift(f, x, t, refs)
    f32 = fold_mlp(m, dtype=torch.float32)
    a32 = F.deeplift(f32, x.float(), t, refs.float())
    assert a32.dtype == torch.float32
    assert ((a32.double() - a64).abs().max() / a64.abs().max()) < 1e-5


def test_negative_batchnorm_scale(make_mlp, expr):
    """Negative BatchNorm γ flips the scale after the ReLU clamp in guided backprop."""
    m, f, x, t = setup(make_mlp, expr, 50, 32, 3, True, seed=10)
    with torch.no_grad():
        m.net[1].weight[::2] *= -1
    f = fold_mlp(m)
    assert (f.s1 < 0).sum() >= 16
    refs = torch.as_tensor(expr(4, 50, seed=14))
    with quiet_captum():
        close(F.guided_backprop(f, x, t), GuidedBackprop(m).attribute(x, target=t))
        close(F.saliency(f, x, t, abs=False), Saliency(m).attribute(x, target=t, abs=False))
        close(F.deeplift(f, x, t, refs), DeepLiftShap(m).attribute(x, baselines=refs, target=t))


def test_tiny_weights_folded_to_zero(make_mlp, expr):
    """Weights below 1e-30 (subnormals after long training slow CPU products) fold to 0, in a copy."""
    m, _, x, t = setup(make_mlp, expr, 40, 16, 3, False, seed=11)
    with torch.no_grad():
        m.net[0].weight[:, 5] = 3e-39  # subnormal in float32
        m.net[0].weight[:, 6] = 1e-31
    before = m.net[0].weight.detach().clone()
    f = fold_mlp(m, dtype=torch.float32)
    assert (f.w1[:, 5:7] == 0).all() and (f.w1[:, :5] == before[:, :5]).all()
    torch.testing.assert_close(m.net[0].weight, before, rtol=0, atol=0)  # the module is untouched
    zero = torch.zeros(1, 40, dtype=torch.float64)
    a32, a64 = F.deeplift(f, x.float(), t, zero.float()), F.deeplift(fold_mlp(m), x, t, zero)
    assert ((a32.double() - a64).abs().max() / a64.abs().max()) < 1e-5  # float32 rounding only
    m2, _, _, _ = setup(make_mlp, expr, 40, 16, 3, False, seed=12)
    assert fold_mlp(m2).w1.data_ptr() == m2.net[0].weight.data_ptr()  # nothing tiny: not copied


def test_flush_tiny_in_place():
    from scxl._subnormal import TINY, flush_tiny_, without_tiny

    t = torch.tensor([1e-39, -1e-31, TINY, 1e-29, 0.5, 0.0])
    clean = torch.tensor([1e-29, 0.0, 1.0])
    assert without_tiny(clean) is clean  # nothing tiny: no copy
    half = torch.tensor([5e-5, 1e-7], dtype=torch.float16)  # float16 subnormals are real values: untouched
    flush_tiny_([half])
    assert (half != 0).all() and without_tiny(half) is half
    copy = without_tiny(t)
    assert copy is not t and t[0] != 0
    flush_tiny_([t, torch.tensor([3, 0])])
    assert t.tolist() == pytest.approx([0.0, 0.0, TINY, 1e-29, 0.5, 0.0])
    assert torch.equal(copy, t)
