"""Backdoor-trigger search on fixture models with known ground truth.

The fixtures (``tests/backdoor/fixtures``) are built by ``build_fixtures.py``;
``manifest.json`` holds each model's truth. Each full search takes a few seconds.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from onnxguard.backdoor import search_backdoors  # noqa: E402
from onnxguard.backdoor.anomaly import anomaly_indices  # noqa: E402
from onnxguard.png import write_png  # noqa: E402
from onnxguard.policy import BackdoorSpec, load_policy, parse_policy  # noqa: E402
from onnxguard.evasion import prepare  # noqa: E402
from onnxguard.scan import ScanOptions, run_scan  # noqa: E402
from tests.backdoor.baselines import random_patch_area  # noqa: E402

FIX = HERE / "fixtures"
MANIFEST = json.loads((FIX / "manifest.json").read_text())
DATA = {"clean": "digits16", "badnets": "digits16", "blended": "digits16"}
SPEC = BackdoorSpec(budget=300_000, time_limit_s=180, samples_per_class=20, full_search_classes=10)
_cache: dict = {}


def data_for(name: str) -> Path:
    info = MANIFEST[name]
    if info["kind"].startswith("tabular"):
        return FIX / ("synth.npz" if info["pattern"] == "synth" else "wine.npz")
    return FIX / "digits16.npz"


def fresh_search(name: str, spec: BackdoorSpec = SPEC, threat: str = "scores", seed: int = 0, out_dir: Path | None = None):
    """The search on a fixture, not cached (for tests that patch one of its stages)."""
    pol = load_policy("standard")
    prep = prepare(ScanOptions(model_path=FIX / f"{name}.onnx", data_path=data_for(name)), pol, np.random.default_rng(seed), 0)
    return search_backdoors(prep, spec, threat=threat, seed=seed, out_dir=out_dir)


def search(name: str, spec: BackdoorSpec = SPEC, threat: str = "scores", seed: int = 0, out_dir: Path | None = None):
    key = (name, spec.model_dump_json(), threat, seed, out_dir is not None)
    if key not in _cache:
        _cache[key] = fresh_search(name, spec, threat, seed, out_dir)
    return _cache[key]


def names(*kinds: str) -> list[str]:
    return sorted(n for n, i in MANIFEST.items() if i["kind"] in kinds)


@pytest.mark.parametrize("name", names("badnets"))
def test_patch_backdoor_flagged_with_right_target(name: str) -> None:
    truth = MANIFEST[name]
    bd = search(name)
    assert bd.status == "completed"
    assert bd.flagged_classes and bd.flagged_classes[0] == truth["target"], (bd.flagged_classes, bd.max_anomaly_index)
    row = bd.classes[truth["target"]]
    assert row.full_search and row.attack_success is not None and row.attack_success.value >= 0.5
    assert bd.max_anomaly_index is not None and bd.max_anomaly_index > bd.anomaly_threshold
    assert bd.queries <= SPEC.budget
    assert bd.p_value is not None and bd.p_value <= 0.1  # beyond (almost) every clean model of the null


@pytest.mark.parametrize("seed", [1, 2])
def test_patch_backdoor_flagged_across_seeds(seed: int) -> None:
    """Other seeds draw other samples, splits, pre-screen patterns and search directions."""
    truth = MANIFEST["badnets_t3_tr"]
    bd = search("badnets_t3_tr", seed=seed)
    assert bd.flagged_classes[:1] == [truth["target"]], (seed, bd.flagged_classes, bd.max_anomaly_index)


@pytest.mark.parametrize("seed", [1, 2])
def test_clean_model_not_flagged_across_seeds(seed: int) -> None:
    bd = search("clean_b", seed=seed)
    assert bd.flagged_classes == [], (seed, bd.flagged_classes, bd.max_anomaly_index)


@pytest.mark.parametrize("seed", [0, 1])
def test_search_beats_random_patches_at_equal_budget(seed: int) -> None:
    """The reversed trigger of the target is far smaller than what random patches find with the same queries."""
    truth = MANIFEST["badnets_t5_bl"]
    bd = search("badnets_t5_bl", seed=seed)
    row = bd.classes[truth["target"]]
    ours = min(v for k, v in row.family_sizes.items() if k in ("patch", "square"))
    rand = random_patch_area(FIX / "badnets_t5_bl.onnx", data_for("badnets_t5_bl"), truth["target"], row.queries, seed, salt=99)
    assert ours * 2 < rand, (ours, rand, row.queries)


@pytest.mark.parametrize("name", names("blended"))
def test_blended_backdoor_flagged(name: str) -> None:
    bd = search(name)
    assert bd.flagged_classes and bd.flagged_classes[0] == MANIFEST[name]["target"], (bd.flagged_classes, bd.max_anomaly_index)


@pytest.mark.parametrize("name", names("clean"))
def test_clean_model_not_flagged(name: str) -> None:
    bd = search(name)
    assert bd.status == "completed"
    assert bd.flagged_classes == [], (bd.flagged_classes, bd.max_anomaly_index)
    assert len(bd.classes) == 10 and all(c.trigger_size is not None for c in bd.classes)


def test_tabular_backdoor_trigger_recovered() -> None:
    """Six-class generated tabular data: the target has the most anomalous trigger, made of the planted features."""
    truth = MANIFEST["synth_backdoor_t4"]
    bd = search("synth_backdoor_t4")
    ai = [c.anomaly_index for c in bd.classes]
    assert int(np.argmax(ai)) == truth["target"]
    assert bd.classes[truth["target"]].trigger_kind == "features"
    assert bd.classes[truth["target"]].family_sizes["features"] < 2.0
    clean = search("synth_clean")
    assert clean.flagged_classes == []
    assert clean.max_anomaly_index < bd.max_anomaly_index


def test_tabular_trigger_saved(tmp_path: Path) -> None:
    """Wine (three classes, the reference-ratio statistic): the target's reversed trigger is saved with
    its features, normalised values and raw values, works on held-back samples, and the report gives it
    in raw feature units beside its kind of value."""
    truth = MANIFEST["tab_backdoor_t1"]
    bd = search("tab_backdoor_t1", out_dir=tmp_path)
    assert bd.statistic_regime == "few" and bd.status == "completed"
    arr = np.load(tmp_path / f"class{truth['target']}-features.npy")
    row = bd.classes[truth["target"]]
    assert arr.shape[0] == 3 and [int(f) for f in arr[0]] == [t["feature"] for t in row.trigger_features]
    assert np.allclose(arr[2], [t["value"] for t in row.trigger_features])
    assert row.attack_success.value >= 0.5  # the cheapest value that reaches 90% on the search samples


@pytest.mark.parametrize("name", names("badnets"))
def test_labels_only_flags_patch_backdoor(name: str) -> None:
    """Labels only: the decision-based square sweep flags every planted patch with the right target."""
    truth = MANIFEST[name]
    bd = search(name, threat="labels")
    assert bd.threat_model == "labels" and "labels-only" in (bd.method or "")
    assert bd.flagged_classes[:1] == [truth["target"]], (bd.flagged_classes, bd.max_anomaly_index)
    assert bd.classes[truth["target"]].attack_success.value >= 0.5
    assert bd.queries <= SPEC.budget


@pytest.mark.parametrize("name", names("clean"))
def test_labels_only_clean_not_flagged(name: str) -> None:
    bd = search(name, threat="labels")
    assert bd.flagged_classes == [], (bd.flagged_classes, bd.max_anomaly_index)
    # the maximum-margin family needs scores: not run, and said so
    assert "margin" not in bd.families_searched and any("maximum-margin" in f for f in bd.families_not_covered)


def _baseline_spec() -> BackdoorSpec:
    return load_policy("baseline").policy.backdoor


@pytest.mark.parametrize("name", names("badnets"))
def test_baseline_policy_flags_patch_backdoor(name: str) -> None:
    """The shipped baseline policy (100k queries, full search on 3 classes): the square sweep gives every
    class a comparable size, and the mask families' statistic compares short-search sizes only."""
    truth = MANIFEST[name]
    spec = _baseline_spec()
    bd = search(name, spec=spec)
    assert len(bd.fully_searched_classes) == spec.full_search_classes
    assert bd.flagged_classes[:1] == [truth["target"]], (bd.flagged_classes, bd.max_anomaly_index)
    assert bd.queries <= spec.budget


