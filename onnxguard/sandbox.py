"""Scanning in a resource-limited child process: a hostile model cannot take the caller down.

``scan_isolated(opts, limits)`` runs :func:`onnxguard.scan.run_scan` in a
child (``python -m onnxguard.sandbox``) with

* ``RLIMIT_AS``: the address-space (memory) limit, ``limits.max_memory_mb``;
* ``RLIMIT_CPU``: CPU seconds, ``limits.cpu_time_s`` (default: the wall time
  times the CPUs the child may use);
* a wall-time limit (``limits.timeout_s``) enforced here: the child runs in its
  own process group and the whole group is killed when time is up;
* no core dumps, one BLAS thread, at most four onnxruntime threads.

The options travel as JSON on the child's stdin; progress, static findings and
the finished report come back as JSON lines on a private pipe; each check's
result is sent as soon as it completes, so when the child dies mid-scan the
report built here keeps the figures of the checks that finished. Typed errors
raised in the child (bad input: exit 2) are raised again here with the same
class and message. When the child dies (segfault, out of memory, time limit)
this process builds the report itself: the model's digest, what happened, what
was not tested, graded by the policy's ``grading.scan_crashed`` rule (default
``critical`` / ``fail``). The verdict is always recomputed here from the
figures; signing, if any, belongs to the caller, never the child.

Nothing in this module's import path loads numpy, onnx or onnxruntime before
the child has set its limits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import threading

    from .policy import Limits, LoadedPolicy
    from .report import Report, StaticFinding
    from .options import ProgressFactory, ScanOptions

MAX_MESSAGE = 256 * 1024**2  # one protocol line (the report) may not exceed this
MAX_ORT_THREADS = 4
MAX_STREAMED_CHECKS = 1000  # check results kept from one child's stream (a policy has far fewer checks)
_FD_ENV = "ONNXGUARD_SANDBOX_FD"
_SIGNALS = {
    signal.SIGSEGV: "crashed with a segmentation fault",
    signal.SIGBUS: "crashed with a bus error",
    signal.SIGILL: "crashed on an illegal instruction",
    signal.SIGFPE: "crashed on an arithmetic fault",
    signal.SIGABRT: "aborted (native code gave up; often an allocation failing under the memory limit)",
    signal.SIGXCPU: "exceeded its CPU-time limit",
    signal.SIGKILL: "was killed (SIGKILL: out of memory, or the CPU-time hard limit)",
}


@dataclass
class IsolatedResult:
    report: "Report"
    crashed: str | None = None  # what happened when the child died; None when it finished
    timed_out: bool = False  # the wall-time limit killed it (retrying would only spend the time again)


@dataclass(frozen=True)
class SandboxLimits:
    max_memory_mb: int
    timeout_s: float
    cpu_time_s: float | None = None
    max_model_mb: int = 2048


def limits_for(policy: "LoadedPolicy", max_memory_mb: int | None = None, timeout_s: float | None = None) -> SandboxLimits:
    """The policy's limits, with command-line overrides."""
    lim = policy.policy.limits
    return SandboxLimits(
        max_memory_mb=max_memory_mb or lim.max_memory_mb,
        timeout_s=timeout_s or lim.timeout_s,
        cpu_time_s=lim.cpu_time_s,
        max_model_mb=lim.max_model_mb,
    )


def scan_isolated(opts: "ScanOptions", limits: "SandboxLimits | Limits | None" = None, progress: "ProgressFactory | None" = None) -> "Report":
    """Scan in a resource-limited child; returns the report (a crash report when the child died).

    Raises the same typed :class:`onnxguard.errors.OnnxGuardError` as ``run_scan`` for bad input."""
    return run_isolated(opts, limits, progress).report


# -- parent -----------------------------------------------------------------------------


def _to_limits(limits: Any, policy: "LoadedPolicy") -> SandboxLimits:
    if limits is None:
        return limits_for(policy)
    if isinstance(limits, SandboxLimits):
        return limits
    return SandboxLimits(limits.max_memory_mb, limits.timeout_s, limits.cpu_time_s, limits.max_model_mb)


def _encode(v: Any) -> Any:
    if isinstance(v, os.PathLike):
        return {"__path__": os.fspath(v)}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x) for x in v]}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    raise TypeError(f"scan option of type {type(v).__name__} cannot cross into the sandbox")


