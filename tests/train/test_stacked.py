"""All members at once (stacked weights): the same members as one after another, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scxl as xl
from scxl.models import MLP, GridCNN
from scxl.train import TrainConfig, fit_member, fit_members, stackable, stratified_split


def _toy(seed=0, n=300, g=10):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, g)).astype(np.float32)
    X[np.arange(n), y] += 1.5
    return torch.from_numpy(X), y


def _members(n, seed0=10, **kw):
    mods, gens = [], []
    for i in range(n):
        torch.manual_seed(seed0 + i)
        mods.append(MLP(10, 3, **kw))
        g = torch.Generator()
        g.set_state(torch.random.get_rng_state())
        gens.append(g)
    return mods, gens


@pytest.mark.parametrize("fused", [True, False], ids=["fused Adam", "default Adam"])
@pytest.mark.parametrize(("kw", "min_delta", "chance"), [({}, 0.0, 0.0), ({"hidden": (8, 6), "batchnorm": True}, 0.0, 0.0),
                                                       ({}, 0.005, 0.0), ({}, 0.0, 0.006)])
def test_fit_members_equals_fit_member(kw, min_delta, chance, fused, monkeypatch):
    """Each stacked member is the member trained alone, including members that stop at different epochs.

    With torch's fused Adam kernel (torch >= 2.4) and with the default one (older torch), both
    paths use the same kernel.
    """
    from scxl.train import _loop

    if fused and not _loop.fused_adam(torch.device("cpu")):
        pytest.skip("this torch has no fused Adam on the CPU")
    monkeypatch.setitem(_loop._FUSED_ADAM, "cpu", fused)
    X, y = _toy()
    fetch = lambda i: X[torch.as_tensor(i)]  # noqa: E731
    cfg = TrainConfig(max_epochs=25, patience=3, lr_patience=1, batch_size=32, min_delta=min_delta,
                      min_delta_chance=chance)
    splits = [stratified_split(y, 0.2, np.random.default_rng(i)) for i in range(4)]
    mods, gens = _members(4, **kw)
    together = fit_members(mods, fetch, y, splits, n_classes=3, config=cfg,
                           rngs=[np.random.default_rng(100 + i) for i in range(4)], generators=gens,
                           device=torch.device("cpu"))
    lengths = set()
    for i in range(4):
        torch.manual_seed(10 + i)
        alone, hist = fit_member(MLP(10, 3, **kw), fetch, y, *splits[i], n_classes=3, config=cfg,
                                 rng=np.random.default_rng(100 + i), device=torch.device("cpu"))
        m, h = together[i]
        for k, v in alone.state_dict().items():
            torch.testing.assert_close(m.state_dict()[k], v, rtol=0, atol=0)
        assert h.equals(hist)
        assert not m.training
        lengths.add(len(h))
    assert len(lengths) > 1  # members stopped at different epochs: a stopped member no longer moved
    assert any((h["lr"] < cfg.lr).any() for _, h in together)  # the learning-rate schedule, per member


@pytest.mark.parametrize("mode", ["per member", "autograd"])
def test_every_product_mode_is_exact(mode, monkeypatch):
    """Each way a stacked product can be computed (batched, plain product per member, nn.Linear's
    autograd per member) gives the members trained alone, bit for bit: forced here for every layer."""
    from scxl.train import _stacked

    real = _stacked._plan

    def forced(*args, **kw):
        real(*args, **kw)  # the checks still run
        return (_stacked.PER_MEMBER, mode, mode, mode)

    monkeypatch.setattr(_stacked, "_plan", forced)
    X, y = _toy()
    fetch = lambda i: X[torch.as_tensor(i)]  # noqa: E731
    cfg = TrainConfig(max_epochs=4, patience=5, batch_size=32)
    splits = [stratified_split(y, 0.2, np.random.default_rng(i)) for i in range(3)]
    mods, gens = _members(3, hidden=(8, 6))
    together = fit_members(mods, fetch, y, splits, n_classes=3, config=cfg,
                           rngs=[np.random.default_rng(100 + i) for i in range(3)], generators=gens,
                           device=torch.device("cpu"))
    for i in range(3):
        torch.manual_seed(10 + i)
        alone, hist = fit_member(MLP(10, 3, hidden=(8, 6)), fetch, y, *splits[i], n_classes=3, config=cfg,
                                 rng=np.random.default_rng(100 + i), device=torch.device("cpu"))
        for k, v in alone.state_dict().items():
            torch.testing.assert_close(together[i][0].state_dict()[k], v, rtol=0, atol=0)
        assert together[i][1].equals(hist)


def test_capped_epochs():
    """epoch_size: each epoch is that many samples (a fresh draw), early stopping watches a fixed
    subset of epoch_size // 4 validation rows; stacked members equal members trained alone."""
    from scxl.train import monitored_rows

    X, y = _toy(n=400)
    seen = []

    def fetch(i):
        seen.append(np.asarray(i).size)
        return X[torch.as_tensor(i)]

    cfg = TrainConfig(max_epochs=3, patience=5, batch_size=32, epoch_size=64)
    splits = [stratified_split(y, 0.2, np.random.default_rng(i)) for i in range(2)]
    torch.manual_seed(10)
    alone, hist = fit_member(MLP(10, 3), fetch, y, *splits[0], n_classes=3, config=cfg,
                             rng=np.random.default_rng(100), device=torch.device("cpu"))
    assert len(hist) == 3
    val = monitored_rows(splits[0][1], 64)
    assert val.size == 16 and np.unique(val).size == 16
    # per epoch: 64 training samples (4 batches of 16: at least 8 steps' worth of small batches), then 16 validation rows
    assert seen == ([16] * 4 + [16]) * 3
    mods, gens = _members(2)
    together = fit_members(mods, lambda i: X[torch.as_tensor(i)], y, splits, n_classes=3, config=cfg,
                           rngs=[np.random.default_rng(100 + i) for i in range(2)], generators=gens,
                           device=torch.device("cpu"))
    for k, v in alone.state_dict().items():
        torch.testing.assert_close(together[0][0].state_dict()[k], v, rtol=0, atol=0)
    assert together[0][1].equals(hist)
    with pytest.raises(ValueError, match="epoch_size"):
        TrainConfig(epoch_size=1)


