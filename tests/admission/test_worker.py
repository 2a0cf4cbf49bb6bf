"""The admission kit's worker, run against the in-memory registry double.

Each test attacks the gate with an ordinary uploader's rights: choosing file names, the loaded
path, tags, and writing into the attestation store. None of them may get a version admitted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import onnx
import pytest

from onnxguard.admission import registry as R
from onnxguard.admission.artifact import looks_like_onnx, model_files
from onnxguard.admission.attestation import Sealer, VersionId, deviations_of, statement
from onnxguard.admission.config import Settings
from onnxguard.admission.queue import JobQueue, NewJob
from onnxguard.admission.worker import Worker
from onnxguard.policy import LoadedPolicy, load_policy
from onnxguard.report import Report
from onnxguard.keys import keyid, load_private_key, write_keypair
from onnxguard.signing import sign_statement
from onnxguard.assemble import static_report
from tests.admission.memory import MemoryRegistry
from tests.hostile import build_corpus as B

POLICIES = Path(__file__).resolve().parent.parent / "data" / "policies"


def _bytes(m: onnx.ModelProto) -> bytes:
    return m.SerializeToString()


CLEAN = _bytes(B.tiny_classifier())
OTHER = _bytes(B.tiny_classifier(seed=3))
BOMB = _bytes(B.constant_bomb())  # the unscanned memory bomb of the issue: static checks fail it


class StaticScanner:
    """A fast, real scanner: onnxguard's static checks (a memory bomb fails them), graded by the policy."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def scan(self, files: Sequence[Path], policy: LoadedPolicy, policy_ref: str, seed: int) -> list[Report]:
        self.seen += [f.name for f in files]
        return [static_report(f, policy) for f in files]


@pytest.fixture
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    return write_keypair(d / "receiver")


def _settings(tmp_path: Path, keys: tuple[Path, Path] | None, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", policy_dir=POLICIES, default_policy="tiny-pass",
                    key_path=keys[0] if keys else None, trusted_keys=[keys[1]] if keys else [], retry_delay_s=0.0, **kw)  # type: ignore[arg-type]


@pytest.fixture
def gate(tmp_path: Path, keys: tuple[Path, Path]) -> tuple[Worker, MemoryRegistry, StaticScanner]:
    reg = MemoryRegistry()
    sc = StaticScanner()
    return Worker(_settings(tmp_path, keys), None, reg, scanner=sc), reg, sc


def _alias(w: Worker, reg: MemoryRegistry, name: str, version: str, alias: str = "champion") -> str:
    reg.aliases[(name, alias)] = version
    w.check_alias(name, alias, version)
    return reg.tags[(name, version)][R.admission_tag(alias)]


# -- the happy path, and what the reason says -----------------------------------


def test_clean_version_is_admitted_and_the_reason_names_what_was_verified(gate, keys) -> None:
    w, reg, sc = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN, "README.md": b"# a model\n"})
    out = w.scan_version("m", "1")
    assert out.verdict == "pass" and sc.seen == ["model.onnx"]
    why = _alias(w, reg, "m", "1")
    assert why.startswith("admitted") and reg.aliases[("m", "champion")] == "1"
    kid = keyid(load_private_key(keys[0]))
    lp = load_policy(str(POLICIES / "tiny-pass.toml"))
    for said in (kid[:16], "model digest matched", f"policy 'tiny-pass' v1.0 (sha256 {lp.sha256[:16]}", "verdict pass", "no deviations",
                 "model.onnx sha256", "(loaded)", "memory models:/m/1"):
        assert said in why, (said, why)


# -- 1. what the registry loads, and every other model file, by content ---------


def test_decoy_version_scans_the_loaded_file_and_is_refused(gate) -> None:
    """decoy.onnx is clean; the registry loads weights.bin, the bomb. Today only *.onnx was scanned."""
    w, reg, sc = gate
    reg.add_version("m", "1", {"decoy.onnx": CLEAN, "weights.bin": BOMB}, loads="weights.bin")
    out = w.scan_version("m", "1")
    assert sorted(sc.seen) == ["decoy.onnx", "weights.bin"]
    assert out.verdict == "fail"
    why = _alias(w, reg, "m", "1")
    assert why.startswith("removed") and "weights.bin" in why and ("m", "champion") not in reg.aliases