def _decode(v: Any) -> Any:
    if isinstance(v, dict) and "__path__" in v:
        return Path(v["__path__"])
    if isinstance(v, dict) and "__tuple__" in v:
        return tuple(_decode(x) for x in v["__tuple__"])
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def _options_json(opts: "ScanOptions", policy: "LoadedPolicy", lim: SandboxLimits, job: dict[str, Any] | None = None) -> bytes:
    """Every ScanOptions field (paths and tuples tagged), the policy as validated data, the model cap."""
    import dataclasses

    fields = {f.name: _encode(getattr(opts, f.name)) for f in dataclasses.fields(opts) if f.name != "policy"}
    return json.dumps({
        "options": fields,
        "policy": {"doc": policy.policy.model_dump(mode="json"), "sha256": policy.sha256, "source": policy.source,
                   "deviations": [d.model_dump(mode="json") for d in policy.deviations]},
        "max_model_mb": lim.max_model_mb,
        "job": job or {"kind": "scan"},
    }).encode()


# the only variables the child inherits (an allow-list: signing keys and passphrases, registry tokens,
# cloud credentials and everything else stay in the parent)
CHILD_ENV_ALLOW = (
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "TZ", "TMPDIR", "TEMP", "TMP",
    "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SYSTEMROOT",
)


def _child_env(threads: int) -> dict[str, str]:
    import tempfile

    env = {k: os.environ[k] for k in CHILD_ENV_ALLOW if k in os.environ}
    env["HOME"] = tempfile.gettempdir()  # not the user's home: its dotfiles (keys, tokens) are none of the model's business
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # thread pools reserve address space per thread: keep them small so RLIMIT_AS measures the model
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = "1"
    env["MALLOC_ARENA_MAX"] = "2"
    env["ONNXGUARD_ORT_THREADS"] = str(threads)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:  # HOME moved: a per-user (pip --user) install stays importable through PYTHONPATH
        import site

        user_site = site.getusersitepackages()
        if user_site in sys.path:
            env["PYTHONPATH"] += os.pathsep + user_site
    except (AttributeError, TypeError):  # pragma: no cover
        pass
    return env


def _rebuild_error(kind: str, message: str, check: str | None) -> Exception:
    from . import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.OnnxGuardError):
        if cls is errors.VerificationError:
            return errors.VerificationError(check or "check", message.split(": ", 1)[-1])
        return cls(message)
    return errors.ScanFailed(f"internal error in the sandboxed scan: {message[:300]}")


def run_isolated(
    opts: "ScanOptions",
    limits: "SandboxLimits | Limits | None" = None,
    progress: "ProgressFactory | None" = None,
    *,
    python: str | None = None,
    threads: int | None = None,
    cancel: "threading.Event | None" = None,
) -> IsolatedResult:
    """Like :func:`scan_isolated`, and says whether the child died (for exit code 3).

    ``threads``: onnxruntime threads in the child (default: the CPUs, at most four); a fleet
    running several scans at once gives each its share. ``cancel``: when set, the child is killed
    (within a second) and the result is a crash report saying so."""
    from .errors import ResourceLimitError, ScanFailed
    from .policy import load_policy

    t0 = time.monotonic()
    policy = opts.policy or load_policy(None)
    lim = _to_limits(limits, policy)
    run = _run_child(opts, policy, lim, progress, python=python, threads=threads, cancel=cancel)
    state, timed_out, proc, sha, size = run.state, run.timed_out, run.proc, run.sha, run.size
    wall = time.monotonic() - t0
    if state.report_json is not None and not timed_out:
        from .grading import grade_report
        from .report import load_report

        try:
            report = load_report(state.report_json)
        except Exception as exc:
            raise ScanFailed(f"the sandboxed scan returned a malformed report ({type(exc).__name__})") from None
        if report.model.sha256 != sha:
            raise ScanFailed("the sandboxed scan reported a different model digest than the file holds (the file changed during the scan?)")
        grade_report(report, policy)  # the verdict is the parent's, from the figures
        return IsolatedResult(report)
    if state.error is not None and not timed_out:
        kind, message, check = state.error
        err = _rebuild_error(kind, message, check)
        if kind == "internal":
            what = f"an internal error stopped the scan ({message[:300]})"
        elif isinstance(err, ResourceLimitError):
            what = str(err)
        else:
            raise err
    elif timed_out:
        what = f"the scan ran past its {lim.timeout_s:g}-second time limit and was killed"
    elif state.crash is not None:
        what = state.crash
    else:
        what = _exit_text(proc.returncode, lim, state.stderr_tail)
    from .assemble import crash_report

    limits_text = f"limits: {lim.max_memory_mb} MB memory, {lim.timeout_s:g} s wall time"
    report = crash_report(opts, policy, what, sha=sha, size=size, limits_text=limits_text, static=state.static, model=state.model,
                          wall_s=wall, checks=state.checks)
    return IsolatedResult(report, crashed=what, timed_out=timed_out)


