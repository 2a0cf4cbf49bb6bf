"""Applying a policy's thresholds to a finished report: per-check risk, overall verdict."""

from __future__ import annotations

from .policy import (
    LoadedPolicy,
    grade_not_run,
    grade_quantity,
    grade_rate,
    grade_static,
    grade_value,
    verdict_for,
    worst_level,
    worst_verdict,
)
from .report import LEVELS, BackdoorSection, Grade, Report, Summary


def _backdoor_grade(bd: BackdoorSection, g) -> Grade:  # noqa: ANN001 (policy Grading)
    """The anomaly index graded by the policy's thresholds, made to agree with the search's own finding:
    a flagged model grades at least ``high``, an unflagged one at most ``medium`` (a finding never
    contradicts its grade; the rule says when the agreement moved the level)."""
    gr = grade_value("backdoor_anomaly_index", bd.max_anomaly_index, g.backdoor_anomaly_index, g)  # type: ignore[arg-type]
    thr = f"{bd.anomaly_threshold:.3g}" if bd.anomaly_threshold is not None else "?"
    p = f", p = {bd.p_value:.3g}" if bd.p_value is not None else ""
    rank = LEVELS.index(gr.level)
    if bd.flagged_classes and rank < LEVELS.index("high"):
        level = "high"
        rule = f"{gr.rule}; raised to high: the search flagged class(es) {bd.flagged_classes} (index > calibrated threshold {thr}{p})"
    elif not bd.flagged_classes and rank > LEVELS.index("medium"):
        level = "medium"
        rule = f"{gr.rule}; capped at medium: no class flagged (index <= calibrated threshold {thr}{p}, or its trigger failed on held-back samples)"
    else:
        return gr
    return Grade(metric=gr.metric, value=gr.value, graded_value=gr.graded_value, level=level,  # type: ignore[arg-type]
                 verdict=verdict_for(level, g), rule=rule)


def grade_report(report: Report, policy: LoadedPolicy) -> Report:
    """Fill in grades, risk levels and the summary, in place; returns the report."""
    g = policy.policy.grading
    specs = {c.check_id: c for c in policy.policy.checks}
    all_grades: list[tuple[str, Grade]] = []

    for chk in report.checks:
        grades: list[Grade] = []
        if chk.status != "completed" or chk.success_rate is None:
            grades.append(grade_not_run(f"{chk.id}:attack_success_rate", chk.reason or "check did not complete", g))
        elif chk.n_attacked == 0:
            grades.append(grade_not_run(f"{chk.id}:attack_success_rate", "no correctly classified sample could be attacked", g))
        else:
            spec = specs.get(chk.id)
            thr = (spec.success_rate if spec and spec.success_rate else None) or g.attack_success_rate
            grades.append(grade_rate(f"{chk.id}:attack_success_rate", chk.success_rate, thr, g))
            if chk.min_perturbation is not None and g.median_min_perturbation is not None:
                grades.append(grade_quantity(f"{chk.id}:median_min_perturbation", chk.min_perturbation, g.median_min_perturbation, g))
        chk.grades = grades
        chk.risk = worst_level([x.level for x in grades])
        all_grades += [(chk.id, x) for x in grades]

    if report.clean_accuracy is not None and g.clean_accuracy is not None:
        ca = grade_rate("clean_accuracy", report.clean_accuracy, g.clean_accuracy, g)
        all_grades.append(("clean_accuracy", ca))

    bd = report.backdoor
    if bd is not None:
        if bd.status != "completed" or bd.max_anomaly_index is None:
            bd.grades = [grade_not_run("backdoor_anomaly_index", bd.reason or "backdoor search did not complete", g)]
        else:
            bd.grades = [_backdoor_grade(bd, g)]
        bd.risk = worst_level([x.level for x in bd.grades])
        all_grades += [("backdoor", x) for x in bd.grades]
    elif policy.policy.backdoor.enabled:
        all_grades.append(("backdoor", grade_not_run("backdoor_anomaly_index", "backdoor search was not run", g)))

    for tr in report.transfer:
        if g.transfer_rate is not None and tr.transfer_rate.n > 0:
            tr.grades = [grade_rate("transfer_rate", tr.transfer_rate, g.transfer_rate, g)]
            tr.risk = tr.grades[0].level
            all_grades += [("transfer", x) for x in tr.grades]

    if policy.policy.static.enabled:
        report.static_grades = [grade_static(f.severity, f.id, g) for f in report.static_findings]
        all_grades += [("static", x) for x in report.static_grades]

    levels = [x.level for _, x in all_grades]
    verdicts = [x.verdict for _, x in all_grades]
    highest = worst_level(levels)
    verdict = worst_verdict(verdicts)
    reasons = [f"{where}: {x.level} -> {x.verdict} ({x.rule})" for where, x in all_grades if x.verdict != "pass"]
    report.summary = Summary(highest_risk=highest, verdict=verdict, reasons=reasons)
    return report