@pytest.mark.parametrize("name", names("clean"))
def test_baseline_policy_clean_not_flagged(name: str) -> None:
    bd = search(name, spec=_baseline_spec())
    assert bd.flagged_classes == [], (bd.flagged_classes, bd.max_anomaly_index)


def test_prescreen_orders_full_search() -> None:
    """With full search on 3 classes only, the target is among them and stands out most."""
    truth = MANIFEST["badnets_t7_tl"]
    spec = BackdoorSpec(budget=120_000, time_limit_s=60, samples_per_class=15, full_search_classes=3)
    bd = search("badnets_t7_tl", spec=spec)
    assert len(bd.fully_searched_classes) == 3 and truth["target"] in bd.fully_searched_classes
    assert bd.flagged_classes[:1] == [truth["target"]]
    assert bd.queries <= spec.budget


def test_square_anomaly_on_log_scale() -> None:
    from onnxguard.backdoor.anomaly import family_indices

    areas = np.array([100.0, 120, 90, 110, 95, 105, 8])
    ai = family_indices(areas, "square")
    assert np.argmax(ai) == 6 and ai[6] > 5  # a linear MAD index could not exceed median / MAD
    assert family_indices(np.array([100.0, 100, 100, 60]), "square")[3] < 3  # 60% of the median is not flagged


