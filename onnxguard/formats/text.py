"""The terminal summary: model, data, one row per check, verdict, time. Every string is sanitised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..report import Report
from ..text import sanitize
from .base import OutputFormat, RenderContext


class TextFormat(OutputFormat):
    name = "text"
    description = "a summary for people: one row per check, the verdict and why"

    def render(self, report: Report, ctx: RenderContext | None = None) -> str:
        lines: list[str] = []
        print_summary(report, lines.append)
        return "".join(sanitize(line) + "\n" for line in lines)


def fmt_rate(rate: object) -> str:
    if rate is None:
        return "-"
    r = rate  # type: ignore[assignment]
    if r.n == 0:  # type: ignore[attr-defined]
        return "n=0"
    return f"{r.value:.1%} [{r.ci.low:.1%}, {r.ci.high:.1%}] n={r.n}"  # type: ignore[attr-defined]


def print_summary(report: Report, out: Callable[[str], None]) -> None:
    """Write the summary line by line through ``out`` (which sanitises, as every printer must)."""
    m = report.model
    if m.task == "regressor":
        shape = f"regressor, input {m.sample_shape}"
    elif m.output_kind:
        shape = f"{m.output_kind}, {m.n_classes or '?'} classes" + (f", input {m.sample_shape}" if m.sample_shape is not None else "")
    else:
        shape = "not loaded (see below)"
    task = f"  task: {m.task}" + (f" ({m.task_detail})" if m.task == "other" and m.task_detail else "") if m.task else ""
    out(f"model   {Path(m.path).name}  sha256:{m.sha256[:16]}…  {shape}{task}")
    if report.model_ran is False:
        out("model   could not be run: static-only report (see not-tested below)")
    if report.data:
        d = report.data
        out(f"data    {d.source} ({d.n_samples} samples{', SYNTHETIC' if d.synthetic else ''}; labels: {d.labels})")
    if report.clean_accuracy:
        out(f"clean accuracy {fmt_rate(report.clean_accuracy)}")
    rows = [("check", "eps", "success rate [95% CI]", "med. queries", "risk")]
    for c in report.checks:
        if c.status != "completed":
            rows.append((c.id, f"{c.epsilon:g}" if c.epsilon is not None else "-", f"not run: {c.reason}", "-", c.risk or "-"))
            continue
        q = c.queries
        extra = ""
        if c.edits is not None and c.edits.median is not None:
            extra = f"; median {c.edits.median:g} {c.edit_unit or 'edits'}"
        elif c.output_change is not None and c.output_change.median is not None:
            extra = f"; median change {c.output_change.median:.3g} (tolerance {c.tolerance:.3g})" if c.tolerance is not None else ""
        rows.append((c.id, f"{c.epsilon:g}", fmt_rate(c.success_rate) + extra, f"{q.median:.0f}" if q and q.median is not None else "-", c.risk or "-"))
    if report.backdoor is not None:
        b = report.backdoor
        mai = f"{b.max_anomaly_index:.2f}" if b.max_anomaly_index is not None else "-"
        flagged = ",".join(map(str, b.flagged_classes)) or "none"
        rows.append(("backdoor", "-", f"{b.status}; max anomaly {mai}; flagged {flagged}", str(b.queries), b.risk or "-"))
    for t in report.transfer:
        rows.append((f"transfer:{t.attack}-{t.norm}", f"{t.epsilon:g}" if t.epsilon is not None else "-", f"transfer {fmt_rate(t.transfer_rate)} from {Path(t.source_model).name}", "-", t.risk or "-"))
    if report.static_findings:
        worst = max(report.static_findings, key=lambda f: ["info", "low", "medium", "high", "critical"].index(f.severity))
        rows.append(("static", "-", f"{len(report.static_findings)} finding(s), worst {worst.severity}", "-", "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for r in rows:
        out("  ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)))
    if report.notes:
        for n in report.notes:
            out(f"note: {n}")
    devs = report.policy.deviations if report.policy else []
    if devs:
        out(f"DEVIATES from policy '{report.policy.name}' in {len(devs)} setting(s) (command-line overrides): "  # type: ignore[union-attr]
            "this report does not verify as that policy")
        for d in devs[:12]:
            out(f"  ! {d.key}: {json.dumps(d.policy_value)} -> {json.dumps(d.effective_value)}")
        if len(devs) > 12:
            out(f"  ! ... and {len(devs) - 12} more")
    if report.summary:
        s = report.summary
        pol = report.policy.name if report.policy else "-"
        pol += f", with {len(devs)} deviation(s)" if devs else ""
        out(f"verdict {s.verdict.upper()}  (highest risk: {s.highest_risk}; policy {pol})")
        for r in s.reasons[:12]:
            out(f"  - {r}")
    if report.timing:
        t = report.timing
        share = f", {t.ort_share:.0%} inside onnxruntime" if t.ort_share is not None else ""
        out(f"time    {t.wall_s:.1f}s{share}; {t.queries_total} model queries")