@dataclass
class _ChildRun:
    state: "_Channel"
    timed_out: bool
    proc: subprocess.Popen
    sha: str
    size: int


def _run_child(
    opts: "ScanOptions", policy: "LoadedPolicy", lim: SandboxLimits, progress: "ProgressFactory | None",
    *, python: str | None = None, job: dict[str, Any] | None = None, threads: int | None = None,
    cancel: "threading.Event | None" = None,
) -> _ChildRun:
    """Start the limited child, hand it the options (and ``job``: what to run, the whole scan by default), collect what it says."""
    from . import safeload
    from .errors import ScanFailed

    # the parent checks the file (lstat: not a link, regular, size) and hashes it; it never parses it
    follow = bool(getattr(opts, "follow_symlinks", False))
    sha, size = safeload.digest_model(Path(opts.model_path), max_bytes=lim.max_model_mb * 1024 * 1024, follow_symlinks=follow)

    threads = max(1, min(threads or os.cpu_count() or 1, MAX_ORT_THREADS))
    cpu = lim.cpu_time_s if lim.cpu_time_s is not None else lim.timeout_s * (threads + 1)
    argv = [python or sys.executable, "-m", "onnxguard.sandbox", str(lim.max_memory_mb * 1024 * 1024), str(max(1, int(cpu + 0.999)))]
    rfd, wfd = os.pipe()
    env = _child_env(threads)
    env[_FD_ENV] = str(wfd)
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(wfd,), env=env, start_new_session=True, close_fds=True,
        )
    except OSError as exc:
        os.close(rfd)
        os.close(wfd)
        raise ScanFailed(f"cannot start the sandbox process: {exc.strerror or exc}") from None
    os.close(wfd)

    state = _Channel(progress)
    timed_out = False
    try:
        try:
            assert proc.stdin is not None
            proc.stdin.write(_options_json(opts, policy, lim, job))
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the child died at once; its exit status says why
        timed_out = _pump(proc, rfd, state, deadline=time.monotonic() + lim.timeout_s, cancel=cancel)
    except BaseException:
        _kill(proc)
        raise
    finally:
        os.close(rfd)
        if proc.poll() is None:
            _kill(proc)
    return _ChildRun(state, timed_out, proc, sha, size)


def run_attack_isolated(
    opts: "ScanOptions", spec: Any, *, labels_only: bool = False, limits: "SandboxLimits | Limits | None" = None,
    progress: "ProgressFactory | None" = None, python: str | None = None,
) -> Any:
    """``onnxguard attack`` in the sandbox: one check (``spec``, a CheckSpec) on the model, after the same safe
    read and static refusals as a scan. Returns the ``EvasionCheck``; a child that dies raises ``ScanFailed``."""
    from .errors import ResourceLimitError, ScanFailed
    from .policy import load_policy

    policy = opts.policy or load_policy(None)
    lim = _to_limits(limits, policy)
    job = {"kind": "attack", "spec": spec.model_dump(mode="json"), "labels_only": bool(labels_only)}
    run = _run_child(opts, policy, lim, progress, python=python, job=job)
    state = run.state
    if state.check_json is not None and not run.timed_out:
        from .report import EvasionCheck

        try:
            return EvasionCheck.model_validate_json(state.check_json)
        except Exception as exc:
            raise ScanFailed(f"the sandboxed attack returned a malformed result ({type(exc).__name__})") from None
    if state.error is not None and not run.timed_out:
        kind, message, check = state.error
        err = _rebuild_error(kind, message, check)
        if kind == "internal" or isinstance(err, ResourceLimitError):
            raise ScanFailed(f"the attack failed in the sandbox: {message[:300]}")
        raise err
    if run.timed_out:
        raise ScanFailed(f"the attack ran past its {lim.timeout_s:g}-second time limit and was killed (sandbox; --timeout to change it)")
    what = state.crash or _exit_text(run.proc.returncode, lim, state.stderr_tail)
    raise ScanFailed(f"the attack failed in the sandbox: {what}")


