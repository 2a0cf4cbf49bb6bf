"""Image models with 2 or 3 classes (regime ``few-image``): a planted patch is flagged on its target against the
natural reference, a clean model is not, random patches at the same budget do not reach the planted ratio,
budgets hold, and the regime reads as uncalibrated until the shipped null has it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from onnxguard.backdoor import search_backdoors
from onnxguard.backdoor.anomaly import few_image_indices
from onnxguard.backdoor.null import FALLBACK_THRESHOLD, calibration
from onnxguard.policy import BackdoorSpec, load_policy
from onnxguard.scan import ScanOptions, prepare
from tests.backdoor.baselines import random_patch_area

SPEC = BackdoorSpec(budget=100_000, time_limit_s=120, samples_per_class=20, full_search_classes=2, anomaly_threshold=3.0)
TARGET = 0


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[Path, Path]]:
    """Two 2-class digits MLPs (0-4 | 5-9), shipped in ``fixtures/torch/`` (``build_torch_fixtures.py`` trains them
    with torch, seeds 650+, in neither the zoo nor the null): one with a white 3x3 patch in the bottom-right corner
    planted towards class 0, one clean."""
    import json

    out = HERE / "fixtures" / "torch"
    res = {}
    for k, name in (("bad", "few_bad"), ("clean", "few_clean")):
        info = json.loads((out / f"{name}.json").read_text())
        assert info["clean_accuracy"] > 0.9 and (not info["backdoored"] or info["attack_success"] > 0.9)
        res[k] = (out / f"{name}.onnx", out / "digits16_2.npz")
    return res


_cache: dict = {}


def _search(models: dict, which: str, spec: BackdoorSpec = SPEC, seed: int = 0):
    key = (which, spec.model_dump_json(), seed)
    if key not in _cache:
        model, data = models[which]
        pol = load_policy("standard")
        prep = prepare(ScanOptions(model_path=model, data_path=data), pol, np.random.default_rng(seed), 0)
        _cache[key] = search_backdoors(prep, spec, threat="scores", seed=seed)
    return _cache[key]


def test_two_class_image_patch_flagged_on_target(models: dict) -> None:
    bad, clean = _search(models, "bad"), _search(models, "clean")
    assert bad.status == "completed" and bad.statistic_regime == "few-image" and len(bad.classes) == 2
    assert bad.flagged_classes == [TARGET], (bad.finding, [c.family_anomaly_indices for c in bad.classes])
    row = bad.classes[TARGET]
    assert row.trigger_kind == "square" and row.reference_size is not None and row.attack_success.value >= 0.5
    assert row.family_sizes["square"] * 8 < row.reference_size  # the reversed patch is far below the natural window
    assert bad.max_anomaly_index > clean.max_anomaly_index + 1.5, (bad.max_anomaly_index, clean.max_anomaly_index)
    assert bad.details["natural_reference"]["complete"] and bad.details["reference_sizes"]["square"][TARGET] is not None
    assert "natural square window" in bad.method and bad.queries <= SPEC.budget


def test_two_class_image_clean_not_flagged(models: dict) -> None:
    bd = _search(models, "clean")
    assert bd.status == "completed" and bd.statistic_regime == "few-image"
    assert bd.flagged_classes == [] and bd.max_anomaly_index < 3.0
    assert all(c.reference_size is not None and c.anomaly_index is not None for c in bd.classes)
    assert bd.queries <= SPEC.budget


def test_random_patch_baseline_does_not_reach_the_planted_ratio(models: dict) -> None:
    """Random square patches with as many queries as the square sweep and the natural reference spent (for every
    class; the flagged index comes from them) do not reach the target's ratio."""
    bd = _search(models, "bad")
    row = bd.classes[TARGET]
    spent = bd.details["square"]["queries"] + bd.details["natural_reference"]["queries"]
    area = random_patch_area(*models["bad"], TARGET, spent, 0, salt=98)
    # the same statistic with the random patch in place of the sweep's trigger for the target
    sq = np.array([c.family_sizes.get("square", np.nan) for c in bd.classes])
    sq[TARGET] = area if np.isfinite(area) else 16 * 16
    rand_index = few_image_indices(sq, np.array(bd.details["reference_sizes"]["square"], dtype=float))[TARGET]
    assert rand_index < row.family_anomaly_indices["square"] - 1.0, (rand_index, row.family_anomaly_indices, area, spent)


def test_small_budget_is_respected_and_stops_recorded(models: dict) -> None:
    spec = BackdoorSpec(budget=9_000, time_limit_s=60, samples_per_class=20, full_search_classes=2, anomaly_threshold=3.0)
    bd = _search(models, "bad", spec)
    assert bd.queries <= spec.budget
    assert bd.early_stops and all(":" in s for s in bd.early_stops)


def test_few_image_regime_is_uncalibrated_until_the_null_has_it(models: dict) -> None:
    spec = SPEC.model_copy(update={"anomaly_threshold": None})
    bd = _search(models, "clean", spec)
    cal = calibration("few-image", None)
    if cal.n < 5:  # the shipped null has no few-image models yet: the fallback threshold, said so
        assert cal.source == "uncalibrated" and bd.details["calibration"]["threshold_source"] == "uncalibrated"
        assert bd.anomaly_threshold == FALLBACK_THRESHOLD and bd.p_value is None
    else:
        assert bd.details["calibration"]["threshold_source"] == "null" and bd.p_value is not None


def test_few_image_index_is_the_smaller_of_both_ratios() -> None:
    # class 0: 4 px against a natural window of 128 (5 doublings) and the other class's 64 (4 doublings)
    ai = few_image_indices(np.array([4.0, 64.0]), np.array([128.0, 128.0]))
    assert ai[0] == pytest.approx(4.0) and ai[1] == pytest.approx(-4.0)
    # a clean model's adversarial patch far below the natural window but not below the other class's patch
    ai = few_image_indices(np.array([16.0, 24.0, 20.0]), np.array([160.0, 160.0, 160.0]))
    assert ai.max() < 0.5
    # unknown reference or size: no index; no other class measured: the natural ratio alone
    assert np.isnan(few_image_indices(np.array([4.0, np.nan]), np.array([np.nan, 8.0]))).all()
    assert few_image_indices(np.array([4.0, np.nan]), np.array([64.0, 8.0]))[0] == pytest.approx(4.0)
