"""The MLflow plugin's parts that need no MLflow server: signatures, replay, the durable queue, intake,
MLmodel parsing, and the receiver against hostile clients."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

if os.environ.get("ONNXGUARD_REQUIRE_PLUGINS"):
    import onnxguard_mlflow  # noqa: F401  (CI installs the plugin: a missing one is a failure, not a skip)
else:
    pytest.importorskip("onnxguard_mlflow")

from onnxguard.admission.queue import JobQueue, NewJob, Replay  # noqa: E402
from onnxguard.admission.worker import Worker  # noqa: E402
from onnxguard.errors import AdmissionDenied, PolicyError  # noqa: E402
from onnxguard_mlflow.config import Settings, admission_policies, resolve_policy  # noqa: E402
from onnxguard_mlflow.registry import mlmodel_paths  # noqa: E402
from onnxguard_mlflow.server import Receiver, jobs_for  # noqa: E402
from onnxguard_mlflow.webhook import WebhookRejected, sign, verify  # noqa: E402

SECRET = "s3cret-for-tests"
POLICIES = Path(__file__).parent / "data" / "policies"


def _headers(body: bytes, *, ts: int | None = None, did: str | None = None, secret: str = SECRET) -> dict[str, str]:
    did = did or str(uuid.uuid4())
    t = str(int(time.time()) if ts is None else ts)
    return {"X-MLflow-Delivery-Id": did, "X-MLflow-Timestamp": t, "X-MLflow-Signature": sign(secret, did, t, body), "Content-Type": "application/json"}


# -- signatures ---------------------------------------------------------------


def test_signature_matches_mlflows_own_signer() -> None:
    delivery = pytest.importorskip("mlflow.webhooks.delivery")
    payload = json.dumps({"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1", "ü": "ß"}})
    assert sign(SECRET, "id-1", "1700000000", payload.encode("utf-8")) == delivery._generate_hmac_signature(SECRET, "id-1", "1700000000", payload)


def test_verify_accepts_fresh_signed_delivery() -> None:
    body = b'{"entity": "model_version"}'
    h = _headers(body)
    d = verify(SECRET, h, body, now=time.time(), tolerance_s=300)
    assert d.delivery_id == h["X-MLflow-Delivery-Id"]


@pytest.mark.parametrize("mutate", ["body", "secret", "delivery", "timestamp", "missing", "garbage"])
def test_verify_rejects_tampering(mutate: str) -> None:
    body = b'{"entity": "model_version"}'
    h = _headers(body, secret="other" if mutate == "secret" else SECRET)
    if mutate == "body":
        body = body.replace(b"model_version", b"model_versio ")
    elif mutate == "delivery":
        h["X-MLflow-Delivery-Id"] = "another-id"
    elif mutate == "timestamp":
        h["X-MLflow-Timestamp"] = str(int(h["X-MLflow-Timestamp"]) + 1)
    elif mutate == "missing":
        del h["X-MLflow-Signature"]
    elif mutate == "garbage":
        h["X-MLflow-Signature"] = "v1,AAAA"
    with pytest.raises(WebhookRejected) as exc:
        verify(SECRET, h, body, now=time.time(), tolerance_s=300)
    assert exc.value.status == 401


@pytest.mark.parametrize("skew", [-301, 301])
def test_verify_rejects_stale_or_future_timestamps(skew: int) -> None:
    body = b"{}"
    now = time.time()
    h = _headers(body, ts=int(now) + skew)
    with pytest.raises(WebhookRejected, match="stale"):
        verify(SECRET, h, body, now=now, tolerance_s=300)


def test_verify_accepts_one_good_signature_among_several() -> None:
    body = b"{}"
    h = _headers(body)
    h["X-MLflow-Signature"] = "v1,bm9wZQ== " + h["X-MLflow-Signature"]
    verify(SECRET, {k.lower(): v for k, v in h.items()}, body, now=time.time(), tolerance_s=300)


# -- the durable queue --------------------------------------------------------


def test_queue_replay_dedup_retry_and_failure(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.sqlite")
    job = NewJob("scan", "scan:m:1", {"name": "m", "version": "1"})
    assert len(q.accept("d1", [job])) == 1
    with pytest.raises(Replay):
        q.accept("d1", [job])
    assert q.accept("d2", [job]) == []  # same key already pending: merged
    j = q.claim()
    assert j is not None and j.attempts == 1 and j.payload == {"name": "m", "version": "1"}
    assert q.claim() is None
    q.retry(j, "boom", delay_s=60)
    assert q.claim() is None  # not due yet
    j2 = q.claim(now=time.time() + 61)
    assert j2 is not None and j2.id == j.id and j2.attempts == 2
    q.failed(j2, "boom again")
    assert q.counts() == {"failed": 1}
    assert q.accept("d3", [job]) != []  # a failed key can be queued again by a new event


def test_queue_survives_a_crash_mid_job(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    q = JobQueue(path)
    q.accept("d1", [NewJob("scan", "scan:m:1", {"name": "m", "version": "1"})])
    assert q.claim() is not None  # the process "dies" here, with the job running
    del q
    q2 = JobQueue(path)
    assert q2.claim() is None
    assert q2.recover() == 1
    j = q2.claim()
    assert j is not None and j.attempts == 2
    with pytest.raises(Replay):  # delivery ids are durable too
        q2.accept("d1", [])


# -- events, policies ---------------------------------------------------------


def test_only_created_versions_and_protected_aliases_make_jobs(tmp_path: Path) -> None:
    s = Settings(tracking_uri="http://x", state_dir=tmp_path)
    assert [j.kind for j in jobs_for({"entity": "model_version", "action": "created", "data": {"name": "m", "version": "3"}}, s)] == ["scan"]
    assert [j.kind for j in jobs_for({"entity": "model_version_alias", "action": "created", "data": {"name": "m", "alias": "champion", "version": "3"}}, s)] == ["alias"]
    for ev in (
        {"entity": "model_version_alias", "action": "created", "data": {"name": "m", "alias": "staging", "version": "3"}},
        {"entity": "model_version_tag", "action": "set", "data": {"name": "m", "version": "3", "key": "onnxguard.verdict", "value": "pass"}},
        {"entity": "model_version_alias", "action": "deleted", "data": {"name": "m", "alias": "champion"}},
        {"entity": "model_version", "action": "created", "data": "nonsense"},
    ):
        assert jobs_for(ev, s) == []


def test_policy_tags_name_policies_never_paths(tmp_path: Path) -> None:
    s = Settings(tracking_uri="http://x", state_dir=tmp_path, policy_dir=POLICIES, default_policy="tiny-pass")
    assert resolve_policy(None, s)[0].policy.name == "tiny-pass"
    assert resolve_policy("tiny-strict", s)[0].policy.name == "tiny-strict"
    assert resolve_policy("baseline", s)[0].policy.name == "baseline"
    for bad in ("/etc/passwd", "../policies/tiny-pass", "tiny-pass.toml/..", "nope"):
        with pytest.raises(PolicyError):
            resolve_policy(bad, s)


def test_admission_policies_are_the_operators_never_a_tag(tmp_path: Path) -> None:
    """Whoever can tag a model must not lower the bar for a protected alias by naming a milder policy."""
    s = Settings(tracking_uri="http://x", state_dir=tmp_path, policy_dir=POLICIES, default_policy="tiny-pass")
    assert [p.policy.name for p in admission_policies(s)] == ["tiny-pass"]  # the default policy, not a tag
    s.admission_policies = ("strict", "tiny-strict")
    assert [p.policy.name for p in admission_policies(s)] == ["strict", "tiny-strict"]


# -- the receiver over HTTP ---------------------------------------------------


class _NoRegistry:
    def __getattr__(self, name: str):
        raise AssertionError(f"intake must not call MLflow ({name})")


@pytest.fixture
def receiver(tmp_path: Path):
    s = Settings(tracking_uri="http://unused", state_dir=tmp_path / "state", secret=SECRET)
    r = Receiver(s, Worker(s, None, _NoRegistry()), port=0)  # type: ignore[arg-type]
    t = threading.Thread(target=r.httpd.serve_forever, daemon=True)  # HTTP only: no worker thread
    t.start()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()
    r.queue.close()


def _post(r: Receiver, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    host, port = r.address
    req = urllib.request.Request(f"http://{host}:{port}/webhook", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_receiver_accepts_rejects_replays_and_ignores(receiver: Receiver) -> None:
    created = json.dumps({"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}).encode()
    h = _headers(created)
    assert _post(receiver, created, h)[0] == 202
    assert _post(receiver, created, h)[0] == 409  # the same delivery again
    assert _post(receiver, created, _headers(created, secret="wrong"))[0] == 401
    assert _post(receiver, created, _headers(created, ts=int(time.time()) - 3600))[0] == 401
    tag = json.dumps({"entity": "model_version_tag", "action": "set", "data": {"name": "m", "version": "1", "key": "onnxguard.status", "value": "done"}}).encode()
    assert _post(receiver, tag, _headers(tag))[0] == 200
    assert receiver.queue.counts() == {"pending": 1}
    with pytest.raises(RuntimeError, match="another receiver"):
        Receiver(receiver.settings, Worker(receiver.settings, None, _NoRegistry()), port=0)  # type: ignore[arg-type]


# -- what MLflow would load: the MLmodel file -------------------------------------


ONNX_MLMODEL = """artifact_path: model
flavors:
  onnx:
    code: null
    data: {data}
    onnx_version: 1.17.0
    providers: [CPUExecutionProvider]
  python_function:
    data: {data}
    env: {{conda: conda.yaml, virtualenv: python_env.yaml}}
    loader_module: mlflow.onnx
    python_version: 3.11.7
