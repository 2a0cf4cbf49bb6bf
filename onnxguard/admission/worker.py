"""What the gate does with a job: scan a new model version, or check a protected alias.

Works against any :class:`~onnxguard.admission.registry.Registry`; scans go through one
:class:`~onnxguard.admission.engine.Scanner`. Admission fails closed: any error while checking
an alias (the registry unreachable, an attestation missing, unreadable or forged, a timeout)
removes the alias and tags why.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
import threading
import uuid
from dataclasses import dataclass

from ..errors import AdmissionDenied, BadInputError, ScanFailed
from ..grading import worst_level, worst_verdict
from ..report import Report
from . import registry as R
from .artifact import ModelFiles, model_files, show
from .attestation import Sealer, Verifier, VersionId, statement
from .config import Settings, admission_policies, resolve_policy
from .engine import LocalScanner, Scanner
from .queue import Job, JobQueue

log = logging.getLogger("onnxguard.admission")

SCAN = "scan"
ALIAS = "alias"


@dataclass
class ScanOutcome:
    verdict: str
    highest_risk: str
    reports: dict[str, Report]
    location: str | None = None  # where the attestation was stored
    attestation_sha256: str | None = None
    files: ModelFiles | None = None
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _safe_name(name: str, version: str, prefix: str = "") -> str:
    return prefix + _sha((str(name) + "\0" + str(version)).encode("utf-8"))[:24]


class Worker:
    def __init__(self, settings: Settings, queue: JobQueue | None, registry: R.Registry, scanner: Scanner | None = None) -> None:
        self.settings = settings
        self.queue = queue
        self.registry = registry
        self.scanner: Scanner = scanner or LocalScanner()
        self.sealer = Sealer(settings.key_path, settings.key_passphrase)
        # unsigned attestations are accepted only when explicitly allowed (`check --allow-unsigned`), never by default
        self.verifier = Verifier(settings.trusted_keys, allow_unsigned=settings.allow_unsigned)
        self._wake = threading.Event()

    # -- the loop --------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def run_forever(self, stop: threading.Event, poll_s: float = 2.0) -> None:
        assert self.queue is not None
        while not stop.is_set():
            job = self.queue.claim()
            if job is None:
                self._wake.wait(poll_s)
                self._wake.clear()
                continue
            self.process(job)

    def process(self, job: Job) -> None:
        assert self.queue is not None
        log.info("job %s %s (attempt %d)", job.id, show(job.key), job.attempts)
        try:
            if job.kind == SCAN:
                self.scan_version(job.payload["name"], job.payload["version"], attempts=job.attempts)
            elif job.kind == ALIAS:
                self.check_alias(job.payload["name"], job.payload["alias"], job.payload["version"])
            else:
                raise ValueError(f"unknown job kind {job.kind!r}")
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, retried or tagged
            msg = show(f"{type(exc).__name__}: {exc}", 500)
            if job.attempts >= self.settings.max_attempts:
                log.error("job %s failed for good after %d attempts: %s", job.id, job.attempts, msg)
                self.queue.failed(job, msg)
                self._give_up(job, msg)
            else:
                delay = self.settings.retry_delay_s * 2 ** (job.attempts - 1)
                log.warning("job %s failed (attempt %d), retrying in %.0fs: %s", job.id, job.attempts, delay, msg)
                self.queue.retry(job, msg, delay)
            return
        self.queue.done(job)

    def _give_up(self, job: Job, msg: str) -> None:
        name, version = job.payload.get("name"), job.payload.get("version")
        try:
            if job.kind == SCAN:
                self.registry.set_tags(name, version, {R.TAG_STATUS: "failed", R.TAG_ERROR: msg, R.TAG_ATTEMPTS: str(job.attempts)})
            else:  # an alias check that could not finish: the alias goes, if it can
                alias = job.payload["alias"]
                try:
                    at = self.registry.alias_version(name, alias)
                except Exception:  # noqa: BLE001 - cannot tell where it points: remove it
                    at = str(version)
                if at == str(version):
                    self.registry.delete_alias(name, alias)
                    log.warning("removed alias %s from models:/%s/%s: the check could not finish", show(alias), show(name), show(version))
                self.registry.set_tags(name, version, {R.admission_tag(alias): f"removed {_now()}: check failed: {msg}"[:500]})
        except Exception as exc:  # noqa: BLE001 - the queue row keeps the failure either way
            log.error("could not record the failure of job %s: %s", job.id, show(exc))

    # -- scanning --------------------------------------------------------

    def _version_id(self, name: str, version: str) -> VersionId:
        return VersionId(self.registry.kind, name, str(version), self.registry.artifact_identity(name, version))

    def scan_version(self, name: str, version: str, attempts: int = 1, write_back: bool = True) -> ScanOutcome:
        reg = self.registry
        if write_back:
            reg.set_tags(name, version, {R.TAG_STATUS: "scanning", R.TAG_ATTEMPTS: str(attempts)})
        work = self.settings.work_dir / _safe_name(name, version, "scan-")
        shutil.rmtree(work, ignore_errors=True)
        try:
            try:
                policy, policy_ref = resolve_policy(reg.model_policy(name), self.settings)
            except BadInputError as exc:
                return self._final_error(name, version, str(exc), write_back)
            vid = self._version_id(name, version)
            root = reg.download(name, version, work / "artifact")
            try:
                files = model_files(root, reg.loadable_paths(root))
            except AdmissionDenied as exc:  # nothing admissible can come of this version
                return self._final_error(name, version, str(exc), write_back)
            order = sorted(files.files)
            try:
                got = self.scanner.scan([root / p for p in order], policy, policy_ref, self.settings.seed)
            except BadInputError as exc:  # a refused model is a result, not a reason to retry
                return self._final_error(name, version, str(exc), write_back)
            if len(got) != len(order):
                raise ScanFailed(f"the scanner returned {len(got)} report(s) for {len(order)} file(s)")
            reports: dict[str, Report] = {}
            for rel, rep in zip(order, got):
                if rep.model.sha256 != files.files[rel]:
                    raise ScanFailed(f"{show(rel)} changed while it was scanned")
                rep.model.path = f"models:/{name}/{version}/{rel}"
                reports[rel] = rep
            verdict = worst_verdict([r.summary.verdict if r.summary else "fail" for r in reports.values()])
            risk = worst_level([r.summary.highest_risk if r.summary else "critical" for r in reports.values()])
            if not write_back:
                return ScanOutcome(verdict, risk, reports, files=files)
            sealed = {rel: self.sealer.seal_report(r) for rel, r in reports.items()}
            blob = self.sealer.seal(statement(vid, policy, files, reports, sealed))
            uploads = {f"report-{i}.{'dsse' if self.sealer.signs else 'report'}.json": self.sealer_bytes(sealed[rel]) for i, rel in enumerate(order)}
            uploads[R.ATTESTATION_FILE] = blob
            where = reg.store_artifacts(name, version, uploads, work)
            # for humans only: admission never reads a tag
            reg.set_tags(name, version, {
                R.TAG_VERDICT: verdict,
                R.TAG_RISK: risk,
                R.TAG_POLICY: f"{policy.policy.name}@{policy.policy.version}",
                R.TAG_POLICY_SHA: policy.sha256,
                R.TAG_REPORT_SHA: _sha(blob),
                R.TAG_REPORT_URI: f"{where}/{R.ATTESTATION_FILE}",
                R.TAG_SIGNED: "true" if self.sealer.signs else "false",
                R.TAG_FILES: show(files.describe(), 4000),
            })
            reg.set_tags(name, version, {R.TAG_STATUS: "done"})
            reg.delete_tag(name, version, R.TAG_ERROR)
            log.info("models:/%s/%s: %s (highest risk %s) under %s; files: %s", show(name), show(version), verdict, risk, show(policy.policy.name), files.describe())
            return ScanOutcome(verdict, risk, reports, f"{where}/{R.ATTESTATION_FILE}", _sha(blob), files)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def sealer_bytes(doc: dict) -> bytes:
        import json

        return json.dumps(doc, indent=2).encode("utf-8") + b"\n"

    def _final_error(self, name: str, version: str, msg: str, write_back: bool) -> ScanOutcome:
        log.warning("models:/%s/%s refused: %s", show(name), show(version), show(msg, 500))
        if write_back:
            self.registry.set_tags(name, version, {R.TAG_STATUS: "failed", R.TAG_VERDICT: "fail", R.TAG_ERROR: show(msg, 500)})
        return ScanOutcome("fail", "critical", {}, error=msg)

    # -- admission -------------------------------------------------------

    def admissible(self, name: str, version: str) -> Decision:
        """May this version hold a protected alias? Decided only from what the gate signed and the artifact as it is now.

        Never raises: every error is a refusal, with the reason."""
        out: list[Decision] = []

        def run() -> None:
            try:
                out.append(Decision(True, self._admit(name, version)))
            except AdmissionDenied as exc:
                out.append(Decision(False, str(exc)))
            except BaseException as exc:  # noqa: BLE001 - fail closed: an error is never an admission
                out.append(Decision(False, f"the check failed, so the version is not admitted: {type(exc).__name__}: {show(exc, 300)}"))

        t = threading.Thread(target=run, name="admission-check", daemon=True)
        t.start()
        t.join(self.settings.admission_timeout_s)
        if not out:  # a registry that hangs: the check is abandoned, and that is a refusal
            return Decision(False, f"the check did not finish within {self.settings.admission_timeout_s:g}s (registry unreachable or slow), so the version is not admitted")
        return out[0]

    def _admit(self, name: str, version: str) -> str:
        reg = self.registry
        policies = admission_policies(self.settings)
        vid = self._version_id(name, version)
        work = self.settings.work_dir / f"{_safe_name(name, version, 'admit-')}-{uuid.uuid4().hex[:8]}"  # an abandoned check keeps its own folder
        shutil.rmtree(work, ignore_errors=True)
        try:
            root = reg.download(name, version, work / "artifact")
            actual = model_files(root, reg.loadable_paths(root))
            candidates = reg.load_attestations(name, version, R.MAX_ATTESTATION_BYTES)
            if not candidates:
                raise AdmissionDenied("no onnxguard attestation is stored for this version (not scanned yet, or its scan failed)")
            reasons = []
            for data in candidates[: R.MAX_ATTESTATION_CANDIDATES]:
                if data is None or len(data) > R.MAX_ATTESTATION_BYTES:
                    reasons.append(f"an attestation over {R.MAX_ATTESTATION_BYTES} bytes was not read")
                    continue
                try:
                    return self.verifier.verify(data, vid, actual, root, policies)
                except AdmissionDenied as exc:
                    reasons.append(str(exc))
            raise AdmissionDenied(reasons[0] if len(reasons) == 1 else f"none of {len(reasons)} stored attestations holds: " + " | ".join(reasons))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def check_alias(self, name: str, alias: str, version: str) -> None:
        """Keep ``alias`` on ``version`` only if the version is admissible; otherwise, or on any error, remove it and say why."""
        if alias not in self.settings.protected_aliases:
            return
        reg = self.registry
        try:
            at = reg.alias_version(name, alias)
        except Exception as exc:  # noqa: BLE001 - cannot tell where it points: fail closed
            self._remove(name, alias, version, f"cannot read where the alias points ({type(exc).__name__}: {show(exc, 200)})", moved_check=False)
            return
        if at != str(version):
            log.info("models:/%s@%s no longer points at version %s; nothing to do", show(name), show(alias), show(version))
            return
        d = self.admissible(name, version)
        if d.admitted:
            reg.set_tags(name, version, {R.admission_tag(alias): f"admitted {_now()}: {d.reason}"[:5000]})
            log.info("models:/%s/%s may hold %s: %s", show(name), show(version), show(alias), d.reason)
            return
        self._remove(name, alias, version, d.reason)

    def _remove(self, name: str, alias: str, version: str, reason: str, moved_check: bool = True) -> None:
        """Remove the alias (an error here is raised: the job is retried, and removes it when it gives up)."""
        reg = self.registry
        still = True
        if moved_check:  # re-check right before removing: never remove an alias that moved meanwhile
            try:
                still = reg.alias_version(name, alias) == str(version)
            except Exception:  # noqa: BLE001 - cannot tell: remove
                still = True
        if still:
            reg.delete_alias(name, alias)
            log.warning("removed alias %s from models:/%s/%s: %s", show(alias), show(name), show(version), show(reason, 2000))
        try:
            reg.set_tags(name, version, {R.admission_tag(alias): f"removed {_now()}: {reason}"[:5000]})
        except Exception as exc:  # noqa: BLE001 - the alias is gone; the log says why
            log.error("could not tag why alias %s was removed from models:/%s/%s: %s", show(alias), show(name), show(version), show(exc))
