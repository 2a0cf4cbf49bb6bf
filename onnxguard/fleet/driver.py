"""The fleet driver: plan the jobs, reuse verified reports, run the rest, sign and write each as it lands.

Signing happens here, in the driver, with the one private key; workers only ever return report
data, which the driver checks (model digest, job key) and grades again before it signs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import OnnxGuardError
from .executors import Executor
from .jobs import Resources, ScanJob, ScanOutcome
from .entry import FleetEntry
from .store import JOB_NOTE, Layout, atomic_write, is_crash_report, job_key, reusable_report
from .summary import FleetRow, FleetSummary, render_html

if TYPE_CHECKING:  # pragma: no cover
    from ..policy import LoadedPolicy
    from ..report import Report


@dataclass
class FleetSettings:
    policy: str | None = None  # default policy (name or file) for entries that name none
    data: Path | None = None  # default data for entries that name none
    seed: int = 0
    retries: int = 2
    cpus_per_task: int | None = None  # default: the executor's share of this machine
    max_memory_mb: int | None = None
    timeout_s: float | None = None
    provider: str = "cpu"


@dataclass
class _Planned:
    entry: FleetEntry
    row: FleetRow
    policy: "LoadedPolicy | None" = None
    key: str = ""
    job: ScanJob | None = None


@dataclass
class FleetResult:
    summary: FleetSummary
    layout: Layout
    scanned: list[str] = field(default_factory=list)  # slugs scanned in this run
    reused: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.summary.exit_code()


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


def run_fleet(
    entries: list[FleetEntry], out_dir: Path, executor: Executor, private_key: Any, settings: FleetSettings | None = None,
    *, log: Callable[[str], None] | None = None,
) -> FleetResult:
    """Scan every entry (reusing verified reports), write signed reports, pages and the summary."""
    from ..digest import sha256_file
    from ..policy import load_policy
    from ..safeload import digest_model
    from ..sandbox import limits_for
    from ..options import ScanOptions
    from ..keys import keyid as keyid_of
    from ..keys import public_key_of

    st = settings or FleetSettings()
    say = log or (lambda _m: None)
    t0 = time.monotonic()
    layout = Layout(Path(out_dir)).create()
    public = public_key_of(private_key)
    summary = FleetSummary(executor=executor.name, workers=executor.workers, keyid=keyid_of(public))
    result = FleetResult(summary, layout)
    policies: dict[str, LoadedPolicy] = {}
    planned: dict[str, _Planned] = {}
    cpus = st.cpus_per_task or executor.default_cpus()

    for e in entries:
        row = FleetRow(name=e.name, path=str(e.path), slug=e.slug, source=e.source)
        summary.rows.append(row)
        p = planned[e.slug] = _Planned(e, row)
        try:
            ref = e.policy or st.policy
            if (ref or "") not in policies:
                policies[ref or ""] = load_policy(ref)
            pol = p.policy = policies[ref or ""]
            row.policy = f"{pol.policy.name}@{pol.policy.version}"
            lim = limits_for(pol, st.max_memory_mb, st.timeout_s)
            sha, _ = digest_model(e.path, max_bytes=lim.max_model_mb * 1024 * 1024)
            row.model_sha256 = sha
            data = e.data or st.data
            try:
                data_sha = sha256_file(data) if data is not None else None
            except OSError as exc:
                raise _Refused(f"cannot read data {data}: {exc.strerror or exc}") from None
            o = e.options
            seed = o.seed if o.seed is not None else st.seed
            overrides = {k: v for k, v in o.model_dump(exclude={"seed"}).items() if v is not None}
            p.key = job_key(model_sha=sha, policy_sha=pol.sha256, data_sha=data_sha, seed=seed, overrides=overrides)
        except (OnnxGuardError, _Refused) as exc:
            row.status, row.message = "refused", str(exc)
            say(f"refused  {e.name}: {exc}")
            continue
        reuse, why = reusable_report(layout.report(e.slug), public_key=public, model_path=e.path, policy_sha=pol.sha256, key=p.key)
        if reuse is not None:
            _fill_row(row, reuse.report, layout, e.slug, reuse.envelope_sha256)
            row.status, row.message = "reused", None
            if not layout.page(e.slug).is_file():
                _write_page(layout, e.slug, reuse.report, reuse.keyid, reuse.key_type, reuse.checks)
            result.reused.append(e.slug)
            say(f"reused   {e.name}: verified report, verdict {row.verdict}")
            continue
        if why != "no report yet":
            row.message = f"rescanned: {why}"
        opts = ScanOptions(  # absolute paths: a Ray worker does not run in the driver's folder
            model_path=Path(os.path.abspath(e.path)), data_path=Path(os.path.abspath(data)) if data is not None else None, value_range=o.range, policy=pol, seed=seed, budget=o.budget,
            samples=o.samples, target=o.target, extra_notes=[f"{JOB_NOTE}{p.key}"],
        )
        p.job = ScanJob(key=e.slug, opts=opts, limits=lim, resources=Resources.for_scan(lim, cpus, st.provider))

    _write_summary(layout, summary)
    jobs = [p.job for p in planned.values() if p.job is not None]
    if jobs:
        say(f"scanning {len(jobs)} model(s) on the {executor.name} executor ({executor.workers} worker(s)); {len(result.reused)} reused")

    def on_retry(out: ScanOutcome) -> None:
        say(f"retry    {planned[out.key].entry.name}: attempt {out.attempts} lost ({out.kind}: {out.message})")

    for out in executor.map(jobs, retries=st.retries, on_retry=on_retry):
        p = planned[out.key]
        _land(p, out, layout, private_key, public)
        if p.row.status == "scanned":
            result.scanned.append(out.key)
        say(f"{p.row.status:<8} {p.entry.name}: " + (f"verdict {p.row.verdict}" if p.row.verdict else str(p.row.message)))
        _write_summary(layout, summary)
    summary.wall_s = time.monotonic() - t0
    _write_summary(layout, summary)
    return result


class _Refused(Exception):
    pass


def _fill_row(row: FleetRow, report: "Report", layout: Layout, slug: str, env_sha: str) -> None:
    s = report.summary
    row.verdict = s.verdict if s else None
    row.highest_risk = s.highest_risk if s else None
    row.report = _rel(layout.report(slug), layout.root)
    row.page = _rel(layout.page(slug), layout.root)
    row.envelope_sha256 = env_sha


def _land(p: _Planned, out: ScanOutcome, layout: Layout, private_key: Any, public: Any) -> None:
    """One finished job: check it, grade it here, sign it, write it atomically, render its page."""
    import hashlib

    from ..grading import grade_report
    from ..signing import sign_report
    from ..verify import verify_envelope

    row = p.row
    row.attempts, row.wall_s, row.worker = out.attempts, round(out.wall_s, 3), out.worker
    if out.kind == "bad_input":
        row.status, row.message = "refused", out.message
        return
    try:
        report = out.report()
    except Exception as exc:  # noqa: BLE001 - a worker's answer is checked, not trusted
        report, out.message = None, f"the worker returned a malformed report ({type(exc).__name__})"
    if report is None:
        row.status, row.message = "error", out.message or out.kind
        return
    if report.model.sha256 != row.model_sha256:
        row.status, row.message = "error", "the scanned file's digest differs from the model's (the file changed during the fleet?); not signed"
        return
    if out.kind == "report":
        if f"{JOB_NOTE}{p.key}" not in report.notes:
            row.status, row.message = "error", "the worker's report is not for this job; not signed"
            return
        assert p.policy is not None
        grade_report(report, p.policy)  # the verdict is the driver's, from the figures
    else:  # the sandbox's crash report, graded by the policy's scan_crashed rule: sign it as evidence
        report.notes.append(f"{JOB_NOTE}{p.key}")
    envelope = sign_report(report, private_key)
    data = (json.dumps(envelope, indent=2) + "\n").encode()
    atomic_write(layout.report(p.entry.slug), data)
    vr = verify_envelope(data, [public], model_path=p.entry.path)  # what the page shows is what was written
    _write_page(layout, p.entry.slug, vr.report, vr.keyid, vr.key_type, tuple(o.name for o in vr.checks if o.ok))
    _fill_row(row, vr.report, layout, p.entry.slug, hashlib.sha256(data).hexdigest())
    if out.kind == "report" and not is_crash_report(vr.report):
        tries = f"after {out.attempts} tries" if out.attempts > 1 else None
        row.status, row.message = "scanned", "; ".join(m for m in (row.message, tries) if m) or None
    else:
        row.status, row.message = "crashed", out.message


def _write_page(layout: Layout, slug: str, report: "Report", keyid: str, key_type: str, checks: tuple[str, ...]) -> None:
    from ..formats.html import Verification, render

    v = Verification(keyid=keyid, verified=True, key_source="the fleet's signing key", key_type=key_type, checks=checks,
                     note="Verified by the fleet driver right after signing, against the model file.")
    atomic_write(layout.page(slug), render(report, verified=v).encode())


def _write_summary(layout: Layout, summary: FleetSummary) -> None:
    atomic_write(layout.summary_json, (summary.model_dump_json(indent=2) + "\n").encode())
    atomic_write(layout.summary_html, render_html(summary).encode())