mlflow_version: 3.3.0
"""


def _mlmodel(tmp_path: Path, text: str | None) -> Path:
    root = tmp_path / "artifact"
    root.mkdir()
    if text is not None:
        (root / "MLmodel").write_text(text)
    return root


def test_mlmodel_names_the_file_mlflow_loads(tmp_path: Path) -> None:
    assert mlmodel_paths(_mlmodel(tmp_path, ONNX_MLMODEL.format(data="weights.bin"))) == ["weights.bin"]


@pytest.mark.parametrize("text,said", [
    (None, "no MLmodel"),
    ("flavors: {sklearn: {pickled_model: model.pkl}}\n", "no onnx flavour"),
    (ONNX_MLMODEL.format(data="../../etc/passwd"), "outside the artifact"),
    (ONNX_MLMODEL.format(data="/etc/passwd"), "absolute"),
    (ONNX_MLMODEL.format(data="m.onnx").replace("code: null", "code: code"), "code folder"),
    (ONNX_MLMODEL.format(data="m.onnx").replace("loader_module: mlflow.onnx", "loader_module: evil"), "not mlflow.onnx"),
    (ONNX_MLMODEL.format(data="m.onnx") + "flavors2: 1\n", None),  # unknown top-level keys are fine
    (ONNX_MLMODEL.format(data="m.onnx").replace("flavors:\n", "flavors:\n  pytorch: {pickle_module_name: x}\n"), "pytorch"),
    ("flavors: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),  # safe_load: no object construction
    ("{{{{", "not valid YAML"),
    (ONNX_MLMODEL.format(data="[a, b]"), "names no model file"),
])
def test_mlmodel_that_cannot_be_vouched_for_is_refused(tmp_path: Path, text: str | None, said: str | None) -> None:
    root = _mlmodel(tmp_path, text)
    if said is None:
        assert mlmodel_paths(root) == ["m.onnx"]
        return
    with pytest.raises(AdmissionDenied, match=said):
        mlmodel_paths(root)


def test_mlmodel_symlink_is_refused(tmp_path: Path) -> None:
    root = _mlmodel(tmp_path, None)
    (tmp_path / "real").write_text(ONNX_MLMODEL.format(data="m.onnx"))
    os.symlink(tmp_path / "real", root / "MLmodel")
    with pytest.raises(AdmissionDenied, match="not a regular file"):
        mlmodel_paths(root)


# -- the receiver against hostile clients -------------------------------------------------------------


@pytest.fixture
def hardened(tmp_path: Path):
    s = Settings(tracking_uri="http://unused", state_dir=tmp_path / "state", secret=SECRET, http_workers=2, max_connections=8,
                 socket_timeout_s=30.0, request_deadline_s=2.0)
    r = Receiver(s, Worker(s, None, _NoRegistry()), port=0)  # type: ignore[arg-type]
    t = threading.Thread(target=r.httpd.serve_forever, daemon=True)
    t.start()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()
    r.queue.close()


def _wait_for(cond, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_idle_connections_do_not_pin_threads(hardened: Receiver) -> None:
    """200 connections that never send a byte: the thread count stays bounded, the extra ones are refused at once."""
    import socket

    before = threading.active_count()
    host, port = hardened.address
    socks = []
    try:
        for _ in range(200):
            socks.append(socket.create_connection((host, port), timeout=10))
        _wait_for(lambda: hardened.httpd.open_connections() == 8, "the connection cap")
        assert threading.active_count() <= before + hardened.settings.http_workers
        assert hardened.httpd.open_connections() == 8  # the cap: the other 192 were closed, not queued
        refused = socks[-1].recv(200)
        assert refused.startswith(b"HTTP/1.1 503")
    finally:
        for s in socks:
            s.close()
    # the idle ones are gone (the deadline closes any that linger): a real delivery gets through
    _wait_for(lambda: hardened.httpd.open_connections() == 0, "the idle connections to be closed")
    body = json.dumps({"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}).encode()
    assert _post(hardened, body, _headers(body))[0] == 202


def test_a_request_that_drips_is_cut_at_its_deadline(hardened: Receiver) -> None:
    import socket

    host, port = hardened.address
    body = b'{"entity": "model_version"}'
    h = _headers(body)
    with socket.create_connection((host, port), timeout=20) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in h.items())
        s.sendall(f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body[:3])
        # never send the rest: the server closes the connection at its deadline (2 s), well before the 30 s socket timeout
        assert s.recv(100) == b""
    assert hardened.queue.counts() == {}


def test_unauthenticated_requests_are_refused_before_the_body_is_read(hardened: Receiver, monkeypatch) -> None:
    import socket

    parsed = []
    monkeypatch.setattr(json, "loads", lambda *a, **k: parsed.append(a) or {})
    host, port = hardened.address
    with socket.create_connection((host, port), timeout=10) as s:  # no signature headers; the body never comes
        s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        answer = s.recv(200)
    assert answer.startswith(b"HTTP/1.0 401")
    body = b'{"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}'
    assert _post_raw(hardened, body, _headers(body, secret="wrong"))[0] == 401  # a bad HMAC: the body is never parsed
    assert parsed == []
    big = b" " * (hardened.settings.max_body + 1)
    assert _post_raw(hardened, big, _headers(big))[0] == 413


def _post_raw(r: Receiver, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = r.address
    req = urllib.request.Request(f"http://{host}:{port}/webhook", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (ConnectionError, urllib.error.URLError):  # the server answered and closed before the whole body was sent
        return 413, b""


def test_only_a_missing_alias_reads_as_not_set() -> None:
    """Any other error while reading an alias must surface (and remove the alias), never read as 'moved away'."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    from onnxguard_mlflow.registry import _not_found

    assert _not_found(MlflowException("Registered model alias champion not found.", error_code=INVALID_PARAMETER_VALUE))
    assert _not_found(MlflowException("Registered Model with name=m not found", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not _not_found(MlflowException("Invalid alias name", error_code=INVALID_PARAMETER_VALUE))
    assert not _not_found(MlflowException("API request failed with 503", error_code=TEMPORARILY_UNAVAILABLE))
    assert not _not_found(ConnectionError("refused"))
