"""The maximum-margin family (MM-BD, :mod:`onnxguard.backdoor.margin`) on the shipped digit fixtures.

``blended_t2`` is a digits MLP with a noise pattern blended in (target 2), ``sig_t6`` one with a SIG
sinusoid (target 6); ``clean_a`` and ``clean_b`` are clean models of the same kind (``build_fixtures.py``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from onnxguard.attacks.base import from_chw  # noqa: E402
from onnxguard.backdoor import margin as M  # noqa: E402
from onnxguard.backdoor.anomaly import margin_indices, model_statistic  # noqa: E402
from onnxguard.backdoor.probe import Probe  # noqa: E402
from onnxguard.evasion import prepare  # noqa: E402
from onnxguard.oracle import Oracle  # noqa: E402
from onnxguard.options import ScanOptions  # noqa: E402
from onnxguard.policy import load_policy  # noqa: E402
from tests.backdoor.baselines import oracle_and_samples  # noqa: E402

FIX = HERE / "fixtures"
MANIFEST = json.loads((FIX / "manifest.json").read_text())
QUERIES = 20_000  # 2,000 per class: less than the standard policy gives (10% of 300k)
_cache: dict = {}


def _setup(name: str, budget: int = 10_000_000, seed: int = 0):
    return oracle_and_samples(FIX / f"{name}.onnx", FIX / "digits16.npz", per_class=10, budget=budget, seed=seed)


def _sweep(name: str, seed: int = 0) -> tuple[M.MarginResult, Oracle]:
    key = (name, seed)
    if key not in _cache:
        oracle, x, y = _setup(name, seed=seed)
        probe = Probe(oracle, time.perf_counter() + 120)
        _cache[key] = (M.margin_sweep(probe, x, y, 10, max_queries=QUERIES, rng=np.random.default_rng([seed, 9])), oracle)
    return _cache[key]


@pytest.mark.parametrize("name", ["blended_t2", "sig_t6"])
def test_margin_search_points_at_the_planted_target(name: str) -> None:
    target = MANIFEST[name]["target"]
    res, oracle = _sweep(name)
    assert res.complete and res.queries <= QUERIES and int(oracle.queries[0]) == res.queries
    idx = margin_indices(res.margin)
    assert int(np.nanargmax(res.margin)) == target, res.margin.round(1)
    clean = max(float(np.nanmax(margin_indices(_sweep(c)[0].margin))) for c in ("clean_a", "clean_b"))
    assert idx[target] > clean + 1.0, (idx.round(2), clean)


@pytest.mark.parametrize("seed", [1, 2])
def test_margin_search_across_seeds(seed: int) -> None:
    res, _ = _sweep("blended_t2", seed=seed)
    assert int(np.nanargmax(res.margin)) == MANIFEST["blended_t2"]["target"], res.margin.round(1)


def test_margin_search_beats_random_inputs_at_the_same_budget() -> None:
    """The baseline: as many uniform-noise inputs and the same class-own samples, no search; the largest margin
    they reach for the target must stay well below the search's."""
    name = "blended_t2"
    target = MANIFEST[name]["target"]
    res, _ = _sweep(name)
    oracle, x, y = _setup(name)
    rng = np.random.default_rng(5)
    per_class = QUERIES // 10
    z = np.concatenate([x[y == target], rng.uniform(size=(per_class - int((y == target).sum()),) + x.shape[1:])])
    s = oracle.scores(from_chw(z, oracle.sample_shape), np.zeros(len(z), dtype=np.int64))[0]
    others = np.delete(s, target, axis=1).max(axis=1)
    baseline = float((s[:, target] - others).max())
    assert res.margin[target] > 1.5 * baseline, (res.margin[target], baseline)


def test_margin_search_stops_at_its_budget_and_records_it() -> None:
    oracle, x, y = _setup("clean_a", budget=1_000)
    probe = Probe(oracle, time.perf_counter() + 60)
    res = M.margin_sweep(probe, x, y, 10, max_queries=5_000, rng=np.random.default_rng(0))
    assert not res.complete and int(oracle.queries[0]) <= 1_000
    assert probe.stops and probe.stops[0]["where"] == "margin search"
    # the chunk cut short is left out: its classes got fewer steps than the others would have
    assert np.isnan(res.margin).all()


