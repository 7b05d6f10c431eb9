import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import DeepLift, FeatureAblation
from scipy import sparse

from scxl import ScxlWarning
from scxl._inputs import Matrix
from scxl.explain import _fast as F
from scxl.explain import (
    attribute_modules,
    choose_batch_size,
    chunk_bytes_per_cell,
    fold_mlp,
)
from scxl.explain._captum import quiet_captum
from scxl.explain._engine import _noise, _rng


@pytest.fixture
def setup(make_mlp, expr):
    mods = [make_mlp(30, 8, 3, seed=s, double=False) for s in range(3)]
    x = expr(70, 30, seed=1, dtype=np.float32)
    t = np.random.default_rng(2).integers(0, 3, 70)
    return mods, x, t


def run(mods, x, t, method="deeplift", **kw):
    kw.setdefault("progress", False)
    return attribute_modules(mods, x, t, method, **kw)


@pytest.mark.parametrize(
    "method,refs",
    [
        ("saliency", None), ("input_x_gradient", None), ("guided_backprop", None),
        ("deeplift", "zero"), ("deeplift", "universal"), ("deeplift_shap", "sample"),
        ("deeplift_shap", "specific"), ("deeplift_shap", "rest"), ("feature_ablation", "normal"),
    ],
)
def test_fast_path_equals_captum_path(setup, method, refs):
    mods, x, t = setup
    kw = dict(references=refs, n_baselines=4 if refs not in (None, "zero") else None, precision="double")
    fast = run(mods, x, t, method, **kw)
    slow = run(mods, x, t, method, use_fast=False, **kw)
    assert fast.fast.all() and not slow.fast.any()
    scale = np.abs(slow.attributions).max()
    assert scale > 0
    np.testing.assert_allclose(fast.attributions, slow.attributions, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(fast.member_group_means, slow.member_group_means, rtol=1e-5, atol=1e-6 * scale)


def test_engine_equals_captum_directly(setup):
    """Engine output == Captum DeepLift per member, averaged over members."""
    mods, x, t = setup
    res = run(mods, x, t, "deeplift", references="zero", precision="double")
    xt, tt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(t)
    with quiet_captum():
        want = np.mean([DeepLift(m.double()).attribute(xt, baselines=0.0, target=tt).detach().numpy() for m in mods], 0)
    for m in mods:
        m.float()
    np.testing.assert_allclose(res.attributions, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method,kw", [
    ("deeplift_shap", dict(references="universal", n_baselines=5)),
    ("deeplift_shap", dict(references="rest", n_baselines=3)),
    ("saliency", dict(smoothgrad=(3, 0.2))),
    ("integrated_gradients", dict(references="sample", n_baselines=3, n_repeats=2)),
])
def test_chunking_does_not_change_results(setup, method, kw):
    mods, x, t = setup
    results = [run(mods, x, t, method, batch_size=b, precision="double", **kw) for b in (7, 64, None)]
    assert results[0].params["batch_size"] == 7
    for other in results[1:]:
        np.testing.assert_allclose(other.attributions, results[0].attributions, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(other.group_means, results[0].group_means, rtol=1e-6, atol=1e-9)


def test_determinism(setup):
    mods, x, t = setup
    kw = dict(references="universal", n_baselines=4, n_repeats=2, smoothgrad=(2, 0.1))
    a = run(mods, x, t, "deeplift_shap", random_state=5, **kw)
    b = run(mods, x, t, "deeplift_shap", random_state=5, **kw)
    c = run(mods, x, t, "deeplift_shap", random_state=6, **kw)
    np.testing.assert_array_equal(a.attributions, b.attributions)
    np.testing.assert_array_equal(a.member_group_means, b.member_group_means)
    assert not np.allclose(a.attributions, c.attributions)
    assert a.params["n_repeats"] == 2 and a.params["stochastic"]


def test_deterministic_repeats_warn_and_run_once(setup):
    mods, x, t = setup
    once = run(mods, x, t, "deeplift", references="zero")
    with pytest.warns(ScxlWarning, match="deterministic.*computing it once"):
        rep = run(mods, x, t, "deeplift", references="zero", n_repeats=3)
    assert rep.params["n_repeats"] == 1 and not rep.params["stochastic"]
    np.testing.assert_array_equal(rep.attributions, once.attributions)
    with pytest.warns(ScxlWarning, match="deterministic"):
        run(mods, x, t, "saliency", n_repeats=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(mods, x, t, "deeplift_shap", n_baselines=3, n_repeats=2)  # stochastic: no warning


def test_repeats_average_independent_draws(setup):
    mods, x, t = setup
    one = run(mods[:1], x, t, "deeplift_shap", n_baselines=3, n_repeats=1, precision="double")
    two = run(mods[:1], x, t, "deeplift_shap", n_baselines=3, n_repeats=2, precision="double")
    # repeat 0 uses the same draw in both runs; two = (repeat0 + repeat1) / 2
    f = fold_mlp(mods[0])
    xt, tt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(t)
    entropy = two.params["random_state"]
    draws = [x[_rng(entropy, 0, 0, r).choice(70, 3, replace=False)] for r in range(2)]
    want = [F.deeplift(f, xt, tt, torch.as_tensor(d, dtype=torch.float64)).numpy() for d in draws]
    np.testing.assert_allclose(one.attributions, want[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(two.attributions, (want[0] + want[1]) / 2, rtol=1e-5, atol=1e-7)


def test_median_and_group_summaries(setup):
    mods, x, t = setup
    per = [run([m], x, t, "input_x_gradient", precision="double").attributions for m in mods]
    med = run(mods, x, t, "input_x_gradient", aggregate="median", precision="double")
    mean = run(mods, x, t, "input_x_gradient", precision="double")
    np.testing.assert_allclose(med.attributions, np.median(per, 0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(mean.attributions, np.mean(per, 0), rtol=1e-6, atol=1e-8)
    for k in range(3):
        np.testing.assert_allclose(mean.group_means[k], mean.attributions[t == k].mean(0), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(med.group_means[k], med.attributions[t == k].mean(0), rtol=1e-5, atol=1e-7)
        for i in range(3):
            np.testing.assert_allclose(mean.member_group_means[i, k], per[i][t == k].mean(0), rtol=1e-5, atol=1e-7)
    assert mean.group_counts.tolist() == np.bincount(t, minlength=3).tolist()
    assert mean.member_seconds.shape == (3,) and mean.seconds > 0


def test_explicit_groups_and_streaming(setup):
    mods, x, t = setup
    groups = np.where(np.arange(70) < 10, -1, np.arange(70) % 4)
    full = run(mods, x, t, "deeplift", groups=groups, batch_size=16)
    seen = []
    lean = run(mods, x, t, "deeplift", groups=groups, batch_size=16, store_cells=False,
               on_chunk=lambda sl, a: seen.append((sl, a.copy())))
    assert lean.attributions is None
    assert [sl.start for sl, _ in seen] == list(range(0, 70, 16))
    np.testing.assert_array_equal(np.concatenate([a for _, a in seen]), full.attributions)
    np.testing.assert_array_equal(lean.group_means, full.group_means)
    assert full.group_means.shape == (4, 30) and full.group_counts.tolist() == [15, 15, 15, 15]
    np.testing.assert_allclose(full.group_means[1], full.attributions[groups == 1].mean(0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("split", [False, True])
def test_group_sums_without_a_per_cell_output(setup, split):
    """Without stored cells or on_chunk, the mean's group sums come from the members' sums (no per-chunk mean)."""
    mods, x, t = setup
    groups = np.where(np.arange(70) < 10, -1, np.arange(70) % 4)
    full = run(mods, x, t, "deeplift", groups=groups, batch_size=16, split=split)
    lean = run(mods, x, t, "deeplift", groups=groups, batch_size=16, split=split, store_cells=False)
    assert lean.attributions is None
    np.testing.assert_array_equal(lean.member_group_means, full.member_group_means)  # the same sums per member
    np.testing.assert_allclose(lean.group_means, full.group_means, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(lean.sums["aggregated"], lean.sums["member"].mean(0), rtol=0, atol=0)
    if split:
        np.testing.assert_allclose(lean.presence_group_means, full.presence_group_means, rtol=1e-6, atol=1e-9)
    median = run(mods, x, t, "deeplift", groups=groups, batch_size=16, store_cells=False, aggregate="median")
    np.testing.assert_allclose(median.group_means, run(mods, x, t, "deeplift", groups=groups, batch_size=16,
                                                        aggregate="median").group_means, rtol=1e-6, atol=1e-9)


def test_inputs_sparse_and_callable(setup):
    mods, x, t = setup
    dense = run(mods, x, t, "deeplift_shap", n_baselines=3)
    sp = run(mods, sparse.csr_matrix(x), t, "deeplift_shap", n_baselines=3)
    fn = run(mods, lambda idx: x[idx], t, "deeplift_shap", n_baselines=3)
    mat = run(mods, Matrix(sparse.csr_matrix(x), pd.Index([f"g{i}" for i in range(30)]), "X"), t,
              "deeplift_shap", n_baselines=3)
    np.testing.assert_array_equal(sp.attributions, dense.attributions)
    np.testing.assert_array_equal(fn.attributions, dense.attributions)
    np.testing.assert_array_equal(mat.attributions, dense.attributions)


def test_smoothgrad_is_mean_over_seeded_noise(setup):
    mods, x, t = setup
    res = run(mods[:1], x, t, "input_x_gradient", smoothgrad=(3, 0.5), gene_sd=np.full(30, 2.0), precision="double")
    f = fold_mlp(mods[0])
    xt, tt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(t)
    entropy = res.params["random_state"]
    want = np.mean([
        F.input_x_gradient(f, xt + 1.0 * _noise(entropy, 0, 0, s, 0, 70, 70, 30, "cpu", torch.float64), tt).numpy()
        for s in range(3)
    ], 0)
    np.testing.assert_allclose(res.attributions, want, rtol=1e-5, atol=1e-7)
    plain = run(mods[:1], x, t, "input_x_gradient")
    assert not np.allclose(res.attributions, plain.attributions)


def test_captum_fallback_for_deeper_mlp(make_mlp, expr):
    m = make_mlp(20, 6, 3, hidden=[6, 5], seed=3)
    x = expr(15, 20, seed=4)
    t = np.arange(15) % 3
    ref = expr(1, 20, seed=5)
    res = attribute_modules([m], x, t, "feature_ablation", references=ref, precision="double", progress=False)
    assert not res.fast[0]
    with quiet_captum():
        want = FeatureAblation(m).attribute(torch.as_tensor(x), baselines=torch.as_tensor(ref), target=torch.as_tensor(t))
    np.testing.assert_allclose(res.attributions, want.numpy(), rtol=1e-5, atol=1e-8)


def test_cnn_methods(make_cnn, make_mlp, expr):
    cnn = make_cnn(25, 3, double=False)
    x = expr(12, 25, seed=6, dtype=np.float32)
    t = np.arange(12) % 3
    for method in ("guided_gradcam", "guided_gradcam_pp", "deeplift"):
        res = attribute_modules([cnn], x, t, method, progress=False, batch_size=5)
        assert res.attributions.shape == (12, 25) and np.isfinite(res.attributions).all()
        assert not res.fast[0]
    with pytest.raises(ValueError, match="grid CNN models only"):
        attribute_modules([make_mlp(25, 4, 3)], x, t, "guided_gradcam", progress=False)


def test_memory_model_respects_limit():
    for method, fast in [("deeplift_shap", True), ("feature_ablation", True), ("saliency", True),
                         ("integrated_gradients", False), ("deeplift", False)]:
        per = chunk_bytes_per_cell(method, 20000, n_hidden=128, n_baselines=20, n_members=10,
                                   fast=fast, activation_bytes=50_000, aggregate="median")
        for limit in (2**24, 2**28, 2**31):
            size = choose_batch_size(per, limit, fixed_bytes=2**20)
            assert size >= 1
            if size > 1:
                assert 2**20 + size * per <= limit < 2**20 + (size + 1) * per
        assert choose_batch_size(per, 10) == 1
    small = chunk_bytes_per_cell("deeplift_shap", 1000, n_hidden=32, n_baselines=2)
    big = chunk_bytes_per_cell("deeplift_shap", 1000, n_hidden=32, n_baselines=20)
    assert big > small
    assert chunk_bytes_per_cell("saliency", 100, aggregate="median", n_members=50) > chunk_bytes_per_cell(
        "saliency", 100, aggregate="mean", n_members=50)


def test_engine_chunk_from_memory_limit(setup):
    mods, x, t = setup
    per = chunk_bytes_per_cell("input_x_gradient", 30, n_hidden=8, n_members=3, itemsize=4, stacked=True,
                               aggregate="median")  # (the median: the stacked path)
    res = run(mods, x, t, "input_x_gradient", memory_limit_bytes=per * 10, aggregate="median")
    assert res.params["batch_size"] == 10
    for method in ("input_x_gradient", "deeplift"):  # (the mean: the group-sums path)
        tiny = run(mods, x, t, method, memory_limit_bytes=1)
        assert tiny.params["batch_size"] == 1
        full = run(mods, x, t, method)
        assert full.params["batch_size"] == 70
        np.testing.assert_allclose(tiny.attributions, full.attributions, rtol=1e-5, atol=1e-7)


def test_training_state_restored_and_input_errors(setup):
    mods, x, t = setup
    mods[0].train()
    run(mods, x, t, "saliency")
    assert mods[0].training and not mods[1].training
    with pytest.raises(ValueError, match="takes no reference"):
        run(mods, x, t, "saliency", references="zero")
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        run(mods, x, t + 1, "saliency")
    with pytest.raises(ValueError, match="targets has 5 entries"):
        run(mods, x, t[:5], "saliency")
    with pytest.raises(ValueError, match="choose one of"):
        run(mods, x, t, "saliency", aggregate="max")
    with pytest.raises(ValueError, match="known explainer"):
        run(mods, x, t, "shap")
    with pytest.raises(ValueError, match="takes 30 genes"):
        run(mods, x[:, :20], t, "saliency")


@pytest.mark.parametrize(
    "method,refs",
    [("deeplift", "zero"), ("deeplift", "mean"), ("deeplift", "universal"), ("deeplift_shap", "sample"),
     ("deeplift_shap", "rest"), ("deeplift_shap", "marginal"), ("feature_ablation", "mean"),
     ("deeplift", "rest_mean")],
)
def test_presence_split_fast_equals_captum(setup, method, refs):
    """The presence part (genes above their reference) agrees between the fast kernels and Captum."""
    mods, x, t = setup
    kw = dict(references=refs, precision="double", n_baselines=3 if refs in ("universal", "sample", "rest", "marginal") else None)
    fast = run(mods, x, t, method, **kw)
    slow = run(mods, x, t, method, use_fast=False, **kw)
    assert fast.presence_group_means is not None and fast.params["direction"] == "reference"
    scale = np.abs(slow.member_presence_group_means).max()
    np.testing.assert_allclose(fast.member_presence_group_means, slow.member_presence_group_means, rtol=1e-5,
                               atol=1e-6 * scale)
    np.testing.assert_allclose(fast.presence_group_means, slow.presence_group_means, rtol=1e-5, atol=1e-6 * scale)


def test_presence_is_the_part_above_the_reference(setup):
    mods, x, t = setup
    ref = x.mean(0)
    res = run(mods, x, t, "deeplift", references="mean", precision="double")
    want = res.attributions * (x > ref)
    for k in range(3):
        np.testing.assert_allclose(res.presence_group_means[k], want[t == k].mean(0), rtol=1e-5, atol=1e-7)
    # zero reference on non-negative data: every contribution comes from presence
    zero = run(mods, x, t, "deeplift", references="zero", precision="double")
    np.testing.assert_allclose(zero.presence_group_means, zero.group_means, rtol=1e-6, atol=1e-9)
    ixg = run(mods, x, t, "input_x_gradient", precision="double")
    assert ixg.params["direction"] == "input"
    np.testing.assert_allclose(ixg.presence_group_means, ixg.group_means, rtol=1e-6, atol=1e-9)
    sal = run(mods, x, t, "saliency")
    assert sal.presence_group_means is None and sal.params["direction"] is None
    off = run(mods, x, t, "deeplift", references="mean", split=False)
    assert off.presence_group_means is None
    np.testing.assert_allclose(off.attributions, res.attributions, rtol=1e-4, atol=1e-6)


def test_sparse_reference_presence(setup):
    """Real cells as references take the sparse path; its presence part equals the dense loop's."""
    mods, x, t = setup
    f = fold_mlp(mods[0]).to(torch.float64)
    xt, tt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(t)
    refs = torch.as_tensor(x[:6], dtype=torch.float64)
    sp_total, sp_pres = F.deeplift(f, xt, tt, refs, sparse_refs=True, split=True)
    dn_total, dn_pres = F.deeplift(f, xt, tt, refs, sparse_refs=False, k_block=0, split=True)
    np.testing.assert_allclose(sp_total.numpy(), dn_total.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sp_pres.numpy(), dn_pres.numpy(), rtol=1e-9, atol=1e-12)
    assert not np.allclose(dn_pres.numpy(), dn_total.numpy())


@pytest.mark.parametrize(
    "method,kw",
    [("saliency", {}), ("input_x_gradient", {}), ("guided_backprop", {}), ("deeplift", {"references": "mean"}),
     ("deeplift", {"references": "zero"}), ("deeplift_shap", {"references": "universal", "n_baselines": 4}),
     ("deeplift_shap", {"references": "marginal", "n_baselines": 2, "smoothgrad": (2, 0.1), "n_repeats": 2}),
     ("integrated_gradients", {"references": np.ones((3, 30), dtype=np.float32)})],
)
def test_stacked_members_equal_one_at_a_time(setup, method, kw):
    """All members in one pass (stacked kernels) give each member's own result."""
    mods, x, t = setup
    together = run(mods, x, t, method, precision="double", **kw)
    import scxl.explain._engine as E

    assert E._stack(E.get_explainer(method), [E._Member(m, E.get_explainer(method), device=torch.device("cpu"),
                                                         dtype=torch.float64, use_fast=True) for m in mods],
                    None, None, E.AttributionConfig()) is not None
    one = [run([m], x, t, method, precision="double", **kw) for m in mods]
    if "smoothgrad" in kw or (isinstance(kw.get("references"), str) and kw["references"] in ("universal", "marginal")):
        return  # member m draws its own references/noise with key m: not comparable to a one-member run
    np.testing.assert_allclose(together.member_group_means, np.concatenate([o.member_group_means for o in one]),
                               rtol=1e-9, atol=1e-12)
    if together.presence_group_means is not None:
        np.testing.assert_allclose(together.member_presence_group_means,
                                   np.concatenate([o.member_presence_group_means for o in one]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("layout", ["shared", "per-member references", "per-member inputs"])
def test_blocked_references_equal_the_reference_loop(setup, monkeypatch, split, layout):
    """More than two references: the gene-blocked stacked kernel (several blocks, the last one short)
    equals the one-reference-at-a-time loop, total and presence."""
    from scxl.explain import _stacked as S
    from scxl.explain._registry import KernelOptions

    mods, x, t = setup
    st = S.StackedMLP.from_folded([fold_mlp(m, dtype=torch.float64) for m in mods])
    rng = np.random.default_rng(5)
    xt = torch.as_tensor(x[:20], dtype=torch.float64)
    refs = torch.as_tensor(np.abs(rng.normal(1.0, 1.0, size=(5, 30))))
    if layout == "per-member references":
        refs = torch.as_tensor(np.abs(rng.normal(1.0, 1.0, size=(3, 5, 30))))
    elif layout == "per-member inputs":
        xt = xt + torch.as_tensor(rng.normal(0, 0.1, size=(3, 20, 30)))
    tt = torch.as_tensor(t[:20])
    opts = KernelOptions(split=split)
    monkeypatch.setattr(S, "BLOCK_VALUES", {"cpu": 5 * 20 * 7, "cuda": 5 * 20 * 7})  # 5 references x 20 cells x 7 genes
    monkeypatch.setattr(S, "MIN_BLOCK", 1)  # blocks of 7 genes: 5 blocks, the last of 2
    blocked = S.deeplift_kernel(st, xt, tt, refs, opts)
    monkeypatch.setattr(S, "LOOP_MAX_REFS", 10)
    loop = S.deeplift_kernel(st, xt, tt, refs, opts)
    for a, b in zip(blocked if split else [blocked], loop if split else [loop], strict=True):
        assert a.shape == (3, 20, 30)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-13)
    if split:
        assert not torch.allclose(blocked[0], blocked[1])


def test_stacked_random_references_equal_the_per_member_path(setup, monkeypatch):
    """Per-member references and SmoothGrad noise: the stacked pass equals the member-by-member loop."""
    import scxl.explain._engine as E

    mods, x, t = setup
    kw = dict(references="universal", n_baselines=3, smoothgrad=(2, 0.1), n_repeats=2, precision="double", random_state=4)
    stacked = run(mods, x, t, "deeplift_shap", **kw)
    monkeypatch.setattr(E, "_stack", lambda *a, **k: None)
    loop = run(mods, x, t, "deeplift_shap", **kw)
    np.testing.assert_allclose(stacked.attributions, loop.attributions, rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(stacked.member_presence_group_means, loop.member_presence_group_means, rtol=1e-8, atol=1e-11)


def test_general_path_drops_tiny_weights_in_a_copy(expr):
    """A module the fast kernels do not cover, with subnormal-range weights: attributed from a flushed copy."""
    from scxl.models import MLP

    torch.manual_seed(0)
    m = MLP(30, 3, hidden=(8, 6))  # two hidden layers: the Captum path
    with torch.no_grad():
        m.net[0].weight[:, 4] = 3e-39
    clean = copy.deepcopy(m)
    with torch.no_grad():
        clean.net[0].weight[:, 4] = 0
    x = expr(20, 30, seed=3, dtype=np.float32)
    t = np.random.default_rng(4).integers(0, 3, 20)
    a = run([m], x, t, "saliency", use_fast=False).attributions
    b = run([clean], x, t, "saliency", use_fast=False).attributions
    np.testing.assert_array_equal(a, b)
    assert float(m.net[0].weight.detach()[0, 4]) == pytest.approx(3e-39, rel=1e-3)  # the module itself is untouched


def test_stack_chooses_by_reference_density(setup):
    """More than two references: stacked when they are dense, member by member (whose kernel skips
    unexpressed genes) when they are mostly zeros; one or two references always stacked."""
    import scxl.explain._engine as E
    from scxl.explain._references import make_reference_sampler

    mods, _, _ = setup
    spec = E.get_explainer("deeplift_shap")
    members = [E._Member(m, spec, device=torch.device("cpu"), dtype=torch.float32, use_fast=True) for m in mods]
    cfg = E.AttributionConfig()
    sparse_refs = np.zeros((5, 30), dtype=np.float32)
    sparse_refs[:, :3] = 1.0  # 10 % non-zero
    dense_refs = np.ones((5, 30), dtype=np.float32)
    for refs, stacked in ((sparse_refs, False), (dense_refs, True), (sparse_refs[:2], True)):
        sampler = make_reference_sampler(refs, n_features=30, n_baselines=len(refs))
        assert (E._stack(spec, members, sampler, None, cfg) is not None) is stacked


@pytest.mark.parametrize("product", [False, True], ids=["index_add", "onehot_product"])
@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("method,refs", [("deeplift", "zero"), ("deeplift", "mean"), ("integrated_gradients", "two"),
                                         ("saliency", None), ("saliency", "absolute"), ("input_x_gradient", None),
                                         ("guided_backprop", None)])
def test_group_sums_path_equals_the_per_cell_path(setup, monkeypatch, method, refs, split, product):
    """The gene-blocked group-sums kernels (several chunks, several gene blocks, cells in no group)
    give the stacked per-cell path's member sums, presence and (with a per-cell output) cells;
    also by the one-hot product that CUDA uses instead of ``index_add_`` (run here on the CPU)."""
    import scxl.explain._engine as E
    from scxl.explain import _stacked as S

    mods, x, t = setup
    if product:
        monkeypatch.setattr(S, "INDEX_ADD_DEVICES", frozenset())
    monkeypatch.setattr(S, "BLOCK_VALUES", {"cpu": 3 * 16 * 7, "cuda": 3 * 16 * 7})  # 7-gene blocks
    monkeypatch.setattr(S, "MIN_BLOCK", 1)
    monkeypatch.setattr(E, "GROUP_PATH_ROWS", 16)  # 5 chunks, the last of 6
    if refs == "two":
        refs = np.abs(np.random.default_rng(3).normal(1.0, 1.0, size=(2, 30))).astype(np.float32)
    groups = t.copy()
    groups[::5] = -1
    kw = dict(references=refs, split=split, groups=groups, n_groups=3, precision="double")
    if refs is None or (isinstance(refs, str) and refs == "absolute"):
        kw = dict(kw, references=None, absolute=refs is not None)
        x = x - 0.5  # inputs of both signs: InputXGradient's presence part is that of the positive inputs
    cells = run(mods, x, t, method, store_cells=True, batch_size=16, **kw)  # a chunk size set: the stacked path
    sums = run(mods, x, t, method, store_cells=False, **kw)
    assert sums.params["batch_size"] == 16 and sums.attributions is None
    seen = []  # the group-sums path with a per-cell output: the members' mean, block by block
    both = run(mods, x, t, method, store_cells=True, on_chunk=lambda sl, a: seen.append((sl, a.copy())), **kw)
    assert both.params["batch_size"] == 16 and [sl.start for sl, _ in seen] == list(range(0, 70, 16))
    np.testing.assert_allclose(both.attributions, cells.attributions, rtol=1e-6, atol=1e-9)  # (float32 cells)
    np.testing.assert_array_equal(np.concatenate([a for _, a in seen]), both.attributions)
    np.testing.assert_allclose(both.group_means, cells.group_means, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(both.member_group_means, sums.member_group_means)
    np.testing.assert_allclose(sums.member_group_means, cells.member_group_means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sums.group_means, cells.group_means, rtol=1e-9, atol=1e-12)
    if split and method in ("deeplift", "integrated_gradients", "input_x_gradient"):
        np.testing.assert_allclose(sums.member_presence_group_means, cells.member_presence_group_means,
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(both.presence_group_means, cells.presence_group_means, rtol=1e-9, atol=1e-12)
    else:
        assert sums.presence_group_means is None and cells.presence_group_means is None


def test_group_sums_path_not_taken_for_tiny_chunks(setup):
    """Sums of very many groups leave the group-sums path room for chunks of a cell or two only:
    the stacked path runs instead (each small chunk would pay for filling the whole sums)."""
    mods, x, t = setup
    many = dict(groups=np.arange(70) % 7, n_groups=5000, memory_limit_bytes=4 * 2**20)
    res = run(mods, x, t, "saliency", **many)
    assert res.params["batch_size"] >= 64
    few = run(mods, x, t, "saliency", groups=np.arange(70) % 7, n_groups=5000)
    np.testing.assert_allclose(res.attributions, few.attributions, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.group_means[:7], few.group_means[:7], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["deeplift", "saliency"])
def test_chunks_add_only_their_groups(setup, monkeypatch, method):
    """With more groups than a chunk has cells, each chunk's sums have rows for its own groups
    only; the sums (and the empty groups' NaN means) equal the stacked path's and the dense sums."""
    import scxl.explain._engine as E

    mods, x, t = setup
    monkeypatch.setattr(E, "GROUP_PATH_ROWS", 16)
    groups = np.sort(np.random.default_rng(4).integers(0, 40, 70))  # chunks of 16 cells see a few groups each
    groups[3] = -1
    kw = dict(references="zero" if method == "deeplift" else None, groups=groups, n_groups=50, precision="double")
    fast = run(mods, x, t, method, store_cells=False, **kw)
    assert fast.params["batch_size"] == 16
    stacked = run(mods, x, t, method, store_cells=True, batch_size=16, **kw)
    np.testing.assert_allclose(fast.member_group_means, stacked.member_group_means, rtol=1e-9, atol=1e-12)
    empty = np.setdiff1d(np.arange(50), groups)
    assert np.isnan(fast.group_means[empty]).all() and not np.isnan(np.delete(fast.group_means, empty, 0)).any()
    dense = E.group_sums(stacked.attributions, groups, 50)
    n = np.bincount(groups[groups >= 0], minlength=50)
    np.testing.assert_allclose(dense[n > 0] / n[n > 0, None], fast.group_means[n > 0], rtol=1e-6, atol=1e-9)


def test_group_sums_adds_into_out():
    from scxl.explain._engine import group_sums

    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 9, 4))
    codes = np.array([5, 5, -1, 1, 5, 1, -1, 7, 7])
    total = np.ones((2, 8, 4))
    assert group_sums(v, codes, 8, out=total) is total
    expected = 1 + np.stack([np.stack([v[m, codes == k].sum(0) for k in range(8)]) for m in range(2)])
    np.testing.assert_allclose(total, expected)
    np.testing.assert_allclose(group_sums(v, codes, 8), expected - 1)
    with pytest.raises(ValueError, match="out must be a C-ordered float64 array of shape"):
        group_sums(v, codes, 8, out=np.zeros((8, 4)))
