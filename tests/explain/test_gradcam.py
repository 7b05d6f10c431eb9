"""Grad-CAM / Grad-CAM++ on a tiny GridCNN: brute force and Captum cross-checks."""

import torch
from captum.attr import GuidedGradCam, LayerAttribution

from scxl.explain import _gradcam as gc
from scxl.explain._captum import quiet_captum


class _OnGrid(torch.nn.Module):
    """The CNN applied to an already laid-out grid image (so Captum can interpolate)."""

    def __init__(self, cnn):
        super().__init__()
        self.cnn = cnn

    def forward(self, img):
        return self.cnn.head(self.cnn.features(img))


def _inputs(expr, g, m, n=3, seed=0):
    """Random cells, each explained towards its predicted class (a non-trivial CAM)."""
    x = torch.as_tensor(expr(n, g, seed=seed))
    with torch.no_grad():
        t = m(x).argmax(1)
    return x, t


def test_gene_positions_invert_layout(make_cnn):
    m = make_cnn(20, 3)
    pos = gc.gene_positions(m)
    assert torch.equal(m.index[pos], torch.arange(20))
    x = torch.arange(20, dtype=torch.float64)[None]
    assert torch.equal(m.to_grid(x).reshape(1, -1)[0, pos], x[0])


def _brute_force_gradcam_pp(m, x, t):
    """Chattopadhay et al.'s formula with Y = exp(S) and true 1st-3rd derivatives, elementwise."""
    store = {}
    handle = m.last_conv.register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o))
    maps = []
    try:
        for i in range(x.shape[0]):
            xi = x[i : i + 1].clone().requires_grad_(True)
            score = m(xi)[0, t[i]]
            a = store["a"]
            y = torch.exp(score)
            (d1,) = torch.autograd.grad(y, a, create_graph=True)
            k_, h_, w_ = a.shape[1:]
            alpha = torch.zeros(k_, h_, w_, dtype=x.dtype)
            for k in range(k_):
                for p in range(h_):
                    for q in range(w_):
                        (d2,) = torch.autograd.grad(d1[0, k, p, q], a, create_graph=True)
                        (d3,) = torch.autograd.grad(d2[0, k, p, q], a, retain_graph=True)
                        d2v, d3v = d2[0, k, p, q].item(), d3[0, k, p, q].item()
                        den = 2 * d2v + a[0, k].sum().item() * d3v
                        alpha[k, p, q] = d2v / den if d2v != 0 else 0.0
            weights = (alpha * torch.relu(d1[0].detach())).sum(dim=(1, 2))
            cam = torch.relu((weights[:, None, None] * a[0].detach()).sum(0))
            maps.append(cam / y.detach())  # the exp(S) factor of dY = Y dS
    finally:
        handle.remove()
    return torch.stack(maps)[:, None]


def test_gradcam_pp_matches_brute_force(make_cnn, expr):
    m = make_cnn(20, 3, channels=(2, 3), kernels=(3, 3))
    x, t = _inputs(expr, 20, m)
    got = gc.gradcam_pp_map(m, x, t)
    want = _brute_force_gradcam_pp(m, x, t)
    assert got.shape == want.shape == (3, 1, 3, 3)
    assert want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)


def test_gradcam_pp_differs_from_gradcam(make_cnn, expr):
    m = make_cnn(30, 3)
    x, t = _inputs(expr, 30, m, n=4, seed=1)
    assert not torch.allclose(gc.gradcam_pp_map(m, x, t), gc.gradcam_map(m, x, t))


def test_guided_gradcam_matches_captum_on_grid(make_cnn, expr):
    m = make_cnn(30, 4)
    x, t = _inputs(expr, 30, m, n=5, seed=2)
    got = gc.guided_gradcam(m, x, t)
    assert got.shape == (5, 30)
    img = m.to_grid(x).detach()
    with quiet_captum():
        want_img = GuidedGradCam(_OnGrid(m), m.last_conv).attribute(img, target=t)
    want = want_img.reshape(5, -1)[:, gc.gene_positions(m)]
    assert want.abs().max() > 0
    torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-14)


def test_guided_gradcam_pp_per_gene(make_cnn, expr):
    m = make_cnn(30, 4)
    x, t = _inputs(expr, 30, m, n=5, seed=3)
    got = gc.guided_gradcam_pp(m, x, t)
    assert got.shape == (5, 30) and torch.isfinite(got).all()
    # guided backprop × CAM++ read at each gene's pixel
    cam = LayerAttribution.interpolate(gc.gradcam_pp_map(m, x, t), (m.side, m.side))
    gb = gc._guided(m, x, t)
    torch.testing.assert_close(got, gb * cam.reshape(5, -1)[:, gc.gene_positions(m)])
