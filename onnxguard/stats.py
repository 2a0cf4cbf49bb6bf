"""Confidence intervals for the figures in a report."""

from __future__ import annotations

import math
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


def median_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval for the median from order statistics (binomial)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = v.size
    if n == 0:
        return None
    if n == 1:
        return float(v[0]), float(v[0])
    alpha = 1 - confidence
    lo_k = _binom_half_ppf(alpha / 2, n)
    hi_k = _binom_half_ppf(1 - alpha / 2, n)
    lo_k = max(lo_k - 1, 0)
    hi_k = min(hi_k, n - 1)
    return float(v[lo_k]), float(v[hi_k])
