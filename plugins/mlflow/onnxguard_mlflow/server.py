"""The webhook receiver: verify, record, enqueue, answer at once; a worker thread scans.

Answers: 202 accepted (jobs queued), 200 verified but nothing to do (an event
the plugin ignores, e.g. the tag events its own tags cause), 401 bad or stale
signature, 409 a replayed delivery id, 400 malformed, 413 too large.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .config import Settings
from .queue import JobQueue, NewJob, Replay
from .webhook import WebhookRejected, verify
from .worker import ALIAS, SCAN, Worker

log = logging.getLogger("onnxguard_mlflow")
MAX_BODY = 1 << 20
WEBHOOK_PATH = "/webhook"


def jobs_for(event: dict[str, Any], settings: Settings) -> list[NewJob]:
    """The jobs an event asks for: only version creation and protected-alias creation do anything."""
    entity, action, data = event.get("entity"), event.get("action"), event.get("data") or {}
    if not isinstance(data, dict):
        return []
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not isinstance(version, (str, int)):
        return []
    version = str(version)
    if (entity, action) == ("model_version", "created"):
        return [NewJob(SCAN, f"scan:{name}:{version}", {"name": name, "version": version})]
    if (entity, action) == ("model_version_alias", "created"):
        alias = data.get("alias")
        if isinstance(alias, str) and alias in settings.protected_aliases:
            return [NewJob(ALIAS, f"alias:{name}:{alias}:{version}", {"name": name, "alias": alias, "version": version})]
    return []


class Receiver:
    """The HTTP server, the durable queue and the worker thread, with a lock on the state folder."""

    def __init__(self, settings: Settings, worker: Worker, host: str = "127.0.0.1", port: int = 8765) -> None:
        if not settings.secret:
            raise ValueError("a webhook secret is required")
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._lockf = open(settings.state_dir / "receiver.lock", "w")
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another receiver is using {settings.state_dir}") from None
        self.queue = worker.queue or JobQueue(settings.queue_path)
        worker.queue = self.queue
        self.worker = worker
        recovered = self.queue.recover()
        if recovered:
            log.info("resuming %d job(s) interrupted by a previous stop", recovered)
        self.stop_event = threading.Event()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[:2]  # type: ignore[return-value]

    def intake(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        s = self.settings
        now = time.time()
        try:
            d = verify(s.secret or "", headers, body, now=now, tolerance_s=s.tolerance_s)
        except WebhookRejected as exc:
            log.warning("rejected delivery: %s", exc.reason)
            return exc.status, {"error": exc.reason}
        try:
            event = json.loads(body)
        except ValueError:
            return 400, {"error": "body is not JSON"}
        jobs = jobs_for(event if isinstance(event, dict) else {}, s)
        try:
            added = self.queue.accept(d.delivery_id, jobs, now=now)
        except Replay:
            log.warning("rejected replayed delivery %s", d.delivery_id)
            return 409, {"error": "delivery id already seen"}
        self.queue.forget_deliveries(now - 2 * s.tolerance_s)
        if jobs:
            self.worker.wake()
            return 202, {"queued": [j.key for j in jobs], "new": len(added)}
        return 200, {"ignored": f"{event.get('entity')}.{event.get('action')}" if isinstance(event, dict) else None}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "onnxguard-mlflow"
            sys_version = ""

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("%s " + fmt, self.client_address[0], *args)

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/healthz":
                    self._answer(200, {"ok": True, "jobs": receiver.queue.counts()})
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                if self.path != WEBHOOK_PATH:
                    self._answer(404, {"error": "not found"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._answer(411, {"error": "Content-Length required"})
                    return
                if length < 0 or length > MAX_BODY:
                    self._answer(413, {"error": "body too large"})
                    return
                body = self.rfile.read(length)
                try:
                    status, doc = receiver.intake(self.headers, body)
                except Exception as exc:  # noqa: BLE001 - MLflow retries on 5xx
                    log.exception("intake failed")
                    status, doc = 503, {"error": type(exc).__name__}
                self._answer(status, doc)

        return Handler

    def start(self) -> None:
        """Serve and work in background threads."""
        self._threads = [
            threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True),
            threading.Thread(target=self.worker.run_forever, args=(self.stop_event,), name="worker", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.worker.wake()
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in getattr(self, "_threads", []):
            t.join(timeout=60)
        self.queue.close()
        self._lockf.close()
