from __future__ import annotations

import numpy as np
import pytest
import torch

from scxl.models import MLP
from scxl.train import (
    TrainConfig,
    balanced_epoch,
    classification_metrics,
    fit_member,
    stratified_kfold,
    stratified_split,
)


def test_stratified_split_keeps_every_class():
    y = np.array([0] * 50 + [1] * 20 + [2] * 3)
    tr, va = stratified_split(y, 0.1, np.random.default_rng(0))
    assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == y.size
    assert np.bincount(y[va]).tolist() == [5, 2, 1]
    with pytest.raises(ValueError, match="validation must be in"):
        stratified_split(y, 1.0, np.random.default_rng(0))


def test_kfold_partitions_and_stratifies():
    y = np.repeat([0, 1], [50, 25])
    folds = stratified_kfold(y, 5, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(75))
    assert all(np.bincount(y[f]).tolist() == [10, 5] for f in folds)


def test_balanced_epoch_upsamples_to_largest_class():
    y = np.array([0] * 30 + [1] * 5)
    idx = balanced_epoch(y, 2, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [30, 30]
    assert set(np.flatnonzero(y == 1)) <= set(idx)


def test_classification_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y, p, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["recall"].tolist() == [0.5, 1.0, 0.5]
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) / (2 / 3 + 1), 2 * 1 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["confusion"].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def _toy(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 300)
    X = rng.normal(size=(300, 10)).astype(np.float32)
    X[np.arange(300), y] += 3
    return torch.from_numpy(X), y


def test_fit_member_learns_and_restores_best():
    X, y = _toy()
    tr, va = stratified_split(y, 0.2, np.random.default_rng(0))
    torch.manual_seed(0)
    m, hist = fit_member(MLP(10, 3, (16,)), lambda i: X[torch.as_tensor(i)], y, tr, va, n_classes=3,
                         config=TrainConfig(max_epochs=40, patience=5, batch_size=32), rng=np.random.default_rng(0),
                         device=torch.device("cpu"))
    assert hist["val_accuracy"].max() > 0.9
    assert hist["best"].sum() == 1
    assert hist.loc[hist["best"], "val_loss"].item() == pytest.approx(hist["val_loss"].min())
    assert not m.training


@pytest.mark.parametrize(("min_delta", "chance"), [(0.0, 0.0), (0.05, 0.0), (0.0, 0.02)])
def test_fit_member_stops_by_the_rule(min_delta, chance):
    """The stored history replays the rules: the stop follows ``improved`` with min_delta and the
    chance floor (min_delta_chance × ln 3), the restored epoch the lowest loss."""
    from scxl.train import improved

    X, y = _toy()
    tr, va = stratified_split(y, 0.2, np.random.default_rng(0))
    torch.manual_seed(0)
    cfg = TrainConfig(max_epochs=150, patience=3, batch_size=32, min_delta=min_delta, min_delta_chance=chance)
    _, hist = fit_member(MLP(10, 3, (16,)), lambda i: X[torch.as_tensor(i)], y, tr, va, n_classes=3, config=cfg,
                         rng=np.random.default_rng(0), device=torch.device("cpu"))
    floor = chance * np.log(3)
    best, lowest, best_epoch, bad, stop, small_gains = np.inf, np.inf, 0, 0, None, 0
    for epoch, loss in zip(hist["epoch"], hist["val_loss"], strict=True):
        small_gains += improved(loss, best, 0.0) and not improved(loss, best, min_delta, floor)
        if improved(loss, lowest, 0.0):
            lowest, best_epoch = loss, epoch
        if improved(loss, best, min_delta, floor):
            best, bad = loss, 0
        else:
            bad += 1
        if bad >= cfg.patience:
            stop = epoch
            break
    assert stop is not None and stop == hist["epoch"].max() < cfg.max_epochs  # it stopped early, where the rule says
    assert hist.loc[hist["best"], "epoch"].item() == best_epoch
    assert hist.loc[hist["best"], "val_loss"].item() == hist["val_loss"].min()  # the lowest loss is restored
    assert (small_gains > 0) == (min_delta > 0 or chance > 0)  # some smaller losses did not count as improvements


def test_improved_is_relative():
    from scxl.train import improved

    assert improved(0.0099, 0.01, 0.0) and not improved(0.0099, 0.01, 0.05)
    assert improved(0.94, 1.0, 0.05) and not improved(0.96, 1.0, 0.05)
    assert not improved(1.0 - 1e-7, 1.0, 0.0)  # the absolute floor
    assert improved(3.0, np.inf, 0.5)
    assert improved(0.497, 0.5, 0.0, floor=0.002) and not improved(0.499, 0.5, 0.0, floor=0.002)  # an absolute floor
    assert not improved(0.497, 0.5, 0.01, floor=0.002)  # both rules must hold


def test_train_config_validation():
    with pytest.raises(ValueError, match=r"min_delta must be a number .*got '0.1'"):
        TrainConfig(min_delta="0.1")
    with pytest.raises(ValueError, match=r"min_delta must be a fraction in \[0, 1\)"):
        TrainConfig(min_delta=1.0)
    with pytest.raises(ValueError, match=r"min_delta_chance must be a fraction in \[0, 1\) of the chance loss"):
        TrainConfig(min_delta_chance=-0.1)
    with pytest.raises(ValueError, match=r"min_delta_chance must be a fraction .*got True"):
        TrainConfig(min_delta_chance=True)
    with pytest.raises(ValueError, match="balance="):
        TrainConfig(balance="smote")
    with pytest.raises(ValueError, match="max_epochs must be a positive"):
        TrainConfig(max_epochs=0)
