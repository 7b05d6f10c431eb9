import numpy as np
import pytest
from scipy import sparse

from scxl.explain import (
    REFERENCE_KINDS,
    compute_gene_stats,
    make_reference_sampler,
    truncated_normal,
)


@pytest.fixture
def data(expr):
    x = expr(90, 12, seed=3)
    x[:, 0] -= 2.0  # a gene with a negative mean: truncation matters
    x[:, 1] = 0.7  # a constant gene (sd 0)
    groups = np.repeat([0, 1, 2], 30)
    return x, groups


def test_stats_streamed_equal_numpy(data):
    x, groups = data
    chunks = [x[i : i + 7] for i in range(0, 90, 7)]
    st = compute_gene_stats(chunks, groups)
    np.testing.assert_allclose(st.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st.sd, x.std(0), rtol=1e-10, atol=1e-12)
    assert st.sd[1] == 0.0 and np.all(st.group_sd[:, 1] == 0.0)
    for k in range(3):
        np.testing.assert_allclose(st.group_mean[k], x[groups == k].mean(0), rtol=1e-12)
        np.testing.assert_allclose(st.group_sd[k], x[groups == k].std(0), rtol=1e-10, atol=1e-12)
    assert st.group_n.tolist() == [30, 30, 30] and st.n == 90
    # (slice, block) pairs and a callable work the same
    pairs = [(slice(i, i + 20), x[i : i + 20]) for i in range(0, 90, 20)]
    st2 = compute_gene_stats(lambda: iter(pairs))
    np.testing.assert_allclose(st2.sd, st.sd, rtol=1e-12)


def test_stats_from_sparse_blocks_equal_dense():
    """CSR blocks give the statistics of their dense values, without densifying them.

    Mostly-zero genes, a constant gene (sd exactly 0), a gene with no zero in one group only
    (computed two-pass there), a gene never expressed, cells in no group, an empty group.
    """
    rng = np.random.default_rng(4)
    x = rng.gamma(1.0, 2.0, (300, 9)) * (rng.random((300, 9)) < 0.3)
    x[:, 1] = 0.7  # constant, stored in every row
    x[:, 2] = 0.0  # never expressed
    groups = rng.integers(-1, 3, 300)  # -1: no group; group 3 has no cells
    x[groups == 0, 3] = 1.5 + rng.random((groups == 0).sum())  # no zero in group 0
    x = x.astype(np.float32)
    dense = compute_gene_stats([x[i : i + 64] for i in range(0, 300, 64)], groups, n_groups=4)
    csr = sparse.csr_matrix(x)
    stored = compute_gene_stats([csr[i : i + 64] for i in range(0, 300, 64)], groups, n_groups=4)
    for f in ("mean", "sd", "group_mean", "group_sd"):
        np.testing.assert_allclose(getattr(stored, f), getattr(dense, f), rtol=1e-10, atol=1e-12)
    assert stored.sd[1] == 0.0 and np.all(stored.group_sd[:3, 1] == 0.0) and stored.sd[2] == 0.0
    assert stored.group_n.tolist() == dense.group_n.tolist() and stored.group_n[3] == 0
    without = compute_gene_stats([csr[i : i + 64] for i in range(0, 300, 64)])
    np.testing.assert_allclose(without.sd, dense.sd, rtol=1e-10, atol=1e-12)


def test_stats_errors(data):
    x, groups = data
    with pytest.raises(ValueError, match="chunks held 90 rows"):
        compute_gene_stats([x], np.zeros(100, int))
    with pytest.raises(ValueError, match="empty"):
        compute_gene_stats([])


def test_truncated_normal_bounds_and_moments():
    rng = np.random.default_rng(0)
    mean, sd = np.array([-1.0, 0.5, 3.0, 2.0]), np.array([1.0, 0.2, 1.0, 0.0])
    d = truncated_normal(mean, sd, (20000, 4), rng)
    assert d.min() >= 0
    assert np.all(d[:, 3] == 2.0)
    # far from the bound the law is the untruncated normal
    assert abs(d[:, 2].mean() - 3.0) < 0.05 and abs(d[:, 2].std() - 1.0) < 0.05
    # N(-1, 1) truncated to [0, inf): mean = -1 + phi(1) / (1 - Phi(1))
    from scipy.stats import norm

    assert abs(d[:, 0].mean() - (-1 + norm.pdf(1) / norm.sf(1))) < 0.02


def test_normal_reference_in_unit_interval():
    s = make_reference_sampler("normal", n_features=40, n_baselines=500)
    r = s.draw(np.random.default_rng(0)).for_cells()
    assert r.shape == (500, 40) and r.dtype == np.float32
    assert r.min() >= 0 and r.max() <= 1
    # truncated N(0, 1) on [0, 1] has mean (phi(0) - phi(1)) / (Phi(1) - Phi(0)) ≈ 0.4599
    assert abs(r.mean() - 0.4599) < 0.01


