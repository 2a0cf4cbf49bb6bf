"""Executors: where scan jobs run. ``local`` (the default, no extra install) or ``ray``.

Both run each job through :func:`onnxguard.fleet.jobs.execute`, so every scan still happens in
the resource-limited sandbox child. The API is the same for the fleet command, a split single
scan and a registry receiver::

    with get_executor("ray", address="ray://head:10001") as ex:
        report = ex.scan(ScanOptions(model_path=p, policy=pol))          # one scan, blocking
        for outcome in ex.map(jobs, retries=2):                          # many, as they complete
            ...

``submit(job)`` returns a ``concurrent.futures.Future`` that always resolves to a
:class:`ScanOutcome` (a lost worker becomes ``kind="worker_lost"``, never an exception).
``map`` retries retryable outcomes (the worker process or the sandbox child died; not a time
limit, not bad input, never a FAIL verdict) at most ``retries`` times per job.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from ..errors import BadInputError, ScanFailed
from .jobs import Resources, ScanJob, ScanOutcome, execute

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report
    from ..sandbox import SandboxLimits
    from ..options import ScanOptions

EXECUTORS = ("local", "ray")


class Executor(ABC):
    """Runs scan jobs; subclasses implement :meth:`submit` (and :meth:`close`)."""

    name = "executor"
    workers = 1

    @abstractmethod
    def submit(self, job: ScanJob) -> "cf.Future[ScanOutcome]":
        """Start one scan job; the future's outcome never raises."""

    def close(self, wait: bool = True) -> None:
        """Release the workers; ``wait=False`` (on an error or an interrupt) abandons running scans."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(wait=exc_type is None)

    def default_cpus(self) -> int:
        """CPUs (and onnxruntime threads) for one job when the caller does not say."""
        return 1

    def map(self, jobs: Iterable[ScanJob], retries: int = 0, on_retry: Callable[[ScanOutcome], None] | None = None) -> Iterator[ScanOutcome]:
        """Run every job; yield each final outcome as it completes (``attempts`` counts the tries)."""
        attempts: dict[cf.Future, tuple[ScanJob, int]] = {}
        for job in jobs:
            attempts[self.submit(job)] = (job, 1)
        while attempts:
            done, _ = cf.wait(list(attempts), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                job, n = attempts.pop(fut)
                out = fut.result()
                out.attempts = n
                if out.retryable and n <= retries:
                    if on_retry is not None:
                        on_retry(out)
                    attempts[self.submit(job)] = (job, n + 1)
                    continue
                yield out

    def scan(self, opts: "ScanOptions", limits: "SandboxLimits | None" = None, retries: int = 1) -> "Report":
        """One sandboxed scan on this executor, blocking: the drop-in for ``sandbox.scan_isolated``.

        Returns the report (a crash report when the scan died, after ``retries``); raises the
        typed error for bad input, ``ScanFailed`` when no worker could run it."""
        from .. import errors
        from ..policy import load_policy
        from ..sandbox import limits_for

        lim = limits or limits_for(opts.policy or load_policy(None))
        job = ScanJob(key=Path(opts.model_path).name, opts=opts, limits=lim, resources=Resources.for_scan(lim, self.default_cpus()))
        out = next(iter(self.map([job], retries=retries)))
        rep = out.report()
        if rep is not None:
            return rep
        cls = getattr(errors, out.error_type or "", None)
        if out.kind == "bad_input" and isinstance(cls, type) and issubclass(cls, errors.BadInputError):
            raise cls(out.message or "bad input")
        raise ScanFailed(f"the scan could not run on the {self.name} executor: {out.message}")


def _resolved(value: ScanOutcome) -> "cf.Future[ScanOutcome]":
    f: cf.Future[ScanOutcome] = cf.Future()
    f.set_result(value)
    return f


class LocalExecutor(Executor):
    """A pool of ``workers`` sandboxed scan processes on this machine.

    Each slot is a driver thread that starts one resource-limited child (``python -m
    onnxguard.sandbox``) and waits for it: the children are the worker processes, and the
    driver never imports onnxruntime. Killing a child loses only that scan (retried)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        import threading

        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="onnxguard-fleet")
        self._cancel = threading.Event()

    def default_cpus(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.workers)

    def submit(self, job: ScanJob) -> "cf.Future[ScanOutcome]":
        return self._pool.submit(execute, job, self._cancel)

    def close(self, wait: bool = True) -> None:
        if not wait:  # an error or an interrupt in the driver: kill the running scans (within a second)
            self._cancel.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)


