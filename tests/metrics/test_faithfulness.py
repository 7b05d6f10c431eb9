import numpy as np
import pytest
from scipy import sparse

from scxl.metrics import curve_auc, deletion_curve, insertion_curve

W = np.array([0.5, 0.0, 0.25, 0.125, 0.125])


def linear_predict(x):
    assert x.dtype == np.float32
    p = x.astype(np.float64) @ W
    return np.stack([1.0 - p, p], axis=1)


def test_deletion_curve_linear_model_known_answer():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(7, 5))
    ref = np.full(5, 0.2)
    ranking = np.argsort(-W, kind="stable")  # [0, 2, 3, 4, 1]
    steps = np.arange(6)
    curve = deletion_curve(linear_predict, x, ranking, ref, 1, steps, batch_size=3)
    assert curve.shape == (6, 7)
    # closed form: p_k = x @ W - sum_{top k} W_j (x_j - ref_j)
    contrib = (x - ref) * W
    expected = np.stack([x @ W - contrib[:, ranking[:k]].sum(axis=1) for k in steps])
    np.testing.assert_allclose(curve, expected, rtol=1e-6)
    # class 0 is the complement
    curve0 = deletion_curve(linear_predict, x, ranking, ref, 0, steps)
    np.testing.assert_allclose(curve0, 1 - expected, rtol=1e-6)
    # fully deleted -> the reference's prediction
    np.testing.assert_allclose(curve[-1], ref @ W, rtol=1e-6)


def test_per_cell_rankings_and_reference_and_steps_order():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 5))
    ref = rng.uniform(size=(4, 5))
    ranks = np.stack([rng.permutation(5) for _ in range(4)])
    steps = np.array([3, 0, 5, 1])
    curve = deletion_curve(linear_predict, x, ranks, ref, np.array([1, 1, 0, 1]), steps)
    for c in range(4):
        for s_i, k in enumerate(steps):
            xx = x[c].copy()
            xx[ranks[c, :k]] = ref[c, ranks[c, :k]]
            p = xx @ W
            assert curve[s_i, c] == pytest.approx(p if c != 2 else 1 - p, rel=1e-6)
    # only the first max(steps) ranks are needed
    short = deletion_curve(linear_predict, x, ranks[:, :3], ref, 1, [0, 2, 3])
    full = deletion_curve(linear_predict, x, ranks, ref, 1, [0, 2, 3])
    np.testing.assert_allclose(short, full)


def test_insertion_is_mirror_and_sparse_input():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(6, 5))
    x[x < 0.4] = 0.0
    ranking = np.argsort(-W, kind="stable")
    steps = np.arange(6)
    ins = insertion_curve(linear_predict, x, ranking, 0.0, 1, steps)
    dele = deletion_curve(linear_predict, x, ranking, 0.0, 1, steps)
    full = x @ W
    # with a zero reference, insertion of the top k + deletion of the top k = full prediction
    np.testing.assert_allclose(ins + dele, np.broadcast_to(full, ins.shape), rtol=1e-6)
    np.testing.assert_allclose(ins[0], 0.0, atol=1e-7)
    ins_sparse = insertion_curve(linear_predict, sparse.csr_matrix(x), ranking, 0.0, 1, steps)
    np.testing.assert_allclose(ins_sparse, ins)


def test_faithful_ranking_beats_reversed_ranking():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(10, 5))
    good = np.argsort(-(x * W), axis=1)  # exact attributions of the linear model
    bad = good[:, ::-1].copy()
    steps = np.arange(6)
    auc_good = curve_auc(steps, deletion_curve(linear_predict, x, good, 0.0, 1, steps))
    auc_bad = curve_auc(steps, deletion_curve(linear_predict, x, bad, 0.0, 1, steps))
    assert auc_good.shape == (10,)
    assert (auc_good < auc_bad).all()


def test_curve_auc_hand():
    assert curve_auc([0, 1, 2], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert curve_auc([0, 10], [1.0, 0.0]) == pytest.approx(0.5)
    # unsorted steps are sorted first; values can be (steps, cells)
    np.testing.assert_allclose(
        curve_auc([2, 0, 1], np.array([[0.0, 1], [1, 1], [0.5, 1]])), [0.5, 1.0]
    )
    with pytest.raises(ValueError, match="two distinct"):
        curve_auc([1, 1], [0.0, 1.0])


def test_curve_errors():
    x = np.ones((2, 5))
    r = np.arange(5)
    with pytest.raises(TypeError, match="integer gene indices"):
        deletion_curve(linear_predict, x, r.astype(float), 0.0, 1, [1])
    with pytest.raises(ValueError, match="repeat a gene"):
        deletion_curve(linear_predict, x, np.array([0, 0, 1, 2, 3]), 0.0, 1, [3])
    with pytest.raises(ValueError, match="steps must be between"):
        deletion_curve(linear_predict, x, r, 0.0, 1, [6])
    with pytest.raises(ValueError, match="reference"):
        deletion_curve(linear_predict, x, r, np.ones(3), 1, [1])
    with pytest.raises(ValueError, match="class indices"):
        deletion_curve(linear_predict, x, r, 0.0, 2, [1])
    with pytest.raises(ValueError, match="shape \\(n, n_classes\\)"):
        deletion_curve(lambda z: z.sum(axis=1), x, r, 0.0, 0, [1])
    with pytest.raises(ValueError, match="steps go up to 4"):
        deletion_curve(linear_predict, x, r[:2], 0.0, 1, [4])
