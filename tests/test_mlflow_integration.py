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

from onnxguard_mlflow import engine  # noqa: E402

POLICIES = Path(__file__).parent / "data" / "policies"
SECRET = "integration-secret"


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


def test_registry_admission_end_to_end(mlflow_server: str, tmp_path: Path) -> None:
    t0 = time.monotonic()
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    # no --key: the receiver makes its signing key in its state folder on first start (the two-command set-up)
    receiver = ReceiverProc(mlflow_server, tmp_path / "state", _free_port(), [])
    receiver.start()
    try:
        # a second subscription to the events the plugin itself causes: they must not loop back into jobs
        client.create_webhook(name="echo", url=f"{receiver.url}/webhook", secret=SECRET,
                              events=["model_version_tag.set", "model_version_alias.deleted"])

        params, *_ = zoo.digits_mlp(hidden=(16,), epochs=60)
        model_file = tmp_path / "digits.onnx"
        onnx.save(zoo.mlp_to_onnx(params, (1, 8, 8)), str(model_file))
        run = client.create_run("0")
        client.log_artifact(run.info.run_id, str(model_file), artifact_path="model")
        client.set_terminated(run.info.run_id)
        source = f"runs:/{run.info.run_id}/model"

        def register(name: str, policy: str | None) -> str:
            client.create_registered_model(name, tags={"onnxguard.policy": policy} if policy else None)
            return client.create_model_version(name, source=source, run_id=run.info.run_id).version

        def tags(name: str, v: str) -> dict[str, str]:
            return dict(client.get_model_version(name, v).tags)

        def scanned(name: str, v: str, timeout: float = 120) -> dict[str, str]:
            _wait(f"the scan of {name}/{v}", lambda: tags(name, v).get("onnxguard.status") in ("done", "failed"), timeout)
            t = tags(name, v)
            assert t["onnxguard.status"] == "done", (t, receiver.logtail())
            return t

        ok_v = register("digits-ok", None)  # default policy: tiny-pass
        bad_v = register("digits-bad", "tiny-strict")

        ok = scanned("digits-ok", ok_v)
        bad = scanned("digits-bad", bad_v)
        assert (ok["onnxguard.verdict"], ok["onnxguard.highest_risk"], ok["onnxguard.policy"]) == ("pass", "low", "tiny-pass@1.0")
        assert (bad["onnxguard.verdict"], bad["onnxguard.highest_risk"], bad["onnxguard.policy"]) == ("fail", "critical", "tiny-strict@1.0")
        print(f"[integration] two scans tagged at {time.monotonic() - t0:.1f}s")

        # the stored report: where the tag says, with the digest the tag says, about this model
        uri = ok["onnxguard.report_uri"]
        import mlflow.artifacts

        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "dl"), tracking_uri=mlflow_server))
        blob = local.read_bytes()
        assert hashlib.sha256(blob).hexdigest() == ok["onnxguard.report_sha256"]
        doc = json.loads(blob)
        if engine.HAS_SIGNING:
            from onnxguard.keys import load_public_key
            from onnxguard.verify import verify_envelope

            assert ok["onnxguard.signed"] == "true" and "signatures" in doc
            pub = load_public_key(tmp_path / "state" / "receiver.pub.pem")
            report = verify_envelope(doc, [pub], model_path=model_file, policy=str(POLICIES / "tiny-pass.toml"), require_verdict="pass").report
        else:
            from onnxguard.report import load_report

            assert ok["onnxguard.signed"] == "false"
            report = load_report(doc)
        assert report.summary.verdict == "pass"
        assert report.model.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
        assert report.model.path == f"models:/digits-ok/{ok_v}/digits.onnx"

        # admission: the protected alias on the failing version is taken away, on the passing one it stays
        client.set_registered_model_alias("digits-bad", "champion", bad_v)
        _wait("the alias removal", lambda: "champion" not in client.get_registered_model("digits-bad").aliases, 60)
        reason = _wait("the admission tag", lambda: tags("digits-bad", bad_v).get("onnxguard.admission.champion"), 30)
        assert str(reason).startswith("removed") and "verdict fail" in str(reason)
        client.set_registered_model_alias("digits-ok", "champion", ok_v)
        admitted = _wait("the admission of digits-ok", lambda: tags("digits-ok", ok_v).get("onnxguard.admission.champion"), 60)
        assert str(admitted).startswith("admitted"), admitted
        assert client.get_registered_model("digits-ok").aliases == {"champion": ok_v}
        print(f"[integration] admission checked at {time.monotonic() - t0:.1f}s")

        # crash in the middle of a scan, restart: the durable queue finishes the job
        slow_v = register("digits-slow", "tiny-slow")
        _wait("the slow scan to start", lambda: tags("digits-slow", slow_v).get("onnxguard.status") == "scanning", 60, every=0.2)
        time.sleep(0.5)
        receiver.kill()
        assert tags("digits-slow", slow_v)["onnxguard.status"] == "scanning"  # it really died mid-scan
        receiver.start()
        slow = scanned("digits-slow", slow_v, timeout=120)
        assert slow["onnxguard.verdict"] == "pass" and slow["onnxguard.attempts"] == "2"
        print(f"[integration] resumed scan tagged at {time.monotonic() - t0:.1f}s")

        # no loops: exactly the five jobs the test caused, none pending, although every plugin tag was delivered back
        time.sleep(2)
        assert receiver.jobs() == {"done": 5}, receiver.jobs()
    finally:
        receiver.stop()