def test_stackable_and_errors():
    assert stackable(MLP(10, 3))
    assert not stackable(GridCNN(16, 3, channels=(2,), kernels=(3,)))
    assert not stackable(torch.nn.Sequential(torch.nn.Linear(10, 3)))
    X, y = _toy()
    mods, gens = _members(2)
    with pytest.raises(TypeError, match="MLP members only"):
        fit_members([torch.nn.Linear(10, 3)], lambda i: X[i], y, [(np.arange(10), np.arange(10, 12))],
                    n_classes=3, config=TrainConfig(), rngs=[np.random.default_rng(0)], generators=gens[:1],
                    device=torch.device("cpu"))
    with pytest.raises(ValueError, match="validation sets of one size"):
        fit_members(mods, lambda i: X[torch.as_tensor(i)], y, [(np.arange(100), np.arange(100, 110)),
                                                              (np.arange(100), np.arange(100, 120))],
                    n_classes=3, config=TrainConfig(max_epochs=1), rngs=[np.random.default_rng(0)] * 2,
                    generators=gens, device=torch.device("cpu"))


@pytest.mark.parametrize("extra", [{}, {"model_kwargs": {"batchnorm": True}, "balance": "weights", "hidden": (16, 8)},
                                   {"split": "shared", "validation": 0.0}])
def test_vectorize_matches_one_after_another(synth, extra):
    a, b = synth.copy(), synth.copy()
    xl.tl.train_classifier(a, "group", n_models=3, max_epochs=6, patience=3, vectorize=True, **extra)
    xl.tl.train_classifier(b, "group", n_models=3, max_epochs=6, patience=3, vectorize=False, **extra)
    for i in range(3):
        wa, wb = a.uns["xl"]["weights"][f"model_{i}"], b.uns["xl"]["weights"][f"model_{i}"]
        assert wa.keys() == wb.keys()
        for k in wa:
            np.testing.assert_array_equal(wa[k], wb[k])
    assert a.uns["xl"]["history"].equals(b.uns["xl"]["history"])
    assert a.uns["xl"]["params"]["vectorize"] and not b.uns["xl"]["params"]["vectorize"]
    # the stored format is unchanged: ordinary MLP state dicts
    assert isinstance(xl.get.ensemble(a).modules[0], MLP)


def test_extend_vectorised_equals_all_at_once(synth):
    """Members 2..3 trained later (stacked with each other only) equal those of a 4-member stacked run."""
    full, part = synth.copy(), synth.copy()
    xl.tl.train_classifier(full, "group", n_models=4, max_epochs=4)
    xl.tl.train_classifier(part, "group", n_models=2, max_epochs=4, vectorize=False)
    xl.tl.train_classifier(part, "group", n_models=4, max_epochs=4, extend=True)
    for i in range(4):
        for k, v in full.uns["xl"]["weights"][f"model_{i}"].items():
            np.testing.assert_array_equal(v, part.uns["xl"]["weights"][f"model_{i}"][k])


