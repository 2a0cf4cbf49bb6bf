"""What changed between two reports of a model, for the review of a retrained model.

A figure counts as having moved only when its two 95% intervals do not overlap;
smaller moves are listed apart as within the noise of the measurement. Risk
levels and the verdict are compared as they are; a worse level is a regression.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .report import LEVELS, VERDICTS, Quantity, Rate, Report
from .text import sanitize

Direction = Literal["worse", "better", "changed"]
Kind = Literal["verdict", "risk", "figure", "identity", "check", "finding", "comparability"]


@dataclass
class Change:
    kind: Kind
    what: str
    old: Any
    new: Any
    direction: Direction
    significant: bool = True
    detail: str = ""


@dataclass
class ReportDiff:
    old: dict[str, Any]
    new: dict[str, Any]
    changes: list[Change] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.direction == "worse" and c.significant and c.kind in ("verdict", "risk", "figure", "finding")]

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "changes": [asdict(c) for c in self.changes],
                "regressions": len(self.regressions)}

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2, allow_nan=False)


def _finite(v: Any) -> Any:
    """JSON has no infinity: unbounded interval ends become null, as in the report."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _ident(r: Report) -> dict[str, Any]:
    return {
        "model": r.model.path, "sha256": r.model.sha256, "created_at": r.created_at,
        "policy": f"{r.policy.name} {r.policy.version}" if r.policy else None,
        "verdict": r.summary.verdict if r.summary else None,
        "highest_risk": r.summary.highest_risk if r.summary else None,
    }


def _rank(order: tuple[str, ...], v: str | None) -> int:
    return order.index(v) if v in order else -1


def _ordered(kind: Kind, what: str, old: str | None, new: str | None, order: tuple[str, ...]) -> Change | None:
    if old == new:
        return None
    a, b = _rank(order, old), _rank(order, new)
    direction: Direction = "changed" if a < 0 or b < 0 else ("worse" if b > a else "better")
    return Change(kind, what, old, new, direction)


def _disjoint(a_lo: float, a_hi: float, b_lo: float, b_hi: float) -> bool:
    return b_lo > a_hi or b_hi < a_lo


def _rate(what: str, old: Rate | None, new: Rate | None, higher_is_worse: bool) -> Change | None:
    if old is None or new is None or old.value is None or new.value is None:
        if (old is None) != (new is None):
            return Change("figure", what, _rate_view(old), _rate_view(new), "changed", True, "measured in only one of the reports")
        return None
    if old.successes == new.successes and old.n == new.n:
        return None
    sig = _disjoint(old.ci.low, old.ci.high, new.ci.low, new.ci.high)
    up = new.value > old.value
    direction: Direction = "changed" if new.value == old.value else ("worse" if up == higher_is_worse else "better")
    return Change("figure", what, _rate_view(old), _rate_view(new), direction, sig,
                  "the 95% intervals do not overlap" if sig else "within the 95% intervals: not a significant change")


def _rate_view(r: Rate | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"value": r.value, "successes": r.successes, "n": r.n, "ci": [r.ci.low, r.ci.high]}


def _quantity(what: str, old: Quantity | None, new: Quantity | None, higher_is_worse: bool) -> Change | None:
    if old is None or new is None or old.median is None or new.median is None or old.median == new.median:
        return None
    sig = bool(old.ci and new.ci and _disjoint(old.ci.low, old.ci.high, new.ci.low, new.ci.high))
    up = new.median > old.median
    view = lambda q: {"median": q.median, "ci": [q.ci.low, q.ci.high] if q.ci else None, "n": q.n}  # noqa: E731
    return Change("figure", what, view(old), view(new), "worse" if up == higher_is_worse else "better", sig,
                  "the 95% intervals of the median do not overlap" if sig else "within the 95% intervals: not a significant change")


def _settings(c: Any) -> str:
    q = c.queries.budget_per_sample if c.queries else None
    eps = ",".join(f"{e:g}" for e in c.epsilons)
    tgt = f" targeted{'=' + str(c.target) if c.target is not None else ''}" if c.targeted else ""
    return f"{c.attack} {c.norm} eps {eps}, {c.threat_model}{tgt}, {c.n_samples} samples, budget {q}"


