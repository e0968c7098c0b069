"""WMD / WRD: reference values (kexue.fm/archives/7388), bounds, identities, retrieval pruning, bad input."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment, linprog

from bert4keras.snippets import (
    rank_by_wrd,
    wasserstein_distance,
    word_centroid_distance,
    word_mover_distance,
    word_rotator_distance,
    word_rotator_lower_bound,
    word_rotator_relaxed_bound,
    word_rotator_similarity,
)

X2 = [[3, 0], [0, 1], [1, 1]]
Y2 = [[1, 0], [0, 2]]


def test_reference_values():
    x1, y1 = [[1, 0], [0, 1]], [[1, 1]]
    assert word_mover_distance(x1, y1, metric="rms") == pytest.approx(0.7071067812, abs=1e-6)
    assert word_rotator_distance(x1, y1) == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-6)
    assert word_mover_distance(X2, Y2, metric="rms") == pytest.approx(0.9916245781, abs=1e-6)
    assert word_mover_distance(X2, Y2) == pytest.approx(0.9916245781 * np.sqrt(2), abs=1e-6)
    assert word_rotator_distance(X2, Y2) == pytest.approx(0.2972686041, abs=1e-6)
    assert word_rotator_similarity(X2, Y2) == pytest.approx(0.7027313959, abs=1e-6)
    assert word_centroid_distance(X2, Y2, metric="rms") == pytest.approx(0.6346477588, abs=1e-6)
    assert word_rotator_lower_bound(X2, Y2) == pytest.approx(0.1263843492, abs=1e-6)
    assert word_rotator_distance([[1, 2]], [[2, -1]]) == pytest.approx(1.0, abs=1e-9)
    # relaxed bound: x's rows reach their nearest y row at costs 0, 0 and 1 - 1/√2 (mass √2/(4+√2));
    # y's rows both have an exact match in x, so the y side is 0
    assert word_rotator_relaxed_bound(X2, Y2) == pytest.approx((np.sqrt(2) - 1) / (4 + np.sqrt(2)), abs=1e-12)


def test_identity_symmetry_and_scale():
    x = np.random.default_rng(0).normal(size=(6, 5))
    assert abs(word_mover_distance(x, x)) < 1e-9
    assert abs(word_rotator_distance(x, x)) < 1e-9
    assert word_rotator_distance(X2, Y2) == pytest.approx(word_rotator_distance(Y2, X2), abs=1e-12)
    assert word_rotator_distance(5 * np.array(X2), Y2) == pytest.approx(0.2972686041, abs=1e-6)


def test_solver_agrees_with_linprog_and_assignment():
    rng = np.random.default_rng(1)
    p, q, cost = rng.random(4), rng.random(3), rng.random((4, 3))
    a_eq = np.vstack([np.kron(np.eye(4), np.ones(3)), np.kron(np.ones(4), np.eye(3))])
    b_eq = np.r_[p / p.sum(), q / q.sum()]
    lp = linprog(cost.ravel(), A_eq=a_eq[:-1], b_eq=b_eq[:-1], bounds=(0, None), method="highs")
    assert wasserstein_distance(p, q, cost) == pytest.approx(lp.fun, abs=1e-9)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    d = np.linalg.norm(x[:, None] - y[None], axis=-1)
    rows, cols = linear_sum_assignment(d)
    assert word_mover_distance(x, y) == pytest.approx(d[rows, cols].sum() / 5, abs=1e-9)


def test_lower_bounds_never_exceed_exact_distance():
    rng = np.random.default_rng(2)
    for _ in range(1000):
        m, n, dim = rng.integers(1, 6), rng.integers(1, 6), rng.integers(1, 5)
        x, y = rng.normal(size=(m, dim)), rng.normal(size=(n, dim))
        wmd, wrd = word_mover_distance(x, y), word_rotator_distance(x, y)
        assert word_centroid_distance(x, y) <= wmd + 1e-9
        assert word_rotator_lower_bound(x, y) <= wrd + 1e-9
        assert word_rotator_relaxed_bound(x, y) <= wrd + 1e-9
        assert -1e-12 <= wrd <= 2 + 1e-12


def _texts(rng, count, dim=8):
    """Random 'texts' that share a few topic directions, so distances and bounds spread out."""
    topics = rng.normal(size=(4, dim))
    return [topics[rng.integers(4)] + 0.7 * rng.normal(size=(rng.integers(1, 9), dim)) for _ in range(count)]


@pytest.mark.parametrize("k", [1, 5, 40])
def test_pruned_ranking_equals_exhaustive(k):
    rng = np.random.default_rng(k)
    candidates = _texts(rng, 40)
    query = _texts(rng, 1)[0]
    exact = [word_rotator_distance(query, c) for c in candidates]
    expected = sorted(range(40), key=lambda i: (exact[i], i))[:k]
    pruned, full = rank_by_wrd(query, candidates, k=k), rank_by_wrd(query, candidates, k=k, prune=False)
    assert pruned.ranking == full.ranking == expected
    np.testing.assert_allclose(pruned.distances, [exact[i] for i in expected], atol=1e-12)
    assert full.exact_solves == 40 and full.saved_solves == 0
    assert pruned.exact_solves + pruned.saved_solves == 40
    if k == 1:
        assert pruned.saved_solves > 0


def test_ties_keep_lower_index():
    query = [[1.0, 0.0]]
    candidates = [[[0.0, 1.0]], [[1.0, 0.0]], [[2.0, 0.0]], [[1.0, 0.0]]]
    assert rank_by_wrd(query, candidates, k=2).ranking == [1, 2]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: word_mover_distance(np.zeros((0, 3)), [[1, 2, 3]]), "x is empty"),
        (lambda: word_rotator_distance([[1, 2, 3]], np.zeros((2, 0))), "y is empty"),
        (lambda: word_mover_distance([[1, 2]], [[1, 2, 3]]), "same vector width"),
        (lambda: word_rotator_distance([[1, 2], [0, 0]], [[1, 1]]), r"x has all-zero vectors at rows \[1\]"),
        (lambda: word_rotator_distance([[1, 2]], [[0, 0]]), "y has all-zero vectors"),
        (lambda: word_rotator_lower_bound([[1, 2]], [[0, 0]]), "y has all-zero vectors"),
        (lambda: word_rotator_relaxed_bound([[0, 0]], [[1, 2]]), "x has all-zero vectors"),
        (lambda: word_mover_distance([1, 2], [[1, 2]]), "x must be a 2-D array"),
        (lambda: word_mover_distance([[1, 2]], [[1, 2]], metric="cosine"), "metric must be"),
        (lambda: word_mover_distance([[np.nan, 2]], [[1, 2]]), "x contains NaN"),
        (lambda: wasserstein_distance([1, 1], [1], [[1, 2]]), r"cost must have shape"),
        (lambda: wasserstein_distance([1, -1], [1], [[1], [2]]), "p must hold finite non-negative"),
        (lambda: wasserstein_distance([1], [0, 0], [[1, 2]]), "q must have a positive total"),
        (lambda: rank_by_wrd([[1, 2]], [], k=1), "candidates is empty"),
        (lambda: rank_by_wrd([[1, 2]], [[[1, 2]], [[1, 2, 3]]]), r"candidates\[1\] has vector width 3"),
        (lambda: rank_by_wrd([[1, 2]], [[[1, 2]], [[0, 0]]]), r"candidates\[1\] has all-zero"),
        (lambda: rank_by_wrd([[1, 2]], [[[1, 2]]], k=0), "k must be a positive integer"),
    ],
)
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
