"""A durable job queue in one SQLite file.

Jobs survive a crash or restart of the receiver: ``recover()`` at start-up
turns jobs left ``running`` by a dead process back into ``pending``. A job
that raises is retried with a growing delay up to ``max_attempts`` and then
marked ``failed`` (the worker tags the model version; nothing is dropped
silently). Delivery ids are recorded in the same transaction as the jobs they
create, which is what makes replay rejection exact.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_per_key ON jobs(key) WHERE status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    received REAL NOT NULL
);
"""


class Replay(Exception):
    """This delivery id was accepted before."""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class NewJob:
    kind: str
    key: str  # at most one pending/running job per key: duplicates are merged
    payload: dict[str, Any]


class JobQueue:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> "_Tx":
        return _Tx(self)

    # -- intake ----------------------------------------------------------

    def accept(self, delivery_id: str | None, jobs: Iterable[NewJob], now: float | None = None) -> list[int]:
        """Record the delivery (``Replay`` if seen) and enqueue its jobs, atomically.

        Returns the ids of jobs that were added (a job whose key is already
        pending or running is merged into that one)."""
        now = time.time() if now is None else now
        added: list[int] = []
        with self._tx() as db:
            if delivery_id is not None:
                try:
                    db.execute("INSERT INTO deliveries (id, received) VALUES (?, ?)", (delivery_id, now))
                except sqlite3.IntegrityError:
                    raise Replay(delivery_id) from None
            for j in jobs:
                cur = db.execute(
                    "INSERT OR IGNORE INTO jobs (kind, key, payload, created, updated) VALUES (?, ?, ?, ?, ?)",
                    (j.kind, j.key, json.dumps(j.payload, sort_keys=True), now, now),
                )
                if cur.rowcount:
                    added.append(int(cur.lastrowid))
        return added

    def forget_deliveries(self, older_than: float) -> None:
        """Drop delivery ids older than ``older_than`` (they fail the timestamp check anyway)."""
        with self._tx() as db:
            db.execute("DELETE FROM deliveries WHERE received < ?", (older_than,))

    # -- worker side -----------------------------------------------------

    def recover(self) -> int:
        """Jobs left running by a process that died go back to pending; returns how many."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET status = 'pending', updated = ? WHERE status = 'running'", (time.time(),)).rowcount

    def claim(self, now: float | None = None) -> Job | None:
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(
                "SELECT id, kind, key, payload, attempts FROM jobs WHERE status = 'pending' AND not_before <= ? ORDER BY not_before, id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, updated = ? WHERE id = ?", (now, row[0]))
            return Job(id=row[0], kind=row[1], key=row[2], payload=json.loads(row[3]), attempts=row[4] + 1)

    def done(self, job: Job) -> None:
        self._set(job, "done", None)

    def failed(self, job: Job, error: str) -> None:
        self._set(job, "failed", error)

    def retry(self, job: Job, error: str, delay_s: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status = 'pending', last_error = ?, not_before = ?, updated = ? WHERE id = ?",
                (error[:2000], time.time() + delay_s, time.time(), job.id),
            )

    def _set(self, job: Job, status: str, error: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET status = ?, last_error = ?, updated = ? WHERE id = ?", (status, error[:2000] if error else None, time.time(), job.id))

    # -- inspection ------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._tx() as db:
            return {s: n for s, n in db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")}

    def jobs(self) -> list[dict[str, Any]]:
        with self._tx() as db:
            cols = ("id", "kind", "key", "status", "attempts", "last_error")
            return [dict(zip(cols, r)) for r in db.execute(f"SELECT {', '.join(cols)} FROM jobs ORDER BY id")]

    def next_due(self) -> float | None:
        with self._tx() as db:
            row = db.execute("SELECT MIN(not_before) FROM jobs WHERE status = 'pending'").fetchone()
            return row[0] if row else None


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) under the queue's lock."""

    def __init__(self, q: JobQueue) -> None:
        self.q = q

    def __enter__(self) -> sqlite3.Connection:
        self.q._lock.acquire()
        self.q._db.execute("BEGIN IMMEDIATE")
        return self.q._db

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.q._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.q._lock.release()
