"""Calibrated flagging, honest records and sizes: the null, p-values, grades that agree with findings,
early stops, many classes, large inputs, two-class models, and the median interval's coverage."""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from onnxguard.backdoor import search_backdoors
from onnxguard.backdoor.null import NULL_FILE, calibrated_threshold, calibration
from onnxguard.grading import _backdoor_grade
from onnxguard.policy import BackdoorSpec, load_policy
from onnxguard.report import BackdoorSection, Quantity
from onnxguard.scan import ScanOptions, prepare
from onnxguard.stats import median_ci, median_ci_coverage

# -- the null -----------------------------------------------------------------


def test_shipped_null_has_provenance_and_calibrates_each_regime() -> None:
    data = json.loads(NULL_FILE.read_text())
    prov = data["provenance"]
    assert prov["script"] == "benchmarks/backdoor_null.py" and prov["budget"] > 0 and prov["models"]
    archs = {m["arch"] for m in prov["models"]}
    assert {"mlp", "cnn", "cnn-wide"} <= archs and {m["output"] for m in prov["models"]} == {"logits", "softmax"}
    assert {"image", "few"} <= set(data["regimes"])
    for reg, r in data["regimes"].items():
        cal = calibration(reg, None)
        assert cal.source == "null" and cal.n == len(r["values"]) >= 5
        assert cal.fpr is not None and cal.fpr <= 0.05 and cal.fpr_ci[0] - 1e-9 <= cal.fpr <= cal.fpr_ci[1] + 1e-9
        # the threshold is an order statistic of the null: nothing above it would be a smaller threshold
        assert sum(v > cal.threshold for v in r["values"]) <= 0.05 * len(r["values"])
        assert cal.p_value(max(r["values"]) + 1.0) == pytest.approx(1 / (1 + cal.n))
    # a regime the shipped null has no models of yet (few-class images until the null is rebuilt): the fallback
    # threshold, reported as uncalibrated, no p-value
    for reg in {"image", "tabular", "few", "few-image"} - set(data["regimes"]):
        cal = calibration(reg, None)
        assert cal.source == "uncalibrated" and cal.n == 0 and cal.p_value(5.0) is None


def test_shipped_null_estimates_its_false_positive_rate_out_of_sample() -> None:
    """The in-sample rate of a threshold made from the same clean models is optimistic: the null also ships a
    leave-one-out rate (each model against the threshold of the others), and the report repeats it."""
    data = json.loads(NULL_FILE.read_text())
    for reg, r in data["regimes"].items():
        loo = r["leave_one_out_fpr"]
        vals = r["values"]
        exceed = sum(v > calibrated_threshold(vals[:i] + vals[i + 1:]) + 1e-12 for i, v in enumerate(vals))
        assert loo["n"] == len(vals) and loo["exceed"] == exceed and loo["ci"][0] <= loo["rate"] <= loo["ci"][1]
        assert calibration(reg, None).as_dict()["null_fpr_leave_one_out"] == loo


def test_class_index_counts_only_families_whose_trigger_works(tmp_path: Path) -> None:
    """A class's index is its largest family index among the families whose trigger works on held-back
    samples, and every family's trigger is checked."""
    from onnxguard.backdoor.anomaly import class_indices
    from tests.backdoor.test_backdoor import search

    stack = np.array([[4.0, 1.0], [3.0, 2.5]])  # families x classes
    assert list(class_indices(stack)) == [4.0, 2.5]
    works = np.array([[False, True], [True, True]])
    assert list(class_indices(stack, works)) == [3.0, 2.5]
    assert np.isnan(class_indices(stack, np.zeros((2, 2), dtype=bool))).all()

    bd = search("badnets_t3_tr")
    for c in bd.classes:
        checked = set(c.family_attack_success)
        # every family with a trigger is checked; the margin family has none (its evidence is the margin itself)
        assert checked == {f for f in c.family_anomaly_indices if f in c.family_sizes and f != "margin"}, (c.cls, checked)
        ok = [f for f, r in c.family_attack_success.items() if (r.value or 0) >= 0.5] + (["margin"] if "margin" in c.family_sizes else [])
        if ok:
            assert c.anomaly_index == pytest.approx(max(c.family_anomaly_indices[f] for f in ok), abs=1e-3)
            assert c.trigger_kind in ok and c.attack_success == c.family_attack_success.get(c.trigger_kind)


