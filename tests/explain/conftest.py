import numpy as np
import pytest
import torch

from scxl.models import MLP, GridCNN


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: one intra-op thread is faster and robust to a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise_bn(module, gen):
    """Random running statistics and affine parameters for every BatchNorm."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(1 + 0.3 * torch.randn(n, generator=gen))
                m.bias.copy_(0.3 * torch.randn(n, generator=gen))
    return module


@pytest.fixture
def make_mlp():
    def make(g, h, c, *, seed=0, batchnorm=True, hidden=None, double=True):
        torch.manual_seed(seed)
        m = MLP(g, c, [h] if hidden is None else hidden, batchnorm=batchnorm)
        randomise_bn(m, torch.Generator().manual_seed(seed + 1))
        m.eval()
        return m.double() if double else m

    return make


@pytest.fixture
def make_cnn():
    def make(g, c, *, seed=0, channels=(3, 4), kernels=(3, 3), double=True):
        torch.manual_seed(seed)
        order = np.random.default_rng(seed).permutation(g)
        m = GridCNN(g, c, order, channels=channels, kernels=kernels)
        randomise_bn(m, torch.Generator().manual_seed(seed + 1))
        m.eval()
        return m.double() if double else m

    return make


@pytest.fixture
def expr():
    """Random non-negative log-expression-like data with zeros."""

    def make(n, g, *, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        x = rng.gamma(1.0, 1.0, size=(n, g)) * (rng.random((n, g)) > 0.3)
        return x.astype(dtype)

    return make
