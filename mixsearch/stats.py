"""Uncertainty for retrieval comparisons: bootstrap CIs over queries, paired randomisation
tests and Holm's correction.

Every function takes plain per-query score arrays (one value per query, e.g. NDCG@10) and is
deterministic for a given ``seed``. Typical use::

    from mixsearch import stats
    lo, hi = stats.mean_ci(ndcg)                          # 95 % CI of one run's mean
    lo, hi = stats.paired_diff_ci(ndcg_a, ndcg_b)         # 95 % CI of mean(b - a)
    p = stats.paired_permutation_test(ndcg_a, ndcg_b)     # two-sided sign-flip p-value
    adjusted = stats.holm([p1, p2, p3])                   # family-wise adjusted p-values
    cmp = stats.compare(frame_a, frame_b, "ndcg@10")      # all of it on two per_query tables

Methods (Sakai, "Statistical reform in information retrieval?", SIGIR Forum 2014; Smucker,
Allan & Carterette, CIKM 2007):

- **Bootstrap CI**: percentile bootstrap of the mean over queries resampled with replacement
  (Efron & Tibshirani 1993); for a paired comparison, of the per-query differences b − a.
- **Randomisation test**: Fisher's paired randomisation test. Under H0 the labels A/B of each
  query are exchangeable, i.e. each difference's sign is random. Exact enumeration of all
  2^n sign vectors when that is at most ``n_resamples``, else Monte Carlo with the
  (1 + hits) / (1 + resamples) estimate (Phipson & Smyth 2010), which is never 0.
- **Holm** (1979): step-down family-wise error control; adjusted p-values are monotone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Resamples used when callers do not say otherwise (CI bounds stable to ~1e-3 on 300 queries).
N_RESAMPLES = 10_000
#: Rows of resample indices drawn at once (bounds memory at ~CHUNK × n_queries integers).
_CHUNK = 2_000
TEST_NAME = "paired two-sided randomisation (sign-flip) test"


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected one value per query (1-d), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: no values (0 queries)")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: {int((~np.isfinite(arr)).sum())} non-finite values (NaN/inf)")
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_means(values: Any, *, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples (with replacement) of ``values``.

    Args:
        values: one number per query.
        n_resamples: number of bootstrap resamples.
        seed: seed of the resampling generator (same seed, same resamples).

    Returns:
        Array of ``n_resamples`` resampled means.
    """
    x = _as_1d(values, "values")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        stop = min(start + _CHUNK, n_resamples)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def mean_ci(values: Any, *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    Args:
        values: one number per query (e.g. a run's per-query NDCG@10).
        confidence: coverage of the interval (0.95 = 95 %).
        n_resamples: number of bootstrap resamples.
        seed: resampling seed.

    Returns:
        ``(low, high)``; both equal the mean when all values are equal.
    """
    _check_confidence(confidence)
    means = bootstrap_means(values, n_resamples=n_resamples, seed=seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_diff_ci(a: Any, b: Any, *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap CI of ``mean(b - a)``: queries are resampled, keeping each pair together.

    Args:
        a: per-query scores of system A.
        b: per-query scores of system B, aligned with ``a`` (same query at the same position).
        confidence: coverage of the interval.
        n_resamples: number of bootstrap resamples.
        seed: resampling seed.

    Returns:
        ``(low, high)`` of the difference B − A.
    """
    return mean_ci(_differences(a, b), confidence=confidence, n_resamples=n_resamples, seed=seed)


def _differences(a: Any, b: Any) -> np.ndarray:
    x, y = _as_1d(a, "a"), _as_1d(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired scores need the same queries: a has {x.size} values, b has {y.size}")
    return y - x


def paired_permutation_test(a: Any, b: Any, *, n_resamples: int = N_RESAMPLES, seed: int = 0) -> float:
    """Two-sided paired randomisation (sign-flip) test of H0: mean(b - a) = 0.

    The statistic is the mean difference; its null distribution flips the sign of each
    query's difference independently. Exact when ``2**n <= n_resamples``.

    Args:
        a: per-query scores of system A.
        b: per-query scores of system B, aligned with ``a``.
        n_resamples: Monte Carlo sign vectors (also the exact-enumeration threshold).
        seed: seed of the sign generator.

    Returns:
        The p-value in (0, 1]; exactly 1 when every difference is 0.
    """
    d = _differences(a, b)
    n = d.size
    observed = abs(d.mean())
    # equal up to float summation order counts as "as extreme" (a self-comparison gives p = 1)
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= 62 and 2**n <= n_resamples:
        signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        null = np.abs(signs @ d) / n
        return float(np.mean(null >= observed - tol))
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_resamples, _CHUNK):
        rows = min(_CHUNK, n_resamples - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(rows, n))
        hits += int(np.count_nonzero(np.abs(signs @ d) / n >= observed - tol))
    return (1.0 + hits) / (1.0 + n_resamples)


def holm(p_values: Any) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (same order as given).

    Reject H0_i at family-wise level α when ``adjusted[i] <= α``.

    Args:
        p_values: raw p-values of the family of comparisons.

    Returns:
        Adjusted p-values: ``max_{j <= rank(i)} min(1, (m - j + 1) p_(j))``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values: expected a 1-d list, got shape {p.shape}")
    if p.size and (np.isnan(p).any() or (p < 0).any() or (p > 1).any()):
        raise ValueError(f"p_values must lie in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """Paired comparison of two runs on one metric (the ``report compare --json`` object)."""

    metric: str
    a: float  #: mean of A on the common queries
    b: float  #: mean of B on the common queries
    delta: float  #: b - a
    ci_low: float
    ci_high: float
    p_value: float
    n_queries: int
    test: str = TEST_NAME

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(per_query_a: pd.DataFrame, per_query_b: pd.DataFrame, metric: str = "ndcg@10", *,
            confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0,
            names: tuple[str, str] = ("A", "B")) -> Comparison:
    """Compare two per-query tables (``qid`` column + metric columns) on their common queries.

    Args:
        per_query_a: per-query table of run A (e.g. ``per_query.csv``).
        per_query_b: per-query table of run B.
        metric: column to compare.
        confidence: coverage of the CI of B − A.
        n_resamples: bootstrap and randomisation resamples.
        seed: seed of both.
        names: how errors name A and B (e.g. their run dirs).

    Returns:
        The :class:`Comparison` of B against A.

    Raises:
        ValueError: a table lacks ``qid`` or ``metric``, repeats a qid, or the two share no query.
    """
    series = []
    for name, frame in zip(names, (per_query_a, per_query_b), strict=True):
        for col in ("qid", metric):
            if col not in frame.columns:
                raise ValueError(f"{name}: per-query table has no {col!r} column "
                                 f"(columns: {', '.join(map(str, frame.columns))})")
        qids = frame["qid"].astype(str)
        if qids.duplicated().any():
            raise ValueError(f"{name}: qid {qids[qids.duplicated()].iloc[0]!r} appears more than once")
        series.append(pd.Series(frame[metric].to_numpy(dtype=np.float64), index=qids))
    sa, sb = series
    common = sa.index.intersection(sb.index, sort=False)
    if common.empty:
        raise ValueError(f"{names[0]} and {names[1]} share no query id")
    xa, xb = sa.loc[common].to_numpy(), sb.loc[common].to_numpy()
    low, high = paired_diff_ci(xa, xb, confidence=confidence, n_resamples=n_resamples, seed=seed)
    p = paired_permutation_test(xa, xb, n_resamples=n_resamples, seed=seed)
    return Comparison(metric=metric, a=float(xa.mean()), b=float(xb.mean()),
                      delta=float(xb.mean() - xa.mean()), ci_low=low, ci_high=high,
                      p_value=p, n_queries=int(common.size))