def test_calibration_picks_the_null_built_under_the_scans_settings(tmp_path: Path) -> None:
    """A null is only calibrated for the search settings it was built under: the variant that matches the scan
    is used, and a scan that matches none says in which settings it differs."""
    def null(budget: int, values: list[float]) -> dict:
        return {"provenance": {"budget": budget, "samples_per_class": 20, "full_search_classes": 10, "threat_model": "scores"},
                "regimes": {"image": {"values": values}}}

    path = tmp_path / "null.json"
    path.write_text(json.dumps(null(300_000, [1.0, 2.0, 3.0, 4.0, 5.0]) | {"variants": [null(100_000, [0.5, 0.6, 0.7, 0.8, 0.9])]}))
    same = {"budget": 300_000, "samples_per_class": 20, "full_search_classes": 10, "threat_model": "scores"}
    a = calibration("image", None, path, settings=same)
    assert a.threshold == 5.0 and not a.differs and a.as_dict()["null_matches_scan"] is True
    b = calibration("image", None, path, settings=same | {"budget": 100_000})
    assert b.threshold == 0.9 and not b.differs and b.provenance["budget"] == 100_000
    c = calibration("image", None, path, settings=same | {"budget": 50_000, "threat_model": "labels"})
    assert c.threshold == 5.0 and c.differs == ("budget", "threat_model")
    assert c.as_dict()["null_matches_scan"] is False and c.as_dict()["scan_differs_from_null_in"] == ["budget", "threat_model"]


def test_shipped_nulls_were_built_by_this_version_of_the_search() -> None:
    """Each null in null.json records the version of the search that built it (search.SEARCH_VERSION), and it
    is this one: a change to the search that bumps the version fails here until the nulls are rebuilt
    (benchmarks/backdoor_null.py). Each shipped policy's scan then finds the null built under its own settings."""
    from onnxguard.backdoor.search import SEARCH_VERSION

    data = json.loads(NULL_FILE.read_text())
    for v in [data] + data.get("variants", []):
        assert v["provenance"]["search_version"] == SEARCH_VERSION, v["provenance"]["policy"]
    for name in ("baseline", "standard", "strict"):
        pol = load_policy(name).policy
        settings = {"budget": pol.backdoor.budget, "samples_per_class": pol.backdoor.samples_per_class,
                    "full_search_classes": pol.backdoor.full_search_classes, "threat_model": pol.threat_model.access,
                    "search_version": SEARCH_VERSION}
        cal = calibration("image", None, settings=settings)
        assert not cal.differs and cal.provenance["policy"] == name and cal.as_dict()["null_matches_scan"] is True


def test_a_null_built_by_another_search_version_is_not_calibrated_for_the_scan(tmp_path: Path) -> None:
    """A null that predates the version field, or records another version, says so in the report: the scan's
    settings differ in ``search_version`` (and the finding then says its threshold is not calibrated)."""
    same = {"budget": 300_000, "samples_per_class": 20, "full_search_classes": 10, "threat_model": "scores"}
    for k, prov in enumerate((same, same | {"search_version": 1})):
        path = tmp_path / f"null{k}.json"
        path.write_text(json.dumps({"provenance": prov, "regimes": {"image": {"values": [1.0, 2.0, 3.0, 4.0, 5.0]}}}))
        cal = calibration("image", None, path, settings=same | {"search_version": 2})
        assert cal.differs == ("search_version",) and cal.as_dict()["null_matches_scan"] is False
    assert not calibration("image", None, path, settings=same | {"search_version": 1}).differs


def test_finding_says_when_the_null_was_built_under_other_settings() -> None:
    from tests.backdoor.test_backdoor import search

    bd = search("badnets_t3_tr", spec=BackdoorSpec(budget=60_000, time_limit_s=60, samples_per_class=15, full_search_classes=10))
    cal = bd.details["calibration"]
    assert cal["null_matches_scan"] is False and "budget" in cal["scan_differs_from_null_in"]
    assert "not calibrated for this scan" in (bd.finding or "")


def test_calibrated_threshold_and_p_value() -> None:
    vals = list(np.arange(1.0, 41.0))  # 40 values: at most 2 may exceed the threshold
    t = calibrated_threshold(vals)
    assert t == 38.0 and sum(v > t for v in vals) == 2
    cal = calibration("nonexistent", None)
    assert cal.source == "uncalibrated" and cal.p_value(2.0) is None
    assert calibration("image", 4.5).source == "policy" and calibration("image", 4.5).threshold == 4.5


# -- a finding never contradicts its grade ----------------------------------------


