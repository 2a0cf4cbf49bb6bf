"""End to end against a real MLflow server: webhooks in, tags and stored reports out.

Starts ``mlflow server`` (sqlite backend, one worker, 127.0.0.1, with the
settings MLflow needs to post webhooks to a local http address) and the
``onnxguard-mlflow serve`` receiver as real processes. Scans use the tiny
test policies so each takes seconds. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import onnx
import pytest

from tests import zoo

pytestmark = pytest.mark.integration

if os.environ.get("ONNXGUARD_REQUIRE_PLUGINS"):
    import mlflow  # noqa: F401  (CI installs both: missing ones are failures, not skips)
    import onnxguard_mlflow  # noqa: F401
else:
    pytest.importorskip("mlflow")
    pytest.importorskip("onnxguard_mlflow")

from mlflow import MlflowClient  # noqa: E402

import mlflow  # noqa: E402

POLICIES = Path(__file__).parent / "data" / "policies"
SECRET = "integration-secret"
SERVER_ROOT: dict[str, Path] = {}  # where the MLflow server keeps its files (the tests play a broken artifact store)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, cond: Callable[[], object], timeout: float, every: float = 0.5) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from cryptography.fernet import Fernet

    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = dict(os.environ,
               MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",  # the receiver listens on plain http locally
               MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",      # ... on 127.0.0.1
               MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=Fernet.generate_key().decode(),
               MLFLOW_WEBHOOK_CACHE_TTL="1",
               MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    SERVER_ROOT["artifacts"] = root / "artifacts"
    try:
        _wait("the MLflow server", lambda: proc.poll() is not None or _http_ok(f"{url}/health"), 120, every=1)
        assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
        yield url
    finally:
        _stop(proc)
        log.close()


class ReceiverProc:
    def __init__(self, tracking_uri: str, state: Path, port: int, extra: list[str]) -> None:
        self.args = [sys.executable, "-m", "onnxguard_mlflow.cli", "serve", "--tracking-uri", tracking_uri, "--port", str(port),
                     "--register-webhook", f"http://127.0.0.1:{port}/webhook", "--state-dir", str(state),
                     "--policy-dir", str(POLICIES), "--default-policy", "tiny-pass", "--retry-delay", "1", *extra]
        self.url = f"http://127.0.0.1:{port}"
        self.state = state
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, ONNXGUARD_MLFLOW_SECRET=SECRET, MLFLOW_DISABLE_TELEMETRY="true")
        self.log = open(self.state.parent / "receiver.log", "a")
        self.proc = subprocess.Popen(self.args, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait("the receiver", lambda: self.proc.poll() is not None or _http_ok(f"{self.url}/healthz"), 60)
        assert self.proc.poll() is None, self.logtail()

    def kill(self) -> None:
        """SIGKILL the receiver and its scan child: a crash, not a clean stop."""
        assert self.proc is not None
        _stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.log.close()

    def jobs(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
            return json.loads(r.read())["jobs"]

    def logtail(self) -> str:
        return (self.state.parent / "receiver.log").read_text()[-4000:]


MLMODEL = """artifact_path: model
flavors:
  onnx:
    code: null
    data: {data}
    onnx_version: {onnx_version}
    providers: [CPUExecutionProvider]
  python_function:
    data: {data}
    loader_module: mlflow.onnx
mlflow_version: {mlflow_version}
"""


def _model_dir(folder: Path, files: dict[str, bytes], loads: str) -> Path:
    """An MLflow model folder as ``mlflow.onnx.save_model`` writes it (MLmodel + the files), with ``loads`` as the onnx flavour's data."""
    folder.mkdir(parents=True)
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
    (folder / "MLmodel").write_text(MLMODEL.format(data=loads, onnx_version=onnx.__version__, mlflow_version=mlflow.__version__))
    return folder


def _cli(tracking_uri: str, *args: str) -> tuple[int, str]:
    """``onnxguard-mlflow ARGS`` in this process (the receiver runs as a real process already): exit code and output."""
    from typer.testing import CliRunner

    from onnxguard_mlflow.cli import app

    res = CliRunner().invoke(app, [*args, "--tracking-uri", tracking_uri])
    return res.exit_code, res.output


