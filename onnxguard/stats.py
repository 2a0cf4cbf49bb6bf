"""Confidence intervals for the figures in a report."""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np


def _binom_half_ppf(q: float, n: int) -> int:
    """Smallest k with P[Binomial(n, 1/2) <= k] >= q (stdlib only: scipy is slow to import in every scan)."""
    log_half_n = n * math.log(0.5)
    lg_n = math.lgamma(n + 1)
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.exp(lg_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half_n)
        if cdf >= q - 1e-12:
            return k
    return n


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def median_ci_indices(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based order statistics ``(lo, hi)`` of the median interval for ``n`` values."""
    if n <= 1:
        return 0, 0
    alpha = 1 - confidence
    lo_k = max(_binom_half_ppf(alpha / 2, n) - 1, 0)
    hi_k = min(_binom_half_ppf(1 - alpha / 2, n), n - 1)
    return lo_k, hi_k


def median_ci_coverage(n: int, confidence: float = 0.95) -> float:
    """Exact coverage of :func:`median_ci`'s interval ``[X(lo), X(hi)]`` for any continuous distribution:
    ``P[lo + 1 <= B <= hi]`` with ``B ~ Binomial(n, 1/2)`` the number of values below the median. It reaches
    ``confidence`` only from n = 6 on (95%): below that even ``[min, max]`` covers less (n = 5: 93.75%)."""
    if n <= 0:
        return 0.0
    lo_k, hi_k = median_ci_indices(n, confidence)
    lg_n = math.lgamma(n + 1)
    return float(sum(math.exp(lg_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + n * math.log(0.5)) for k in range(lo_k + 1, hi_k + 1)))


def median_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval for the median from order statistics (binomial). Below the size where the
    nominal confidence is reachable the interval is ``[min, max]``; its true coverage is
    :func:`median_ci_coverage` (the report labels the interval with it)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = v.size
    if n == 0:
        return None
    lo_k, hi_k = median_ci_indices(n, confidence)
    return float(v[lo_k]), float(v[hi_k])


@lru_cache(maxsize=65536)
def clopper_pearson(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval at level ``1 - alpha``; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    from scipy.stats import beta  # imported when used: scipy is slow to import in every scan

    k = int(successes)
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def sequential_interval(successes: int, n: int, looks: int, confidence: float = 0.95) -> tuple[float, float]:
    """The interval of a rate watched at up to ``looks`` pre-registered looks: Clopper-Pearson at level
    ``1 - alpha / looks`` at each look (Bonferroni over the looks). Whatever look a check stops at, the
    probability that *any* of its intervals misses the true rate is at most ``alpha``, so the stopped
    interval keeps its 95% guarantee under repeated looks (a confidence sequence over the look schedule)."""
    return clopper_pearson(successes, n, (1 - confidence) / max(1, looks))


def look_schedule(n_total: int, looks: int) -> list[int]:
    """Sample counts at which a sequential check looks: ``looks`` equal steps up to ``n_total``."""
    k = max(1, min(int(looks), int(n_total)))
    return sorted(set(int(np.ceil(n_total * i / k)) for i in range(1, k + 1)))