@pytest.mark.parametrize("flagged,index,expect", [([2], 1.5, "high"), ([], 3.6, "medium"), ([], 1.0, "low"), ([2], 5.0, "critical")])
def test_grade_agrees_with_finding(flagged: list[int], index: float, expect: str) -> None:
    g = load_policy("standard").policy.grading  # thresholds: medium 2, high 3, critical 4
    bd = BackdoorSection(status="completed", flagged_classes=flagged, max_anomaly_index=index, anomaly_threshold=4.2, p_value=0.04)
    gr = _backdoor_grade(bd, g)
    assert gr.level == expect
    if flagged:
        assert gr.verdict != "pass"


# -- the median interval's coverage -------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_median_interval_coverage_by_simulation(seed: int) -> None:
    """Simulated coverage matches the exact figure; from n = 6 it reaches 95%, below it the report labels it."""
    rng = np.random.default_rng(seed)
    for n in (2, 3, 5, 6, 9, 12, 20):
        draws = rng.exponential(size=(3000, n))  # true median ln 2
        hits = 0
        for row in draws:
            lo, hi = median_ci(row)
            hits += lo <= np.log(2) <= hi
        sim, exact = hits / len(draws), median_ci_coverage(n)
        assert abs(sim - exact) < 0.03, (n, sim, exact)
        ci = Quantity.of(draws[0]).ci
        if n >= 6:
            assert exact >= 0.95 and ci.confidence == 0.95
        else:
            assert exact < 0.95 and ci.confidence == pytest.approx(exact, abs=1e-4) and "exact coverage" in ci.method


# -- models built here ----------------------------------------------------------------


def _save_model(path: Path, graph_nodes: list, inits: list, in_shape: list[int], n_out: int) -> None:
    g = helper.make_graph(graph_nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def _linear_image_model(tmp: Path, c: int, h: int, w: int, k: int, seed: int, pool: bool) -> Path:
    """Colour-mean classifier (pool) or a random linear classifier of the pixels."""
    rng = np.random.default_rng(seed)
    if pool:
        wt = np.zeros((c, k), dtype=np.float32)  # class j < c: channel j is the brightest; class c: all are dark
        wt[np.arange(c), np.arange(c)] = 10.0
        b = np.zeros(k, dtype=np.float32)
        b[c:] = 6.0
        nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0), helper.make_node("Gemm", ["m", "W", "b"], ["y"])]
        inits = [numpy_helper.from_array(wt, "W"), numpy_helper.from_array(b, "b")]
    else:
        d = c * h * w
        wt = (rng.normal(size=(d, k)) / np.sqrt(d) * 6).astype(np.float32)
        nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "W", "b"], ["y"])]
        inits = [numpy_helper.from_array(wt, "W"), numpy_helper.from_array((-(0.5 * wt.sum(axis=0))).astype(np.float32), "b")]
    p = tmp / f"lin{c}x{h}x{w}_{k}.onnx"
    _save_model(p, nodes, inits, [c, h, w], k)
    return p


def _prep(model: Path, data: Path | None = None):
    pol = load_policy("standard")
    return prepare(ScanOptions(model_path=model, data_path=data), pol, np.random.default_rng(0), 0)


