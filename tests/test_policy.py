"""Policies: validation with clear messages, conservative grading, verdicts and exit codes."""

from __future__ import annotations

import pytest

from onnxguard.cli import main
from onnxguard.errors import PolicyError
from onnxguard.grading import grade_report
from onnxguard.grading import grade_rate
from onnxguard.policy import Thresholds, load_policy, parse_policy, shipped_policies
from onnxguard.report import LEVELS, VERDICTS, Rate
from onnxguard.scan import ScanOptions, run_scan
from tests.conftest import EXAMPLE_DATA, EXAMPLE_MODEL

BASE = """
[policy]
name = "t"
version = "1"
"""


def test_shipped_policies_exist_and_validate():
    assert {"baseline", "standard", "strict"} <= set(shipped_policies())
    for name in shipped_policies():
        lp = load_policy(name)
        assert lp.policy.name == name and len(lp.sha256) == 64 and lp.policy.checks


def test_repository_policies_are_the_shipped_ones():
    """``policies/`` (what users read and copy) and ``onnxguard/policies/`` (what the wheel ships and ``--policy
    NAME`` loads) hold the same files, byte for byte: an edit to one alone would make a signed report name a
    policy whose text differs from the one in the repository."""
    from pathlib import Path

    from onnxguard.policy import POLICY_DIR

    repo = Path(__file__).resolve().parents[1] / "policies"
    names = sorted(p.name for p in repo.glob("*.toml"))
    assert names == sorted(p.name for p in POLICY_DIR.glob("*.toml"))
    for n in names:
        assert (repo / n).read_bytes() == (POLICY_DIR / n).read_bytes(), n


def test_default_policy_is_standard():
    assert load_policy(None).policy.name == "standard"


@pytest.mark.parametrize("name", ["baseline", "standard", "strict"])
def test_each_shipped_policy_runs_on_the_example(name):
    rep = run_scan(ScanOptions(model_path=EXAMPLE_MODEL, data_path=EXAMPLE_DATA, policy=load_policy(name), budget=30, samples=12))
    assert rep.policy.name == name and rep.summary is not None
    assert all(c.risk is not None and c.grades for c in rep.checks)
    assert rep.summary.verdict in VERDICTS and rep.summary.highest_risk in LEVELS


BAD = [
    ("[policy]\nname='x'\nversion='1'\ncolour='red'\n", "policy.colour", "unknown key"),
    (BASE + "[[checks]]\nattack='square'\nnorm='linf'\nepsilon=-0.1\nbudget=10\n", "checks.0.epsilon", ">= 0"),
    (BASE + "[[checks]]\nattack='square'\nnorm='linf'\nepsilon=0.1\nbudget='many'\n", "checks.0.budget", "integer"),
    (BASE + "[[checks]]\nattack='square'\nnorm='linf'\nepsilon=0.1\n", "checks.0.budget", "missing"),
    (BASE + "[[checks]]\nattack='teleport'\nnorm='linf'\nepsilon=0.1\nbudget=10\n", "checks.0.attack", "square"),
    (BASE + "[[checks]]\nattack='square'\nnorm='l0'\nepsilon=2\nbudget=10\n", "checks.0", "norms"),
    (BASE + "[[checks]]\nattack='square'\nnorm='linf'\nepsilon=[0.3, 0.1]\nbudget=10\n", "checks.0.epsilon", "increasing"),
    (BASE + "[grading.attack_success_rate]\nworse='higher'\nmedium=0.5\nhigh=0.3\ncritical=0.9\n", "grading.attack_success_rate", "out of order"),
    (BASE + "[grading.verdicts]\nlow='pass'\nmedium='fail'\nhigh='warn'\ncritical='fail'\n", "grading.verdicts", "milder"),
    (BASE + "[threat_model]\naccess='telepathy'\n", "threat_model.access", "scores"),
    ("[policy]\nversion='1'\n", "policy.name", "missing"),
    ("[policy\nname=", "", "not valid TOML"),
]


@pytest.mark.parametrize("text,key,expect", BAD)
def test_bad_policy_names_file_and_key(tmp_path, capsys, text, key, expect):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(PolicyError) as ei:
        load_policy(str(p))
    msg = str(ei.value)
    assert str(p) in msg and key in msg and expect in msg
    assert main(["policy", "validate", str(p)]) == 2
    assert main(["scan", str(EXAMPLE_MODEL), "--policy", str(p)]) == 2
    assert key in capsys.readouterr().err


