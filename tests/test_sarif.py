"""SARIF 2.1.0 output: valid against the OASIS schema, graded by the policy, and wired into the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import onnx
import pytest

from tests import zoo
from onnxguard.cli import main
from onnxguard.formats.sarif import SarifFormat, render
from onnxguard.policy import load_policy
from onnxguard.scan import ScanOptions, run_scan

DATA = Path(__file__).parent / "data"
SCHEMA = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    params, *_ = zoo.digits_mlp(hidden=(16,), epochs=60)
    path = tmp_path_factory.mktemp("sarif") / "digits.onnx"
    onnx.save(zoo.mlp_to_onnx(params, (1, 8, 8)), str(path))
    return path


def _scan(model: Path, policy: str):
    return run_scan(ScanOptions(model_path=model, policy=load_policy(str(DATA / "policies" / f"{policy}.toml"))))


def _validate(doc: dict) -> None:
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft4Validator)


def test_failing_report_is_valid_sarif_with_error_results(tiny_model: Path) -> None:
    report = _scan(tiny_model, "tiny-strict")
    assert report.summary and report.summary.verdict == "fail"
    doc = json.loads(render(report))
    _validate(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["evasion/square-linf"]
    assert rules[0]["properties"]["security-severity"] == "9.5"
    (res,) = run["results"]
    assert (res["kind"], res["level"], res["ruleIndex"]) == ("fail", "error", 0)
    assert res["properties"]["risk"] == "critical"
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == tiny_model.as_posix()
    assert run["properties"]["verdict"] == "fail"
    assert run["properties"]["policy"]["sha256"] == report.policy.sha256
    assert run["artifacts"][0]["hashes"]["sha-256"] == report.model.sha256


def test_passing_report_keeps_pass_results(tiny_model: Path) -> None:
    report = _scan(tiny_model, "tiny-pass")
    doc = SarifFormat().document(report)
    _validate(doc)
    (res,) = doc["runs"][0]["results"]
    assert (res["kind"], res["level"]) == ("pass", "none")


def test_summary_only_grades_become_results(tiny_model: Path) -> None:
    """The shipped baseline policy grades a backdoor search that did not run: that grade must show."""
    report = _scan(tiny_model, "tiny-pass")
    report.summary.reasons.append("backdoor: medium -> warn (insufficient evidence: backdoor search was not run)")
    doc = SarifFormat().document(report)
    _validate(doc)
    assert any(r["ruleId"] == "backdoor" and r["level"] == "warning" for r in doc["runs"][0]["results"])


def test_cli_sarif_to_stdout_keeps_humans_on_stderr(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scan", str(tiny_model), "--policy", str(DATA / "policies" / "tiny-strict.toml"), "--format", "sarif", "-q"])
    cap = capsys.readouterr()
    assert code == 1
    _validate(json.loads(cap.out))
    assert "verdict FAIL" in cap.err


def test_cli_sarif_to_file(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scan.sarif"
    code = main(["scan", str(tiny_model), "--policy", str(DATA / "policies" / "tiny-pass.toml"), "--format", "sarif", "--out", str(out), "-q"])
    assert code == 0
    _validate(json.loads(out.read_text(encoding="utf-8")))
    assert "verdict PASS" in capsys.readouterr().out


def test_cli_rejects_unknown_format(tiny_model: Path) -> None:
    assert main(["scan", str(tiny_model), "--format", "xml", "-q"]) == 2


# -- CI gates: the pre-commit hook / GitHub Action driver --------------------


def test_precommit_scans_each_file_and_fails_by_the_worst_verdict(tiny_model: Path, tmp_path: Path) -> None:
    from onnxguard.ci import precommit, split_args

    other = tmp_path / "copy.onnx"
    other.write_bytes(tiny_model.read_bytes())
    sarif = tmp_path / "ci.sarif"
    strict = str(DATA / "policies" / "tiny-strict.toml")
    assert split_args(["--policy", strict, "--sarif", str(sarif), str(tiny_model), str(other)]) == (["--policy", strict], [str(tiny_model), str(other)], sarif)
    assert precommit(["--policy", str(DATA / "policies" / "tiny-pass.toml"), "-q", str(tiny_model)]) == 0
    assert precommit(["--policy", strict, "-q", "--sarif", str(sarif), str(tiny_model), str(other)]) == 1
    doc = json.loads(sarif.read_text(encoding="utf-8"))
    _validate(doc)
    assert [r["properties"]["verdict"] for r in doc["runs"]] == ["fail", "fail"]
    assert precommit([]) == 0
    assert precommit(["--sarif", str(sarif)]) == 0  # nothing changed: an empty, valid log for the upload step
    _validate(json.loads(sarif.read_text(encoding="utf-8")))


def test_action_and_hook_definitions_call_the_driver() -> None:
    yaml = pytest.importorskip("yaml")
    root = Path(__file__).parent.parent
    (hook,) = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["entry"] == "onnxguard-precommit" and hook["files"] == r"\.onnx$"
    action = yaml.safe_load((root / "action.yml").read_text(encoding="utf-8"))
    assert action["runs"]["using"] == "composite"
    assert any("onnxguard-precommit" in (s.get("run") or "") for s in action["runs"]["steps"])
