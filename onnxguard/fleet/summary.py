"""The fleet summary: one row per model, as JSON and as one HTML page linking each model's page."""

from __future__ import annotations

import datetime as _dt
from html import escape as esc
from typing import Literal

from pydantic import BaseModel, Field

from .. import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REJECTED, EXIT_SCAN_FAILED

RowStatus = Literal["pending", "scanned", "reused", "crashed", "refused", "error"]
SUMMARY_VERSION = "1.0"


class FleetRow(BaseModel):
    name: str
    path: str
    slug: str
    source: str = ""
    status: RowStatus = "pending"
    verdict: str | None = None
    highest_risk: str | None = None
    policy: str | None = None
    model_sha256: str | None = None
    report: str | None = None  # relative to the summary's folder
    page: str | None = None
    envelope_sha256: str | None = None  # pins the signed report this row was read from
    attempts: int = 0
    wall_s: float | None = None
    worker: str | None = None
    message: str | None = None  # why a model has no verdict, or what happened on the way


class FleetSummary(BaseModel):
    summary_version: str = SUMMARY_VERSION
    tool: str = __version__
    created_at: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    executor: str = "local"
    workers: int = 1
    keyid: str | None = None
    wall_s: float | None = None
    rows: list[FleetRow] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
            if r.verdict:
                out[f"verdict:{r.verdict}"] = out.get(f"verdict:{r.verdict}", 0) + 1
        return out

    def exit_code(self) -> int:
        """3 if a scan failed; else 2 if a model was refused as bad input; else 1 on a FAIL verdict; else 0."""
        st = {r.status for r in self.rows}
        if st & {"crashed", "error", "pending"}:
            return EXIT_SCAN_FAILED
        if "refused" in st:
            return EXIT_BAD_INPUT
        if any(r.verdict == "fail" for r in self.rows):
            return EXIT_REJECTED
        return EXIT_OK


_ORDER = {"fail": 0, "warn": 1, "pass": 2}
_LEVEL_MARK = {"low": "○ low", "medium": "◐ medium", "high": "● high", "critical": "▲ critical"}
_VERDICT_MARK = {"pass": "✓ PASS", "warn": "! WARN", "fail": "✗ FAIL"}
_STATUS_TEXT = {"scanned": "scanned", "reused": "reused (verified)", "crashed": "scan failed", "refused": "refused",
                "error": "error", "pending": "not finished"}

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color:#1a1a1a;
       margin: 0 auto; max-width: 72rem; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } .sub { color:#555; margin:.2rem 0; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .88em; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: .8rem 0; }
th, td { border: 1px solid #bbb; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.tally { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1rem 0; }
.tally div { border: 2px solid #1a1a1a; padding: .4rem .8rem; font-weight: 600; }
.verdict { font-weight: 800; padding: .05rem .4rem; border: 2px solid currentColor; white-space: nowrap; }
.v-pass { color: #17602a; } .v-warn { color: #7a4d00; } .v-fail { color: #a00d0d; } .v-none { color: #555; }
.lvl { font-weight: 700; white-space: nowrap; }
.lvl-low { color: #17602a; } .lvl-medium { color: #5b5000; } .lvl-high { color: #8a3b00; } .lvl-critical { color: #a00d0d; }
.msg { color: #555; font-size: .88rem; } td.nw { white-space: nowrap; }
footer { margin-top: 2rem; color: #555; font-size: .85rem; border-top: 1px solid #bbb; padding-top: .5rem; }
"""


def _sort_key(r: FleetRow) -> tuple:
    failed = r.status in ("crashed", "error", "refused", "pending")
    return (0 if failed else 1, _ORDER.get(r.verdict or "", 3), r.name)


def render_html(s: FleetSummary) -> str:
    """The summary page: worst first; each row links to that model's page and signed report."""
    c = s.counts()
    tally = [("models", len(s.rows)), ("fail", c.get("verdict:fail", 0)), ("warn", c.get("verdict:warn", 0)),
             ("pass", c.get("verdict:pass", 0)), ("not scanned", sum(c.get(k, 0) for k in ("crashed", "error", "refused", "pending")))]
    rows = []
    for r in sorted(s.rows, key=_sort_key):
        v = r.verdict
        verdict = f'<span class="verdict v-{esc(v)}">{esc(_VERDICT_MARK.get(v, v.upper()))}</span>' if v else '<span class="v-none">—</span>'
        risk = f'<span class="lvl lvl-{esc(r.highest_risk)}">{esc(_LEVEL_MARK.get(r.highest_risk, r.highest_risk))}</span>' if r.highest_risk else "—"
        name = f'<a href="{esc(r.page)}">{esc(r.name)}</a>' if r.page else esc(r.name)
        signed = f'<a href="{esc(r.report)}">signed report</a>' if r.report else "—"
        msg = f'<div class="msg">{esc(r.message[:300])}</div>' if r.message else ""
        sha = f"<code>{esc(r.model_sha256[:12])}…</code>" if r.model_sha256 else "—"
        rows.append(
            f"<tr><td>{name}{msg}</td><td>{verdict}</td><td>{risk}</td><td>{esc(_STATUS_TEXT.get(r.status, r.status))}"
            f"{' · ' + str(r.attempts) + ' tries' if r.attempts > 1 else ''}</td><td>{esc(r.policy or '—')}</td><td class=\"nw\">{sha}</td><td class=\"nw\">{signed}</td></tr>"
        )
    code = s.exit_code()
    body = (
        f"<h1>Fleet scan: {len(s.rows)} model{'s' if len(s.rows) != 1 else ''}</h1>"
        f'<p class="sub">onnxguard {esc(s.tool)} · {esc(s.created_at)} · executor {esc(s.executor)}, {s.workers} worker(s)'
        + (f" · {s.wall_s:.1f} s" if s.wall_s is not None else "")
        + (f" · reports signed by key id <code>{esc(s.keyid[:16])}…</code>" if s.keyid else "")
        + "</p>"
        + '<div class="tally">' + "".join(f"<div>{esc(k)}: {v}</div>" for k, v in tally) + f"<div>exit code {code}</div></div>"
        + "<table><thead><tr><th>model</th><th>verdict</th><th>highest risk</th><th>scan</th><th>policy</th><th>sha256</th><th>report</th></tr></thead>"
        + "<tbody>" + "".join(rows) + "</tbody></table>"
        + "<footer>Each verdict is read from a signed report (DSSE) in <code>reports/</code>, verified against the model file "
        "when the summary was written; verify one independently with <code>onnxguard verify REPORT --key PUBLIC_KEY --model MODEL</code>. "
        "This page and summary.json are an index, not an attestation: the signed reports are.</footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>onnxguard fleet: {len(s.rows)} models</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n"
    )