def test_onnx_files_are_found_by_content_not_by_name(gate, tmp_path: Path) -> None:
    w, reg, sc = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN, "extra/blob.DAT": OTHER, "UPPER.ONNX": OTHER, "notes.txt": b"hello",
                               "random.bin": os.urandom(4096)})
    w.scan_version("m", "1")
    assert sorted(sc.seen) == ["UPPER.ONNX", "blob.DAT", "model.onnx"]
    assert _alias(w, reg, "m", "1").startswith("admitted")


def test_sniffing_tells_onnx_from_other_bytes(tmp_path: Path) -> None:
    onnx_files = {"a": CLEAN, "b": BOMB, "c": _bytes(B.nested_ifs(3)), "d": (Path(__file__).parents[2] / "examples" / "digits_mlp.onnx").read_bytes()}
    others = {f"r{i}": os.urandom(n) for i, n in enumerate([1, 7, 100, 5000, 100_000] * 20)}
    others.update({"json": b'{"a": 1}', "npy": b"\x93NUMPY" + b"\0" * 100, "zip": b"PK\x03\x04" + b"\0" * 100, "empty": b""})
    for name, data in {**onnx_files, **others}.items():
        (tmp_path / name).write_bytes(data)
    assert all(looks_like_onnx(tmp_path / n) for n in onnx_files)
    assert not [n for n in others if looks_like_onnx(tmp_path / n)]
    from onnxguard.admission.artifact import MAX_SNIFF_FIELDS

    padded = b"\x98\x06\x00" * (MAX_SNIFF_FIELDS + 1) + CLEAN  # unknown field 99 again and again, then the model
    assert onnx.load_from_string(padded).graph.node  # protobuf (and so onnxruntime) skips unknown fields
    (tmp_path / "padded").write_bytes(padded)
    assert looks_like_onnx(tmp_path / "padded")
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert not looks_like_onnx(tmp_path / "link")  # never followed


@pytest.mark.parametrize("case", ["no-manifest", "missing-file", "escape", "absolute", "symlink", "loaded-symlink"])
def test_a_version_whose_loaded_model_cannot_be_vouched_for_is_refused(gate, case: str) -> None:
    w, reg, _ = gate
    loads = {"no-manifest": None, "missing-file": "nope.onnx", "escape": "../outside.onnx", "absolute": "/etc/passwd"}.get(case, "model.onnx")
    reg.add_version("m", "1", {"model.onnx": CLEAN}, loads=loads)
    real_download = reg.download

    def download(name: str, version: str, dst: Path) -> Path:
        root = real_download(name, version, dst)
        if case == "symlink":
            os.symlink("/etc/hostname", root / "other.onnx")
        if case == "loaded-symlink":
            (root / "model.onnx").unlink()
            os.symlink("/etc/hostname", root / "model.onnx")
        return root

    reg.download = download  # type: ignore[method-assign]
    out = w.scan_version("m", "1")
    assert out.verdict == "fail" and out.error and reg.tags[("m", "1")][R.TAG_STATUS] == "failed"
    assert reg.stored.get(("m", "1")) is None
    why = _alias(w, reg, "m", "1")
    assert why.startswith("removed") and ("m", "champion") not in reg.aliases


# -- 2. admission rests only on what the gate signed -------------------------------


def test_tags_are_never_read_for_a_decision(gate) -> None:
    w, reg, _ = gate
    reg.add_version("m", "1", {"model.onnx": BOMB})
    reg.tags[("m", "1")].update({R.TAG_VERDICT: "pass", R.TAG_STATUS: "done", R.TAG_SIGNED: "true", R.TAG_REPORT_URI: "memory://x", R.TAG_REPORT_SHA: "0" * 64})
    assert _alias(w, reg, "m", "1").startswith("removed")  # never scanned: no attestation, whatever the tags say
    reg.add_version("m", "2", {"model.onnx": CLEAN})
    w.scan_version("m", "2")
    reg.tags[("m", "2")] = {}  # an uploader wipes every tag: the decision does not change
    assert _alias(w, reg, "m", "2").startswith("admitted")


