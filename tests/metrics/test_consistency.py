import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scxl.metrics import consistency_kld, pareto_front, selection_frequency


def test_selection_frequency_hand():
    attr = np.array([[0.0, 5.0, -9.0, 1.0], [0.0, 4.0, 0.1, 3.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(selection_frequency(attr, top_frac=0.5), [0, 2, 1, 1])
    np.testing.assert_array_equal(
        selection_frequency(attr, top_frac=0.5, by="positive"), [0, 2, 0, 2]
    )
    # k = ceil(0.3 * 4) = 2; top_frac=1 selects every non-zero gene
    np.testing.assert_array_equal(selection_frequency(attr, top_frac=1.0), [0, 2, 2, 2])
    with pytest.raises(ValueError, match="top_frac"):
        selection_frequency(attr, top_frac=0.0)


def test_consistency_kld_exact_value_uniform_prior():
    # every cell selects the same 2 of 10 genes; uniform prior -> KL = log(10 / 2)
    attr = np.zeros((5, 10))
    attr[:, [3, 7]] = [2.0, 1.0]
    attr[:, [0, 1]] = 0.5
    kld = consistency_kld(attr, None, top_frac=0.2, pseudocount=1e-12)
    assert kld == pytest.approx(np.log(5), rel=1e-9)
    # an explicit uniform prior vector and an all-expressed matrix give the same
    assert consistency_kld(attr, np.ones(10), top_frac=0.2, pseudocount=1e-12) == pytest.approx(kld)
    assert consistency_kld(
        attr, np.ones((5, 10)), top_frac=0.2, pseudocount=1e-12
    ) == pytest.approx(kld)


def test_consistency_prior_from_expression():
    # prior from expression: gene 0 expressed in all 4 cells, gene 1 in 2, genes 2-3 never
    expr = np.array([[1.0, 1, 0, 0], [2.0, 0, 0, 0], [1.0, 3, 0, 0], [5.0, 0, 0, 0]])
    attr = np.array([[1.0, 0, 0, 0]] * 4)  # always gene 0, top 1 of 4
    eps = 1e-9
    q = np.array([4, 2, 0, 0]) / 6
    p = np.array([1.0, 0, 0, 0])
    ps, qs = (p + eps) / (1 + 4 * eps), (q + eps) / (1 + 4 * eps)
    expected = np.sum(ps * np.log(ps / qs))
    assert consistency_kld(attr, expr, top_frac=0.25, pseudocount=eps) == pytest.approx(expected)
    assert consistency_kld(
        attr, sparse.csr_matrix(expr), top_frac=0.25, pseudocount=eps
    ) == pytest.approx(expected)


def test_focused_model_scores_higher_than_diffuse():
    rng = np.random.default_rng(0)
    n, g = 300, 200
    expr = rng.poisson(1.5, size=(n, g)).astype(float)
    markers = rng.choice(g, 20, replace=False)
    focused = 0.05 * rng.normal(size=(n, g))
    focused[:, markers] += rng.uniform(1, 2, size=(n, 20))
    half = 0.05 * rng.normal(size=(n, g))
    half[:, markers] += rng.uniform(1, 2, size=(n, 20)) * (rng.uniform(size=(n, 20)) < 0.5)
    diffuse = rng.normal(size=(n, g))
    scores = [consistency_kld(a, expr, top_frac=0.1) for a in (focused, half, diffuse)]
    assert scores[0] > scores[1] > scores[2]
    # every cell picks the same 20 of 200 genes: close to log(200 / 20) under a flat prior
    assert scores[0] == pytest.approx(np.log(10), abs=0.05)
    assert scores[2] < 0.1


def test_consistency_kld_errors_and_nan():
    assert np.isnan(consistency_kld(np.zeros((3, 4))))
    with pytest.raises(ValueError, match="genes"):
        consistency_kld(np.ones((3, 4)), np.ones(5))
    with pytest.raises(ValueError, match="shape of attributions"):
        consistency_kld(np.ones((3, 4)), sparse.csr_matrix(np.ones((2, 4))))
    with pytest.raises(ValueError, match="3 cells"):
        consistency_kld(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="zero weight"):
        consistency_kld(np.ones((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="by must be one of"):
        consistency_kld(np.ones((3, 4)), by="negative")


def test_pareto_front_hand_example():
    df = pd.DataFrame(
        {
            "model": list("abcdef"),
            "accuracy": [0.90, 0.80, 0.95, 0.70, 0.90, np.nan],
            "kld": [1.0, 2.0, 0.5, 1.5, 1.0, 9.0],
            "loss": [0.3, 0.5, 0.2, 0.6, 0.1, 0.0],
        }
    )
    # d is dominated by b; a and e are identical on (accuracy, kld): both kept; f has NaN
    assert pareto_front(df, ["accuracy", "kld"]).tolist() == [True, True, True, False, True, False]
    # adding loss (minimised) makes e dominate a
    mask = pareto_front(df, ["accuracy", "kld", "loss"], maximize=[True, True, False])
    assert mask.tolist() == [False, True, True, False, True, False]
    # numeric columns by default; arrays work too
    assert pareto_front(df[["accuracy", "kld"]]).tolist() == [True, True, True, False, True, False]
    arr = df[["accuracy", "kld"]].to_numpy()
    assert pareto_front(arr, maximize=False).tolist() == [True, False, True, True, True, False]


def test_pareto_front_errors():
    df = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(KeyError, match="not in scores"):
        pareto_front(df, ["b"])
    with pytest.raises(ValueError, match="one per column"):
        pareto_front(df, ["a"], maximize=[True, False])
