"""The gate's webhook receiver: authenticate, record, enqueue, answer at once; a worker thread scans.

Answers: 202 accepted (jobs queued), 200 authentic but nothing to do, 401 bad or stale
signature, 409 a replayed delivery, 400 malformed, 411 no length, 413 too large, 503 busy.

Hostile clients: a fixed pool of ``http_workers`` threads serves requests; at most
``max_connections`` connections are open at once (more are refused at once, so idle
connections cannot pin threads); every read and write has a timeout and a whole request has a
deadline (a watchdog closes connections that drip). A request is authenticated from its headers
and its size-capped raw body before the body is parsed or acted on.
"""

from __future__ import annotations

import fcntl
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Mapping, Protocol

from .artifact import show
from .config import Settings
from .queue import JobQueue, NewJob, Replay
from .worker import Worker

log = logging.getLogger("onnxguard.admission")
WEBHOOK_PATH = "/webhook"


class Rejected(Exception):
    """A delivery that must not be processed; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Intake(Protocol):
    """How a registry's webhooks are authenticated and turned into jobs (MLflow: ``onnxguard_mlflow.server``)."""

    def precheck(self, headers: Mapping[str, str]) -> None:
        """Refuse (``Rejected``) what cannot be authentic from the headers alone, before the body is read."""

    def authenticate(self, headers: Mapping[str, str], body: bytes, now: float) -> str:
        """The delivery id of an authentic, fresh delivery; ``Rejected`` otherwise. Runs on the raw body."""

    def jobs(self, event: Any) -> list[NewJob]:
        """The jobs an (authentic, parsed) event asks for."""


class BoundedHTTPServer(HTTPServer):
    """An HTTP server with a fixed thread pool, a cap on open connections and a per-request deadline."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst of connections is accepted (and refused or served), not dropped

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, workers: int, max_connections: int, deadline_s: float) -> None:
        super().__init__(address, handler)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http")
        self._slots = threading.BoundedSemaphore(max_connections)
        self._deadline_s = deadline_s
        self._open: dict[socket.socket, float] = {}
        self._open_lock = threading.Lock()
        self._closing = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="http-watchdog", daemon=True)
        self._watchdog.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # too many open connections: refuse now, hold nothing
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open[request] = time.monotonic() + self._deadline_s
        try:
            self._pool.submit(self._serve, request, client_address)
        except RuntimeError:  # shutting down
            self._release(request)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a broken connection must not kill a pool thread
            log.debug("connection from %s ended with an error", client_address, exc_info=True)
        finally:
            self._release(request)

    def _release(self, request: Any) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        self.shutdown_request(request)
        self._slots.release()

    def _watch(self) -> None:
        while not self._closing.wait(0.5):
            now = time.monotonic()
            with self._open_lock:
                late = [s for s, t in self._open.items() if t < now]
            for s in late:  # a request that drips past its deadline: its blocked read ends with an error
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class Receiver:
    """The HTTP server, the durable queue and the worker thread, with a lock on the state folder."""

    def __init__(self, settings: Settings, worker: Worker, intake: Intake, host: str = "127.0.0.1", port: int = 8765) -> None:
        if not settings.secret:
            raise ValueError("a webhook secret is required")
        self.settings = settings
        self.intake_ = intake
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._lockf = open(settings.state_dir / "receiver.lock", "w")
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockf.close()
            raise RuntimeError(f"another receiver is using {settings.state_dir}") from None
        self.queue = worker.queue or JobQueue(settings.queue_path)
        worker.queue = self.queue
        self.worker = worker
        recovered = self.queue.recover()
        if recovered:
            log.info("resuming %d job(s) interrupted by a previous stop", recovered)
        self.stop_event = threading.Event()
        self.httpd = BoundedHTTPServer((host, port), self._handler(), workers=settings.http_workers,
                                       max_connections=settings.max_connections, deadline_s=settings.request_deadline_s)

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[:2]  # type: ignore[return-value]

    def intake(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        """An authentic delivery's body is parsed and turned into jobs; anything else is refused first."""
        s = self.settings
        now = time.time()
        try:
            delivery_id = self.intake_.authenticate(headers, body, now)
        except Rejected as exc:
            log.warning("rejected delivery: %s", show(exc.reason))
            return exc.status, {"error": exc.reason}
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            return 400, {"error": "body is not JSON"}
        jobs = self.intake_.jobs(event)
        try:
            added = self.queue.accept(delivery_id, jobs, now=now)
        except Replay:
            log.warning("rejected replayed delivery %s", show(delivery_id))
            return 409, {"error": "delivery id already seen"}
        self.queue.forget_deliveries(now - 2 * s.tolerance_s)
        if jobs:
            self.worker.wake()
            return 202, {"queued": [j.key for j in jobs], "new": len(added)}
        return 200, {"ignored": show(f"{event.get('entity')}.{event.get('action')}") if isinstance(event, dict) else None}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self
        settings = self.settings

        class Handler(BaseHTTPRequestHandler):
            server_version = "onnxguard-admission"
            sys_version = ""
            timeout = settings.socket_timeout_s  # every read and write on the socket
            protocol_version = "HTTP/1.0"  # one request per connection

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("%s " + fmt, self.client_address[0], *(show(a) for a in args))

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
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
                    receiver.intake_.precheck(self.headers)
                except Rejected as exc:  # not even the body is read
                    log.warning("rejected delivery: %s", show(exc.reason))
                    self._answer(exc.status, {"error": exc.reason})
                    return
                if self.headers.get("Transfer-Encoding"):
                    self._answer(411, {"error": "Content-Length required (no chunked bodies)"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._answer(411, {"error": "Content-Length required"})
                    return
                if length < 0 or length > settings.max_body:
                    self._answer(413, {"error": "body too large"})
                    return
                body = self.rfile.read(length)
                if len(body) != length:
                    return  # the client went away or timed out: nothing to answer
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