def test_margin_search_chunks_large_states(monkeypatch: pytest.MonkeyPatch) -> None:
    """Classes whose restarts do not fit the state budget together are searched a few at a time (the
    3x224x224 case: 7 classes of 8 restarts per chunk); every class is still measured, within the budget."""
    monkeypatch.setattr(M, "STATE_ELEMENTS", 2 * M.RESTARTS * 256)  # two classes of 1x16x16 per chunk
    oracle, x, y = _setup("blended_t2")
    probe = Probe(oracle, time.perf_counter() + 60)
    res = M.margin_sweep(probe, x, y, 10, max_queries=4_000, rng=np.random.default_rng(0))
    assert res.complete and np.isfinite(res.margin).all() and res.queries <= 4_000


def test_window_schedule_shrinks_and_stays_inside_the_input() -> None:
    sides = [M.window_side(k, 100, 224, 224) for k in range(100)]
    assert sides[0] == round(np.sqrt(0.3 * 224 * 224)) and sides[-1] >= 1
    assert all(a >= b for a, b in zip(sides, sides[1:]))
    assert M.window_side(0, 10, 3, 40) <= 3


def test_margin_index_of_an_outlier_and_of_a_weak_model() -> None:
    strong = np.array([27.9, 28.2, 29.4, 27.5, 50.0, 30.1, 28.5, 130.9, 9.6, 24.9])  # a blend-backdoored CNN
    weak = np.array([0.0, 1.6, 0.1, 5.1, 7.7, 0.1, 9.4, 2.0, 0.1, 0.9])  # a 21%-accurate MLP: margins spread widely
    a, b = margin_indices(strong), margin_indices(weak)
    assert int(np.argmax(a)) == 7 and a[7] > 5 and np.delete(a, 7).max() < 1
    assert np.nanmax(b) < 1.5  # a MAD index gives its largest class 4.8
    assert np.isnan(margin_indices(np.array([1.0, 2.0, np.nan]))).all()  # fewer than 3 other classes
    assert np.nanmax(margin_indices(np.array([5.0] * 4))) < 0.5  # no spread: the floored null, nothing stands out
    # three nearly equal classes do not make a fourth one 40% above them certain (the fitted spread is floored)
    assert np.nanmax(margin_indices(np.array([3.99, 3.98, 4.0, 5.73]))) < 1.5


def test_margin_family_needs_no_held_back_check() -> None:
    """A family with no trigger (margin) counts where it measured the class; the others need their check."""
    stack = np.array([[0.5, 1.0, 0.2], [0.1, 6.0, 0.0]])  # rows: square, margin
    works = np.array([[True, True, True], [True, True, True]])
    ms = model_statistic(stack, works)
    assert ms.flagged(4.0) == [1] and ms.statistic == 6.0
    ms = model_statistic(stack, np.array([[True, True, True], [False, False, False]]))
    assert ms.flagged(4.0) == [] and ms.statistic == 1.0


