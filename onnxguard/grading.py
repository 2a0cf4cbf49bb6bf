"""Applying a policy's thresholds to a finished report: per-check risk, overall verdict."""

from __future__ import annotations

from .policy import Grading, LoadedPolicy, Thresholds
from .report import LEVELS, VERDICTS, BackdoorSection, EvasionCheck, Grade, Level, Quantity, Rate, Report, Summary, Verdict


def verdict_for(level: Level, grading: Grading) -> Verdict:
    return grading.verdicts[level]


def grade_rate(metric: str, rate: Rate, thr: Thresholds, grading: Grading) -> Grade:
    """Grade a proportion on its interval's worse end (upper bound when higher is worse)."""
    graded = rate.ci.high if thr.worse == "higher" else rate.ci.low
    level = thr.level(graded)
    end = "upper" if thr.worse == "higher" else "lower"
    point = f"{rate.value:.3f}" if rate.value is not None else "n/a"
    rule = f"{metric}: {end} 95% bound {graded:.3f} (point {point}, n={rate.n}); thresholds {thr.describe()}"
    return Grade(metric=metric, value=rate.value, graded_value=graded, level=level, verdict=verdict_for(level, grading), rule=rule)


def grade_quantity(metric: str, q: Quantity, thr: Thresholds, grading: Grading) -> Grade:
    """Grade a median on its interval's worse end."""
    if q.ci is not None:
        graded = q.ci.low if thr.worse == "lower" else q.ci.high
    else:
        graded = q.median if q.median is not None else float("inf")
    level = thr.level(graded)
    rule = f"{metric}: {'lower' if thr.worse == 'lower' else 'upper'} 95% bound {graded:.4g} of the median (n={q.n}); thresholds {thr.describe()}"
    return Grade(metric=metric, value=q.median, graded_value=graded if graded != float("inf") else None, level=level, verdict=verdict_for(level, grading), rule=rule)


def grade_value(metric: str, value: float, thr: Thresholds, grading: Grading) -> Grade:
    level = thr.level(value)
    return Grade(metric=metric, value=value, graded_value=value, level=level, verdict=verdict_for(level, grading), rule=f"{metric} = {value:.3g}; thresholds {thr.describe()}")


def grade_not_run(metric: str, reason: str, grading: Grading) -> Grade:
    rule = grading.not_run
    return Grade(metric=metric, value=None, graded_value=None, level=rule.level, verdict=rule.verdict, rule=f"insufficient evidence: {reason} (policy rule grading.not_run)")


def grade_static(severity: str, finding_id: str, grading: Grading) -> Grade:
    level = grading.static_findings[severity]  # type: ignore[index]
    return Grade(metric=f"static:{finding_id}", value=None, graded_value=None, level=level, verdict=verdict_for(level, grading), rule=f"static finding of severity {severity} -> {level} (grading.static_findings)")


def worst_level(levels: list[str]) -> Level:
    return max(levels, key=LEVELS.index) if levels else "low"  # type: ignore[return-value]


def worst_verdict(verdicts: list[str]) -> Verdict:
    return max(verdicts, key=VERDICTS.index) if verdicts else "pass"  # type: ignore[return-value]


def _check_grades(chk: "EvasionCheck", specs: dict, g: Grading) -> list[Grade]:
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
    return grades


def _backdoor_grade(bd: BackdoorSection, g: Grading) -> Grade:
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
        grades = _check_grades(chk, specs, g)
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
    elif policy.policy.backdoor.enabled and not any(nt.what == "backdoor search" for nt in report.not_applicable):
        all_grades.append(("backdoor", grade_not_run("backdoor_anomaly_index", "backdoor search was not run", g)))

    for tr in report.transfer:
        if g.transfer_rate is not None and tr.transfer_rate.n > 0:
            tr.grades = [grade_rate("transfer_rate", tr.transfer_rate, g.transfer_rate, g)]
            tr.risk = tr.grades[0].level
            all_grades += [("transfer", x) for x in tr.grades]

    report.coverage_grades = [grade_not_run(f"coverage:{nt.what}", nt.reason, g) for nt in report.not_tested if nt.graded]
    all_grades += [("coverage", x) for x in report.coverage_grades]

    if policy.policy.static.enabled:
        report.static_grades = [grade_static(f.severity, f.id, g) for f in report.static_findings]
        all_grades += [("static", x) for x in report.static_grades]

    report.summary = summarise(all_grades)
    return report


def summarise(graded: list[tuple[str, Grade]]) -> Summary:
    """The overall level and verdict: the worst of the grades, with a reason for each that does not pass."""
    return Summary(
        highest_risk=worst_level([x.level for _, x in graded]),
        verdict=worst_verdict([x.verdict for _, x in graded]),
        reasons=[f"{where}: {x.level} -> {x.verdict} ({x.rule})" for where, x in graded if x.verdict != "pass"],
    )


def grade_failed_scan(report: Report, policy: LoadedPolicy, reason: str) -> Report:
    """Grade a report whose scan process died, in place: every check, the backdoor search and the scan
    itself by the policy's ``grading.scan_crashed`` rule, plus the static findings."""
    g = policy.policy.grading
    rule = g.scan_crashed

    def crash_grade(metric: str) -> Grade:
        return Grade(metric=metric, value=None, graded_value=None, level=rule.level, verdict=rule.verdict,
                     rule=f"{reason} (policy rule grading.scan_crashed)")

    specs = {c.check_id: c for c in policy.policy.checks}
    for chk in report.checks:
        if chk.status == "completed" and chk.success_rate is not None:
            chk.grades = _check_grades(chk, specs, g)  # streamed before the crash: graded on its figures
            chk.risk = worst_level([x.level for x in chk.grades])
        else:
            chk.grades = [crash_grade(f"{chk.id}:scan_crashed")]
            chk.risk = rule.level
    if report.backdoor is not None:
        report.backdoor.grades = [crash_grade("backdoor:scan_crashed")]
        report.backdoor.risk = rule.level
    report.static_grades = [grade_static(f.severity, f.id, g) for f in report.static_findings] if policy.policy.static.enabled else []
    kept = [(chk.id, x) for chk in report.checks if chk.status == "completed" for x in chk.grades]
    report.summary = summarise([("scan", crash_grade("scan_crashed"))] + kept + [("static", x) for x in report.static_grades])
    return report
