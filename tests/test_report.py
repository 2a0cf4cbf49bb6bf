"""The report contract: the shipped JSON Schema matches the model, figures carry intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxguard.report import Quantity, Rate, json_schema, schema_path
from onnxguard.stats import median_ci, wilson


def test_shipped_schema_is_current():
    """Regenerate with: python -m onnxguard schema > onnxguard/schemas/report-1.3.schema.json"""
    assert json.loads(schema_path().read_text()) == json_schema()


@pytest.mark.parametrize("k,n,lo,hi", [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (87, 100, 0.7911, 0.9221)])
def test_wilson_interval_known_values(k, n, lo, hi):
    a, b = wilson(k, n)
    assert a == pytest.approx(lo, abs=1e-3) and b == pytest.approx(hi, abs=1e-3)


def test_rate_of_zero_samples_is_uninformative():
    r = Rate.of(0, 0)
    assert r.value is None and r.ci.low == 0.0 and r.ci.high == 1.0


def test_median_interval_covers_the_median():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        v = rng.exponential(size=41)
        lo, hi = median_ci(v)
        hits += lo <= np.log(2) <= hi
    assert hits / 200 >= 0.9  # nominal 95% coverage (order statistics are conservative)


def test_quantity_counts_not_found_as_infinite():
    q = Quantity.of(np.array([0.1, 0.2, np.inf, np.inf, np.inf]))
    assert q.n == 5 and q.n_infinite == 3 and q.median is None and q.mean == pytest.approx(0.15)


@pytest.mark.parametrize("n", [2, 3, 7, 10, 41, 100, 999])
def test_median_interval_matches_scipy(n):
    from scipy import stats

    v = np.arange(n, dtype=float)
    lo, hi = median_ci(v)
    lo_k = max(int(stats.binom.ppf(0.025, n, 0.5)) - 1, 0)
    hi_k = min(int(stats.binom.isf(0.025, n, 0.5)), n - 1)
    assert (lo, hi) == (v[lo_k], v[hi_k])


def test_wilson_matches_scipy_normal_quantile():
    from scipy import stats

    z = float(stats.norm.ppf(0.975))
    k, n = 13, 50
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    assert sum(wilson(k, n)) / 2 == pytest.approx(centre, abs=1e-9)