def _forge(w: Worker, reg: MemoryRegistry, name: str, version: str, key_path: Path | None, mutate) -> None:
    """An attestation built for the version as it is, changed by ``mutate``, signed with ``key_path`` (None: plain JSON)."""
    root = reg.download(name, version, Path(w.settings.state_dir) / "forge")
    files = model_files(root, reg.loadable_paths(root))
    lp = load_policy(str(POLICIES / "tiny-pass.toml"))
    reports = {p: static_report(root / p, lp) for p in files.files}
    for p, r in reports.items():
        r.summary.verdict, r.summary.highest_risk = "pass", "low"  # the forger says everything passed
        r.model.path = p
    sealer = Sealer(key_path)
    st = statement(VersionId("memory", name, version, f"memory://{name}/{version}"), lp, files, reports,
                   {p: sealer.seal_report(r) for p, r in reports.items()})
    mutate(st)
    doc = sign_statement(st, load_private_key(key_path)) if key_path else st
    reg.stored.setdefault((name, version), []).insert(0, {R.ATTESTATION_FILE: json.dumps(doc).encode()})


def test_forged_attestations_do_not_admit(gate, keys, tmp_path: Path) -> None:
    """The issue's forgery: a passing report listed twice for a version with an unscanned memory bomb."""
    w, reg, _ = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN, "bomb.onnx": BOMB})

    def twice(st: dict) -> None:  # the clean file's entry twice, the bomb's dropped
        files = st["predicate"]["files"]
        clean = next(e for e in files if e["path"] == "model.onnx")
        st["predicate"]["files"] = [clean, clean]

    _forge(w, reg, "m", "1", None, twice)  # unsigned
    assert "not signed" in w.admissible("m", "1").reason
    other = write_keypair(tmp_path / "attacker")[0]
    reg.stored.clear()
    _forge(w, reg, "m", "1", other, lambda st: None)  # signed, by a key the gate does not trust
    d = w.admissible("m", "1")
    assert not d.admitted and "does not verify (signature)" in d.reason
    # with the gate's own key (defence in depth: a bug that signed such a list must still not admit)
    for mutate, said in [(twice, "more than once"),
                         (lambda st: st["predicate"]["files"].pop(), "not covered"),
                         (lambda st: st["predicate"]["files"].append(dict(st["predicate"]["files"][0], path="ghost.onnx")), "does not hold"),
                         (lambda st: st["predicate"]["policy"].update(deviations=[{"key": "budget", "policy_value": 20, "effective_value": 1}]), "deviated")]:
        reg.stored.clear()
        _forge(w, reg, "m", "1", keys[0], mutate)
        d = w.admissible("m", "1")
        assert not d.admitted and said in d.reason, (said, d.reason)


def test_an_attestation_cannot_be_replayed_onto_another_version(gate) -> None:
    w, reg, _ = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    reg.add_version("m", "2", {"model.onnx": CLEAN})  # the same bytes, never scanned
    w.scan_version("m", "1")
    reg.stored[("m", "2")] = list(reg.stored[("m", "1")])  # an uploader copies version 1's attestation
    d = w.admissible("m", "2")
    assert not d.admitted and "is for memory models:/m/1" in d.reason


def test_files_added_or_removed_after_the_scan_are_caught(gate) -> None:
    w, reg, _ = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    w.scan_version("m", "1")
    reg.artifacts[("m", "1")]["late.bin"] = BOMB
    assert "not covered" in w.admissible("m", "1").reason
    del reg.artifacts[("m", "1")]["late.bin"]
    reg.artifacts[("m", "1")]["model.onnx"] = OTHER
    assert "changed since it was scanned" in w.admissible("m", "1").reason


