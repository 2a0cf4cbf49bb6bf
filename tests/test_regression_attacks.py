"""Regressor attacks move the output further than random perturbations in the same ball, within budget."""

from __future__ import annotations

import numpy as np
import pytest

from onnxguard.attacks.regression import reg_fd_pgd, reg_square
from onnxguard.inputs.feed import load_feed_model
from onnxguard.oracle import Domain, Oracle
from onnxguard.safeload import read_model
from tests import task_zoo as tz


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    p = tz.regressor(tmp_path_factory.mktemp("reg") / "reg.onnx", n_features=32, seed=2)
    model, _ = load_feed_model(p, arrays=None, raw=read_model(p, max_bytes=1 << 30), max_bytes=1 << 30, regression=True)
    return model


@pytest.mark.parametrize("attack", [reg_square, reg_fd_pgd])
@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.3)])
def test_attack_beats_random_perturbations(reg, attack, norm, eps):
    rng = np.random.default_rng(0)
    n, budget = 20, 200
    dom = Domain(np.zeros(32), np.ones(32))
    z = rng.uniform(0.2, 0.8, size=(n, 32))
    o = Oracle(reg, dom, n_samples=n, budget=budget)
    res = attack(o, z, np.zeros(n, np.int64), norm=norm, epsilon=eps, budget=budget, rng=np.random.default_rng(1), tolerance=np.inf)
    assert (o.queries <= budget).all() and res.queries.max() <= budget
    d = res.z_adv - z
    size = np.abs(d).max(axis=1) if norm == "linf" else np.linalg.norm(d, axis=1)
    assert (size <= eps * (1 + 1e-6)).all()
    change = res.extra["output_change"]
    # the baseline: the best of as many random points of the same ball
    ro = Oracle(reg, dom, n_samples=n, budget=None)
    v0, _ = ro.scores(z, np.arange(n))
    best = np.zeros(n)
    for _ in range(budget - 1):
        if norm == "linf":
            dz = rng.uniform(-eps, eps, size=z.shape)
        else:
            g = rng.standard_normal(size=z.shape)
            dz = g / np.linalg.norm(g, axis=1, keepdims=True) * eps
        v, _ = ro.scores(np.clip(z + dz, 0, 1), np.arange(n))
        best = np.maximum(best, np.abs(v - v0).max(axis=1))
    assert np.median(change) >= 1.5 * np.median(best), (np.median(change), np.median(best))


def test_success_is_a_move_beyond_the_tolerance(reg):
    n = 10
    z = np.full((n, 32), 0.5)
    o = Oracle(reg, Domain(np.zeros(32), np.ones(32)), n_samples=n, budget=50)
    res = reg_square(o, z, np.zeros(n, np.int64), norm="linf", epsilon=0.05, budget=50, rng=np.random.default_rng(0), tolerance=1e-3)
    assert res.success.all() and (res.extra["output_change"] > 1e-3).all()
    assert res.queries.max() < 50  # a sample stops being queried once it moved far enough