def test_cnn_and_custom_train_one_after_another(synth):
    a = synth.copy()
    xl.tl.train_classifier(a, "group", model="cnn", model_kwargs={"channels": (2, 2, 2)}, n_models=2, max_epochs=1)
    assert xl.get.ensemble(a).n_models == 2
    with pytest.raises(TypeError, match="vectorize must be True or False"):
        xl.tl.train_classifier(synth.copy(), "group", vectorize="yes")


def test_tiny_weights_flushed_alike():
    """Weights below 1e-30 (subnormals slow CPU products) are set to 0 every 32 steps, in both loops alike."""
    X, y = _toy()
    X[:, 9] = 0  # a gene never expressed: its weights only feel weight decay
    fetch = lambda i: X[torch.as_tensor(i)]  # noqa: E731
    cfg = TrainConfig(max_epochs=10, patience=100, batch_size=32)
    splits = [stratified_split(y, 0.2, np.random.default_rng(i)) for i in range(2)]

    def planted(mods):
        with torch.no_grad():
            for m in mods:
                m.net[0].weight[:, 9] = 1e-33
        return mods

    mods, gens = _members(2)
    together = fit_members(planted(mods), fetch, y, splits, n_classes=3, config=cfg,
                           rngs=[np.random.default_rng(100 + i) for i in range(2)], generators=gens,
                           device=torch.device("cpu"))
    for i in range(2):
        torch.manual_seed(10 + i)
        alone, hist = fit_member(planted([MLP(10, 3)])[0], fetch, y, *splits[i], n_classes=3, config=cfg,
                                 rng=np.random.default_rng(100 + i), device=torch.device("cpu"))
        assert len(hist) == 10  # 10 epochs of >= 7 steps: more than 32 steps
        assert (alone.net[0].weight[:, 9] == 0).all()
        for k, v in alone.state_dict().items():
            torch.testing.assert_close(together[i][0].state_dict()[k], v, rtol=0, atol=0)


def test_flush_steps_alike(monkeypatch):
    """With a threshold that bites (0.05) and a flush every 3 steps, the loops still agree bit for bit.

    Many weights cross the threshold again and again, so flushing at other steps in one loop
    (an off-by-one in the step count), or other tensors, changes the members.
    """
    import scxl._subnormal as sub
    from scxl.train import _loop, _stacked

    monkeypatch.setattr(sub, "TINY", 0.05)
    monkeypatch.setattr(_loop, "FLUSH_EVERY", 3)
    monkeypatch.setattr(_stacked, "FLUSH_EVERY", 3)
    X, y = _toy()
    fetch = lambda i: X[torch.as_tensor(i)]  # noqa: E731
    cfg = TrainConfig(max_epochs=4, patience=100, batch_size=32)
    splits = [stratified_split(y, 0.2, np.random.default_rng(i)) for i in range(3)]
    mods, gens = _members(3, hidden=(8, 6), batchnorm=True)
    together = fit_members(mods, fetch, y, splits, n_classes=3, config=cfg,
                           rngs=[np.random.default_rng(100 + i) for i in range(3)], generators=gens,
                           device=torch.device("cpu"))
    for i in range(3):
        torch.manual_seed(10 + i)
        alone, _ = fit_member(MLP(10, 3, hidden=(8, 6), batchnorm=True), fetch, y, *splits[i], n_classes=3,
                              config=cfg, rng=np.random.default_rng(100 + i), device=torch.device("cpu"))
        w = alone.net[0].weight
        assert (w == 0).any() and torch.isfinite(w).all()  # the flush bit (every 3 steps, the last on step 3k)
        for k, v in alone.state_dict().items():
            torch.testing.assert_close(together[i][0].state_dict()[k], v, rtol=0, atol=0)


def test_adam_falls_back_where_the_fused_kernel_does_not_apply():
    """Complex (or half-precision) parameters get the default Adam, float32 ones the fused kernel where torch has it."""
    from scxl.train import _loop

    cfg = TrainConfig()
    cpu = torch.device("cpu")
    real = [torch.zeros(3, requires_grad=True)]
    assert _loop.adam(real, cfg, cpu).defaults["fused"] is (True if _loop.fused_adam(cpu) else None)
    for dtype in (torch.complex64, torch.float16):
        p = torch.zeros(3, dtype=dtype, requires_grad=True)
        opt = _loop.adam([p], cfg, cpu)
        assert not opt.defaults["fused"]
        p.grad = torch.ones_like(p)
        opt.step()  # the default kernel takes them
        assert torch.isfinite(torch.view_as_real(p) if p.is_complex() else p).all() and p.abs().sum() > 0