class _Channel:
    """What the child said: progress, static findings, the report or an error."""

    def __init__(self, progress: "ProgressFactory | None") -> None:
        self.progress = progress
        self.bars: dict[int, Callable[[int, int], None]] = {}
        self.report_json: str | None = None
        self.check_json: str | None = None
        self.error: tuple[str, str, str | None] | None = None
        self.crash: str | None = None
        self.static: list[dict[str, Any]] = []
        self.model: dict[str, Any] | None = None
        self.checks: list[str] = []  # each finished check's JSON, streamed as it completed
        self.stderr_tail = b""

    def handle(self, line: bytes) -> None:
        """One message; a malformed one (the child is not trusted once the model ran) is ignored."""
        try:
            msg = json.loads(line)
            if isinstance(msg, dict):
                self._dispatch(msg)
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            return

    def _dispatch(self, msg: dict[str, Any]) -> None:
        t = msg.get("t")
        if t == "bar" and self.progress is not None:
            self.bars[int(msg["id"])] = self.progress(str(msg["name"])[:80], int(msg["total"]))
        elif t == "p" and int(msg.get("id", -1)) in self.bars:
            self.bars[int(msg["id"])](int(msg["done"]), int(msg["total"]))
        elif t == "static":
            self.static = list(msg.get("findings") or [])
            self.model = msg.get("model")
        elif t == "report":
            self.report_json = str(msg.get("json"))
        elif t == "check":  # a finished check (a scan streams each one; an attack job sends its result)
            self.check_json = str(msg.get("json"))
            if len(self.checks) < MAX_STREAMED_CHECKS:  # a child gone rogue cannot grow this without bound
                self.checks.append(self.check_json)
        elif t == "error":
            self.error = (str(msg.get("kind")), str(msg.get("message")), msg.get("check"))
        elif t == "crash":
            self.crash = str(msg.get("what"))


def _pump(proc: subprocess.Popen, rfd: int, state: _Channel, deadline: float, cancel: "threading.Event | None" = None) -> bool:
    """Read the child's messages and stderr until it exits; True when the deadline killed it."""
    import selectors

    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(rfd, selectors.EVENT_READ, "chan")
    sel.register(proc.stderr.fileno(), selectors.EVENT_READ, "err")
    buf = b""
    open_fds = 2
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            _kill(proc)
            return True
        if cancel is not None and cancel.is_set():
            _kill(proc)
            state.crash = "the scan was cancelled (its caller stopped)"
            return False
        for key, _ in sel.select(timeout=min(left, 1.0)):
            data = os.read(key.fd, 1 << 16)
            if not data:
                sel.unregister(key.fd)
                open_fds -= 1
                continue
            if key.data == "err":
                state.stderr_tail = (state.stderr_tail + data)[-4096:]
                continue
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                state.handle(line)
            if len(buf) > MAX_MESSAGE:
                _kill(proc)
                state.crash = "the sandboxed scan sent an oversized message and was stopped"
                return False
    sel.close()
    left = deadline - time.monotonic()
    try:
        proc.wait(timeout=max(left, 0.1))
    except subprocess.TimeoutExpired:
        _kill(proc)
        return True
    return False


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def _exit_text(code: int | None, lim: SandboxLimits, stderr_tail: bytes) -> str:
    from .text import sanitize

    if code is not None and code < 0:
        sig = -code
        what = _SIGNALS.get(sig) or f"was killed by signal {sig}"  # type: ignore[call-overload]
        if sig == signal.SIGKILL:
            what += f" (memory limit {lim.max_memory_mb} MB)"
        return f"the scan process {what}"
    last = [ln for ln in sanitize(stderr_tail.decode("utf-8", "replace")).splitlines() if ln.strip()]
    hint = f": {last[-1][:200]}" if last else ""
    if "memory" in hint.lower() or "bad_alloc" in hint.lower() or "failed to map" in hint.lower():
        hint += f" (memory limit {lim.max_memory_mb} MB; the interpreter and onnxruntime alone need about 450 MB)"
    return f"the scan process exited with status {code} without a result{hint}"


