"""Bootstrap CIs, the paired randomisation test and Holm, checked against scipy and by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mixsearch import stats


def _pair(n: int, shift: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, n)
    return a, np.clip(a + shift + rng.normal(0, 0.2, n), 0, 1)


def test_mean_ci_matches_scipy_percentile_bootstrap():
    """Same generator, same batches: scipy draws ``integers(0, n, (batch, n))`` per batch as we
    do, so the resampled means and the interval agree to rounding, and an off-by-one in the
    resampling (n - 1 items, or never the last one) cannot pass."""
    x = np.random.default_rng(3).beta(2, 3, 300)
    n_resamples = 5_001  # a partial last batch too
    ref = sps.bootstrap((x,), np.mean, method="percentile", n_resamples=n_resamples,
                        batch=stats._CHUNK, random_state=np.random.default_rng(5))
    means = stats.bootstrap_means(x, n_resamples=n_resamples, seed=5)
    np.testing.assert_allclose(means, ref.bootstrap_distribution, rtol=1e-12, atol=0)
    ours = stats.mean_ci(x, n_resamples=n_resamples, seed=5)
    assert ours == pytest.approx(tuple(ref.confidence_interval), rel=1e-12, abs=0)
    assert ours[0] < x.mean() < ours[1]


def test_mean_ci_is_seeded_and_degenerate_on_constants():
    x = np.random.default_rng(0).random(50)
    assert stats.mean_ci(x, seed=1) == stats.mean_ci(x, seed=1)
    assert stats.mean_ci(x, seed=1) != stats.mean_ci(x, seed=2)
    assert stats.mean_ci(np.full(20, 0.25)) == (0.25, 0.25)
    # 90 % interval lies inside the 99 % one
    lo90, hi90 = stats.mean_ci(x, confidence=0.90)
    lo99, hi99 = stats.mean_ci(x, confidence=0.99)
    assert lo99 < lo90 < hi90 < hi99


def test_paired_diff_ci_matches_scipy_paired_bootstrap():
    """scipy's paired bootstrap resamples query indices with the same draws: equal to rounding."""
    a, b = _pair(300, 0.05)
    ref = sps.bootstrap((a, b), lambda x, y, axis=-1: np.mean(y - x, axis=axis), paired=True,
                        method="percentile", n_resamples=4_500, batch=stats._CHUNK,
                        random_state=np.random.default_rng(11)).confidence_interval
    ours = stats.paired_diff_ci(a, b, n_resamples=4_500, seed=11)
    assert ours == pytest.approx(tuple(ref), rel=1e-12, abs=0)


def _scipy_sign_flip(a, b, n_resamples):
    def statistic(x, y, axis=-1):
        return np.mean(y - x, axis=axis)
    return sps.permutation_test((a, b), statistic, permutation_type="samples", vectorized=True,
                                n_resamples=n_resamples, alternative="two-sided",
                                random_state=np.random.default_rng(0)).pvalue


@pytest.mark.parametrize("shift,seed", [(0.0, 1), (0.1, 2), (0.3, 3), (-0.2, 4)])
def test_exact_sign_flip_equals_scipy_exact_permutation_test(shift, seed):
    a, b = _pair(11, shift, seed)
    # 2**11 = 2048 <= 10_000: both enumerate every sign vector
    assert stats.paired_permutation_test(a, b) == pytest.approx(_scipy_sign_flip(a, b, np.inf), abs=1e-12)


def test_exact_sign_flip_by_hand():
    d = np.array([0.3, -0.1, 0.2, 0.4])
    null = [abs(np.dot(s, d)) for s in itertools.product((-1, 1), repeat=4)]
    expected = np.mean([v >= abs(d.sum()) - 1e-12 for v in null])
    assert stats.paired_permutation_test(np.zeros(4), d) == pytest.approx(expected)
    # |sum| >= 0.8 only for the observed signs (0.8), flipping -0.1 (1.0), and their negations
    assert expected == 4 / 16


@pytest.mark.parametrize("shift", [0.0, 0.02, 0.05])
def test_monte_carlo_sign_flip_agrees_with_scipy(shift):
    a, b = _pair(300, shift, 9)
    ours = stats.paired_permutation_test(a, b, n_resamples=20_000)
    ref = _scipy_sign_flip(a, b, 20_000)
    # Monte Carlo standard error of a p-value p is sqrt(p(1-p)/N) <= 0.0036 here
    assert ours == pytest.approx(ref, abs=0.015)


def test_permutation_test_edges():
    a, b = _pair(300, 0.3)
    p = stats.paired_permutation_test(a, b, n_resamples=1000)
    assert p == pytest.approx(1 / 1001)  # never 0: (1 + hits) / (1 + resamples)
    assert stats.paired_permutation_test(a, a) == 1.0
    with pytest.raises(ValueError, match="same queries"):
        stats.paired_permutation_test(a, b[:-1])
    with pytest.raises(ValueError, match="non-finite"):
        stats.paired_permutation_test(a, np.r_[b[:-1], np.nan])


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> cummax 0.06
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])
    assert stats.holm([]).size == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([0.1, 1.2])


def test_holm_lies_between_raw_and_bonferroni():
    # Holm adjusts at least as much as no correction and at most as much as Bonferroni
    p = np.random.default_rng(2).uniform(0, 0.2, 12)
    adj = stats.holm(p)
    assert (adj >= p).all() and (adj <= np.minimum(1, p * p.size) + 1e-15).all()
    order = np.argsort(p)
    assert (np.diff(adj[order]) >= 0).all()


def test_compare_aligns_on_common_queries():
    a, b = _pair(40, 0.1)
    fa = pd.DataFrame({"qid": [f"q{i}" for i in range(40)], "ndcg@10": a})
    fb = pd.DataFrame({"qid": [f"q{i}" for i in range(39, -1, -1)] + ["extra"],
                       "ndcg@10": np.r_[b[::-1], 0.0]})
    c = stats.compare(fa, fb)
    assert c.n_queries == 40
    assert c.delta == pytest.approx(b.mean() - a.mean())
    assert c.ci_low < c.delta < c.ci_high
    assert set(c.to_dict()) == {"metric", "a", "b", "delta", "ci_low", "ci_high", "p_value",
                                "n_queries", "test"}
    same = stats.compare(fa, fa)
    assert (same.delta, same.p_value, same.ci_low, same.ci_high) == (0.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="share no query"):
        stats.compare(fa, fb.assign(qid=[f"x{i}" for i in range(41)]))
    with pytest.raises(ValueError, match="B: per-query table has no 'mrr@10'"):
        stats.compare(fa.assign(**{"mrr@10": 0.0}), fb, "mrr@10")
    with pytest.raises(ValueError, match="'q1' appears more than once"):
        stats.compare(pd.concat([fa, fa.iloc[[1]]]), fb)
