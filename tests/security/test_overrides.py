"""Overrides can't pose as the policy: every command-line override becomes a recorded deviation,
and a deviating report never verifies as the named policy."""

from __future__ import annotations

import json

import pytest

from onnxguard import keys as K
from onnxguard import verify as V
from onnxguard.cli import main
from onnxguard.errors import PolicyError, VerificationError
from onnxguard.policy import apply_overrides, load_policy, parse_policy
from onnxguard.report import SCHEMA_VERSION, Report, load_report
from onnxguard.sandbox import run_isolated
from onnxguard.scan import ScanOptions

from .conftest import EXAMPLE_DATA, EXAMPLE_MODEL, TINY_PASS, TINY_POLICY


def test_apply_overrides_records_each_deviation():
    lp = load_policy("standard")
    eff = apply_overrides(lp, budget=1, samples=3, target=2, timeout_s=5, max_memory_mb=512, value_range=(0.0, 1.0))
    keys = {d.key: (d.policy_value, d.effective_value) for d in eff.deviations}
    assert keys["checks[square-linf].budget"] == (1000, 1)
    assert keys["checks[fd-pgd-linf].samples"] == (50, 3)
    assert keys["checks[square-l2].target"] == (None, 2)
    assert keys["limits.timeout_s"] == (lp.policy.limits.timeout_s, 5.0)
    assert keys["limits.max_memory_mb"] == (4096, 512)
    assert keys["threat_model.range"] == (None, [0.0, 1.0])
    assert all(c.budget == 1 and c.samples == 3 and c.target == 2 for c in eff.policy.checks)  # the checks read only this
    assert eff.sha256 == lp.sha256 and eff.effective_sha256 != lp.effective_sha256
    info = eff.info()
    assert info.effective_sha256 == eff.effective_sha256 and len(info.deviations) == len(eff.deviations)


def test_override_equal_to_the_policy_is_no_deviation_and_reapplying_keeps_the_original():
    lp = parse_policy(TINY_POLICY.encode(), "p.toml")
    assert apply_overrides(lp, budget=10, timeout_s=30).deviations == ()
    once = apply_overrides(lp, budget=1)
    twice = apply_overrides(once, budget=5)
    assert [(d.key, d.policy_value, d.effective_value) for d in twice.deviations] == [("checks[square-linf].budget", 10, 5)]
    assert apply_overrides(twice, budget=10).deviations == ()  # back to the policy's value
    assert apply_overrides(twice, budget=10).effective_sha256 == lp.effective_sha256


def test_impossible_override_is_a_policy_error():
    with pytest.raises(PolicyError, match="budget"):
        apply_overrides(load_policy("standard"), budget=10**9)


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("ovr")
    assert main(["keygen", "--out", str(d / "k")]) == 0
    out = {}
    for name, extra in (("clean", []), ("budget", ["--budget", "1"]), ("samples", ["--samples", "3"])):
        rc = main(["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(TINY_PASS), "-q", "--key", str(d / "k.pem"),
                   "--out", str(d / f"{name}.dsse.json"), "--json", str(d / f"{name}.json"), "--html", str(d / f"{name}.html"), *extra])
        assert rc in (0, 1)
        out[name] = d / name
    return d, out


@pytest.mark.parametrize("which,key", [("budget", "checks[square-linf].budget 20 -> 1"), ("samples", "checks[square-linf].samples 12 -> 3")])
def test_scan_with_an_override_does_not_verify_as_the_named_policy(signed, which, key, capsys):
    d, out = signed
    pub = str(d / "k.pub.pem")
    capsys.readouterr()
    assert main(["verify", str(d / "clean.dsse.json"), "--key", pub, "--policy", str(TINY_PASS), "--require-verdict", "pass"]) == 0
    capsys.readouterr()
    assert main(["verify", str(d / f"{which}.dsse.json"), "--key", pub, "--policy", str(TINY_PASS), "--require-verdict", "pass"]) == 1
    text = capsys.readouterr().out
    assert "policy        FAILED" in text and "report deviates from 'tiny-pass'" in text and key in text
    with pytest.raises(VerificationError) as e:
        V.verify_envelope(json.loads((d / f"{which}.dsse.json").read_text()), [K.load_public_key(pub)], policy=str(TINY_PASS))
    assert e.value.check == "policy"


def test_report_and_page_show_the_deviation(signed):
    d, _ = signed
    r = load_report((d / "budget.json").read_text())
    assert r.schema_version == SCHEMA_VERSION
    assert [(x.key, x.policy_value, x.effective_value) for x in r.policy.deviations] == [("checks[square-linf].budget", 20, 1)]
    assert r.policy.effective_sha256 and r.policy.effective_sha256 != load_policy(str(TINY_PASS)).effective_sha256
    html = (d / "budget.html").read_text()
    assert "DEVIATES FROM THE POLICY" in html and "checks[square-linf].budget" in html
    clean = load_report((d / "clean.json").read_text())
    assert clean.policy.deviations == [] and clean.policy.effective_sha256 == load_policy(str(TINY_PASS)).effective_sha256
    assert "DEVIATES FROM THE POLICY" not in (d / "clean.html").read_text()


def test_text_summary_shows_the_deviation(capsys, tmp_path):
    rc = main(["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(TINY_PASS), "-q", "--budget", "2", "--no-sandbox"])
    assert rc in (0, 1)
    out = capsys.readouterr().out
    assert "DEVIATES from policy 'tiny-pass'" in out and "checks[square-linf].budget: 20 -> 2" in out


def test_limits_override_is_a_deviation_and_reaches_the_sandboxed_report(tiny, tiny_policy):
    eff = apply_overrides(load_policy(str(tiny_policy)), timeout_s=25, budget=4)
    r = run_isolated(ScanOptions(model_path=tiny, policy=eff)).report
    keys = {x.key for x in r.policy.deviations}
    assert keys == {"limits.timeout_s", "checks[square-linf].budget"}
    assert r.checks[0].queries.budget_per_sample == 4
    assert r.policy.effective_sha256 == eff.effective_sha256


def test_library_overrides_in_scan_options_are_deviations_too(tiny, tiny_policy):
    from onnxguard.scan import run_scan

    r = run_scan(ScanOptions(model_path=tiny, policy=load_policy(str(tiny_policy)), budget=3))
    assert [x.key for x in r.policy.deviations] == ["checks[square-linf].budget"]


def test_pre_1_2_reports_load_but_do_not_verify_as_a_policy(signed):
    d, _ = signed
    doc = json.loads((d / "clean.json").read_text())
    doc["schema_version"] = "1.1"
    del doc["policy"]["deviations"], doc["policy"]["effective_sha256"]
    old = load_report(doc)
    assert isinstance(old, Report) and old.policy.deviations == [] and old.policy.effective_sha256 is None
    with pytest.raises(VerificationError, match="does not record its effective policy"):
        V._check_policy(old, str(TINY_PASS), None)


def test_sarif_carries_the_deviation_and_stays_valid(signed):
    from onnxguard.formats.sarif import SarifFormat
    from tests.test_sarif import _validate

    d, _ = signed
    doc = SarifFormat().document(load_report((d / "budget.json").read_text()))
    _validate(doc)
    run = doc["runs"][0]
    assert run["properties"]["policy"]["deviations"][0]["key"] == "checks[square-linf].budget"
    note = run["invocations"][0]["toolConfigurationNotifications"][0]
    assert note["level"] == "warning" and "deviates from policy 'tiny-pass'" in note["message"]["text"]