def test_a_report_with_deviations_is_refused(gate, keys) -> None:
    """Reports made with command-line overrides carry predicate.policy.deviations: never admitted."""
    w, reg, _ = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    dev = [{"key": "checks.square-linf.budget", "policy_value": 20, "effective_value": 1}]

    def with_deviation(st: dict) -> None:
        from onnxguard.verify import _parse_envelope

        e = st["predicate"]["files"][0]
        inner = json.loads(_parse_envelope(e["report"])[0])
        inner["predicate"]["policy"]["deviations"] = dev
        e["report"] = sign_statement(inner, load_private_key(keys[0]))

    _forge(w, reg, "m", "1", keys[0], with_deviation)
    d = w.admissible("m", "1")
    assert not d.admitted and "deviates from policy 'tiny-pass'" in d.reason, d.reason
    assert deviations_of({"policy": {"deviations": dev}}) == dev and deviations_of({"policy": {"deviations": []}}) == []


def test_the_admission_policy_is_the_operators_never_the_tags(gate, tmp_path: Path, keys) -> None:
    w, reg, _ = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    reg.model_tags["m"] = {"onnxguard.policy": "tiny-strict"}  # the uploader picks the scan policy
    w.scan_version("m", "1")
    d = w.admissible("m", "1")
    assert not d.admitted and "not an admission policy" in d.reason
    w2 = Worker(_settings(tmp_path, keys, admission_policies=("tiny-pass", "tiny-strict")), None, reg, scanner=StaticScanner())
    assert w2.admissible("m", "1").admitted  # the operator lists it: admitted


# -- 3. fail closed ---------------------------------------------------------------------


@pytest.mark.parametrize("where,exc", [("alias_version", ConnectionError("MLflow is down")), ("load_attestations", TimeoutError("timed out")),
                                       ("download", FileNotFoundError("run not found")), ("artifact_identity", RuntimeError("missing version")),
                                       ("loadable_paths", OSError("unreadable"))])
def test_every_error_in_an_alias_check_removes_the_alias(gate, where: str, exc: BaseException) -> None:
    w, reg, _ = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    w.scan_version("m", "1")
    reg.fail[where] = exc
    why = _alias(w, reg, "m", "1")
    assert ("m", "champion") not in reg.aliases
    assert why.startswith("removed") and str(exc) in why


def test_an_oversized_or_unreadable_attestation_removes_the_alias(gate) -> None:
    w, reg, _ = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    w.scan_version("m", "1")
    reg.load_attestations = lambda *a: [None]  # type: ignore[method-assign]
    assert "was not read" in _alias(w, reg, "m", "1")
    reg.load_attestations = lambda *a: [b"\x00garbage"]  # type: ignore[method-assign]
    assert "not valid JSON" in _alias(w, reg, "m", "1")


def test_an_alias_check_that_hangs_removes_the_alias(tmp_path: Path, keys) -> None:
    import threading

    reg = MemoryRegistry()
    w = Worker(_settings(tmp_path, keys, admission_timeout_s=0.5), None, reg, scanner=StaticScanner())
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    w.scan_version("m", "1")
    never = threading.Event()
    reg.load_attestations = lambda *a: never.wait(30) and []  # type: ignore[method-assign]
    try:
        why = _alias(w, reg, "m", "1")
    finally:
        never.set()
    assert why.startswith("removed") and "did not finish within 0.5s" in why and ("m", "champion") not in reg.aliases


def test_an_alias_check_that_keeps_failing_removes_the_alias_when_it_gives_up(tmp_path: Path, keys) -> None:
    reg = MemoryRegistry()
    s = _settings(tmp_path, keys, max_attempts=2)
    q = JobQueue(s.queue_path)
    w = Worker(s, q, reg, scanner=StaticScanner())
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    reg.aliases[("m", "champion")] = "1"
    reg.fail["delete_alias"] = ConnectionError("MLflow is down")
    q.accept("d", [NewJob("alias", "alias:m:champion:1", {"name": "m", "alias": "champion", "version": "1"})])
    job = q.claim()
    w.process(job)  # removal fails: retried
    assert q.counts() == {"pending": 1}
    del reg.fail["delete_alias"]
    job = q.claim()
    reg.fail["alias_version"] = ConnectionError("still down")
    w.process(job)
    assert ("m", "champion") not in reg.aliases and reg.tags[("m", "1")][R.admission_tag("champion")].startswith("removed")


