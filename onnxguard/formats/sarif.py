"""SARIF 2.1.0: one rule per policy check (and for the backdoor search, clean
accuracy, transfer and each static finding), one result per grade.

A result's level follows the policy's verdict for that grade: ``fail`` is an
``error``, ``warn`` a ``warning``; grades that pass are kept as ``kind: pass``
results so a reviewer sees what was checked, not only what failed. Results
point at the model file (a binary, so no region). Code-scanning dashboards
such as GitHub's read ``security-severity`` from each rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..report import Grade, Report
from .base import OutputFormat, RenderContext

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFO_URI = "https://github.com/onnxguard/onnxguard"
_SEVERITY = {"low": "2.0", "medium": "5.0", "high": "7.5", "critical": "9.5"}


def _result_level(verdict: str) -> tuple[str, str]:
    """(kind, level) for a grade's verdict; SARIF wants level 'none' unless kind is 'fail'."""
    if verdict == "fail":
        return "fail", "error"
    if verdict == "warn":
        return "fail", "warning"
    return "pass", "none"


class SarifFormat(OutputFormat):
    """``render(report)`` returns a SARIF 2.1.0 log with one run."""

    name = "sarif"
    description = "SARIF 2.1.0, for code-scanning tools (one result per finding that does not pass)"

    def render(self, report: Report, ctx: RenderContext | None = None) -> str:
        return json.dumps(self.document(report), indent=2) + "\n"

    def document(self, report: Report) -> dict[str, Any]:
        rules: dict[str, dict[str, Any]] = {}
        results: list[dict[str, Any]] = []
        uri = Path(report.model.path).as_posix()

        def rule(rule_id: str, name: str, description: str, help_text: str) -> int:
            if rule_id not in rules:
                rules[rule_id] = {
                    "id": rule_id,
                    "name": name,
                    "shortDescription": {"text": description},
                    "fullDescription": {"text": help_text},
                    "help": {"text": help_text},
                    "properties": {"tags": ["security", "ml-robustness"]},
                }
            return list(rules).index(rule_id)

        def add(rule_id: str, idx: int, g: Grade, message: str, extra: dict[str, Any] | None = None) -> None:
            kind, level = _result_level(g.verdict)
            sev = rules[rule_id]["properties"].get("security-severity")
            if sev is None or float(_SEVERITY[g.level]) > float(sev):
                rules[rule_id]["properties"]["security-severity"] = _SEVERITY[g.level]
            props: dict[str, Any] = {"risk": g.level, "verdict": g.verdict, "metric": g.metric, "graded_value": g.graded_value, "grading_rule": g.rule}
            props.update(extra or {})
            results.append({
                "ruleId": rule_id,
                "ruleIndex": idx,
                "kind": kind,
                "level": level,
                "message": {"text": f"{message} Risk {g.level}, verdict {g.verdict}: {g.rule}"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
                "partialFingerprints": {"onnxguard/v1": f"{report.model.sha256}:{rule_id}:{g.metric}"},
                "properties": props,
            })

        for c in report.checks:
            rid = f"evasion/{c.id}"
            idx = rule(
                rid, c.id, f"{c.attack} evasion attack ({c.norm}, epsilon {c.epsilon:g})" if c.epsilon is not None else f"{c.attack} evasion attack",
                f"Black-box {c.attack} attack under the {c.norm} norm with the {c.threat_model} threat model; graded by the policy's attack success rate thresholds.",
            )
            for g in c.grades:
                add(rid, idx, g, c.finding or c.reason or f"check {c.id}: {c.status}.", {"status": c.status, "queries": c.queries.total if c.queries else 0})
        if report.backdoor is not None:
            b = report.backdoor
            idx = rule("backdoor", "backdoor", "Backdoor trigger search", "Trigger reverse-engineering per class; graded by the anomaly index of the smallest trigger.")
            for g in b.grades:
                add("backdoor", idx, g, b.finding or b.reason or f"backdoor search: {b.status}.")
        for t in report.transfer:
            idx = rule("transfer", "transfer", "Transferability of adversarial examples", "Adversarial examples from a surrogate model replayed against this model.")
            for g in t.grades:
                add("transfer", idx, g, f"transfer from {t.source_model}: {t.n_adversarials} adversarial examples.")
        by_id = {f.id: f for f in report.static_findings}
        for g in report.static_grades:
            fid = g.metric.split(":", 1)[-1]
            f = by_id.get(fid)
            rid = f"static/{fid}"
            idx = rule(rid, fid, f.title if f else fid, f.detail if f else "Static check of the model file.")
            add(rid, idx, g, f"{f.title}: {f.detail}" if f else fid)
        # grades that only the summary carries (clean accuracy; a backdoor search that never ran)
        summary_only = {"clean_accuracy": ("Clean accuracy", "Accuracy on the given labelled samples, graded by the policy.")}
        if report.backdoor is None:
            summary_only["backdoor"] = ("Backdoor trigger search", "Trigger reverse-engineering per class; graded by the anomaly index of the smallest trigger.")
        for reason in report.summary.reasons if report.summary else []:
            where, _, text = reason.partition(": ")
            if where not in summary_only:
                continue
            idx = rule(where, where, *summary_only[where])
            kind, level = _result_level("fail" if " -> fail " in text else "warn")
            results.append({
                "ruleId": where, "ruleIndex": idx, "kind": kind, "level": level,
                "message": {"text": text},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
            })

        s = report.summary
        run_props: dict[str, Any] = {
            "model_sha256": report.model.sha256,
            "verdict": s.verdict if s else None,
            "highest_risk": s.highest_risk if s else None,
            "fail_on": s.fail_on if s else None,
        }
        invocation: dict[str, Any] = {"executionSuccessful": True, "endTimeUtc": _utc(report.created_at)}
        if report.policy:
            pol = report.policy
            run_props["policy"] = {"name": pol.name, "version": pol.version, "sha256": pol.sha256, "effective_sha256": pol.effective_sha256,
                                   "deviations": [d.model_dump(mode="json") for d in pol.deviations]}
            if pol.deviations:
                shown = "; ".join(f"{d.key}: {d.policy_value!r} -> {d.effective_value!r}" for d in pol.deviations[:8])
                invocation["toolConfigurationNotifications"] = [{
                    "level": "warning",
                    "message": {"text": f"the scan deviates from policy '{pol.name}' ({len(pol.deviations)} command-line override(s): {shown}); "
                                        "its verdict is not a verdict under that policy"},
                }]
        run: dict[str, Any] = {
            "tool": {"driver": {
                "name": "onnxguard",
                "version": report.tool.version,
                "semanticVersion": report.tool.version,
                "informationUri": INFO_URI,
                "rules": list(rules.values()),
            }},
            "artifacts": [{"location": {"uri": uri}, "hashes": {"sha-256": report.model.sha256}, "length": report.model.size_bytes}],
            "invocations": [invocation],
            "results": results,
            "properties": run_props,
        }
        return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def _utc(created_at: str) -> str:
    """SARIF date-times are UTC with a 'Z'."""
    import datetime as _dt

    try:
        t = _dt.datetime.fromisoformat(created_at).astimezone(_dt.timezone.utc)
    except ValueError:
        t = _dt.datetime.now(_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def render(report: Report) -> str:
    return SarifFormat().render(report)
