"""`onnxguard report diff`: what changed between two reports of a model."""

from __future__ import annotations

import json

import pytest

from onnxguard.cli import main
from onnxguard.diff import diff_reports, format_text
from onnxguard.report import Rate, StaticFinding, load_report
from tests import report_fixtures as rf
from tests.conftest import EXAMPLE_DATA, EXAMPLE_MODEL


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("diff")
    pol = rf.write_policy(d / "p.toml", rf.FAILING_POLICY)
    old = rf.scan(EXAMPLE_MODEL, EXAMPLE_DATA, pol, d / "old")
    return d, old


def test_identical_reports_have_no_changes(pair):
    _, old = pair
    d = diff_reports(old, old.model_copy(deep=True))
    assert d.changes == [] and d.regressions == []
    assert "no changes" in format_text(d)


def test_moves_beyond_and_within_intervals(pair):
    _, old = pair
    new = old.model_copy(deep=True)
    c = old.checks[1]
    s, n = c.success_rate.successes, c.success_rate.n
    new.checks[1].success_rate = Rate.of(0, n)  # a retrained, robust model: far outside the old interval
    new.checks[0].success_rate = Rate.of(max(0, old.checks[0].success_rate.successes - 1), old.checks[0].success_rate.n)  # noise
    d = diff_reports(old, new)
    by = {ch.what: ch for ch in d.changes}
    big = by[f"{c.id} attack success rate"]
    assert big.direction == "better" and big.significant is (s > 3)
    if old.checks[0].success_rate.successes > 0:
        small = by[f"{old.checks[0].id} attack success rate"]
        assert small.direction == "better" and not small.significant
    text = format_text(d)
    assert "figures that moved beyond their 95% intervals" in text and "within the noise" in text


def test_regressions_and_exit_code(pair, tmp_path, capsys):
    d0, old = pair
    new = old.model_copy(deep=True)
    old2 = old.model_copy(deep=True)
    old2.summary.verdict = "pass"
    old2.summary.highest_risk = "low"
    old2.checks[1].risk = "low"
    old2.checks[1].success_rate = Rate.of(0, old.checks[1].success_rate.n)
    new.static_findings.append(StaticFinding(id="external-data", severity="high", title="external data outside the model folder", detail="x", location="../w.bin"))
    new.model.sha256 = "0" * 64
    d = diff_reports(old2, new)
    whats = {c.what for c in d.regressions}
    assert {"verdict", "highest risk", f"{old.checks[1].id} risk", "static finding external-data"} <= whats
    assert any(c.kind == "identity" and c.what == "model sha256" for c in d.changes)
    a, b = tmp_path / "old.json", tmp_path / "new.json"
    old2.write(a)
    new.write(b)
    assert main(["report", "diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "verdict" in out and "pass -> fail  WORSE" in out and "regression(s)" in out
    assert main(["report", "diff", str(a), str(b), "--fail-on-regression"]) == 1
    capsys.readouterr()
    assert main(["report", "diff", str(a), str(b), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["regressions"] == len(d.regressions) and doc["new"]["verdict"] == "fail"
    assert main(["report", "diff", str(b), str(a), "--fail-on-regression"]) == 0
    assert main(["report", "diff", str(a), str(b), "--format", "xml"]) == 2


def test_different_settings_are_flagged_as_not_comparable(pair, tmp_path):
    d0, old = pair
    other = rf.scan(EXAMPLE_MODEL, EXAMPLE_DATA, rf.write_policy(tmp_path / "p.toml", rf.PASSING_POLICY), tmp_path / "o")
    d = diff_reports(old, other)
    kinds = {(c.kind, c.what) for c in d.changes}
    assert ("comparability", "policy") in kinds
    assert ("comparability", "square-linf settings") in kinds
    assert ("check", "check square-l2") in kinds
    again = load_report(old.to_json())
    assert diff_reports(old, again).changes == []


def test_json_output_has_no_infinity(pair):
    import numpy as np

    from onnxguard.report import Quantity

    _, old = pair
    a, b = old.model_copy(deep=True), old.model_copy(deep=True)
    a.checks[0].min_perturbation = Quantity.of(np.array([0.01, 0.02, 0.02, 0.03, 0.03]))
    b.checks[0].min_perturbation = Quantity.of(np.array([0.05, 0.06, 0.07, np.inf, np.inf]))
    d = diff_reports(a, b)
    text = d.to_json()
    assert "Infinity" not in text and "NaN" not in text
    ch = next(c for c in json.loads(text)["changes"] if "smallest perturbation" in c["what"] or "smallest breaking" in c["what"])
    assert ch["direction"] == "better" and ch["new"]["ci"][1] is None