def test_failed_scan_job_is_retried_then_tagged_failed(tmp_path: Path, keys) -> None:
    reg = MemoryRegistry()
    s = _settings(tmp_path, keys, max_attempts=2)
    q = JobQueue(s.queue_path)
    w = Worker(s, q, reg, scanner=StaticScanner())
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    reg.fail["store_artifacts"] = ConnectionError("MLflow is down")
    q.accept("d", [NewJob("scan", "scan:m:1", {"name": "m", "version": "1"})])
    for _ in range(2):
        job = q.claim()
        assert job is not None
        w.process(job)
    assert q.claim() is None and q.counts() == {"failed": 1}
    t = reg.tags[("m", "1")]
    assert t[R.TAG_STATUS] == "failed" and "MLflow is down" in t[R.TAG_ERROR] and t[R.TAG_ATTEMPTS] == "2"


# -- 4. unsigned only behind the flag --------------------------------------------------


def test_unsigned_attestations_only_with_allow_unsigned(tmp_path: Path, keys) -> None:
    reg = MemoryRegistry()
    unsigned = Worker(_settings(tmp_path, None), None, reg, scanner=StaticScanner())  # no key: writes plain JSON
    reg.add_version("m", "1", {"model.onnx": CLEAN})
    unsigned.scan_version("m", "1")
    for w in (unsigned, Worker(_settings(tmp_path, keys), None, reg)):
        d = w.admissible("m", "1")
        assert not d.admitted and "not signed" in d.reason
    flagged = Worker(_settings(tmp_path, None, allow_unsigned=True), None, reg)
    d = flagged.admissible("m", "1")
    assert d.admitted and d.reason.startswith("UNSIGNED attestation accepted") and "signed by" not in d.reason


# -- the scan hook ---------------------------------------------------------------------------


def test_scans_go_through_the_one_scanner_hook(gate) -> None:
    w, reg, sc = gate
    reg.add_version("m", "1", {"model.onnx": CLEAN, "b.onnx": OTHER})
    w.scan_version("m", "1")
    assert sorted(sc.seen) == ["b.onnx", "model.onnx"]

    class Short(StaticScanner):
        def scan(self, files, policy, policy_ref, seed):  # type: ignore[override]
            return super().scan(files, policy, policy_ref, seed)[:1]

    w.scanner = Short()
    with pytest.raises(Exception, match="returned 1 report"):
        w.scan_version("m", "1")


def test_core_admission_does_not_import_mlflow() -> None:
    import subprocess
    import sys

    code = "import sys, onnxguard.admission.worker, onnxguard.admission.server; sys.exit(any(m == 'mlflow' or m.startswith('mlflow.') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))).returncode == 0


def test_scans_can_run_on_a_fleet_executor(tmp_path: Path, keys) -> None:
    """The receiver's scans go to a fleet executor (here the local process pool; Ray is the same API) through
    the one scanner hook, and admission works the same on its reports."""
    from onnxguard.admission.engine import ExecutorScanner
    from onnxguard.fleet import get_executor

    reg = MemoryRegistry()
    reg.add_version("m", "1", {"model.onnx": CLEAN, "b.onnx": OTHER})
    reg.add_version("m", "2", {"model.onnx": BOMB})
    with get_executor("local", None, 2) as ex:
        w = Worker(_settings(tmp_path, keys), None, reg, scanner=ExecutorScanner(ex))
        w.scan_version("m", "1")
        assert _alias(w, reg, "m", "1").startswith("admitted")
        try:  # the bomb is refused before it runs, on the executor too
            w.scan_version("m", "2")
        except Exception:  # noqa: BLE001 - refused or failed: either way never admitted
            pass
        assert not _alias(w, reg, "m", "2").startswith("admitted")