# -- child ------------------------------------------------------------------------------


def _set_limits(as_bytes: int, cpu_s: int) -> None:
    import resource

    try:  # die with the parent (Linux): an orphaned scan must not run on
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(1)

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 2))


class _Sender:
    def __init__(self, fd: int) -> None:
        self.f = os.fdopen(fd, "wb", buffering=0)

    def __call__(self, obj: dict[str, Any]) -> None:
        self.f.write(json.dumps(obj).encode() + b"\n")


def _child_progress(send: _Sender) -> Callable[[str, int], Callable[[int, int], None]]:
    counter = [0]

    def factory(name: str, total: int) -> Callable[[int, int], None]:
        k = counter[0]
        counter[0] += 1
        send({"t": "bar", "id": k, "name": name, "total": total})
        last = [-1]

        def update(done: int, tot: int) -> None:
            pct = int(100 * done / max(tot, 1))
            if pct != last[0]:
                last[0] = pct
                send({"t": "p", "id": k, "done": done, "total": tot})

        return update

    return factory


def _child_main(argv: list[str]) -> int:
    as_bytes, cpu_s = int(argv[0]), int(argv[1])
    _set_limits(as_bytes, cpu_s)
    send = _Sender(int(os.environ[_FD_ENV]))
    oom = json.dumps({"t": "crash", "what": f"the scan ran out of memory (MemoryError) under the sandbox's {as_bytes // 1024**2} MB memory limit"}).encode() + b"\n"
    try:
        cfg = json.loads(sys.stdin.buffer.read(64 * 1024**2))
        try:
            from .errors import OnnxGuardError
            from .policy import LoadedPolicy, Policy
            from .assemble import static_model_info
            from .options import ScanOptions
            from .report import Deviation
            from .scan import _shown_path, run_scan
        except (ImportError, OSError) as exc:
            mb = as_bytes // 1024**2
            send({"t": "crash", "what": f"the sandbox could not start under its {mb} MB memory limit ({type(exc).__name__}: "
                  f"{str(exc)[-120:]}); the interpreter and onnxruntime alone need about 450 MB"})
            return 0

        pol = cfg["policy"]
        policy = LoadedPolicy(policy=Policy.model_validate(pol["doc"]), sha256=pol["sha256"], source=pol["source"],
                              deviations=tuple(Deviation.model_validate(d) for d in pol.get("deviations", [])))
        opts = ScanOptions(policy=policy, **{k: _decode(v) for k, v in cfg["options"].items()})

        def on_static(raw: Any, findings: list["StaticFinding"]) -> None:
            info = static_model_info(raw, _shown_path(raw, opts.model_path))
            send({"t": "static", "findings": [f.model_dump(mode="json") for f in findings], "model": info.model_dump(mode="json")})

        def on_check(chk: Any) -> None:
            send({"t": "check", "json": chk.model_dump_json()})

        job = cfg.get("job") or {"kind": "scan"}
        try:
            if job.get("kind") == "attack":
                from .policy import CheckSpec
                from .scan import run_attack

                chk = run_attack(opts, CheckSpec.model_validate(job["spec"]), labels_only=bool(job.get("labels_only")),
                                 progress=_child_progress(send))
                on_check(chk)
                return 0
            report = run_scan(opts, progress=_child_progress(send), on_static=on_static, on_check=on_check)
        except OnnxGuardError as exc:
            send({"t": "error", "kind": type(exc).__name__, "message": str(exc), "check": getattr(exc, "check", None)})
            return 0
        send({"t": "report", "json": report.model_dump_json()})
        return 0
    except MemoryError:
        send.f.write(oom)
        return 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a typed message
        send({"t": "error", "kind": "internal", "message": f"{type(exc).__name__}: {str(exc)[:300]}", "check": None})
        return 0


if __name__ == "__main__":
    code = _child_main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