def test_universal_and_specific(data):
    x, groups = data
    st = compute_gene_stats([x], groups)
    uni = make_reference_sampler("universal", n_features=12, n_baselines=300, stats=st)
    assert uni.shared and uni.random
    r = uni.draw(np.random.default_rng(1)).for_cells()
    assert r.shape == (300, 12) and r.min() >= 0
    assert np.all(r[:, 1] == np.float32(0.7))
    # mean of N(mu, sd) truncated to [0, inf): mu + sd * phi(a) / (1 - Phi(a)), a = -mu / sd
    from scipy.stats import norm

    mu, sd = x[:, 5].mean(), x[:, 5].std()
    assert abs(r[:, 5].mean() - (mu + sd * norm.pdf(-mu / sd) / norm.sf(-mu / sd))) < 0.1
    spe = make_reference_sampler("specific", n_features=12, n_baselines=4, stats=st)
    assert not spe.shared
    rs = spe.draw(np.random.default_rng(2))
    assert rs.per_group.shape == (3, 4, 12) and rs.per_group.min() >= 0
    cells = rs.for_cells(np.array([2, 0, 2]))
    assert cells.shape == (3, 4, 12)
    np.testing.assert_array_equal(cells[0], rs.per_group[2])
    with pytest.raises(ValueError, match="per group"):
        rs.for_cells()


def test_sample_and_rest_draw_real_cells(data):
    x, groups = data
    read = lambda idx: x[idx]  # noqa: E731
    smp = make_reference_sampler("sample", n_features=12, n_baselines=10, read_rows=read, n_obs=90)
    r = smp.draw(np.random.default_rng(3)).for_cells()
    rows = {tuple(row) for row in x.astype(np.float32)}
    assert r.shape == (10, 12) and all(tuple(row) in rows for row in r)
    assert len({tuple(row) for row in r}) == 10  # without replacement
    rest = make_reference_sampler("rest", n_features=12, n_baselines=25, read_rows=read, groups=groups)
    rs = rest.draw(np.random.default_rng(4))
    assert rs.per_group.shape == (3, 25, 12)
    x32 = x.astype(np.float32)
    for k in range(3):
        own = {tuple(row) for row in x32[groups == k]}
        other = {tuple(row) for row in x32[groups != k]}
        drawn = [tuple(row) for row in rs.per_group[k]]
        assert all(d in other and d not in own for d in drawn)


def test_sparse_reader_and_user_arrays(data):
    x, groups = data
    xs = sparse.csr_matrix(x)
    smp = make_reference_sampler("sample", n_features=12, n_baselines=3, read_rows=lambda i: xs[i].toarray(), n_obs=90)
    assert smp.draw(0).for_cells().shape == (3, 12)
    u = make_reference_sampler(x[0], n_features=12)
    assert u.kind == "user" and not u.random and u.draw(0).for_cells().shape == (1, 12)
    z = make_reference_sampler("zero", n_features=12, n_baselines=9)
    assert z.n_baselines == 1 and not z.draw(0).for_cells().any()


def test_seeded_draws(data):
    x, groups = data
    st = compute_gene_stats([x], groups)
    for kind in ["normal", "universal", "specific"]:
        s = make_reference_sampler(kind, n_features=12, n_baselines=3, stats=st)
        a, b = s.draw(np.random.default_rng(5)), s.draw(np.random.default_rng(5))
        c = s.draw(np.random.default_rng(6))
        arr = lambda rs: rs.shared if rs.shared is not None else rs.per_group  # noqa: E731
        np.testing.assert_array_equal(arr(a), arr(b))
        assert not np.array_equal(arr(a), arr(c))


def test_sampler_errors(data):
    x, groups = data
    assert "universal" in REFERENCE_KINDS
    with pytest.raises(ValueError, match="choose one of"):
        make_reference_sampler("median", n_features=12)
    with pytest.raises(ValueError, match="statistics"):
        make_reference_sampler("universal", n_features=12)
    with pytest.raises(ValueError, match="read_rows"):
        make_reference_sampler("sample", n_features=12, n_obs=5)
    with pytest.raises(ValueError, match="shape"):
        make_reference_sampler(np.zeros((2, 5)), n_features=12)
    with pytest.raises(ValueError, match="per-group statistics"):
        make_reference_sampler("specific", n_features=12, stats=compute_gene_stats([x]), n_groups=3)


@pytest.mark.parametrize("mean,sd,low,high", [(-1.0, 1.0, 0.0, np.inf), (0.3, 0.2, 0.0, np.inf), (0.0, 1.0, 0.0, 1.0),
                                              (-3.0, 0.5, 0.0, np.inf), (5.0, 1.0, 0.0, np.inf), (-12.0, 1.0, 0.0, np.inf),
                                              (-40.0, 1.0, 0.0, np.inf)])
def test_truncated_normal_is_the_truncated_law(mean, sd, low, high):
    """The fast inverse-CDF sampler draws scipy's truncnorm law (KS test), deep tails included."""
    from scipy.stats import kstest, truncnorm

    d = truncated_normal(np.array([mean]), np.array([sd]), (5000, 1), np.random.default_rng(3), low=low, high=high)[:, 0]
    assert d.min() >= low and d.max() <= high
    a, b = (low - mean) / sd, (high - mean) / sd
    assert kstest(d, truncnorm(a, b, loc=mean, scale=sd).cdf).pvalue > 0.001