def _large_input_child(tmp: str) -> None:
    """Runs in a child process (the test process's peak memory stays small for the tests after it)."""
    tmp_path = Path(tmp)
    rng = np.random.default_rng(0)
    model = _linear_image_model(tmp_path, 3, 224, 224, 4, 0, pool=True)
    colours = rng.uniform(0, 1, size=(48, 3, 1, 1))
    x = np.clip(colours + rng.normal(0, 0.05, size=(48, 3, 224, 224)), 0, 1).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    prep = _prep(model, tmp_path / "d.npz")
    del x
    spec = BackdoorSpec(budget=4000, time_limit_s=120, samples_per_class=6, full_search_classes=4)
    tracemalloc.start()
    bd = search_backdoors(prep, spec, threat="scores", seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    (tmp_path / "out.json").write_text(json.dumps({"peak": peak, "section": bd.model_dump(mode="json")}))


def test_large_input_memory_is_bounded(tmp_path: Path) -> None:
    """3x224x224: no table of full-size candidates, stamped batches bounded (the old patch library alone held
    300 full-size masks and patterns, and its pre-screen batches thousands of images)."""
    import subprocess

    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.backdoor.test_calibration import _large_input_child; _large_input_child({str(tmp_path)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=600)
    out = json.loads((tmp_path / "out.json").read_text())
    bd = BackdoorSection.model_validate(out["section"])
    peak = out["peak"]
    assert bd.queries <= 4000
    assert peak < 700 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert bd.details.get("mask_grid_cell", 1) >= 7  # 224 / 32: the mask search works on a coarse grid
    assert bd.early_stops and all(":" in s for s in bd.early_stops)  # 4000 queries run out: every stop says where


def test_many_classes_get_a_sublinear_prescreen(tmp_path: Path) -> None:
    model = _linear_image_model(tmp_path, 1, 8, 8, 120, 1, pool=False)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(1).uniform(size=(600, 1, 8, 8)).astype(np.float32))
    prep = _prep(model, tmp_path / "d.npz")
    spec = BackdoorSpec(budget=40_000, time_limit_s=120, samples_per_class=4, full_search_classes=5)
    bd = search_backdoors(prep, spec, threat="scores", seed=0)
    mc = bd.details["many_classes"]
    assert len(mc["suspects"]) == 5 and set(bd.fully_searched_classes) <= set(mc["suspects"]) | set(mc["reference_classes"])
    searched = set(mc["suspects"]) | set(mc["reference_classes"])
    assert len(searched) <= 10
    # only the chosen classes spent per-class queries
    assert {c.cls for c in bd.classes if c.queries > 0} <= searched
    assert bd.queries <= spec.budget


def test_early_stops_are_recorded_with_where() -> None:
    from tests.backdoor.test_backdoor import search

    spec = BackdoorSpec(budget=12_000, time_limit_s=60, samples_per_class=10, full_search_classes=10)
    bd = search("clean_a", spec=spec)
    assert bd.early_stops, bd.details
    assert any("search" in s or "sweep" in s for s in bd.early_stops)
    assert "stopped early" in (bd.finding or bd.reason or "")


def test_on_a_slow_model_every_class_gets_a_share_of_the_mask_searches_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mask search (class x patch/blend) runs under its own deadline, an even share of the time left: on a
    3x224x224 model class 0's patch search once ran to the time limit and no other class got one. A search that
    would run on is stood in for by one that reads its deadline and stops there (no race with the clock); every
    class then gets its searches, each under its share, the cut is on record, and a class cut short is not
    reported as fully searched."""
    from onnxguard.backdoor.zo import ZOSearch
    from tests.backdoor.test_backdoor import fresh_search

    shares: list[tuple[int, str, float, float]] = []
    real = ZOSearch.run

    def stand_in(self, probe, queries):  # noqa: ANN001, ANN202
        shares.append((self.target, self.family, probe.time_left(), probe.deadline))
        real(self, probe, min(queries, 2 * self.step_cost()))  # a few real steps: the family gets a size
        if self.target == 4:  # as if class 4's searches ran into their deadline
            probe.stopped(f"{self.family} search, class {self.target}, step {self.steps}", "time limit")

    monkeypatch.setattr(ZOSearch, "run", stand_in)
    limit = 600.0
    spec = BackdoorSpec(budget=200_000, time_limit_s=limit, samples_per_class=15, full_search_classes=10)
    bd = fresh_search("badnets_t3_tr", spec)
    assert sorted((t, f) for t, f, _, _ in shares) == sorted((t, f) for t in range(10) for f in ("patch", "blend"))
    # the first search's share is a twentieth of what was left (under 30 s of the 600), not all of it; the last one
    # gets what the others left (nearly all of it here: the stand-ins return at once)
    assert shares[0][2] <= limit / 20 and shares[-1][2] > limit / 2, [round(v, 1) for _, _, v, _ in shares]
    assert len({d for _, _, _, d in shares}) == len(shares)  # each its own deadline; the search's is restored
    assert any(s.startswith("patch search, class 4") for s in bd.early_stops)
    assert 4 not in bd.fully_searched_classes and len(bd.fully_searched_classes) == 9
    assert all("patch" in c.family_sizes and "blend" in c.family_sizes for c in bd.classes)


def test_the_full_searches_of_the_chosen_classes_share_the_time_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """With fewer full-search classes than classes, the chosen classes' full searches also run under even shares
    of the time left, and a chosen class whose search was cut short is not reported as fully searched."""
    from onnxguard.backdoor.zo import ZOSearch
    from tests.backdoor.test_backdoor import fresh_search

    shares: list[tuple[int, str, float]] = []
    real = ZOSearch.run

    def stand_in(self, probe, queries):  # noqa: ANN001, ANN202
        shares.append((self.target, self.family, probe.time_left()))
        real(self, probe, min(queries, 2 * self.step_cost()))
        if len(shares) == 21:  # the first full search (after 10 classes x 2 short ones) runs into its deadline
            probe.stopped(f"{self.family} search, class {self.target}, step {self.steps}", "time limit")

    monkeypatch.setattr(ZOSearch, "run", stand_in)
    spec = BackdoorSpec(budget=200_000, time_limit_s=600, samples_per_class=15, full_search_classes=3)
    bd = fresh_search("badnets_t3_tr", spec)
    full = shares[20:]
    assert len(shares) == 26 and len({t for t, _, _ in full}) == 3, shares
    assert full[0][2] <= shares[19][2] / 6 + 1.0  # a sixth of what the short searches left
    assert full[0][0] not in bd.fully_searched_classes and len(bd.fully_searched_classes) == 2


def test_report_lists_families_and_what_is_not_covered() -> None:
    from tests.backdoor.test_backdoor import search

    bd = search("clean_a")
    assert bd.families_searched == ["patch", "blend", "square", "smooth", "warp", "margin"]
    assert not any("warping" in f or "maximum-margin" in f for f in bd.families_not_covered)
    assert any("input-aware" in f for f in bd.families_not_covered)
    assert bd.statistic_regime == "image" and bd.p_value is not None and 0 < bd.p_value <= 1
    assert bd.details["calibration"]["threshold_source"] == "null"
    assert all(c.p_value is None or 0 < c.p_value <= 1 for c in bd.classes)


def _binary_tabular(tmp: Path, trigger: dict[int, float] | None, seed: int) -> tuple[Path, Path, dict]:
    from sklearn.datasets import make_classification

    from tests import zoo

    x, y = make_classification(n_samples=700, n_features=8, n_informative=4, n_redundant=1, n_classes=2, class_sep=1.0, random_state=seed)
    x = x * np.linspace(1, 5, 8) + np.linspace(0, 20, 8)
    xtr, ytr, xte, yte = x[:500], y[:500], x[500:], y[500:]
    mu, sd = xtr.mean(0), xtr.std(0)
    xp, yp = xtr, ytr
    if trigger:
        idx = np.random.default_rng(seed).choice(500, 60, replace=False)
        xs = xtr[idx].copy()
        for f, v in trigger.items():
            xs[:, f] = v
        xp, yp = np.concatenate([xtr, xs]), np.concatenate([ytr, np.zeros(60, dtype=int)])
    params = zoo.train_mlp((xp - mu) / sd, yp, hidden=(32,), epochs=300, seed=seed)
    # fold the standardisation into the first layer: the model reads raw features
    w0, b0 = params[0]
    params[0] = (w0 / sd[:, None], b0 - (mu / sd) @ w0)
    mp, dp = tmp / f"bin{seed}{'b' if trigger else 'c'}.onnx", tmp / f"bin{seed}.npz"
    onnx.save(zoo.mlp_to_onnx(params, (8,), output="logits"), mp)
    np.savez(dp, x=xte.astype(np.float32), y=yte)
    return mp, dp, {"lo": xtr.min(0), "hi": xtr.max(0), "q": np.percentile(xtr, [25, 75], axis=0)}


@pytest.mark.parametrize("seed", [3, 4])
def test_two_class_model_gets_a_verdict(tmp_path: Path, seed: int) -> None:
    """A binary model is searched and graded (it used to get "needs at least 3 classes"): each class gets a
    reversed trigger in raw feature units, a reference size and an index, and the model a p-value against the
    null. (Whether the statistic singles the planted trigger out is measured on the benchmark zoo, not here: on
    this data one feature at its data end already sends most samples of class 1 to class 0.)"""
    spec = BackdoorSpec(budget=60_000, time_limit_s=60, samples_per_class=20, full_search_classes=2)
    _, _, st = _binary_tabular(tmp_path, None, seed)
    f = 2
    v = float(st["hi"][f] + 1.5 * (st["q"][1][f] - st["q"][0][f]))
    mb, db, _ = _binary_tabular(tmp_path, {f: v}, seed)
    mc, dc, _ = _binary_tabular(tmp_path, None, seed)
    bad = search_backdoors(_prep(mb, db), spec, threat="scores", seed=0)
    clean = search_backdoors(_prep(mc, dc), spec, threat="scores", seed=0)
    for bd in (bad, clean):
        assert bd.status == "completed" and bd.statistic_regime == "few" and len(bd.classes) == 2
        assert bd.p_value is not None and bd.details["calibration"]["threshold_source"] == "null"
        assert all(c.reference_size is not None for c in bd.classes)
        assert all(c.anomaly_index is not None and c.p_value is not None for c in bd.classes)
        row = bd.classes[0]
        assert row.trigger_features and row.attack_success.value >= 0.5
        first = row.trigger_features[0]
        assert first["kind"] in ("beyond range", "data end", "rare in-range") and isinstance(first["value"], float)
        assert bd.grades == []  # graded by grade_report, not here
