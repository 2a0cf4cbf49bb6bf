"""The MLflow plugin's parts that need no MLflow server: signatures, replay, the durable queue, intake, retries."""

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

from onnxguard.errors import PolicyError  # noqa: E402
from onnxguard_mlflow.config import Settings, admission_policy, resolve_policy  # noqa: E402
from onnxguard_mlflow.queue import JobQueue, NewJob, Replay  # noqa: E402
from onnxguard_mlflow.server import Receiver, jobs_for  # noqa: E402
from onnxguard_mlflow.webhook import WebhookRejected, sign, verify  # noqa: E402
from onnxguard_mlflow.worker import Worker  # noqa: E402

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


def test_operator_admission_policy_overrides_model_tags(tmp_path: Path) -> None:
    """Whoever can tag a model must not lower the bar for a protected alias by naming a milder policy."""
    s = Settings(tracking_uri="http://x", state_dir=tmp_path, policy_dir=POLICIES, default_policy="tiny-pass")
    assert admission_policy("baseline", s).policy.name == "baseline"  # no operator setting: the tag decides
    s.admission_policy = "strict"
    for tag in (None, "baseline", "tiny-pass"):
        assert admission_policy(tag, s).policy.name == "strict"


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


# -- retries end in a tag, never in silence ----------------------------------


class _FlakyRegistry:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        if tags.get("onnxguard.status") == "scanning":
            raise ConnectionError("MLflow is down")
        self.tags.update(tags)


def test_failed_job_is_retried_then_tagged_failed(tmp_path: Path) -> None:
    s = Settings(tracking_uri="http://unused", state_dir=tmp_path, max_attempts=2, retry_delay_s=0.0)
    q = JobQueue(s.queue_path)
    reg = _FlakyRegistry()
    w = Worker(s, q, reg)  # type: ignore[arg-type]
    q.accept("d", [NewJob("scan", "scan:m:1", {"name": "m", "version": "1"})])
    for _ in range(2):
        job = q.claim()
        assert job is not None
        w.process(job)
    assert q.claim() is None
    assert q.counts() == {"failed": 1}
    assert reg.tags["onnxguard.status"] == "failed" and "MLflow is down" in reg.tags["onnxguard.error"]
    assert reg.tags["onnxguard.attempts"] == "2"
