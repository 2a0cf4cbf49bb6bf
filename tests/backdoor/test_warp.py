"""The warp search family (WaNet, Nguyen & Tran 2021) on a small warp-backdoored CNN and a clean one.

Both models ship in ``fixtures/torch/`` (``build_torch_fixtures.py`` trains them with torch through
``benchmarks.backdoor_models``: digits upsampled to 1x16x16, a small CNN; the backdoored one poisoned with
a fixed 4x4 WaNet field at strength 2). The planted trigger must have worked (>= 80%) at build.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from onnxguard.backdoor import warp as W  # noqa: E402
from onnxguard.backdoor.anomaly import family_indices  # noqa: E402
from onnxguard.backdoor.probe import Probe  # noqa: E402
from onnxguard.evasion import prepare  # noqa: E402
from onnxguard.options import ScanOptions  # noqa: E402
from onnxguard.policy import BackdoorSpec, load_policy  # noqa: E402
from tests.backdoor.baselines import oracle_and_samples  # noqa: E402

TARGET = 6
PER_CLASS = 6000  # the per-class cap the standard policy gives the warp search (20% of 300k over 10 classes)
_cache: dict = {}


@pytest.fixture(scope="session")
def models() -> dict:
    """The shipped fixtures (``build_torch_fixtures.py`` trains them with torch; CI has no torch)."""
    import json

    out = HERE / "fixtures" / "torch"
    info = {n: json.loads((out / f"{n}.json").read_text()) for n in ("wanet_t6", "clean_cnn")}
    assert info["wanet_t6"]["attack_success"] >= 0.8, info["wanet_t6"]
    assert info["clean_cnn"]["clean_accuracy"] >= 0.9
    return {"dir": out, "info": info}


def _setup(models: dict, name: str, budget: int = 10_000_000, seed: int = 0):
    d = models["dir"]
    oracle, x, y = oracle_and_samples(d / f"{name}.onnx", d / "digits16.npz", per_class=20, budget=budget, seed=seed)
    screen = np.concatenate([np.flatnonzero(y == c)[:1] for c in range(10)])
    return oracle, (x[screen], y[screen]), (x, y)


def _sweep(models: dict, name: str, seed: int = 0) -> W.WarpResult:
    key = (name, seed)
    if key not in _cache:
        oracle, screen, search = _setup(models, name, seed=seed)
        probe = Probe(oracle, time.perf_counter() + 120)
        _cache[key] = W.warp_sweep(probe, screen, search, 10, level=0.9, max_queries_per_class=PER_CLASS, seed=seed)
    return _cache[key]


def _stat(res: W.WarpResult) -> np.ndarray:
    return res.magnitude  # unreached classes (nan) are left out, as in the search's statistic


def test_warp_field_and_warp() -> None:
    x = np.random.default_rng(0).uniform(size=(2, 3, 12, 12))
    assert np.allclose(W.warp(x, np.zeros((2, 12, 12))), x)
    shift = np.zeros((2, 12, 12))
    shift[1] = 1.0  # one pixel to the right: out[.., j] = x[.., j + 1]
    assert np.allclose(W.warp(x, shift)[..., :-1], x[..., 1:])
    d = W.displacement(np.random.default_rng(1).standard_normal((2, 4, 4)), 224, 224)
    assert d.shape == (2, 224, 224) and abs(np.sqrt((d ** 2).sum(axis=0).mean()) - 1) < 1e-9
    trig = W.WarpTrigger(W.unit(np.ones((2, 4, 4))), 2.0, (224, 224))
    assert trig.apply(np.full((2, 3, 224, 224), 0.5)).shape == (2, 3, 224, 224)  # O(batch x input) at 224 x 224


@pytest.mark.parametrize("seed", [0, 1])
def test_warp_search_finds_the_planted_target(models: dict, seed: int) -> None:
    res = _sweep(models, "wanet_t6", seed)
    s = res.magnitude
    assert np.nanargmin(s) == TARGET, s
    others = np.delete(s, TARGET)
    assert s[TARGET] < 0.75 * np.nanmin(others), s  # clearly below every clean class
    ai = family_indices(_stat(res), "warp")
    print("planted", seed, np.round(s, 2), np.round(ai, 2))
    assert np.nanargmax(ai) == TARGET and ai[TARGET] > 1.0, ai  # ranked first; the MAD index itself is modest (see the report)
    assert res.rate[TARGET] >= 0.9
    assert all(q <= PER_CLASS for q in res.queries_per_class.values())
    # the reversed trigger works on samples the search never used
    oracle, _, (x, y) = _setup(models, "wanet_t6", seed=seed + 10)
    _, lab = Probe(oracle, time.perf_counter() + 60).run(res.triggers[TARGET].apply(x[y != TARGET]))
    assert (lab == TARGET).mean() >= 0.7


def test_warp_search_beats_random_directions_at_the_same_budget(models: dict) -> None:
    """A dictionary of random directions, each walked up the magnitude ladder on the same confirmation samples,
    with as many queries as the search spent on the target class, needs a far larger warp."""
    res = _sweep(models, "wanet_t6")
    spent = res.queries_per_class[TARGET]
    oracle, _, (x, y) = _setup(models, "wanet_t6")
    probe = Probe(oracle, time.perf_counter() + 120)
    confirm = x[y != TARGET][np.random.default_rng(5).permutation(int((y != TARGET).sum()))[: W.CONFIRM]]
    rng = np.random.default_rng(11)
    best, tried = np.inf, 0
    while probe.used < spent:
        size, _ = W.ladder(probe, confirm, TARGET, W.displacement(rng.standard_normal((2, W.GRID, W.GRID)), 16, 16), 0.9)
        tried += 1
        if np.isfinite(size):
            best = min(best, size)
    assert tried >= 5
    assert res.magnitude[TARGET] * 1.4 < best, (res.magnitude[TARGET], best, tried)


def test_clean_model_has_no_warp_outlier(models: dict) -> None:
    res = _sweep(models, "clean_cnn")
    ai = family_indices(_stat(res), "warp")
    planted = family_indices(_stat(_sweep(models, "wanet_t6")), "warp")  # printed for the record
    print("clean", np.round(res.magnitude, 2), np.round(ai, 2), np.round(planted, 2))
    assert np.nanmax(ai) < 2.0, (res.magnitude, ai)
    # the same data and architecture: no clean class comes near the warp the planted target needs
    planted_size = _sweep(models, "wanet_t6").magnitude[TARGET]
    assert np.nanmin(res.magnitude) > 1.3 * planted_size, (res.magnitude, planted_size)


def test_warp_budget_and_time_limits(models: dict) -> None:
    oracle, screen, search = _setup(models, "clean_cnn", budget=4000)
    probe = Probe(oracle, time.perf_counter() + 60)
    res = W.warp_sweep(probe, screen, search, 10, level=0.9, max_queries_per_class=1500, seed=0)
    assert probe.used <= 4000 and not res.complete
    assert [s["where"] for s in probe.stops] == ["warp search"] and probe.stops[0]["reason"] == "query budget"
    assert all(q <= 1500 for q in res.queries_per_class.values())
    oracle, screen, search = _setup(models, "clean_cnn")
    probe = Probe(oracle, time.perf_counter() + 0.3)
    t0 = time.perf_counter()
    res = W.warp_sweep(probe, screen, search, 10, level=0.9, max_queries_per_class=PER_CLASS, seed=0)
    assert time.perf_counter() - t0 < 5 and not res.complete and probe.stops[0]["reason"] == "time limit"
    oracle, screen, search = _setup(models, "clean_cnn")
    res = W.warp_sweep(Probe(oracle, time.perf_counter() + 60), screen, search, 10, level=0.9, max_queries_per_class=1000,
                       seed=0, classes=[2, 5])
    assert set(res.queries_per_class) == {2, 5} and np.isnan(np.delete(res.magnitude, [2, 5])).all()


def test_full_search_lists_warp_and_saves_its_field(models: dict, tmp_path: Path) -> None:
    from onnxguard.backdoor import search_backdoors
    from onnxguard.backdoor.search import _save

    pol = load_policy("standard")
    d = models["dir"]
    prep = prepare(ScanOptions(model_path=d / "wanet_t6.onnx", data_path=d / "digits16.npz", policy=pol), pol,
                   np.random.default_rng(0), 0)
    spec = BackdoorSpec(budget=300_000, time_limit_s=150, samples_per_class=20, full_search_classes=10)
    bd = search_backdoors(prep, spec, threat="scores", seed=0)
    assert "warp" in bd.families_searched and not any("warping" in f for f in bd.families_not_covered)
    assert any("input-aware" in f for f in bd.families_not_covered)
    assert bd.queries <= spec.budget and bd.details["warp"]["queries"] > 0
    ws = {c.cls: c.family_sizes["warp"] for c in bd.classes if "warp" in c.family_sizes}
    assert min(ws, key=ws.get) == TARGET, ws
    trig = W.WarpTrigger(W.unit(np.ones((2, 4, 4))), 1.0, (16, 16))
    files = _save(tmp_path, {(TARGET, "warp"): trig}, [TARGET], ["warp"], np.zeros(10, dtype=int), False,
                  np.full((1, 1, 16, 16), 0.5))
    assert np.load(tmp_path / f"class{TARGET}-warp.npy").shape == (2, 16, 16)
    assert (tmp_path / f"class{TARGET}-warp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(files) == 2


def test_warp_stage_keeps_to_its_time_share_and_leaves_the_mask_searches_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a slow model (a 3x224x224 input) the warp search once ran to the search's time limit and the mask
    searches after it got none. The stage now runs under its own deadline, at most WARP_TIME_SHARE of the limit
    (plus the held-back reserve's expected time, which every stage's time_left takes off again). A warp search
    that would run on and on is stood in for by one that reads its deadline and stops there; the mask searches
    then still run, and the stop is on record. No clock race: the deadline is read, not waited for."""
    import onnxguard.backdoor.search as S
    from tests.backdoor.test_backdoor import fresh_search

    limit = 600.0
    seen: dict = {}

    def stand_in(probe, screen, search, n_classes, **kw):  # noqa: ANN001, ANN003, ANN202
        seen["share_s"] = probe.deadline - time.perf_counter()
        probe.stopped("warp search", "time limit")
        return W.WarpResult(np.full(n_classes, np.nan), np.zeros(n_classes))

    monkeypatch.setattr(S, "warp_sweep", stand_in)
    spec = BackdoorSpec(budget=200_000, time_limit_s=limit, samples_per_class=15, full_search_classes=10)
    bd = fresh_search("badnets_t3_tr", spec)
    # the search's own deadline is ~600 s away; the warp stage's is its share (120 s) plus the reserve's expected
    # time (well under a second on this model)
    assert S.WARP_TIME_SHARE * limit - 30 <= seen["share_s"] <= S.WARP_TIME_SHARE * limit + 5, seen
    assert any(s.startswith("warp search: time limit") for s in bd.early_stops), bd.early_stops
    assert bd.details["queries_full_search"] > 0 and all("patch" in c.family_sizes for c in bd.classes)