def test_class_index_is_the_largest_family_index() -> None:
    from onnxguard.backdoor.anomaly import class_indices

    stack = np.array([[2.5, -1.0, np.nan], [3.0, -2.0, np.nan], [np.nan, -0.5, np.nan]])
    out = class_indices(stack)
    assert out[0] == 3.0 and out[1] == -0.5 and np.isnan(out[2])


def test_budget_and_time_limits_respected() -> None:
    spec = BackdoorSpec(budget=15_000, time_limit_s=60, samples_per_class=10, full_search_classes=10)
    a = search("clean_a", spec=spec)
    assert a.queries <= 15_000 and a.query_budget == 15_000
    b = search("clean_a", spec=spec, seed=0)
    assert a.model_dump(exclude={"wall_time_s", "details"}) == b.model_dump(exclude={"wall_time_s", "details"})
    quick = BackdoorSpec(budget=10_000_000, time_limit_s=0.5, samples_per_class=10, full_search_classes=10)
    c = search("clean_b", spec=quick)
    assert c.details.get("stopped_by") == "time limit" and c.wall_time_s < 10


def _search_after_smooth(monkeypatch: pytest.MonkeyPatch, then, spec: BackdoorSpec):  # noqa: ANN001, ANN202
    """The search on ``badnets_t3_tr`` with ``then(probe, screen)`` run right after the smooth sweep (a stage
    that misbehaves: spends everything, or runs out of time)."""
    import onnxguard.backdoor.search as S

    real = S.smooth_sweep

    def patched(probe, screen, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        out = real(probe, screen, *a, **k)
        then(probe, screen)
        return out

    monkeypatch.setattr(S, "smooth_sweep", patched)
    return fresh_search("badnets_t3_tr", spec)


def test_held_back_check_is_paid_for_before_the_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage that spends every query it may still spend leaves the held-back check of every class's
    triggers funded: those queries are reserved before any stage runs (a zoo CNN's sweeps once spent the
    whole budget and eight classes went unchecked)."""
    def spend_all(probe, screen):  # noqa: ANN001, ANN202
        while probe.left > 0:
            probe.run(np.repeat(screen[0][:1], min(probe.left, 512), axis=0))

    spec = BackdoorSpec(budget=120_000, time_limit_s=120, samples_per_class=15, full_search_classes=10)
    bd = _search_after_smooth(monkeypatch, spend_all, spec)
    assert bd.queries <= spec.budget
    assert not any("held-back" in s for s in bd.early_stops), bd.early_stops
    # nothing was left for the mask searches: no class is "fully searched", and the stop is on record
    assert bd.fully_searched_classes == [] and any(s.startswith("search stages") for s in bd.early_stops), bd.early_stops
    with_trigger = [c for c in bd.classes if c.family_sizes.get("square") is not None]
    assert with_trigger, [c.family_sizes for c in bd.classes]
    for c in with_trigger:  # the square trigger of every class that has one was checked on all held-back samples
        assert "square" in c.family_attack_success and c.family_attack_success["square"].n > 0


def test_held_back_check_keeps_its_time_when_the_time_limit_binds(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the time limit stops the searches, the held-back checks still run: they are bounded by their reserved
    queries, not by the clock, and what they run past the limit is recorded. (The limit is made to bind after the
    smooth sweep by moving the deadline, not by racing the clock: the test does not depend on the machine's speed.)"""
    import time as _time

    def out_of_time(probe, screen):  # noqa: ANN001, ANN202
        probe.deadline = _time.perf_counter() - 0.001

    spec = BackdoorSpec(budget=10_000_000, time_limit_s=600, samples_per_class=15, full_search_classes=10)
    bd = _search_after_smooth(monkeypatch, out_of_time, spec)
    assert bd.details.get("stopped_by") == "time limit"
    assert not any("held-back" in s for s in bd.early_stops), bd.early_stops
    sized = [c for c in bd.classes if c.family_sizes.get("square") is not None]
    assert sized and all("square" in c.family_attack_success for c in sized)
    assert bd.details.get("held_back_check_past_time_limit_s", 0.0) > 0


def test_time_reserve_for_the_held_back_check_is_capped() -> None:
    """On a slow model the reserved queries' expected time can exceed the whole time limit: the stages keep
    at least the rest of the limit (the reserve's time is capped), rather than none."""
    import time as _time

    from onnxguard.backdoor.probe import Probe

    class SlowOracle:  # 10 queries so far at 0.1 s each; 3,000 reserved would take 450 s with the margin
        ort_time, queries, labels_only = 1.0, np.array([10]), False

        def remaining(self) -> np.ndarray:
            return np.array([100_000])

    p = Probe(SlowOracle(), _time.perf_counter() + 100.0, max_time_reserve=20.0)  # type: ignore[arg-type]
    p.used0, p.ort0 = 0, 0.0
    p.reserved = 3_000
    assert p.query_time(3_000) == pytest.approx(450.0)
    assert 79.0 < p.time_left() <= 80.0
    p.reserved = 0
    assert p.time_left() > 99.0


def test_square_refinement_respects_its_cap() -> None:
    """The pattern refinement's bit search starts no pass that would take it past its query cap."""
    from onnxguard.backdoor.squares import _bit_search

    class Counting:
        base = np.zeros((7, 1, 8, 8))

        def __init__(self) -> None:
            self.queries, self.rng = 0, np.random.default_rng(0)

        def __call__(self, trials: list) -> np.ndarray:
            self.queries += len(trials) * len(self.base)
            return -self.rng.random(len(trials))

    for cap in (0, 100, 7 * 17, 7 * 17 * 2 - 1, None):
        obj = Counting()
        _bit_search(obj, 0, 0, np.ones((1, 4, 4)), 0.0, np.random.default_rng(0), max_queries=cap)  # type: ignore[arg-type]
        assert cap is None or obj.queries <= cap
        if cap is None:
            assert obj.queries == 2 * 7 * 17  # two passes of 16 flips and the combined flip


def test_square_ladder_keeps_small_rungs_on_small_inputs() -> None:
    from onnxguard.backdoor.squares import ladder

    assert ladder(32, 32)[:2] == [2, 3] and ladder(16, 16)[:2] == [2, 3]
    assert min(ladder(224, 224)) > 3  # ImageNet-size inputs: rungs scale with the image
    assert min(ladder(32, 32, small_rungs=False)) == 4  # small budgets go without them


def test_scan_writes_triggers_and_grades(tmp_path: Path) -> None:
    pol = parse_policy(b"""
[policy]
name = "backdoor-only"
version = "1"
[backdoor]
budget = 300000
time_limit_s = 180
samples_per_class = 20
full_search_classes = 10
""", "test")
    out = tmp_path / "trig"
    rep = run_scan(ScanOptions(model_path=FIX / "badnets_t0_br.onnx", data_path=FIX / "digits16.npz", policy=pol, backdoor_out=out))
    bd = rep.backdoor
    assert bd is not None and bd.flagged_classes[:1] == [0]
    assert bd.grades and bd.grades[0].metric == "backdoor_anomaly_index" and bd.risk in ("high", "critical")
    assert rep.summary is not None and rep.summary.verdict in ("warn", "fail")
    kind = bd.classes[0].trigger_kind
    assert kind in ("patch", "square")
    arr = np.load(out / f"class0-{kind}.npy")
    assert arr.shape == (2, 1, 16, 16)
    png = (out / f"class0-{kind}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(Path(f).exists() for f in bd.trigger_files)
    again = type(rep).model_validate_json(rep.model_dump_json())
    assert again.backdoor.flagged_classes == bd.flagged_classes


def test_shipped_policies_still_load() -> None:
    for name in ("baseline", "standard", "strict"):
        thr = load_policy(name).policy.backdoor.anomaly_threshold
        assert thr is None or thr > 0  # None: the threshold calibrated on the null


def test_anomaly_index() -> None:
    ai = anomaly_indices(np.array([50.0, 52, 48, 55, 47, 51, 5]), floor=0.0)
    assert np.argmax(ai) == 6 and ai[6] > 10
    assert np.isnan(anomaly_indices(np.array([1.0, 2.0]))).all()
    flat = anomaly_indices(np.array([10.0, 10, 10, 9]), floor=0.2)  # MAD 0: the floor keeps it finite
    assert np.isfinite(flat).all() and flat[3] == pytest.approx(0.5)


def test_png_writer(tmp_path: Path) -> None:
    img = np.linspace(0, 1, 12).reshape(3, 4)
    write_png(tmp_path / "a.png", img, scale=2)
    data = (tmp_path / "a.png").read_bytes()
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (8, 6)
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + w)


def test_censored_feature_sizes_flag_nothing_and_say_why(tmp_path: Path) -> None:
    """When most classes cannot be reached within the feature cap, their sizes are only lower bounds: the
    median and its spread are unknown, so no class may be flagged on trigger size (graded as not run).
    A clean MLP on the 64 digit pixels as tabular features is such a model."""
    import onnx
    from sklearn.datasets import load_digits

    from onnxguard.backdoor.search import MAX_FEATURES
    from tests import zoo

    dg = load_digits()
    x, y = (dg.data / 16.0).astype(np.float32), dg.target
    params = zoo.train_mlp(x[:1200], y[:1200], hidden=(32,), epochs=150, seed=1)
    p = tmp_path / "digits_tab.onnx"
    onnx.save(zoo.mlp_to_onnx(params, (64,), output="logits"), p)
    d = tmp_path / "digits_tab.npz"
    np.savez(d, x=x[1200:], y=y[1200:])
    prep = prepare(ScanOptions(model_path=p, data_path=d), load_policy("standard"), np.random.default_rng(0), 0)
    bd = search_backdoors(prep, SPEC, threat="scores", seed=0)
    sizes = [c.trigger_size for c in bd.classes if c.trigger_size is not None]
    assert sum(s > MAX_FEATURES for s in sizes) * 2 >= len(sizes)  # most classes out of reach: censored
    assert bd.flagged_classes == [] and bd.max_anomaly_index is None
    assert bd.status == "failed" and "undefined" in bd.reason


def test_sig_backdoor_flagged_by_the_smooth_family() -> None:
    """SIG (a horizontal sinusoid added to the whole image): the smooth sweep reverses the planted frequency."""
    truth = MANIFEST["sig_t6"]
    bd = search("sig_t6")
    assert bd.flagged_classes[:1] == [truth["target"]], (bd.flagged_classes, bd.max_anomaly_index)
    row = bd.classes[truth["target"]]
    assert row.family_anomaly_indices["smooth"] > bd.anomaly_threshold
    assert bd.details["smooth"]["patterns"][str(truth["target"])].startswith("sin-h3")
    # the smallest amplitude any random smooth pattern of the dictionary's kind needs is far larger
    others = [c.family_sizes["smooth"] for c in bd.classes if c.cls != truth["target"] and "smooth" in c.family_sizes]
    assert all(row.family_sizes["smooth"] * 2 < o for o in others)