class RayExecutor(Executor):
    """Each job is a Ray task asking for the job's CPUs, memory and GPUs.

    ``address``: an existing cluster (``auto``, ``ray://head:10001``, ``head:6379``); without it a
    local Ray is started with ``workers`` CPUs and shut down by :meth:`close`. On a cluster the
    workers need onnxguard installed (the image) and must see the model paths (shared storage)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise BadInputError("--executor ray needs Ray: pip install 'onnxguard[ray]'") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            try:
                if address:
                    _reachable(address)
                    ray.init(address=address, log_to_driver=False)
                else:
                    root = str(Path(__file__).resolve().parents[2])
                    pp = root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
                    ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                             runtime_env={"env_vars": {"PYTHONPATH": pp}})
            except ConnectionError as exc:
                raise ScanFailed(f"cannot connect to the Ray cluster at {address}: {exc}") from None
            self._started = True
        self._remote = ray.remote(execute)
        # without --address (a local Ray) a task no node can hold would wait forever: refuse it. On a
        # cluster (--address) an autoscaler (KubeRay) may add the node it needs, so Ray decides there.
        self._local = not address
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        self._node_max = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in ("CPU", "memory", "GPU")}
        self.workers = int(sum(n.get("CPU", 0.0) for n in nodes)) or 1

    def _check_feasible(self, r: Resources) -> str | None:
        """Ray would queue an infeasible task forever: say so instead."""
        mem = (r.memory_mb or 0) * 1024 * 1024
        if r.cpus > self._node_max["CPU"]:
            return f"the scan asks for {r.cpus} CPUs; the largest Ray node has {self._node_max['CPU']:g}"
        if mem > self._node_max["memory"]:
            return f"the scan asks for {r.memory_mb} MB of memory; the largest Ray node offers {self._node_max['memory'] / 2**20:.0f} MB"
        if r.gpus > self._node_max["GPU"]:
            return f"the scan asks for {r.gpus:g} GPU(s); no Ray node has one"
        return None

    def submit(self, job: ScanJob) -> "cf.Future[ScanOutcome]":
        r = job.resources
        why = self._check_feasible(r) if self._local else None
        if why is not None:
            return _resolved(ScanOutcome(job.key, "error", message=f"cannot schedule on Ray: {why}"))
        opts: dict = {"num_cpus": r.cpus, "max_retries": 0, "name": f"onnxguard-scan:{job.key}"[:120]}
        if r.memory_mb:
            opts["memory"] = r.memory_mb * 1024 * 1024
        if r.gpus:
            opts["num_gpus"] = r.gpus
        ref = self._remote.options(**opts).remote(job)
        inner = ref.future()
        outer: cf.Future[ScanOutcome] = cf.Future()

        def done(f: cf.Future) -> None:
            try:
                outer.set_result(f.result())
            except Exception as exc:  # noqa: BLE001 - worker died, node lost, task cancelled
                kind = "worker_lost" if isinstance(exc, self._ray.exceptions.RayError) else "error"
                outer.set_result(ScanOutcome(job.key, kind, message=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"))

        inner.add_done_callback(done)
        return outer

    def close(self, wait: bool = True) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, with a message, when a cluster address does not answer (Ray itself would wait for minutes)."""
    import socket
    from urllib.parse import urlsplit

    if address in ("auto", "local"):
        return
    u = urlsplit(address if "://" in address else f"gcs://{address}")
    if not u.hostname:
        raise BadInputError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        port = u.port or (10001 if u.scheme == "ray" else 6379)
    except ValueError:
        raise BadInputError(f"--address {address}: the port is not a number") from None
    try:
        socket.create_connection((u.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ScanFailed(f"cannot reach the Ray cluster at {address} ({u.hostname}:{port}: {exc.strerror or exc})") from None


def get_executor(name: str = "local", address: str | None = None, workers: int | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``). ``address`` applies to Ray only."""
    if name == "local":
        if address:
            raise BadInputError("--address applies to --executor ray only")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address, workers)
    raise BadInputError(f"unknown executor '{name}': choose one of {', '.join(EXECUTORS)}")
