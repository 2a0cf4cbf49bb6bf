"""Sequential early stopping keeps the 95% guarantee under repeated looks, and checks say when they stopped."""

from __future__ import annotations

import time

import numpy as np
import pytest

from onnxguard.evasion import grade_settled, prepare, run_evasion_check
from onnxguard.policy import CheckSpec, Thresholds, load_policy
from onnxguard.scan import ScanOptions
from onnxguard.stats import look_schedule, sequential_interval, wilson

THR = Thresholds(worse="higher", medium=0.1, high=0.3, critical=0.6)


def _simulate(p: float, runs: int, n_total: int, looks: int, seed: int, naive: bool = False) -> tuple[float, float]:
    """Coverage of the stopped interval, and the mean sample count, over ``runs`` seeded runs."""
    rng = np.random.default_rng(seed)
    sched = look_schedule(n_total, looks)
    covered, used = 0, 0
    for _ in range(runs):
        draws = rng.random(n_total) < p
        for k, n in enumerate(sched):
            s = int(draws[:n].sum())
            if naive:  # a fixed-n interval re-checked at every look: not valid under optional stopping
                lo, hi = wilson(s, n)
                stop = THR.level(lo) == THR.level(hi)
            else:
                stop, lo, hi = grade_settled(s, n, len(sched), THR)
            if stop or k == len(sched) - 1:
                break
        covered += lo <= p <= hi
        used += n
    return covered / runs, used / runs


@pytest.mark.parametrize("p", [0.02, 0.1, 0.25, 0.3, 0.45, 0.6, 0.75, 0.97])
def test_stopped_intervals_cover_the_true_rate(p):
    cov, used = _simulate(p, runs=600, n_total=100, looks=5, seed=int(p * 1000))
    assert cov >= 0.95, (p, cov)


def test_early_stopping_saves_samples_far_from_thresholds():
    _, used_far = _simulate(0.97, runs=200, n_total=100, looks=5, seed=1)
    _, used_near = _simulate(0.3, runs=200, n_total=100, looks=5, seed=2)
    assert used_far <= 40 and used_near >= 90


def test_naive_repeated_looks_undercover_somewhere():
    """The simulation can fail: re-using a fixed-n interval at every look loses coverage for some rate."""
    worst = min(_simulate(p, runs=600, n_total=100, looks=10, seed=7, naive=True)[0] for p in (0.08, 0.12, 0.28, 0.32, 0.58, 0.62))
    assert worst < 0.95


def test_sequential_interval_is_wider_than_one_look():
    lo1, hi1 = sequential_interval(10, 50, 1)
    lo5, hi5 = sequential_interval(10, 50, 5)
    assert lo5 < lo1 and hi5 > hi1


def test_check_reports_early_stop_random_order_and_time_budget(make_digits_model, digits_data):
    pol = load_policy(None)
    opts = ScanOptions(model_path=make_digits_model("logits"), data_path=digits_data, policy=pol)
    prep = prepare(opts, pol, np.random.default_rng(0), 100)
    spec = CheckSpec(id="sq", attack="square", norm="linf", epsilon=0.3, samples=100, budget=200)
    chk = run_evasion_check(prep, spec, threat="scores", seed=0, thresholds=THR)
    assert chk.n_planned == 100 and chk.n_samples < 100  # an undefended MLP at eps 0.3 is settled early
    assert chk.stopped_early and "risk band" in chk.stopped_early and "stopped early" in chk.finding
    assert "Bonferroni" in chk.success_rate.ci.method and chk.sequential
    assert chk.queries.max <= 200
    # no early stop without thresholds: all planned samples
    full = run_evasion_check(prep, spec.model_copy(update={"early_stop": False}), threat="scores", seed=0)
    assert full.n_samples == 100 and full.stopped_early is None and full.success_rate.ci.method == "wilson"
    # a time budget that is spent before any sample finished: the check is not run, and says why
    timed = run_evasion_check(prep, spec.model_copy(update={"time_limit_s": 1e-9}), threat="scores", seed=0)
    assert timed.status == "not_run" and "time budget" in timed.reason


def test_time_stop_mid_check_keeps_finished_samples(make_digits_model, digits_data, monkeypatch):
    """The oracle refuses queries once the time budget is spent: the samples in flight are dropped and the
    figures cover the ones that finished, with the real n (the stop injected here, not timed)."""
    import dataclasses

    from onnxguard.attacks import ATTACKS
    from onnxguard.errors import TimeBudgetExhausted

    pol = load_policy(None)
    prep = prepare(ScanOptions(model_path=make_digits_model("logits"), data_path=digits_data, policy=pol), pol, np.random.default_rng(0), 100)
    real = ATTACKS["square"]
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] > 1:
            a[0].scores(a[1][:1], np.array([0]))  # one query on a sample that will be dropped
            time.sleep(0.3)  # the dropped work takes time, here booked as onnxruntime time
            a[0].ort_time += 0.3
            raise TimeBudgetExhausted("the check's time budget ran out")
        return real.fn(*a, **k)

    monkeypatch.setitem(ATTACKS, "square", dataclasses.replace(real, entry=flaky))
    spec = CheckSpec(id="sq", attack="square", norm="linf", epsilon=0.3, samples=100, budget=100, early_stop=False, looks=5)
    chk = run_evasion_check(prep, spec, threat="scores", seed=0)
    assert chk.status == "completed" and chk.n_samples == 20 and chk.n_planned == 100
    assert chk.success_rate.n == chk.n_attacked > 0
    assert "dropped" in chk.stopped_early
    assert chk.queries_dropped == 1  # still counted
    # the check's wall time covers the dropped work, as its onnxruntime time does: never less than it
    assert chk.ort_time_s >= 0.3 and chk.wall_time_s >= chk.ort_time_s
