from __future__ import annotations

import numpy as np
import pytest
import torch

from scxl.models import MLP, GridCNN, build_module, default_spec
from scxl.models._gene_order import (
    order_by_correlation,
    order_by_variance,
    order_genomic,
    resolve_gene_order,
)


def test_mlp_architecture_matches_paper():
    m = MLP(50, 4, batchnorm=True)
    kinds = [type(layer).__name__ for layer in m.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert m.net[0].out_features == 128 and m.net[3].p == 0.25
    m.eval()
    assert m(torch.randn(3, 50)).shape == (3, 4)


def test_mlp_default_is_paper_without_batchnorm():
    m = build_module(default_spec("mlp", 50, 4))
    assert [type(layer).__name__ for layer in m.net] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert m.net[0].out_features == 128 and m.net[2].p == 0.25
    paper = build_module(default_spec("mlp", 50, 4, batchnorm=True))
    assert isinstance(paper.net[1], torch.nn.BatchNorm1d)


def test_mlp_deeper_and_without_batchnorm():
    m = MLP(20, 3, (32, 16), batchnorm=False)
    assert [type(layer).__name__ for layer in m.net] == ["Linear", "ReLU", "Linear", "ReLU", "Dropout", "Linear"]


def test_cnn_grid_layout_maps_genes():
    order = np.array([2, 0, 1, 4, 3])
    m = GridCNN(5, 2, order, channels=(4, 4, 4))
    assert m.side == 3
    x = torch.arange(1, 6, dtype=torch.float32)[None]
    grid = m.to_grid(x)[0, 0]
    assert grid.flatten().tolist() == [3, 1, 2, 5, 4, 0, 0, 0, 0]
    m.eval()
    assert m(torch.randn(2, 5)).shape == (2, 2)


def test_cnn_paper_channels_and_gradients_reach_genes():
    m = GridCNN(30, 3)
    convs = [layer for layer in m.features if isinstance(layer, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256]
    assert [c.kernel_size[0] for c in convs] == [5, 5, 3]
    m.eval()
    x = torch.randn(2, 30, requires_grad=True)
    m(x)[:, 0].sum().backward()
    assert x.grad.shape == (2, 30) and torch.isfinite(x.grad).all()


def test_cnn_rejects_bad_order():
    with pytest.raises(ValueError, match="permutation"):
        GridCNN(4, 2, [0, 0, 1, 2])


def test_build_module_from_spec_and_errors():
    spec = default_spec("mlp", 10, 3, hidden=(16,))
    assert isinstance(build_module(spec), MLP)
    with pytest.raises(ValueError, match="model='rnn' is not valid"):
        default_spec("rnn", 10, 3)
    with pytest.raises(ValueError, match="pass the same callable as factory"):
        build_module({"type": "custom", "n_features": 3, "n_classes": 2})


def test_gene_orders():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 6)) * np.array([1, 5, 2, 0.1, 3, 4])
    order = order_by_variance(X.mean(0), (X**2).mean(0))
    assert order.tolist() == [1, 5, 4, 2, 0, 3]
    base = rng.normal(size=100)
    Y = np.column_stack([base, rng.normal(size=100), base + 0.01 * rng.normal(size=100), np.zeros(100)])
    corr = order_by_correlation(Y)
    assert abs(corr.tolist().index(0) - corr.tolist().index(2)) == 1 and corr[-1] == 3
    import pandas as pd

    pos = pd.DataFrame({"chrom": ["2", "1", "X", "1"], "start": [5, 10, 1, 3]}, index=["a", "b", "c", "d"])
    assert order_genomic(["a", "b", "c", "d", "e"], pos).tolist() == [3, 1, 0, 2, 4]
    orders = resolve_gene_order("random_per_model", var_names=pd.Index(list("abcd")), n_models=3, rng=rng,
                                stats=None, sample=None, positions=None)
    assert orders.shape == (3, 4) and not (orders == orders[0]).all()
    with pytest.raises(ValueError, match="needs positions"):
        resolve_gene_order("genomic", var_names=pd.Index(list("ab")), n_models=1, rng=rng, stats=None,
                           sample=None, positions=None)
    with pytest.raises(ValueError, match="exactly once"):
        resolve_gene_order(["a", "a"], var_names=pd.Index(list("ab")), n_models=1, rng=rng, stats=None,
                           sample=None, positions=None)
