import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from scxl.metrics import (
    agreement_summary,
    pairwise_spearman,
    pairwise_topk_overlap,
    replicate_agreement,
    spearman_rows,
    topk_overlap,
)


def test_spearman_rows_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(20, 30)).astype(float)  # many ties
    b = a + rng.integers(-2, 3, size=a.shape)
    got = spearman_rows(a, b)
    expected = [spearmanr(a[i], b[i]).statistic for i in range(a.shape[0])]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_spearman_rows_1d_and_constant():
    assert spearman_rows(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == pytest.approx(-1.0)
    res = spearman_rows(np.array([[1.0, 1, 1], [1, 2, 3]]), np.array([[1.0, 2, 3], [1, 2, 3]]))
    assert np.isnan(res[0]) and res[1] == pytest.approx(1.0)


def test_spearman_rows_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        spearman_rows(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        spearman_rows(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def test_pairwise_spearman_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 40))
    x[2] = np.round(x[2])  # ties
    got = pairwise_spearman(x)
    expected = spearmanr(x, axis=1).statistic
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # list input and a constant vector
    got = pairwise_spearman([x[0], np.ones(40), x[1]])
    assert np.isnan(got[1]).all() and np.isnan(got[:, 1]).all()
    assert got[0, 0] == 1.0 and got[0, 2] == pytest.approx(expected[0, 1])


def test_pairwise_spearman_unequal_lengths():
    with pytest.raises(ValueError, match="same length"):
        pairwise_spearman([np.ones(3), np.ones(4)])


def test_topk_overlap_hand_examples():
    a = np.array([9.0, 8.0, 7.0, 1.0, 0.0, -10.0])
    b = np.array([0.0, 8.0, 9.0, 7.0, 1.0, 10.0])
    # top3(a) = {0,1,2}; top3(b) = {5,2,1}
    assert topk_overlap(a, b, 3) == pytest.approx(2 / 3)
    # by abs: top3(|a|) = {5,0,1}; top3(|b|) = {5,2,1}
    assert topk_overlap(a, b, 3, by="abs") == pytest.approx(2 / 3)
    assert topk_overlap(a, b, 1, by="abs") == 1.0
    assert topk_overlap(a, b, 1) == 0.0
    assert topk_overlap(a, b, 6) == 1.0
    # ties at the boundary: lower index wins, deterministically
    assert topk_overlap(np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 5.0]), 1) == 0.0
    # row-wise
    rows = topk_overlap(np.vstack([a, a]), np.vstack([b, a]), 3)
    np.testing.assert_allclose(rows, [2 / 3, 1.0])


def test_topk_overlap_bad_k_and_by():
    with pytest.raises(ValueError, match="between 1"):
        topk_overlap(np.ones(3), np.ones(3), 4)
    with pytest.raises(ValueError, match="by must be one of"):
        topk_overlap(np.ones(3), np.ones(3), 1, by="rank")


def test_pairwise_topk_overlap_matches_pairs():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 25))
    m = pairwise_topk_overlap(x, 5, by="abs")
    for i in range(4):
        for j in range(4):
            assert m[i, j] == pytest.approx(topk_overlap(x[i], x[j], 5, by="abs"))
    np.testing.assert_array_equal(np.diag(m), 1.0)


def test_replicate_agreement_table_and_summary():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(6, 40))
    reps = np.stack([base, base + 0.01 * rng.normal(size=base.shape), rng.normal(size=base.shape)])
    table = replicate_agreement(reps, top_k=5, row_names=[f"c{i}" for i in range(6)])
    assert list(table.columns) == ["rep_i", "rep_j", "row", "spearman", "topk_overlap"]
    assert len(table) == 3 * 6
    sub = table[(table.rep_i == 0) & (table.rep_j == 2)]
    np.testing.assert_allclose(sub.spearman, spearman_rows(reps[0], reps[2]))
    np.testing.assert_allclose(sub.topk_overlap, topk_overlap(reps[0], reps[2], 5))
    summ = agreement_summary(table)
    assert summ.loc[(0, 1), "spearman"] > 0.99
    assert abs(summ.loc[(0, 2), "spearman"]) < 0.5
    assert summ.loc[(0, 1), "spearman"] == pytest.approx(np.median(table.spearman[:6]))
    assert (summ["n"] == 6).all()
    per_row = agreement_summary(table, stat="mean", by_pair=False)
    assert list(per_row.index) == [f"c{i}" for i in range(6)]


def test_replicate_agreement_constant_row_and_2d():
    reps = np.array([[[1.0, 1, 1], [1, 2, 3]], [[3.0, 2, 1], [1, 2, 3]]])
    table = replicate_agreement(reps, top_k=2)
    assert np.isnan(table.spearman[0]) and table.spearman[1] == pytest.approx(1.0)
    assert agreement_summary(table).loc[(0, 1), "n"] == 1
    t2 = replicate_agreement(np.array([[1.0, 2, 3], [1.0, 2, 3]]), top_k=10)  # k clipped to G
    assert t2.topk_overlap.tolist() == [1.0]


def test_replicate_agreement_errors():
    with pytest.raises(ValueError, match="at least 2 replicates"):
        replicate_agreement(np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="row_names"):
        replicate_agreement(np.ones((2, 2, 3)), row_names=["a"])
    with pytest.raises(ValueError, match="lacks column"):
        agreement_summary(pd.DataFrame({"a": [1]}))


def test_topk_mask_is_the_stable_argsort_selection():
    """The linear-time top-k mask selects exactly what a stable argsort does: ties by column,
    NaN last, -0.0 equal to 0.0, infinities."""
    from scxl.metrics._utils import topk_mask

    rng = np.random.default_rng(0)
    for trial in range(500):
        g, n = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        k = int(rng.integers(1, g + 1))
        s = rng.integers(-3, 4, size=(n, g)).astype(float)
        for frac, value in ((0.3, np.nan), (0.3, -0.0), (0.2, np.inf), (0.2, -np.inf)):
            if trial % 2:
                s[rng.random((n, g)) < frac] = value
        want = np.zeros((n, g), dtype=bool)
        np.put_along_axis(want, np.argsort(-s, axis=1, kind="stable")[:, :k], True, axis=1)
        np.testing.assert_array_equal(topk_mask(s, k), want)


def test_average_ranks_equal_scipy():
    from scipy.stats import rankdata

    from scxl.metrics._utils import average_ranks

    rng = np.random.default_rng(1)
    for trial in range(300):
        g, n = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        x = rng.integers(-3, 4, size=(n, g)).astype(float) if trial % 2 else rng.normal(size=(n, g))
        np.testing.assert_array_equal(average_ranks(x), rankdata(x, method="average", axis=1))
