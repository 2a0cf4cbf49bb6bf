"""A scan job and its outcome: what crosses from the driver to a worker and back.

A worker runs :func:`execute`: one sandboxed scan (``onnxguard.sandbox.run_isolated``), turned
into a plain :class:`ScanOutcome` that never raises. The worker never sees a signing key; the
driver re-checks, grades and signs what comes back.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    import threading

    from ..report import Report
    from ..sandbox import SandboxLimits
    from ..options import ScanOptions

OutcomeKind = Literal["report", "crashed", "timed_out", "bad_input", "error", "worker_lost", "cancelled"]
RETRYABLE: frozenset[str] = frozenset({"crashed", "worker_lost"})  # a FAIL verdict is a result, never retried


@dataclass(frozen=True)
class Resources:
    """What one scan asks of the executor: CPUs (also its onnxruntime threads), memory, GPUs."""

    cpus: int = 1
    memory_mb: int | None = None  # default: the sandbox's memory limit
    gpus: float = 0.0  # 1 when the scan's execution provider is CUDA

    @classmethod
    def for_scan(cls, limits: "SandboxLimits", cpus: int = 1, provider: str = "cpu") -> "Resources":
        return cls(cpus=max(1, cpus), memory_mb=limits.max_memory_mb, gpus=1.0 if provider.lower().startswith("cuda") else 0.0)


@dataclass
class ScanJob:
    """One sandboxed scan. ``key`` names the job in outcomes (the fleet uses the model's slug)."""

    key: str
    opts: "ScanOptions"
    limits: "SandboxLimits"
    resources: Resources = field(default_factory=Resources)


@dataclass
class ScanOutcome:
    """What a worker hands back. ``report_json`` is set for kinds ``report``, ``crashed`` and
    ``timed_out`` (the sandbox's crash report); ``message`` says what went wrong otherwise."""

    key: str
    kind: OutcomeKind
    report_json: str | None = None
    message: str | None = None
    error_type: str | None = None  # the onnxguard error class for bad input
    worker: str = ""
    wall_s: float = 0.0
    attempts: int = 1

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def report(self) -> "Report | None":
        from ..report import load_report

        return load_report(self.report_json) if self.report_json is not None else None


def execute(job: ScanJob, cancel: "threading.Event | None" = None) -> ScanOutcome:
    """Run one job in the sandbox on this worker; every failure becomes an outcome, never an exception.

    ``cancel`` (local executor): when set, the sandbox child is killed and the outcome is ``cancelled``."""
    t0 = time.monotonic()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        from ..errors import BadInputError, OnnxGuardError
        from ..sandbox import run_isolated

        try:
            if cancel is not None and cancel.is_set():
                return ScanOutcome(job.key, "cancelled", message="cancelled before it started", worker=worker)
            res = run_isolated(job.opts, job.limits, threads=job.resources.cpus, cancel=cancel)
            if cancel is not None and cancel.is_set():
                return ScanOutcome(job.key, "cancelled", message=res.crashed or "cancelled", worker=worker, wall_s=time.monotonic() - t0)
        except BadInputError as exc:
            return ScanOutcome(job.key, "bad_input", message=str(exc), error_type=type(exc).__name__, worker=worker, wall_s=time.monotonic() - t0)
        except OnnxGuardError as exc:
            return ScanOutcome(job.key, "error", message=str(exc), error_type=type(exc).__name__, worker=worker, wall_s=time.monotonic() - t0)
        kind: OutcomeKind = "report" if res.crashed is None else ("timed_out" if res.timed_out else "crashed")
        return ScanOutcome(job.key, kind, report_json=res.report.model_dump_json(), message=res.crashed, worker=worker, wall_s=time.monotonic() - t0)
    except Exception as exc:  # noqa: BLE001 - the driver decides; a worker never dies of a Python error
        return ScanOutcome(job.key, "error", message=f"{type(exc).__name__}: {str(exc)[:300]}", worker=worker, wall_s=time.monotonic() - t0)
