"""The sandbox, the static-only `inspect` command and safe external data, piece by piece."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxguard.cli import main
from onnxguard.errors import DataError, ModelLoadError
from onnxguard.policy import parse_policy
from onnxguard.report import stable_view
from onnxguard.sandbox import SandboxLimits, limits_for, run_isolated, scan_isolated
from onnxguard.scan import ScanOptions, run_scan
from tests.hostile import build_corpus as bc

POLICY_TOML = (
    b'[policy]\nname = "sandbox-tests"\nversion = "1"\n[[checks]]\nattack = "square"\nnorm = "linf"\nepsilon = 0.1\n'
    b'samples = 3\nbudget = 10\n[backdoor]\nenabled = false\n[limits]\nmax_memory_mb = 1024\ntimeout_s = 30\n'
)
POLICY = parse_policy(POLICY_TOML, "sandbox-tests.toml")
LIMITS = SandboxLimits(max_memory_mb=1024, timeout_s=30)


@pytest.fixture()
def tiny(tmp_path) -> Path:
    p = tmp_path / "tiny.onnx"
    p.write_bytes(bc.tiny_classifier().SerializeToString())
    return p


def _fake_python(tmp_path: Path, body: str) -> str:
    p = tmp_path / "fake-python"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def test_sandboxed_report_equals_in_process_report(tiny):
    opts = ScanOptions(model_path=tiny, policy=POLICY, seed=3)
    isolated = scan_isolated(opts, LIMITS)
    local = run_scan(ScanOptions(model_path=tiny, policy=POLICY, seed=3))
    assert stable_view(isolated) == stable_view(local)


def test_segfault_in_child_gives_a_crash_report(tiny, tmp_path):
    res = run_isolated(ScanOptions(model_path=tiny, policy=POLICY), LIMITS, python=_fake_python(tmp_path, "kill -SEGV $$"))
    assert res.crashed and "segmentation fault" in res.crashed
    r = res.report
    assert r.model.sha256 == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert r.summary.verdict == "fail" and r.summary.highest_risk == "critical"
    assert [c.status for c in r.checks] == ["failed"]
    assert any("scan_crashed" in g.rule for c in r.checks for g in c.grades)
    assert r.not_tested and "segmentation fault" in r.not_tested[0].reason


def test_scan_crashed_rule_comes_from_the_policy(tiny, tmp_path):
    lenient = parse_policy(POLICY_TOML + b'[grading.scan_crashed]\nlevel = "high"\nverdict = "warn"\n', "lenient.toml")
    res = run_isolated(ScanOptions(model_path=tiny, policy=lenient), LIMITS, python=_fake_python(tmp_path, "exit 9"))
    assert "exited with status 9" in res.crashed
    assert res.report.summary.verdict == "warn"


def test_typed_errors_come_back_with_class_and_message(tiny, tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, x=np.full((4, bc.N_IN), np.nan, np.float32))
    with pytest.raises(DataError) as local:
        run_scan(ScanOptions(model_path=tiny, data_path=bad, policy=POLICY))
    with pytest.raises(DataError) as remote:
        scan_isolated(ScanOptions(model_path=tiny, data_path=bad, policy=POLICY), LIMITS)
    assert str(remote.value) == str(local.value)
    assert remote.value.exit_code == 2


def test_parent_never_parses_the_model(tiny, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the parent parsed the model")

    monkeypatch.setattr(onnx, "load_model_from_string", refuse)
    monkeypatch.setattr(onnx, "load_model", refuse)
    assert scan_isolated(ScanOptions(model_path=tiny, policy=POLICY), LIMITS).summary is not None


def test_memory_limit_is_applied_in_the_child(tiny):
    res = run_isolated(ScanOptions(model_path=tiny, policy=POLICY), SandboxLimits(max_memory_mb=128, timeout_s=30))
    assert res.crashed and "128 MB" in res.crashed
    assert res.report.summary.verdict == "fail"


def test_limits_from_policy_and_overrides():
    lim = limits_for(POLICY)
    assert (lim.max_memory_mb, lim.timeout_s) == (1024, 30)
    lim = limits_for(POLICY, 2048, 7.5)
    assert (lim.max_memory_mb, lim.timeout_s) == (2048, 7.5)


def test_cli_no_sandbox_and_sandbox_agree(tiny, tmp_path, capsys):
    pol = tmp_path / "p.toml"
    pol.write_bytes(POLICY_TOML)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    rc1 = main(["scan", str(tiny), "--policy", str(pol), "--out", str(a), "--no-sign", "-q", "--no-sandbox"])
    rc2 = main(["scan", str(tiny), "--policy", str(pol), "--out", str(b), "--no-sign", "-q", "--max-memory", "1024", "--timeout", "30"])
    assert rc1 == rc2 and rc1 in (0, 1)
    from onnxguard.report import load_report

    assert stable_view(load_report(a.read_text())) == stable_view(load_report(b.read_text()))


# -- inspect ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect-corpus")
    cases, secret, secret_text = bc.build(out)
    return {c.name: c for c in cases}, secret_text


@pytest.mark.parametrize("name", ["ext_traversal", "ext_absolute", "ext_symlink", "ext_dir_symlink", "ext_hardlink",
                                  "ext_past_eof", "ext_ort_mem_addr", "ext_in_subgraph", "ext_fifo"])
def test_inspect_reports_unsafe_external_data_without_reading_it(corpus, name, tmp_path, capsys):
    cases, secret_text = corpus
    out = tmp_path / "r.json"
    rc = main(["inspect", str(cases[name].model), "--out", str(out)])
    text = capsys.readouterr()
    assert rc == 1  # a critical finding fails under the default policy
    assert "external-data-refused" in text.out
    for blob in (text.out, text.err, out.read_text()):
        assert secret_text[:24] not in blob


@pytest.mark.parametrize("name,finding", [("bomb_constantofshape", "alloc-bomb"), ("bomb_runtime", "data-driven-allocation"),
                                          ("endless_loop", "long-loop"), ("custom_domain", "custom-domain"),
                                          ("deep_subgraphs", "deep-subgraphs"), ("inconsistent_tensor", "malformed-tensor"),
                                          ("unknown_op", "unknown-operator"), ("future_opset", "opset-version"),
                                          ("hostile_metadata", "metadata-control-chars"), ("ext_ok", "external-data")])
def test_inspect_findings(corpus, name, finding, capsys):
    cases, _ = corpus
    rc = main(["inspect", str(cases[name].model)])
    out = capsys.readouterr().out
    assert finding in out
    assert rc in (0, 1)
    assert "\x1b" not in out and "\u202e" not in out


def test_inspect_bad_file_is_exit_2(corpus, capsys):
    cases, _ = corpus
    assert main(["inspect", str(cases["random_bytes"].model)]) == 2
    assert main(["inspect", str(cases["zero_size"].model)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("onnxguard: error:") == 2


def test_inspect_shows_metadata_escaped(corpus, capsys):
    cases, _ = corpus
    main(["inspect", str(cases["hostile_metadata"].model)])
    out = capsys.readouterr().out
    assert "\\x1b" in out and "<script>" in out and "\x1b" not in out


# -- external data that is safe -------------------------------------------------------------


def test_external_data_in_memory_matches_inline_weights(tmp_path):
    """Two tensors in one file at different offsets: onnxguard cuts each out itself."""
    from onnxguard.model import load_model

    w, b = bc._weights()
    (tmp_path / "weights.bin").write_bytes(w.tobytes() + b.tobytes())
    m = bc.tiny_classifier()
    del m.graph.initializer[:]
    m.graph.initializer.extend([bc._external_tensor("W", w.shape, "weights.bin", 0),
                                bc._external_tensor("B", b.shape, "./weights.bin", w.nbytes)])
    ext = tmp_path / "ext.onnx"
    ext.write_bytes(m.SerializeToString())
    inline = tmp_path / "inline.onnx"
    inline.write_bytes(bc.tiny_classifier().SerializeToString())
    x = np.random.default_rng(0).uniform(size=(16, bc.N_IN)).astype(np.float32)
    a, _ = load_model(ext).run_raw(x)
    c, _ = load_model(inline).run_raw(x)
    np.testing.assert_array_equal(a[0], c[0])
    files = load_model(ext).external_files
    assert files == [("weights.bin", hashlib.sha256(w.tobytes() + b.tobytes()).hexdigest(), w.nbytes + b.nbytes)]


def test_external_data_total_is_capped(tmp_path):
    from onnxguard import safeload

    w, _ = bc._weights()
    (tmp_path / "weights.bin").write_bytes(w.tobytes())
    p = tmp_path / "m.onnx"
    p.write_bytes(bc.external_classifier("weights.bin").SerializeToString())
    with pytest.raises(ModelLoadError, match="limit for external data"):
        safeload.read_model(p, max_bytes=1 << 20, max_external_bytes=16)


def test_symlinked_model_folder_component_in_location_is_refused_even_inside(tmp_path):
    """A symlink is refused even when it points inside the folder: links are never followed."""
    from onnxguard import safeload

    w, _ = bc._weights()
    (tmp_path / "real.bin").write_bytes(w.tobytes())
    os.symlink("real.bin", tmp_path / "weights.bin")
    p = tmp_path / "m.onnx"
    p.write_bytes(bc.external_classifier("weights.bin").SerializeToString())
    with pytest.raises(ModelLoadError, match="symbolic link"):
        safeload.read_model(p, max_bytes=1 << 20)
    raw = safeload.read_model(p, max_bytes=1 << 20, strict=False)
    assert raw.external == {} and raw.external_refs[0].problem


def test_initializer_in_subgraph_reaches_onnxruntime_from_memory(tmp_path):
    """External data inside an If branch is resolved too (and a relative-to-cwd copy is never used)."""
    from onnxguard.model import load_model

    m = bc.nested_ifs(2)
    w, _ = bc._weights()
    g = m.graph.node[1].attribute[0].g
    g.node.insert(0, onnx.helper.make_node("Constant", [], ["cw"], value=bc._external_tensor("cw", w.shape, "w.bin")))
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    p = tmp_path / "m.onnx"
    p.write_bytes(m.SerializeToString())
    model = load_model(p)
    assert [f[0] for f in model.external_files] == ["w.bin"]
    assert numpy_helper is not None


def test_unreadable_model_is_a_clean_error(tiny, monkeypatch):
    """Permission denied (not testable through chmod when the suite runs as root): one clear message."""
    from onnxguard import safeload

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(safeload.os, "open", denied)
    with pytest.raises(ModelLoadError, match="permission denied"):
        safeload.read_model(tiny, max_bytes=1 << 20)