def test_json_policy_accepted(tmp_path):
    p = tmp_path / "p.json"
    p.write_text('{"policy": {"name": "j", "version": "2"}, "checks": [{"attack": "square", "norm": "l2", "epsilon": 0.5, "budget": 5}]}')
    assert load_policy(str(p)).policy.checks[0].norm == "l2"


def test_grading_uses_upper_bound_not_point_estimate():
    lp = parse_policy((BASE + "[grading.attack_success_rate]\nworse='higher'\nmedium=0.1\nhigh=0.3\ncritical=0.6\n").encode(), "t")
    thr = lp.policy.grading.attack_success_rate
    rate = Rate.of(1, 20)  # point 0.05 (below medium), upper bound ~0.24
    assert thr.level(rate.value) == "low"
    g = grade_rate("asr", rate, thr, lp.policy.grading)
    assert g.level == "medium" and g.graded_value == pytest.approx(rate.ci.high)
    big = Rate.of(50, 1000)  # same point estimate, tight interval
    assert grade_rate("asr", big, thr, lp.policy.grading).level == "low"


def test_lower_is_worse_thresholds_grade_on_lower_bound():
    thr = Thresholds(worse="lower", medium=0.95, high=0.9, critical=0.8)
    lp = load_policy("standard")
    g = grade_rate("clean_accuracy", Rate.of(97, 100), thr, lp.policy.grading)  # point 0.97, lower bound ~0.92
    assert g.level == "medium"


def test_check_that_cannot_run_is_graded_by_rule(tmp_path):
    p = tmp_path / "labels.toml"
    p.write_text(BASE + """
[threat_model]
access = "labels"
[[checks]]
attack = "sparse-rs"
norm = "l0"
epsilon = 2
samples = 5
budget = 10
[backdoor]
enabled = false
[grading.not_run]
level = "high"
verdict = "fail"
""")
    rep = run_scan(ScanOptions(model_path=EXAMPLE_MODEL, data_path=EXAMPLE_DATA, policy=load_policy(str(p))))
    chk = rep.checks[0]
    assert chk.status == "not_run" and "labels" in chk.reason
    assert chk.grades[0].level == "high" and chk.grades[0].verdict == "fail"
    assert "insufficient evidence" in chk.grades[0].rule
    assert rep.summary.verdict == "fail"
    assert any(nt.what == "check sparse-rs-l0" for nt in rep.not_tested)


def test_synthetic_refused_by_strict():
    assert main(["scan", str(EXAMPLE_MODEL), "--policy", "strict"]) == 2


def test_strict_is_never_milder_than_baseline_on_a_weak_model():
    order = []
    for name in ("baseline", "standard", "strict"):
        rep = run_scan(ScanOptions(model_path=EXAMPLE_MODEL, data_path=EXAMPLE_DATA, policy=load_policy(name), budget=100, samples=30))
        order.append(VERDICTS.index(rep.summary.verdict))
    assert order == sorted(order)
    assert order[-1] == VERDICTS.index("fail")


def test_fail_on_warn_changes_exit_code(tmp_path):
    p = tmp_path / "warn.toml"
    p.write_text(BASE + """
[[checks]]
attack = "square"
norm = "linf"
epsilon = 0.3
samples = 10
budget = 50
[backdoor]
enabled = false
[grading.verdicts]
low = "warn"
medium = "warn"
high = "warn"
critical = "warn"
""")
    args = ["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(p), "-q"]
    assert main(args) == 0
    assert main([*args, "--fail-on", "warn"]) == 1


def test_policy_commands(capsys):
    assert main(["policy", "list"]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "strict" in out
    assert main(["policy", "show", "strict"]) == 0
    assert "allow_synthetic = false" in capsys.readouterr().out
    assert main(["policy", "show", "nosuch"]) == 2


def test_regrading_is_idempotent():
    lp = load_policy("baseline")
    rep = run_scan(ScanOptions(model_path=EXAMPLE_MODEL, data_path=EXAMPLE_DATA, policy=lp, budget=20, samples=8))
    before = rep.summary.model_dump()
    grade_report(rep, lp)
    assert rep.summary.model_dump() == before