def test_registry_admission_end_to_end(mlflow_server: str, tmp_path: Path) -> None:
    import mlflow.artifacts
    import mlflow.onnx

    from onnxguard.keys import load_public_key, write_keypair
    from onnxguard.signing import sign_statement
    from onnxguard.verify import open_statement, verify_envelope
    from tests.hostile import build_corpus as B

    t0 = time.monotonic()
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    state = tmp_path / "state"
    # no --key: the receiver makes its signing key in its state folder on first start (the two-command set-up)
    receiver = ReceiverProc(mlflow_server, state, _free_port(), ["--admission-policy", "tiny-pass", "--admission-policy", "tiny-strict", "--check-timeout", "30"])
    receiver.start()
    try:
        # a second subscription to the events the plugin itself causes: they must not loop back into jobs
        client.create_webhook(name="echo", url=f"{receiver.url}/webhook", secret=SECRET,
                              events=["model_version_tag.set", "model_version_alias.deleted"])

        params, *_ = zoo.digits_mlp(hidden=(16,), epochs=60)
        model_file = tmp_path / "digits.onnx"
        onnx.save(zoo.mlp_to_onnx(params, (1, 8, 8)), str(model_file))
        clean = model_file.read_bytes()
        bomb = B.constant_bomb().SerializeToString()

        def log_model(files: dict[str, bytes], loads: str) -> tuple[str, str]:
            run = client.create_run("0")
            folder = _model_dir(tmp_path / "models" / run.info.run_id, files, loads)
            client.log_artifacts(run.info.run_id, str(folder), artifact_path="model")
            client.set_terminated(run.info.run_id)
            return f"runs:/{run.info.run_id}/model", run.info.run_id

        ok_source = log_model({"digits.onnx": clean}, "digits.onnx")

        def register(name: str, policy: str | None, source: tuple[str, str] = ok_source) -> str:
            client.create_registered_model(name, tags={"onnxguard.policy": policy} if policy else None)
            return client.create_model_version(name, source=source[0], run_id=source[1]).version

        def tags(name: str, v: str) -> dict[str, str]:
            return dict(client.get_model_version(name, v).tags)

        def scanned(name: str, v: str, timeout: float = 120, status: str = "done") -> dict[str, str]:
            _wait(f"the scan of {name}/{v}", lambda: tags(name, v).get("onnxguard.status") in ("done", "failed"), timeout)
            t = tags(name, v)
            assert t["onnxguard.status"] == status, (t, receiver.logtail())
            return t

        def alias_check(name: str, v: str) -> str:
            client.set_registered_model_alias(name, "champion", v)
            try:
                return str(_wait(f"the admission check of {name}/{v}", lambda: tags(name, v).get("onnxguard.admission.champion"), 60))
            except AssertionError:
                raise AssertionError(receiver.logtail()) from None

        ok_v = register("digits-ok", None)  # default policy: tiny-pass
        bad_v = register("digits-bad", "tiny-strict")
        decoy_source = log_model({"decoy.onnx": clean, "weights.bin": bomb}, "weights.bin")
        decoy_v = register("digits-decoy", None, decoy_source)
        forged_source = log_model({"digits.onnx": clean, "aux.onnx": bomb}, "digits.onnx")
        forged_v = register("digits-forged", None, forged_source)

        ok = scanned("digits-ok", ok_v)
        bad = scanned("digits-bad", bad_v)
        assert (ok["onnxguard.verdict"], ok["onnxguard.highest_risk"], ok["onnxguard.policy"]) == ("pass", "low", "tiny-pass@1.0")
        assert (bad["onnxguard.verdict"], bad["onnxguard.highest_risk"], bad["onnxguard.policy"]) == ("fail", "critical", "tiny-strict@1.0")
        print(f"[integration] two scans tagged at {time.monotonic() - t0:.1f}s")

        # the stored attestation and reports: where the tag says, about this model, verifiable with onnxguard's tools
        pub = load_public_key(state / "receiver.pub.pem")
        uri = ok["onnxguard.report_uri"]
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri.rsplit("/", 1)[0], dst_path=str(tmp_path / "dl"), tracking_uri=mlflow_server))
        blob = (local / "attestation.dsse.json").read_bytes()
        assert hashlib.sha256(blob).hexdigest() == ok["onnxguard.report_sha256"] and ok["onnxguard.signed"] == "true"
        st, _, _ = open_statement(blob, [pub])
        assert [s["name"] for s in st["subject"]] == ["digits.onnx"]
        assert st["predicate"]["version"]["model"] == "digits-ok" and st["predicate"]["loadable"] == ["digits.onnx"]
        report = verify_envelope((local / "report-0.dsse.json").read_bytes(), [pub], model_path=model_file,
                                 policy=str(POLICIES / "tiny-pass.toml"), require_verdict="pass").report
        assert report.model.sha256 == hashlib.sha256(clean).hexdigest()
        assert report.model.path == f"models:/digits-ok/{ok_v}/digits.onnx"

        # admission: the protected alias on the failing version is taken away, on the passing one it stays
        reason = alias_check("digits-bad", bad_v)
        assert "champion" not in client.get_registered_model("digits-bad").aliases
        assert reason.startswith("removed") and "verdict is fail" in reason, reason
        admitted = alias_check("digits-ok", ok_v)
        assert admitted.startswith("admitted") and "keyid" in admitted and "digits.onnx" in admitted, admitted
        assert client.get_registered_model("digits-ok").aliases == {"champion": ok_v}
        print(f"[integration] admission checked at {time.monotonic() - t0:.1f}s")

        # 1. the decoy: MLflow loads weights.bin (the bomb), not decoy.onnx; the gate scans it and refuses the version
        dl = mlflow.artifacts.download_artifacts(artifact_uri=client.get_model_version_download_uri("digits-decoy", decoy_v),
                                                 dst_path=str(tmp_path / "decoy-dl"), tracking_uri=mlflow_server)
        loaded = mlflow.onnx.load_model(dl)
        assert loaded.SerializeToString() == bomb  # the premise: what MLflow loads is the file named in MLmodel
        decoy = scanned("digits-decoy", decoy_v, status="failed")
        assert "weights.bin" in decoy["onnxguard.error"], decoy
        reason = alias_check("digits-decoy", decoy_v)
        assert reason.startswith("removed") and "champion" not in client.get_registered_model("digits-decoy").aliases, reason

        # 2. forged attestations in the gate's experiment (any MLflow user may write there): a passing report twice,
        #    unsigned or signed with another key, and digits-ok's genuine attestation replayed onto this version
        scanned("digits-forged", forged_v, status="failed")  # aux.onnx, the bomb, is refused: no attestation of its own
        entry = next(e for e in st["predicate"]["files"] if e["path"] == "digits.onnx")
        forged = json.loads(json.dumps(st))
        forged["subject"] = [{"name": "digits.onnx", "digest": {"sha256": entry["sha256"]}}] * 2
        forged["predicate"]["version"].update(model="digits-forged", version=forged_v, artifact=f"source={forged_source[0]} run_id={forged_source[1]}")
        forged["predicate"]["files"] = [entry, entry]
        forged["predicate"]["loadable"] = ["digits.onnx"]
        from onnxguard.keys import load_private_key

        attacker = load_private_key(write_keypair(tmp_path / "attacker")[0])
        from onnxguard_mlflow.registry import SUBJECT_TAG, subject_key

        def plant(doc: dict) -> None:
            exp = client.get_experiment_by_name("onnxguard-scans")
            run = client.create_run(exp.experiment_id, tags={SUBJECT_TAG: subject_key("digits-forged", forged_v)})
            d = tmp_path / "plant" / run.info.run_id / "onnxguard"
            d.mkdir(parents=True)
            (d / "attestation.dsse.json").write_text(json.dumps(doc))
            client.log_artifacts(run.info.run_id, str(d), artifact_path="onnxguard")
            client.set_terminated(run.info.run_id)

        plant(json.loads(blob))  # replay
        plant(sign_statement(forged, attacker))
        plant(forged)  # newest: unsigned
        reason = alias_check("digits-forged", forged_v)
        assert reason.startswith("removed") and "champion" not in client.get_registered_model("digits-forged").aliases, reason
        assert "not signed" in reason and "does not verify (signature)" in reason and "is for mlflow models:/digits-ok" in reason, reason

        # 4. `check` tells the truth: refused without signing (and even with --allow-unsigned the duplicate list fails)
        common = ["--state-dir", str(state), "--policy-dir", str(POLICIES), "--default-policy", "tiny-pass"]
        rc, out = _cli(mlflow_server, "check", f"models:/digits-forged/{forged_v}", *common)
        assert rc == 1 and "not admitted" in out and "not signed" in out and "passing signed" not in out, out
        rc, out = _cli(mlflow_server, "check", f"models:/digits-forged/{forged_v}", *common, "--allow-unsigned")
        assert rc == 1 and "more than once" in out, out
        rc, out = _cli(mlflow_server, "check", f"models:/digits-ok/{ok_v}", *common)
        assert rc == 0 and "signed by ecdsa-p256 keyid" in out and "verdict pass" in out and "no deviations" in out, out

        # crash in the middle of a scan, restart: the durable queue finishes the job
        slow_v = register("digits-slow", "tiny-slow")
        _wait("the slow scan to start", lambda: tags("digits-slow", slow_v).get("onnxguard.status") == "scanning", 60, every=0.2)
        time.sleep(0.5)
        receiver.kill()
        assert tags("digits-slow", slow_v)["onnxguard.status"] == "scanning"  # it really died mid-scan
        receiver.start()
        slow = scanned("digits-slow", slow_v, timeout=300)  # a loaded CI machine: ~10 s when idle
        assert slow["onnxguard.verdict"] == "pass" and slow["onnxguard.attempts"] == "2"
        print(f"[integration] resumed scan tagged at {time.monotonic() - t0:.1f}s")

        # 3. an alias check that errors (the artifact store fails on the version's files) removes the alias
        store = next(SERVER_ROOT["artifacts"].glob(f"*/{ok_source[1]}/artifacts/model"))
        (store / "MLmodel").unlink()
        os.symlink(store / "does-not-exist", store / "MLmodel")  # the server now fails on digits-ok's files
        client.delete_registered_model_alias("digits-ok", "champion")
        client.delete_model_version_tag("digits-ok", ok_v, "onnxguard.admission.champion")
        reason = alias_check("digits-ok", ok_v)
        assert reason.startswith("removed") and "the check failed" in reason, reason
        assert "champion" not in client.get_registered_model("digits-ok").aliases
        print(f"[integration] attacks refused at {time.monotonic() - t0:.1f}s")

        # no loops: exactly the jobs the test caused (5 scans, 5 alias checks), none pending, although every plugin tag was delivered back
        time.sleep(2)
        assert receiver.jobs() == {"done": 10}, receiver.jobs()
    finally:
        receiver.stop()