def test_a_margin_flag_reads_as_a_margin_in_finding_files_and_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """When the margin family carries a class's index, the finding speaks of the margin (there is no trigger
    success to quote) and the maximising input is saved. The search stage is replaced by one that reports a planted margin for class 3 (the plumbing, not the search)."""
    import onnxguard.backdoor.search as S
    from onnxguard.backdoor import search_backdoors
    from onnxguard.policy import BackdoorSpec

    real = S.margin_sweep

    def planted(probe, xs, ys, n_classes, **k):  # noqa: ANN001, ANN003, ANN202
        res = real(probe, xs, ys, n_classes, **k)
        res.margin[:] = np.linspace(10.0, 14.0, n_classes)
        res.margin[3] = 400.0
        return res

    monkeypatch.setattr(S, "margin_sweep", planted)
    pol = load_policy("standard")
    prep = prepare(ScanOptions(model_path=FIX / "clean_a.onnx", data_path=FIX / "digits16.npz"), pol, np.random.default_rng(0), 0)
    spec = BackdoorSpec(budget=200_000, time_limit_s=120, samples_per_class=15, full_search_classes=10)
    bd = search_backdoors(prep, spec, threat="scores", seed=0, out_dir=tmp_path)
    row = bd.classes[3]
    assert bd.flagged_classes[:1] == [3] and row.trigger_kind == "margin" and row.trigger_size == 400.0
    assert row.attack_success is None and row.search_success is None and "margin" not in row.family_attack_success
    assert "score margin of 400" in bd.finding and "MM-BD" in bd.finding
    assert (tmp_path / "class3-margin.png").is_file() and np.load(tmp_path / "class3-margin.npy").shape == (1, 16, 16)
    assert bd.details["margin"]["queries"] <= 0.1 * spec.budget
    # on the common scale the margin index crosses the threshold exactly at p = 0.001
    scale = bd.details["margin"]["index_scale"]
    assert scale == pytest.approx(bd.anomaly_threshold / 3.0, rel=1e-5)
    assert row.family_anomaly_indices["margin"] == pytest.approx(bd.details["margin"]["neg_log10_p"][3] * scale, abs=1e-3)


def test_margin_scale_puts_p_of_a_thousandth_on_the_threshold() -> None:
    from onnxguard.backdoor.anomaly import MARGIN_FLAG_INDEX, margin_scale

    for thr in (3.0, 4.32, 10.0):
        assert MARGIN_FLAG_INDEX * margin_scale(thr) == pytest.approx(thr)
        assert -np.log10(0.0009) * margin_scale(thr) > thr > -np.log10(0.0011) * margin_scale(thr)


def test_margin_search_needs_a_budget_of_200k() -> None:
    """At the baseline policy's 100k queries the sweeps and the margin search together left the mask searches
    nothing: the margin search is then not run, and the report says so."""
    from tests.backdoor.test_backdoor import search

    bd = search("blended_t2", spec=load_policy("baseline").policy.backdoor)
    assert "margin" not in bd.families_searched and any("maximum-margin" in f for f in bd.families_not_covered)


def test_margin_stage_keeps_its_time_share_on_a_slow_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a slow model the held-back reserve's expected time is taken off every stage's time; the margin stage's
    own deadline (15% of the limit) adds it back, so the reserve does not eat the whole share. The model is made
    to look slow by fixing the probe's expected time per query (no race with the clock)."""
    import onnxguard.backdoor.search as S

    oracle, x, y = _setup("clean_a")
    probe = Probe(oracle, time.perf_counter() + 600, max_time_reserve=0.2 * 60)
    probe.reserved = 10_000
    monkeypatch.setattr(Probe, "query_time", lambda self, n: 0.001 * n)  # 1 ms a query: the reserve needs 10 s
    res = S._margin_stage(probe, x, y, 10, 300_000, 60.0, np.random.default_rng(0), None)
    # the share is 9 s, one step of 10 classes x 8 restarts 0.08 s: about 110 steps (none without the reserve added back)
    assert 90 <= res.steps <= 112 and res.complete, res.steps
    assert probe.deadline == pytest.approx(time.perf_counter() + 600, abs=30)  # restored


def test_a_stop_before_the_margin_stage_still_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage before the margin search stops the search stages (the smooth sweep raises the time limit): the
    search still completes its report, the margin family measured nothing, and the stop is on record."""
    from onnxguard.backdoor.probe import OutOfBudget
    from onnxguard.policy import BackdoorSpec
    from tests.backdoor.test_backdoor import _search_after_smooth

    def stop(probe, screen):  # noqa: ANN001, ANN202
        raise OutOfBudget("time limit")

    spec = BackdoorSpec(budget=200_000, time_limit_s=120, samples_per_class=15, full_search_classes=10)
    bd = _search_after_smooth(monkeypatch, stop, spec)
    assert bd.status == "completed" and "margin" in bd.families_searched
    assert not any("margin" in c.family_sizes for c in bd.classes)
    assert bd.details["margin"]["neg_log10_p"] == [None] * 10 and not bd.details["margin"]["complete"]
    assert any(s.startswith("search stages") and "time limit" in s for s in bd.early_stops), bd.early_stops
