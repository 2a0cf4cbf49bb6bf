"""What the receiver does with a job: scan a new model version, or check a protected alias."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from onnxguard.errors import BadInputError, VerificationError
from onnxguard.grading import worst_level, worst_verdict
from onnxguard.report import Report

from . import registry as R
from .config import Settings, admission_policy, resolve_policy
from .engine import Opener, Sealer, scan_file, sha256_bytes
from .queue import Job, JobQueue

log = logging.getLogger("onnxguard_mlflow")

SCAN = "scan"
ALIAS = "alias"


@dataclass
class ScanOutcome:
    verdict: str
    highest_risk: str
    reports: dict[str, Report]
    report_uri: str | None
    report_sha256: str | None


def find_onnx(root: Path) -> list[Path]:
    """ONNX files under ``root``, sorted; links that lead outside ``root`` are skipped."""
    base = root.resolve()
    found = []
    for p in sorted(root.rglob("*.onnx")):
        try:
            if p.is_file() and p.resolve().is_relative_to(base):
                found.append(p)
        except OSError:
            continue
    return found


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Worker:
    def __init__(self, settings: Settings, queue: JobQueue | None, registry: "R.Registry") -> None:
        self.settings = settings
        self.queue = queue
        self.registry = registry
        self.sealer = Sealer(settings.key_path, settings.key_passphrase)
        self.opener = Opener(settings.trusted_keys, allow_unsigned=settings.allow_unsigned or not self.sealer.signs)
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
        log.info("job %s %s (attempt %d)", job.id, job.key, job.attempts)
        try:
            if job.kind == SCAN:
                self.scan_version(job.payload["name"], job.payload["version"], attempts=job.attempts)
            elif job.kind == ALIAS:
                self.check_alias(job.payload["name"], job.payload["alias"], job.payload["version"])
            else:
                raise ValueError(f"unknown job kind {job.kind!r}")
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, retried or tagged
            msg = f"{type(exc).__name__}: {exc}"[:500]
            if job.attempts >= self.settings.max_attempts:
                log.error("job %s failed for good after %d attempts: %s", job.id, job.attempts, msg)
                self.queue.failed(job, msg)
                self._tag_failure(job, msg)
            else:
                delay = self.settings.retry_delay_s * 2 ** (job.attempts - 1)
                log.warning("job %s failed (attempt %d), retrying in %.0fs: %s", job.id, job.attempts, delay, msg)
                self.queue.retry(job, msg, delay)
            return
        self.queue.done(job)

    def _tag_failure(self, job: Job, msg: str) -> None:
        name, version = job.payload.get("name"), job.payload.get("version")
        try:
            if job.kind == SCAN:
                self.registry.set_tags(name, version, {R.TAG_STATUS: "failed", R.TAG_ERROR: msg, R.TAG_ATTEMPTS: str(job.attempts)})
            else:
                self.registry.set_tags(name, version, {R.admission_tag(job.payload["alias"]): f"check failed {_now()}: {msg}"[:500]})
        except Exception as exc:  # noqa: BLE001 - the queue row keeps the failure either way
            log.error("could not tag the failure of job %s: %s", job.id, exc)

    # -- scanning --------------------------------------------------------

    def scan_version(self, name: str, version: str, attempts: int = 1, write_back: bool = True) -> ScanOutcome:
        reg = self.registry
        if write_back:
            reg.set_tags(name, version, {R.TAG_STATUS: "scanning", R.TAG_ATTEMPTS: str(attempts)})
        work = self.settings.work_dir / f"{name}-v{version}".replace("/", "_")
        shutil.rmtree(work, ignore_errors=True)
        try:
            try:
                policy, policy_ref = resolve_policy(reg.model_policy(name), self.settings)
            except BadInputError as exc:
                return self._final_error(name, version, str(exc), write_back)
            root = reg.download(name, version, work / "artifacts")
            files = find_onnx(root)
            if not files:
                if write_back:
                    reg.set_tags(name, version, {R.TAG_STATUS: "no_onnx", R.TAG_ERROR: "no .onnx file among the version's artifacts"})
                return ScanOutcome("fail", "critical", {}, None, None)
            reports: dict[str, Report] = {}
            for f in files:
                rel = f.relative_to(root).as_posix()
                try:
                    rep = scan_file(f, policy, policy_ref, seed=self.settings.seed)
                except BadInputError as exc:  # a refused model is a result, not a reason to retry
                    return self._final_error(name, version, f"{rel}: {exc}", write_back)
                rep.model.path = f"models:/{name}/{version}/{rel}"
                reports[rel] = rep
            verdict = worst_verdict([r.summary.verdict for r in reports.values() if r.summary])
            risk = worst_level([r.summary.highest_risk for r in reports.values() if r.summary])
            if not write_back:
                return ScanOutcome(verdict, risk, reports, None, None)
            sealed = {rel: self.sealer.seal(r, f"report-{i}") for i, (rel, r) in enumerate(reports.items())}
            index = {
                "model": f"models:/{name}/{version}",
                "policy": {"name": policy.policy.name, "version": policy.policy.version, "sha256": policy.sha256},
                "verdict": verdict,
                "highest_risk": risk,
                "signed": self.sealer.signs,
                "reports": [{"file": rel, "report": s.filename, "sha256": s.sha256, "model_sha256": reports[rel].model.sha256,
                             "verdict": reports[rel].summary.verdict if reports[rel].summary else None} for rel, s in sealed.items()],
            }
            index_bytes = json.dumps(index, indent=2, sort_keys=True).encode("utf-8") + b"\n"
            uploads = {s.filename: s.data for s in sealed.values()}
            uploads[R.INDEX_FILE] = index_bytes
            uri = reg.store_reports(name, version, uploads, work)
            (only,) = sealed.values() if len(sealed) == 1 else (None,)
            tags = {
                R.TAG_VERDICT: verdict,
                R.TAG_RISK: risk,
                R.TAG_POLICY: f"{policy.policy.name}@{policy.policy.version}",
                R.TAG_POLICY_SHA: policy.sha256,
                # one file: the digest of its stored report; several: the digest of the index listing them
                R.TAG_REPORT_SHA: only.sha256 if only else sha256_bytes(index_bytes),
                R.TAG_REPORT_URI: f"{uri}/{only.filename}" if only else f"{uri}/{R.INDEX_FILE}",
                R.TAG_SIGNED: "true" if self.sealer.signs else "false",
            }
            reg.set_tags(name, version, tags)
            reg.set_tags(name, version, {R.TAG_STATUS: "done"})
            reg.delete_tag(name, version, R.TAG_ERROR)
            log.info("models:/%s/%s: %s (highest risk %s) under %s", name, version, verdict, risk, policy.policy.name)
            return ScanOutcome(verdict, risk, reports, tags[R.TAG_REPORT_URI], tags[R.TAG_REPORT_SHA])
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _final_error(self, name: str, version: str, msg: str, write_back: bool) -> ScanOutcome:
        log.warning("models:/%s/%s refused: %s", name, version, msg)
        if write_back:
            self.registry.set_tags(name, version, {R.TAG_STATUS: "failed", R.TAG_VERDICT: "fail", R.TAG_ERROR: msg[:500]})
        return ScanOutcome("fail", "critical", {}, None, None)

    # -- admission -------------------------------------------------------

    def admissible(self, name: str, version: str) -> tuple[bool, str]:
        """Does the version have a passing, verified report under its required policy?"""
        reg = self.registry
        tags = reg.version_tags(name, version)
        uri, digest = tags.get(R.TAG_REPORT_URI), tags.get(R.TAG_REPORT_SHA)
        if not uri or not digest:
            return False, f"no onnxguard report (scan status: {tags.get(R.TAG_STATUS, 'none')})"
        try:
            policy = admission_policy(reg.model_policy(name), self.settings)
        except BadInputError as exc:
            return False, str(exc)
        work = self.settings.work_dir / f"admit-{name}-v{version}".replace("/", "_")
        shutil.rmtree(work, ignore_errors=True)
        try:
            stored = reg.fetch(uri.rsplit("/", 1)[0], work / "reports")
            data = (stored / uri.rsplit("/", 1)[1]).read_bytes()
            if sha256_bytes(data) != digest:
                return False, "the stored report does not match the digest in the tags"
            if uri.endswith("/" + R.INDEX_FILE):
                entries = json.loads(data)["reports"]
            else:
                entries = [{"report": uri.rsplit("/", 1)[1], "sha256": digest, "file": None}]
            root = reg.download(name, version, work / "artifacts")
            files = {f.relative_to(root).as_posix(): f for f in find_onnx(root)}
            if len(entries) != len(files):
                return False, f"the report covers {len(entries)} ONNX file(s) but the version has {len(files)}"
            for e in entries:
                blob = (stored / e["report"]).read_bytes()
                if sha256_bytes(blob) != e["sha256"]:
                    return False, f"report {e['report']} does not match its digest"
                model_file = files.get(e["file"]) if e["file"] else next(iter(files.values()))
                if model_file is None:
                    return False, f"the report names {e['file']}, which the version does not hold"
                try:
                    report = self.opener.open(blob, model_file, policy)
                except VerificationError as exc:
                    return False, f"report does not verify ({exc.check}): {getattr(exc, 'detail', exc)}"
                verdict = report.summary.verdict if report.summary else "fail"
                if verdict != "pass":
                    return False, f"verdict {verdict} under policy {policy.policy.name} (highest risk {report.summary.highest_risk if report.summary else '?'})"
            return True, f"passing {'signed' if self.sealer.signs or self.opener.keys else 'unsigned'} report under policy {policy.policy.name}"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def check_alias(self, name: str, alias: str, version: str) -> None:
        if alias not in self.settings.protected_aliases:
            return
        reg = self.registry
        if reg.alias_version(name, alias) != str(version):
            log.info("models:/%s@%s no longer points at version %s; nothing to do", name, alias, version)
            return
        ok, reason = self.admissible(name, version)
        if ok:
            reg.set_tags(name, version, {R.admission_tag(alias): f"admitted {_now()}: {reason}"})
            return
        # re-check right before removing: never remove an alias that moved meanwhile
        if reg.alias_version(name, alias) == str(version):
            reg.delete_alias(name, alias)
            log.warning("removed alias %s from models:/%s/%s: %s", alias, name, version, reason)
        reg.set_tags(name, version, {R.admission_tag(alias): f"removed {_now()}: {reason}"[:5000]})
