"""Results survive: a check that crashes becomes `failed` with its reason, graded by the policy's
not_run rule, and the other checks keep their figures, in process and when the sandbox child dies."""

from __future__ import annotations

import dataclasses
import stat
import sys
from pathlib import Path


from onnxguard.attacks import ATTACKS
from onnxguard.policy import parse_policy
from onnxguard.sandbox import SandboxLimits, run_isolated
from onnxguard.scan import ScanOptions, run_scan

POLICY = parse_policy(
    b'[policy]\nname = "survive"\nversion = "1"\n'
    b'[[checks]]\nid = "first"\nattack = "square"\nnorm = "linf"\nepsilon = 0.3\nsamples = 12\nbudget = 40\n'
    b'[[checks]]\nid = "crashes"\nattack = "fd-pgd"\nnorm = "linf"\nepsilon = 0.3\nsamples = 12\nbudget = 40\n'
    b'[[checks]]\nid = "last"\nattack = "square"\nnorm = "l2"\nepsilon = 2.0\nsamples = 12\nbudget = 40\n'
    b'[backdoor]\nenabled = false\n[limits]\nmax_memory_mb = 2048\ntimeout_s = 120\n',
    "survive.toml",
)


def _completed(report, cid):
    chk = next(c for c in report.checks if c.id == cid)
    return chk


def test_injected_crash_in_one_check_keeps_the_others(make_digits_model, digits_data, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("injected failure")

    monkeypatch.setitem(ATTACKS, "fd-pgd", dataclasses.replace(ATTACKS["fd-pgd"], entry=boom))
    seen = []
    r = run_scan(ScanOptions(model_path=make_digits_model("logits"), data_path=digits_data, policy=POLICY), on_check=seen.append)
    assert [c.id for c in seen] == ["first", "crashes", "last"]  # streamed one by one, as each finished
    bad = _completed(r, "crashes")
    assert bad.status == "failed" and "injected failure" in bad.reason
    assert any("grading.not_run" in g.rule for g in bad.grades)
    for cid in ("first", "last"):
        chk = _completed(r, cid)
        assert chk.status == "completed" and chk.success_rate is not None and chk.success_rate.n > 0
        assert chk.queries is not None and chk.queries.total > 0
    assert any("crashes" in nt.what for nt in r.not_tested)


def test_memory_error_in_a_check_becomes_failed(make_digits_model, digits_data, monkeypatch):
    def oom(*a, **k):
        raise MemoryError()

    monkeypatch.setitem(ATTACKS, "fd-pgd", dataclasses.replace(ATTACKS["fd-pgd"], entry=oom))
    r = run_scan(ScanOptions(model_path=make_digits_model("logits"), data_path=digits_data, policy=POLICY))
    assert "out of memory" in _completed(r, "crashes").reason
    assert _completed(r, "last").status == "completed"


INJECT = '''
import os, signal, sys, dataclasses
from onnxguard.attacks import ATTACKS
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
ATTACKS["fd-pgd"] = dataclasses.replace(ATTACKS["fd-pgd"], entry=die)
from onnxguard import sandbox
code = sandbox._child_main(sys.argv[3:])
os._exit(code)
'''


def test_child_killed_mid_scan_keeps_streamed_checks(make_digits_model, digits_data, tmp_path):
    inject = tmp_path / "inject.py"
    inject.write_text(INJECT)
    fake = tmp_path / "python-with-injected-crash"
    fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{inject}" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    opts = ScanOptions(model_path=Path(make_digits_model("logits")), data_path=digits_data, policy=POLICY)
    res = run_isolated(opts, SandboxLimits(max_memory_mb=2048, timeout_s=120), python=str(fake))
    assert res.crashed and "SIGKILL" in res.crashed
    r = res.report
    first = _completed(r, "first")
    assert first.status == "completed" and first.success_rate is not None and first.success_rate.n > 0
    assert not any("scan_crashed" in g.rule for g in first.grades)  # graded on its own figures
    for cid in ("crashes", "last"):  # in flight, and never started
        chk = _completed(r, cid)
        assert chk.status == "failed" and chk.success_rate is None
    assert r.summary.verdict == "fail"  # the policy's scan_crashed rule still applies to the scan
    assert "first" in r.notes[0] and "keep their measured figures" in r.notes[0]