def diff_reports(old: Report, new: Report) -> ReportDiff:
    d = ReportDiff(old=_ident(old), new=_ident(new))
    add = d.changes.append

    def maybe(c: Change | None) -> None:
        if c is not None:
            add(c)

    so, sn = old.summary, new.summary
    maybe(_ordered("verdict", "verdict", so.verdict if so else None, sn.verdict if sn else None, VERDICTS))
    maybe(_ordered("risk", "highest risk", so.highest_risk if so else None, sn.highest_risk if sn else None, LEVELS))

    # identity and comparability
    if old.model.sha256 != new.model.sha256:
        add(Change("identity", "model sha256", old.model.sha256, new.model.sha256, "changed", True, "a different model file"))
    for what, a, b in (
        ("model opset", old.model.opset, new.model.opset),
        ("model classes", old.model.n_classes, new.model.n_classes),
        ("model inputs", [t.model_dump() for t in old.model.inputs], [t.model_dump() for t in new.model.inputs]),
        ("model outputs", [t.model_dump() for t in old.model.outputs], [t.model_dump() for t in new.model.outputs]),
    ):
        if a != b:
            add(Change("identity", what, a, b, "changed"))
    po = (old.policy.name, old.policy.version, old.policy.sha256) if old.policy else None
    pn = (new.policy.name, new.policy.version, new.policy.sha256) if new.policy else None
    if po != pn:
        add(Change("comparability", "policy", list(po) if po else None, list(pn) if pn else None, "changed", True,
                   "graded under different policies: risk levels are not directly comparable"))
    def data_id(r: Report) -> str | None:
        if r.data is None:
            return None
        if r.data.synthetic:
            return "synthetic"
        return f"sha256:{r.data.sha256}" if r.data.sha256 else r.data.source

    if data_id(old) != data_id(new):
        add(Change("comparability", "sample data", data_id(old), data_id(new), "changed", True, "measured on different data"))
    if old.seed != new.seed:
        add(Change("comparability", "seed", old.seed, new.seed, "changed", False))
    maybe(_rate("clean accuracy", old.clean_accuracy, new.clean_accuracy, higher_is_worse=False))

    # evasion checks, matched by id
    oc = {c.id: c for c in old.checks}
    nc = {c.id: c for c in new.checks}
    for cid in [*oc, *(k for k in nc if k not in oc)]:
        a, b = oc.get(cid), nc.get(cid)
        if a is None or b is None:
            add(Change("check", f"check {cid}", None if a is None else a.status, None if b is None else b.status, "changed", True,
                       "only in the new report" if a is None else "only in the old report"))
            continue
        if a.status != b.status:
            add(Change("check", f"{cid} status", a.status, b.status, "worse" if b.status != "completed" else "better", True, b.reason or ""))
        sa, sb = _settings(a), _settings(b)
        if sa != sb:
            add(Change("comparability", f"{cid} settings", sa, sb, "changed", True, "the check ran with different settings"))
        maybe(_ordered("risk", f"{cid} risk", a.risk, b.risk, LEVELS))
        maybe(_rate(f"{cid} attack success rate", a.success_rate, b.success_rate, higher_is_worse=True))
        maybe(_quantity(f"{cid} perturbation size (median)", a.perturbation, b.perturbation, higher_is_worse=False))
        maybe(_quantity(f"{cid} smallest breaking perturbation (median)", a.min_perturbation, b.min_perturbation, higher_is_worse=False))
        pa = {p.epsilon: p for p in a.robustness_curve}
        for p in b.robustness_curve:
            if p.epsilon in pa and p.epsilon != b.epsilon:
                maybe(_rate(f"{cid} success rate at epsilon {p.epsilon:g}", pa[p.epsilon].success_rate, p.success_rate, higher_is_worse=True))
        if a.queries and b.queries and a.queries.median != b.queries.median:
            up = (b.queries.median or 0) > (a.queries.median or 0)
            add(Change("figure", f"{cid} median queries to succeed", a.queries.median, b.queries.median, "better" if up else "worse", False,
                       "no interval recorded: informational"))

    # backdoor
    bo, bn = old.backdoor, new.backdoor
    if (bo is None) != (bn is None):
        add(Change("check", "backdoor search", bo.status if bo else None, bn.status if bn else None, "changed", True,
                   "only in the new report" if bo is None else "only in the old report"))
    elif bo is not None and bn is not None:
        if bo.status != bn.status:
            add(Change("check", "backdoor status", bo.status, bn.status, "worse" if bn.status != "completed" else "better", True, bn.reason or ""))
        maybe(_ordered("risk", "backdoor risk", bo.risk, bn.risk, LEVELS))
        if bo.flagged_classes != bn.flagged_classes:
            worse = len(bn.flagged_classes) > len(bo.flagged_classes) or bool(set(bn.flagged_classes) - set(bo.flagged_classes))
            add(Change("finding", "backdoor flagged classes", bo.flagged_classes, bn.flagged_classes, "worse" if worse else "better"))
        if bo.max_anomaly_index != bn.max_anomaly_index and bo.max_anomaly_index is not None and bn.max_anomaly_index is not None:
            up = bn.max_anomaly_index > bo.max_anomaly_index
            add(Change("figure", "backdoor largest anomaly index", bo.max_anomaly_index, bn.max_anomaly_index, "worse" if up else "better", False,
                       "no interval recorded: informational; the risk level above is what the policy graded"))

    # transfer, matched by source model and attack
    to = {(t.source_sha256, t.attack, t.norm): t for t in old.transfer}
    for t in new.transfer:
        o = to.get((t.source_sha256, t.attack, t.norm))
        if o is not None:
            maybe(_ordered("risk", f"transfer from {t.source_model} risk", o.risk, t.risk, LEVELS))
            maybe(_rate(f"transfer rate from {t.source_model} ({t.attack})", o.transfer_rate, t.transfer_rate, higher_is_worse=True))

    # static findings and what was not tested
    def fkey(f: Any) -> tuple[str, str]:
        return (f.id, f.location or "")

    fo = {fkey(f): f for f in old.static_findings}
    fn = {fkey(f): f for f in new.static_findings}
    for k in fn.keys() - fo.keys():
        f = fn[k]
        add(Change("finding", f"static finding {f.id}", None, f"{f.severity}: {f.title}", "worse", True, f.location or ""))
    for k in fo.keys() - fn.keys():
        f = fo[k]
        add(Change("finding", f"static finding {f.id}", f"{f.severity}: {f.title}", None, "better", True, f.location or ""))
    no = {n.what: n.reason for n in old.not_tested}
    nn = {n.what: n.reason for n in new.not_tested}
    for w in nn.keys() - no.keys():
        add(Change("check", f"not tested: {w}", None, nn[w], "worse", True))
    for w in no.keys() - nn.keys():
        add(Change("check", f"now tested: {w}", no[w], None, "better", True))
    return d


