"""Confidence intervals for the figures in a report."""

from __future__ import annotations

import math

import numpy as np


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    from scipy import stats  # imported when needed: keeps `import onnxguard.report` (and the sandbox parent) light

    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
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
    from scipy import stats

    lo_k = int(stats.binom.ppf(alpha / 2, n, 0.5))
    hi_k = int(stats.binom.isf(alpha / 2, n, 0.5))
    lo_k = max(lo_k - 1, 0)
    hi_k = min(hi_k, n - 1)
    return float(v[lo_k]), float(v[hi_k])
