"""The fleet's output folder: atomic writes, and the re-verification that makes a rerun resume.

Layout of ``DIR``::

    reports/<slug>.dsse.json   one signed DSSE envelope per model (written atomically as it completes)
    pages/<slug>.html          that report's governance page
    summary.json, index.html   the fleet summary (rewritten after every model)

A rerun trusts no file name: a report is reused only when its signature verifies with the
driver's key, the model file still has the digest it names, and its policy digest, tool version
and job key (seed, data digest, option overrides) are those of the job about to run.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import BadInputError, VerificationError
from ..outputs import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

JOB_NOTE = "fleet job key "


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents); refuse a symbolic link or a non-directory in its place."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise BadInputError(f"cannot create the output folder {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise BadInputError(f"{path} is not a plain folder (a symbolic link or a file): refusing to write through it")
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`onnxguard.outputs.write_atomic`: a temporary file beside it,
    fsynced, renamed into place, the folder fsynced): a reader, or a rerun after a kill, sees the old file or the
    whole new one, never a part. Something planted at ``path`` that is not a regular file (a symbolic link, a
    folder) is refused, never written through."""
    write_atomic(path, data, flag="fleet output")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def pages(self) -> Path:
        return self.root / "pages"

    def report(self, slug: str) -> Path:
        return self.reports / f"{slug}.dsse.json"

    def page(self, slug: str) -> Path:
        return self.pages / f"{slug}.html"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def summary_html(self) -> Path:
        return self.root / "index.html"

    def create(self) -> "Layout":
        for d in (self.root, self.reports, self.pages):
            ensure_dir(d)
            for stale in d.glob(".*.tmp"):  # left by a writer killed between write and rename
                try:
                    if stale.is_file() and not stale.is_symlink():
                        stale.unlink()
                except OSError:
                    pass
        return self


def job_key(*, model_sha: str, policy_sha: str, data_sha: str | None, seed: int, overrides: dict[str, Any]) -> str:
    """What must match for a report to stand for this job: the inputs of the scan and the tool."""
    doc = {"model": model_sha, "policy": policy_sha, "data": data_sha, "seed": seed, "tool": __version__,
           "overrides": {k: overrides[k] for k in sorted(overrides)}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=list).encode()).hexdigest()


def is_crash_report(report: "Report") -> bool:
    """A report the sandbox built for a scan that died: a rerun scans the model again."""
    if any(n.startswith("scan failed in the sandbox") for n in report.notes):
        return True
    grades = [g for c in report.checks for g in c.grades] + (report.backdoor.grades if report.backdoor else [])
    return any(g.metric.endswith("scan_crashed") for g in grades)


@dataclass
class Reusable:
    report: "Report"
    envelope_sha256: str
    keyid: str
    key_type: str
    checks: tuple[str, ...]


def reusable_report(path: Path, *, public_key: Any, model_path: Path, policy_sha: str, key: str) -> tuple[Reusable | None, str]:
    """The verified report at ``path`` if it stands for this job, else ``(None, why not)``."""
    from ..verify import verify_envelope

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, "no report yet"
    except OSError as exc:
        return None, f"cannot read the existing report ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return None, "the existing report is not a regular file"
    try:
        data = path.read_bytes()
        vr = verify_envelope(data, [public_key], model_path=model_path)
    except VerificationError as exc:
        return None, f"the existing report does not verify ({exc.check}: {exc.detail})"
    except (OSError, BadInputError) as exc:
        return None, f"the existing report cannot be checked ({exc})"
    r = vr.report
    if r.tool.version != __version__:
        return None, f"the existing report is from onnxguard {r.tool.version}, this is {__version__}"
    if r.policy is None or r.policy.sha256 != policy_sha:
        return None, "the existing report was graded under another policy"
    if is_crash_report(r):
        return None, "the previous scan of this model failed"
    if f"{JOB_NOTE}{key}" not in r.notes:
        return None, "the existing report is for other data, seed or options"
    return Reusable(r, hashlib.sha256(data).hexdigest(), vr.keyid, vr.key_type, tuple(o.name for o in vr.checks if o.ok)), "verified"