# ---------------------------------------------------------------- text


def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict) and "ci" in v and "value" in v:
        if v["value"] is None:
            return "n=0"
        return f"{v['value']:.1%} [{v['ci'][0]:.1%}, {v['ci'][1]:.1%}] n={v['n']}"
    if isinstance(v, dict) and "median" in v:
        ci = f" [{v['ci'][0]:.4g}, {v['ci'][1]:.4g}]" if v.get("ci") else ""
        return f"{v['median']:.4g}{ci} n={v['n']}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, str) and len(v) == 64 and all(ch in "0123456789abcdef" for ch in v):
        return v[:16] + "…"
    return str(v)


def format_text(d: ReportDiff) -> str:
    lines = []
    for tag, side in (("old", d.old), ("new", d.new)):
        lines.append(f"{tag}  {side['model']}  sha256:{str(side['sha256'])[:16]}…  {side['created_at']}  policy {side['policy'] or '-'}  "
                     f"verdict {side['verdict'] or '-'}  highest risk {side['highest_risk'] or '-'}")
    if not d.changes:
        lines.append("")
        lines.append("no changes in verdict, risk levels, figures or findings")
        return sanitize("\n".join(lines))

    def block(title: str, items: list[Change]) -> None:
        if not items:
            return
        lines.append("")
        lines.append(title)
        w = max(len(c.what) for c in items)
        for c in items:
            arrow = f"{_show(c.old)} -> {_show(c.new)}"
            tail = f"  ({c.detail})" if c.detail else ""
            lines.append(f"  {c.what.ljust(w)}  {arrow}  {c.direction.upper() if c.direction != 'changed' else 'changed'}{tail}")

    block("verdict and risk levels", [c for c in d.changes if c.kind in ("verdict", "risk")])
    block("figures that moved beyond their 95% intervals", [c for c in d.changes if c.kind == "figure" and c.significant])
    block("findings and checks", [c for c in d.changes if c.kind in ("finding", "check")])
    block("identity and comparability", [c for c in d.changes if c.kind in ("identity", "comparability")])
    block("within the noise (intervals overlap, or no interval recorded)", [c for c in d.changes if c.kind == "figure" and not c.significant])
    reg = d.regressions
    lines.append("")
    lines.append(f"{len(reg)} regression(s)" + (": " + "; ".join(c.what for c in reg) if reg else ""))
    return sanitize("\n".join(lines))


def load_any(path: str | Path) -> Report:
    """A report from a plain report file or the payload of a signed envelope (not verified here)."""
    from .verify import report_from_json

    rep, _env = report_from_json(Path(path).read_bytes())
    return rep
