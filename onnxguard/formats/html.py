"""The governance report: one self-contained HTML page a reviewer can open, print and file.

``render(report, verified=..., adversarials=...)`` returns the page as a string.
No external assets and no JavaScript: inline CSS, inline SVG charts, images as
PNG data URIs, and a Content-Security-Policy that forbids loading anything else.
Everything that comes from the model or the report (names, metadata, reasons,
findings) is untrusted and goes through :func:`esc`.
"""

from __future__ import annotations

import io
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..attacks import ATTACKS
from ..report import EvasionCheck, Grade, Quantity, Rate, Report
from ..verify import Verification
from .base import OutputFormat, RenderContext
from .png import PNG_SIGNATURE, data_uri, image_layout, png_bytes, scale_to_unit, to_pixels, upscale
from .svg import Bar, CurveDatum, bar_svg, curve_svg, esc

MAX_TRIPLETS = 4
MAX_EMBED_BYTES = 2 * 1024 * 1024
MAX_ADVERSARIAL_BYTES = 256 * 1024 * 1024

def attack_title(name: str) -> str:
    spec = ATTACKS.get(name)
    return spec.title if spec else name


def _labels_only(name: str) -> bool:
    spec = ATTACKS.get(name)
    return spec is not None and spec.access == "labels"


NORM_NAMES = {"linf": "L-infinity", "l2": "L2", "l0": "L0", "chars": "edited characters", "words": "substituted words", "tokens": "substituted tokens"}
TEXT_UNITS = {"chars": "character", "words": "word", "tokens": "token"}
LEVEL_MARK = {"low": "○ low", "medium": "◐ medium", "high": "● high", "critical": "▲ critical"}
VERDICT_MARK = {"pass": "✓ PASS", "warn": "! WARN", "fail": "✗ FAIL"}


@dataclass
class _Ctx:
    report: Report
    adversarials: Mapping[str, Path]
    base_dir: Path | None = None
    uid: int = 0

    def next_id(self, prefix: str) -> str:
        self.uid += 1
        return f"{prefix}{self.uid}"

    def read(self, recorded: str | Path | None, limit: int = MAX_EMBED_BYTES, explicit: bool = False) -> bytes | None:
        """The bytes of a file the page embeds, or None.

        A path recorded in the report (written by whoever made the report) is embedded only when it
        lies inside the report's own folder (``base_dir``), reached without following a symlink at
        any step; a relative path is taken below that folder, and a file of the same name there is the
        fallback. Without ``base_dir`` (a page made from the scan in memory) and for files the user named
        (``explicit``), the file is opened as given, never through a symlink at its last component."""
        if not recorded:
            return None
        p = Path(recorded)
        if self.base_dir is None or explicit:
            return _read_plain(p, limit)
        for cand in ([p] if p.is_absolute() else [self.base_dir / p]) + [self.base_dir / p.name]:
            data = _read_inside(self.base_dir, cand, limit)
            if data is not None:
                return data
        return None


def _read_plain(path: Path, limit: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    return _read_fd(fd, limit)


def _read_fd(fd: int, limit: int) -> bytes | None:
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        data = os.read(fd, limit + 1) if st.st_size else b""
        while len(data) < st.st_size:
            more = os.read(fd, limit + 1 - len(data))
            if not more:
                break
            data += more
        return data if len(data) <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_inside(root: Path, path: Path, limit: int) -> bytes | None:
    """``path`` read only if it lies inside ``root``, with no symlink at any component below ``root``."""
    from ..safeload import _open_inside

    for base in dict.fromkeys((os.path.abspath(root), os.path.realpath(root))):
        rel = os.path.relpath(os.path.abspath(path), base)
        if rel == os.curdir or rel.startswith(os.pardir) or os.path.isabs(rel):
            continue
        try:
            dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            fd, _ = _open_inside(dfd, [part for part in rel.split(os.sep) if part not in ("", os.curdir)])
        finally:
            os.close(dfd)
        return _read_fd(fd, limit) if fd is not None else None
    return None


# ---------------------------------------------------------------- wording


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal at most: 0.49 -> '49%', 0.00177 -> '0.2%'."""
    if x is None:
        return "-"
    v = f"{x * 100:.1f}"
    return (v[:-2] if v.endswith(".0") else v) + "%"


def eps_pct(x: float) -> str:
    """A budget as a percentage, exactly as configured: 0.03 -> '3%', 0.0025 -> '0.25%'."""
    return f"{x * 100:.4g}%"


def rate_text(r: Rate | None) -> str:
    if r is None:
        return "-"
    if r.n == 0 or r.value is None:
        return "n = 0"
    return f"{pct(r.value)} ({r.successes} of {r.n}; 95% CI {pct(r.ci.low)} to {pct(r.ci.high)})"


def is_image(report: Report) -> bool:
    return image_layout(report.model.sample_shape) is not None


def _n_features(report: Report) -> int | None:
    s = report.model.sample_shape
    return int(np.prod(s)) if s else None


def budget_phrase(check: EvasionCheck, eps: float, report: Report) -> str:
    if check.norm in TEXT_UNITS:
        u = TEXT_UNITS[check.norm]
        return f"by editing at most {pct(eps)} of each text's {u}s" if eps < 1 else f"by editing at most {int(eps)} {u}{'s' if eps != 1 else ''} per text"
    unit = "pixel" if is_image(report) else "feature"
    if check.norm == "linf":
        return f"while changing no {unit} by more than {eps_pct(eps)} of its valid range"
    if check.norm == "l0":
        k = int(round(eps))
        return f"by changing at most {k} {unit}{'s' if k != 1 else ''}"
    d = _n_features(report)
    equiv = f", as much change as shifting every one of the {d} {unit}s by {pct(eps / math.sqrt(d))} of its range" if d else ""
    return f"with a total change (L2 norm, in units of the valid range) of at most {eps:g}{equiv}"


def check_sentence(check: EvasionCheck, report: Report) -> str:
    """The plain-language statement of what one evasion check found."""
    labels_only = check.threat_model == "labels" or _labels_only(check.attack)
    who = "An attacker who sees only the predicted label" if labels_only else "An attacker who can query scores"
    if check.status != "completed":
        return f"This check was not run: {check.reason or 'no reason recorded'}."
    if check.n_attacked == 0 or check.success_rate is None:
        return "No correctly classified input was available to attack, so nothing was measured."
    s, n = check.success_rate.successes, check.success_rate.n
    eps = check.epsilon if check.epsilon is not None else (max(check.epsilons) if check.epsilons else 0.0)
    if check.tolerance is not None:
        moved = f"moved the prediction of {s} of {n} inputs by more than the tolerance ({check.tolerance:.4g})" if s else \
            f"moved none of the {n} predictions by more than the tolerance ({check.tolerance:.4g})"
        tail = "" if s else "; this is not a proof of robustness: a stronger or longer attack may still succeed"
        return f"{who} {moved} {budget_phrase(check, eps, report)}{tail}."
    if check.targeted:
        goal = f"into class {check.target}" if check.target is not None else "into a class chosen in advance"
        verb = f"forced {s} of {n} correctly classified inputs {goal}" if s else f"forced none of the {n} correctly classified inputs {goal}"
    else:
        verb = f"flipped {s} of {n} correctly classified inputs" if s else f"flipped none of the {n} correctly classified inputs"
    q = check.queries
    qtxt = f", using at most {q.max} model queries per input" if q is not None and q.max > 0 else ""
    tail = "" if s else "; this is not a proof of robustness: a stronger or longer attack may still succeed"
    return f"{who} {verb} {budget_phrase(check, eps, report)}{qtxt}{tail}."


# ---------------------------------------------------------------- small pieces


def _level(level: str | None) -> str:
    if not level:
        return '<span class="lvl">not graded</span>'
    return f'<span class="lvl lvl-{esc(level)}">{esc(LEVEL_MARK.get(level, level))}</span>'


def _verdict(verdict: str) -> str:
    return f'<span class="verdict v-{esc(verdict)}">{esc(VERDICT_MARK.get(verdict, verdict.upper()))}</span>'


def _dl(rows: Sequence[tuple[str, str]]) -> str:
    """A definition list; values are already-escaped HTML."""
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], caption: str | None = None, cls: str = "") -> str:
    """Rows are already-escaped HTML cells."""
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    th = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{cap}<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _grades(grades: Sequence[Grade]) -> str:
    if not grades:
        return ""
    items = "".join(f"<li>{_level(g.level)} → {_verdict(g.verdict)} <span class=\"rule\">{esc(g.rule)}</span></li>" for g in grades)
    return f'<div class="grades"><p class="sub">How the policy graded it</p><ul>{items}</ul></div>'


def _shape(shape: Sequence[object] | None) -> str:
    return " × ".join("?" if d is None else str(d) for d in shape) if shape else "unknown"


def _code(s: str) -> str:
    return f"<code>{esc(s)}</code>"


# ---------------------------------------------------------------- sections


CSS = """
mark { background: #ffe08a; color: inherit; padding: 0 1px; }
.zw { font-size: 0.75em; color: #a33; }
:root { --ink:#1a1a1a; --muted:#555; --line:#bbb; --bg:#fff; --soft:#f4f4f4; --accent:#1f4e9a; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       background: var(--bg); margin: 0 auto; max-width: 62rem; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; border-bottom: 2px solid var(--ink); padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .88em; overflow-wrap: anywhere; }
.sub { color: var(--muted); margin: .2rem 0; }
.banner { border: 2px solid var(--ink); padding: .6rem .9rem; margin: 1rem 0; }
.banner strong { letter-spacing: .03em; }
.banner.unsigned { border-style: dashed; background: var(--soft); }
.banner.deviations { border-color: #a00d0d; border-width: 3px; }
.verdictbox { display: flex; gap: 1.5rem; align-items: center; border: 3px solid var(--ink); padding: 1rem 1.2rem; margin: 1rem 0; }
.verdict { font-weight: 800; font-size: 1.05em; padding: .05rem .45rem; border: 2px solid currentColor; white-space: nowrap; }
.verdictbox .verdict { font-size: 2rem; }
.v-pass { color: #17602a; } .v-warn { color: #7a4d00; } .v-fail { color: #a00d0d; }
.lvl { font-weight: 700; white-space: nowrap; }
.lvl-low { color: #17602a; } .lvl-medium { color: #5b5000; } .lvl-high { color: #8a3b00; } .lvl-critical { color: #a00d0d; }
.sentence { font-size: 1.08rem; border-left: 4px solid var(--accent); padding: .3rem .8rem; margin: .6rem 0; background: var(--soft); }
table { border-collapse: collapse; margin: .6rem 0; width: 100%; }
caption { text-align: left; font-weight: 600; padding: .2rem 0; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: var(--soft); }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: .5rem 0; }
dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: .8rem 0; break-inside: avoid; page-break-inside: avoid; }
figcaption { color: var(--muted); font-size: .9rem; }
svg.chart { max-width: 100%; height: auto; display: block; }
.triplets { display: flex; flex-wrap: wrap; gap: 1rem; }
.triplet { border: 1px solid var(--line); padding: .4rem; break-inside: avoid; page-break-inside: avoid; }
.triplet .imgs { display: flex; gap: .4rem; }
.triplet figure { margin: 0; text-align: center; }
.triplet img, .trigger img { image-rendering: pixelated; border: 1px solid var(--ink); width: 96px; height: auto; }
.trigger img { width: auto; max-width: 100%; }
.grades ul { margin: .2rem 0; padding-left: 1.2rem; } .rule { color: var(--muted); font-size: .88rem; }
.check { break-inside: avoid-page; }
ul.reasons li { margin: .15rem 0; }
footer { margin-top: 2.5rem; color: var(--muted); font-size: .85rem; border-top: 1px solid var(--line); padding-top: .5rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3 { break-after: avoid; page-break-after: avoid; }
  .verdictbox, .banner, table, figure { break-inside: avoid; page-break-inside: avoid; }
  .sentence { background: none; }
  a { color: inherit; text-decoration: none; }
}
@page { margin: 16mm 14mm; }
"""


def _provenance(verified: Verification | None) -> str:
    if verified is None:
        return (
            '<div class="banner unsigned" role="note"><strong>UNSIGNED REPORT.</strong> This page was generated from a plain '
            "report that carries no signature: nothing on it proves who produced it or that it was not altered. "
            "Ask for the signed report and render it with <code>onnxguard report render --key PUBLIC_KEY</code>.</div>"
        )
    if not verified.verified:
        return (
            '<div class="banner unsigned" role="note"><strong>SIGNATURE NOT VERIFIED.</strong> This page was generated from a signed '
            f"envelope (key id {_code(verified.keyid)}) whose signature was <em>not</em> checked. Treat it as unsigned."
            + (f" {esc(verified.note)}" if verified.note else "")
            + "</div>"
        )
    held = ", ".join(verified.checks) if verified.checks else "signature"
    src = f" {_code(verified.key_source)}" if verified.key_source else ""
    kt = f" ({esc(verified.key_type)})" if verified.key_type else ""
    return (
        '<div class="banner signed" role="note"><strong>✓ SIGNED AND VERIFIED.</strong> The report on this page was taken from a '
        f"signed envelope and verified before rendering with the trusted public key{src}{kt}, fingerprint (key id) {_code(verified.keyid)}. "
        f"Checks that held: {esc(held)}."
        + (f" {esc(verified.note)}" if verified.note else "")
        + "</div>"
    )


def _deviations(pol: Any) -> str:
    """A banner above the verdict when the scan did not run the named policy as written."""
    if pol is None or not pol.deviations:
        return ""
    import json as _json

    rows = [[_code(d.key), _code(_json.dumps(d.policy_value)), _code(_json.dumps(d.effective_value))] for d in pol.deviations]
    return (
        '<div class="banner deviations" role="alert"><strong>⚠ DEVIATES FROM THE POLICY.</strong> This scan did not run '
        f"{_code(pol.name)} as written: {len(pol.deviations)} setting(s) were overridden on the command line. The verdict "
        "below is <em>not</em> a verdict under that policy, and the report does not verify as it "
        "(<code>onnxguard verify --policy</code> fails)."
        + _table(["setting", "the policy says", "the scan used"], rows, caption="Deviations from the named policy")
        + "</div>"
    )


def _summary(ctx: _Ctx) -> str:
    r = ctx.report
    s = r.summary
    pol = r.policy
    pol_html = (
        f"{_code(pol.name)} version {esc(pol.version)} ({esc(pol.source)}), sha256 {_code(pol.sha256)}" if pol else "no policy recorded"
    )
    if pol is not None and pol.effective_sha256:
        pol_html += f"; effective policy sha256 {_code(pol.effective_sha256)}"
    if s is None:
        return f'<section id="summary"><div class="verdictbox"><p>This report was not graded by a policy.</p></div><p>Policy: {pol_html}</p></section>'
    rule = "a <em>fail</em> verdict rejects the model" if s.fail_on == "fail" else "a <em>warn</em> or <em>fail</em> verdict rejects the model"
    reasons = "".join(f"<li>{esc(x)}</li>" for x in s.reasons) or "<li>every graded figure is within the policy's thresholds</li>"
    return (
        '<section id="summary" aria-labelledby="summary-h"><h2 id="summary-h">Verdict</h2>'
        f"{_deviations(pol)}"
        f'<div class="verdictbox"><div>{_verdict(s.verdict)}</div><div><p><strong>Verdict:</strong> {esc(s.verdict)}; '
        f"<strong>highest risk level:</strong> {_level(s.highest_risk)}</p>"
        f"<p><strong>Policy:</strong> {pol_html}; {rule}.</p></div></div>"
        f'<p class="sub">What drove the verdict</p><ul class="reasons">{reasons}</ul>'
        f"{_overview(ctx)}</section>"
    )


def _overview(ctx: _Ctx) -> str:
    r = ctx.report
    rows = []
    for c in r.checks:
        eps = f"{c.epsilon:g}" if c.epsilon is not None else "-"
        rows.append([f'<a href="#check-{esc(c.id)}">{esc(c.id)}</a>', esc(attack_title(c.attack)),
                     esc(f"{NORM_NAMES.get(c.norm, c.norm)} ≤ {eps}"),
                     esc(rate_text(c.success_rate)) if c.status == "completed" else esc(f"not run: {c.reason}"), _level(c.risk)])
    if r.backdoor is not None:
        b = r.backdoor
        res = f"flagged class(es): {', '.join(map(str, b.flagged_classes))}" if b.flagged_classes else "no class flagged"
        if b.status != "completed":
            res = f"{b.status}: {b.reason or ''}"
        rows.append(['<a href="#backdoor">backdoor</a>', esc(b.method or "trigger reverse-engineering"), "-", esc(res), _level(b.risk)])
    for t in r.transfer:
        rows.append([esc("transfer"), esc(f"{t.attack} from {t.source_model}"), esc(t.norm), esc(rate_text(t.transfer_rate)), _level(t.risk)])
    if r.static_findings:
        worst = max((g.level for g in r.static_grades), key=["low", "medium", "high", "critical"].index, default=None)
        rows.append(['<a href="#static">static</a>', "checks of the model file", "-", esc(f"{len(r.static_findings)} finding(s)"), _level(worst)])
    if not rows:
        return ""
    return _table(["check", "what it tests", "budget", "result", "risk"], rows, caption="All checks at a glance")


def _model(ctx: _Ctx) -> str:
    m = ctx.report.model
    opset = ", ".join(f"{k or 'ai.onnx'} {v}" for k, v in sorted(m.opset.items()))
    rows = [
        ("File", _code(m.path)),
        ("SHA-256", _code(m.sha256)),
        ("Size", esc(f"{m.size_bytes:,} bytes")),
        ("Opsets", esc(opset) or "-"),
        ("IR version", esc(m.ir_version)),
        ("Producer", esc(m.producer) or "-"),
        ("Task", esc(f"{m.task}" + (f" ({m.task_detail})" if m.task_detail else "") + (f": {m.task_reason}" if m.task_reason else "")) if m.task else "-"),
        ("Input spaces", esc("; ".join(f"{s.name}: {s.space} ({s.detail})" for s in m.input_spaces)) if m.input_spaces else "-"),
        ("Output convention", esc(m.output_kind or "-")),
        ("Classes", esc(m.n_classes if m.n_classes is not None else "unknown")),
        ("Sample shape", esc(_shape(m.sample_shape)) + (" (treated as an image)" if is_image(ctx.report) else "")),
    ]
    io = [[esc(kind), _code(t.name), esc(t.type), esc(_shape(t.shape))]
          for kind, ts in (("input", m.inputs), ("output", m.outputs)) for t in ts]
    ext = ""
    if m.external_data:
        ext = _table(["external data file", "sha256", "bytes"], [[_code(f.path), _code(f.sha256), esc(f.size_bytes)] for f in m.external_data],
                     caption="External data files (part of the model's identity)")
    return (
        '<section id="model" aria-labelledby="model-h"><h2 id="model-h">The model</h2>'
        + _dl(rows)
        + _table(["", "name", "type", "shape"], io, caption="Inputs and outputs")
        + ext
        + "</section>"
    )


def _data(ctx: _Ctx) -> str:
    r = ctx.report
    d = r.data
    if d is None:
        return ""
    vr = d.value_range

    def rng(v: float | list[float]) -> str:
        return f"{v:g}" if isinstance(v, (int, float)) else f"per feature, {min(v):g} to {max(v):g}"

    rows = [
        ("Source", _code(d.source) + (" <strong>(SYNTHETIC: drawn uniformly from the valid range, not real inputs)</strong>" if d.synthetic else "")),
        ("SHA-256", _code(d.sha256) if d.sha256 else "-"),
        ("Samples", esc(d.n_samples)),
        ("Reference labels", esc("given with the data" if d.labels == "given" else "the model's own predictions (accuracy not measured)")),
        ("Valid value range", esc(f"{rng(vr.lo)} to {rng(vr.hi)} (from: {vr.source})") if vr is not None else "-"),
    ]
    if r.clean_accuracy is not None:
        rows.append(("Clean accuracy", esc(rate_text(r.clean_accuracy))))
    if d.note:
        rows.append(("Note", esc(d.note)))
    return '<section id="data" aria-labelledby="data-h"><h2 id="data-h">The evidence</h2>' + _dl(rows) + "</section>"


def _curve(ctx: _Ctx, c: EvasionCheck) -> str:
    if len(c.robustness_curve) < 2:
        return ""
    fmt = eps_pct if c.norm == "linf" else (lambda v: f"{v:g}")
    pts = [CurveDatum(x=p.epsilon, y=p.success_rate.value, lo=p.success_rate.ci.low, hi=p.success_rate.ci.high,
                      label=pct(p.success_rate.value) if p.success_rate.value is not None else "n/a") for p in c.robustness_curve]
    desc = "; ".join(f"at epsilon {fmt(p.epsilon)}: {rate_text(p.success_rate)}" for p in c.robustness_curve)
    title = f"Robustness curve of {c.id}: attack success rate against the perturbation budget"
    thing = "pixel" if is_image(ctx.report) else "feature"
    unit = {"linf": f"largest change per {thing}, % of valid range", "l2": "L2 budget (units of the valid range)", "l0": f"{thing}s changed"}.get(c.norm, "epsilon")
    svg = curve_svg(pts, uid=ctx.next_id("curve"), title=title, desc=desc, x_label=f"epsilon ({unit})", x_fmt=fmt)
    rows = [[esc(fmt(p.epsilon)), esc(rate_text(p.success_rate)), esc(rate_text(p.robust_accuracy))] for p in c.robustness_curve]
    table = _table(["epsilon", "attack success rate", "robust accuracy (of all sampled inputs)"], rows, caption="The curve's data")
    return (
        f"<figure>{svg}<figcaption>Robustness curve: the share of attacked inputs broken at each budget, "
        f"with 95% intervals as whiskers. An input broken at a small budget counts as broken at every larger one.</figcaption></figure>{table}"
    )


def _load_npz(data: bytes | None) -> dict[str, np.ndarray] | None:
    if data is None:
        return None
    try:
        from ..datacheck import check_npz

        check_npz(io.BytesIO(data), "saved adversarials", MAX_ADVERSARIAL_BYTES)  # no zip bomb on the page's account
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # truncated, too large or not an npz: the page says so
        return None


def _triplets(ctx: _Ctx, c: EvasionCheck) -> str:
    r = ctx.report
    layout = image_layout(r.model.sample_shape)
    if layout is None:
        return ""
    given = ctx.adversarials.get(c.id)
    path = given or (Path(c.adversarials) if c.adversarials else None)
    if path is None:
        return '<p class="sub">Adversarial examples were not saved for this check (scan with <code>--save-adversarials DIR</code> to show them here).</p>'
    data = ctx.read(path, MAX_ADVERSARIAL_BYTES, explicit=given is not None)
    if data is None:
        return (f'<p class="sub">The saved adversarial examples ({_code(str(path))}) could not be found next to the report '
                "(only files inside the report's folder, reached without symlinks, are embedded).</p>")
    z = _load_npz(data)
    shape = tuple(r.model.sample_shape or ())
    if z is None or "x" not in z or "x_adv" not in z or z["x"].shape[1:] != shape or z["x_adv"].shape != z["x"].shape:
        return f'<p class="sub">The saved adversarial examples ({_code(str(path))}) could not be read.</p>'
    success = z.get("success", np.ones(len(z["x"]), dtype=bool)).astype(bool)
    idx = np.flatnonzero(success)[:MAX_TRIPLETS]
    if idx.size == 0:
        return '<p class="sub">No adversarial example was found, so there is nothing to show.</p>'
    vr = r.data.value_range if r.data else None
    lo, hi = (vr.lo, vr.hi) if vr else (0.0, 1.0)
    x = scale_to_unit(z["x"][idx], lo, hi, shape)
    xa = scale_to_unit(z["x_adv"][idx], lo, hi, shape)
    d = xa - x
    amp = float(np.abs(d).max()) or 1.0
    gain = 0.5 / amp
    y = z.get("y")
    cards = []
    for j, i in enumerate(idx):
        cls = f"class {int(y[i])}" if y is not None and len(y) > i else "its class"
        maxd = float(np.abs(d[j]).max())
        imgs = []
        for name, arr, alt in (
            ("original", x[j], f"original input {j + 1}, correctly classified as {cls}"),
            ("adversarial", xa[j], f"adversarial version of input {j + 1}, no longer classified as {cls}"),
            ("difference", 0.5 + gain * d[j], f"difference between the two, scaled {gain:.3g} times; mid-grey means unchanged, "
                                              f"lighter means increased, darker means decreased; largest change {pct(maxd)} of the range"),
        ):
            uri = data_uri(png_bytes(upscale(to_pixels(arr, layout))))
            imgs.append(f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(name)}</figcaption></figure>')
        cards.append(f'<div class="triplet"><div class="imgs">{"".join(imgs)}</div>'
                     f'<p class="sub">true {esc(cls)}; largest change {esc(pct(maxd))}</p></div>')
    return (
        f'<figure><div class="triplets">{"".join(cards)}</div><figcaption>{len(idx)} of the successful adversarial examples: '
        f"original, adversarial, and the difference scaled ×{gain:.3g} so the largest change shows at full contrast "
        "(mid-grey: unchanged; lighter: increased; darker: decreased).</figcaption></figure>"
    )


def _quantity_text(qty: Quantity, norm: str) -> str:
    def f(v: float) -> str:
        if not math.isfinite(v):
            return "unbounded"
        return pct(v) if norm == "linf" else f"{v:.4g}"

    ci = f"; 95% CI of the median {f(qty.ci.low)} to {f(qty.ci.high)}" if qty.ci else ""
    inf = f"; {qty.n_infinite} of {qty.n} never broke within the budget" if qty.n_infinite else ""
    med = f"median {f(qty.median)}" if qty.median is not None else "median not reached (more than half never broke)"
    return f"{med} ({NORM_NAMES.get(norm, norm)}){ci}; n = {qty.n}{inf}"


def _check(ctx: _Ctx, c: EvasionCheck) -> str:
    head = (f'<section class="check" id="check-{esc(c.id)}" aria-labelledby="check-{esc(c.id)}-h">'
            f'<h3 id="check-{esc(c.id)}-h">{esc(c.id)}: {esc(attack_title(c.attack))}, '
            f"{esc(NORM_NAMES.get(c.norm, c.norm))} — risk {_level(c.risk)}</h3>")
    sentence = f'<p class="sentence">{esc(check_sentence(c, ctx.report))}</p>'
    if c.status != "completed":
        return head + sentence + _grades(c.grades) + "</section>"
    rows: list[tuple[str, str]] = [
        ("Threat model", esc("scores visible to the attacker" if c.threat_model == "scores" else "only the predicted label visible")
         + esc(f"; targeted at class {c.target}" if c.targeted and c.target is not None else "; targeted (a target class per input)" if c.targeted else "; untargeted")),
        ("Budget", esc(f"{NORM_NAMES.get(c.norm, c.norm)} epsilon " + ", ".join(f"{e:g}" for e in (c.epsilons or [c.epsilon or 0.0])))),
        ("Inputs sampled", esc(f"{c.n_samples}, of which {c.n_attacked} were correctly classified and attacked")),
        ("Attack success rate", esc(rate_text(c.success_rate))),
    ]
    if c.clean_accuracy is not None:
        rows.append(("Clean accuracy on the sample", esc(rate_text(c.clean_accuracy))))
    q = c.queries
    if q is not None:
        med = f"{q.median:.0f}" if q.median is not None else "-"
        mean = f"{q.mean:.1f}" if q.mean is not None else "-"
        rows.append(("Model queries", esc(f"median {med}, mean {mean}, max {q.max} per input; {q.total:,} in total; budget "
                                          f"{q.budget_per_sample if q.budget_per_sample else 'none'} per input per attack run")))
    for label, qty in (("Size of successful perturbations", c.perturbation), ("Smallest perturbation that broke each input", c.min_perturbation)):
        if qty is not None and qty.n:
            rows.append((label, esc(_quantity_text(qty, c.norm))))
    if c.edits is not None and c.edits.n:
        rows.append(("Edits of the successful adversarials", esc(f"median {c.edits.median:g} {c.edit_unit or ''}; n = {c.edits.n}" if c.edits.median is not None else "-")))
    if c.substitutes:
        rows.append(("Substitutes from", esc(c.substitutes)))
    if c.output_change is not None and c.output_change.n:
        rows.append(("Output change found", esc(f"median {c.output_change.median:.4g}, mean {c.output_change.mean:.4g} (output units); n = {c.output_change.n}"
                                                 if c.output_change.median is not None else "-")))
    rows.append(("Seed", esc(c.seed if c.seed is not None else ctx.report.seed)))
    if c.finding:
        rows.append(("Finding (as recorded)", esc(c.finding)))
    shown = _text_examples(c) if c.examples else ("" if c.edit_unit or c.tolerance is not None else _triplets(ctx, c))
    return head + sentence + _dl(rows) + _curve(ctx, c) + shown + _grades(c.grades) + "</section>"


def _marked_html(text: str, spans: Sequence[Sequence[int]]) -> str:
    """The text, escaped, with the edited spans in <mark>; invisible characters shown as a visible placeholder."""
    def show(t: str) -> str:
        out = esc(t)
        for zw, name in (("\u200b", "ZWSP"), ("\u200c", "ZWNJ"), ("\u200d", "ZWJ"), ("\u2060", "WJ")):
            out = out.replace(zw, f'<span class="zw" title="invisible character U+{ord(zw):04X}">[{name}]</span>')
        return out

    parts, pos = [], 0
    for a, b in sorted((int(x[0]), int(x[1])) for x in spans if len(x) == 2):
        if a < pos or b > len(text):
            continue
        parts.append(show(text[pos:a]))
        parts.append(f"<mark>{show(text[a:b])}</mark>")
        pos = b
    parts.append(show(text[pos:]))
    return "".join(parts)


def _text_examples(c: EvasionCheck) -> str:
    rows = []
    for ex in c.examples:
        status = "fooled" if ex.success else "not fooled"
        rows.append([esc(ex.index), esc(ex.original), _marked_html(ex.adversarial, ex.marked),
                     esc(f"{ex.label} → {ex.adversarial_label} ({status})"), esc(ex.edits)])
    return _table(["#", "original", "adversarial (edits marked)", "label", "edits"], rows,
                  caption=f"{len(c.examples)} attacked texts, original and adversarial side by side (edited words marked)")


def _checks(ctx: _Ctx) -> str:
    if not ctx.report.checks:
        return ""
    return ('<section id="evasion" aria-labelledby="evasion-h"><h2 id="evasion-h">Evasion: can an attacker change the prediction?</h2>'
            '<p class="sub">Each check attacks correctly classified inputs through queries only. Rates carry 95% Wilson intervals; '
            "the policy grades the end of the interval that is worse for the model.</p>"
            + "".join(_check(ctx, c) for c in ctx.report.checks) + "</section>")


def _trigger_image(ctx: _Ctx, path: Path, layout: str | None, shape: Sequence[int] | None) -> str | None:
    """A data URI for a saved trigger: a PNG as it is, or an .npy rendered to greyscale/RGB."""
    try:
        raw = ctx.read(path)
        if raw is None:
            return None
        if path.suffix.lower() == ".png":
            return data_uri(raw) if raw.startswith(PNG_SIGNATURE) else None
        if path.suffix.lower() == ".npy":
            a = np.load(io.BytesIO(raw), allow_pickle=False).astype(np.float64)
            lay = layout
            if shape is not None and a.size == int(np.prod(shape)):
                a = a.reshape(tuple(shape))
            else:
                lay = image_layout(a.shape)
            if lay is None:
                return None
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
            return data_uri(png_bytes(upscale(to_pixels(a, lay), target=128)))
    except Exception:
        return None
    return None


def _feature_triggers(ctx: _Ctx, cls: int, files: Sequence[str], labels: Mapping[int, str]) -> str:
    """A tabular trigger saved as a (2, k) array: row 0 feature indices, row 1 values (normalised to the valid range)."""
    out = []
    for f in files:
        raw = ctx.read(f)
        if raw is None:
            continue
        try:
            a = np.load(io.BytesIO(raw), allow_pickle=False)
        except Exception:
            continue
        if a.ndim != 2 or a.shape[0] != 2 or not 0 < a.shape[1] <= 64 or not np.all(np.isfinite(a)) or np.any(a[0] != np.round(a[0])):
            continue
        rows = [[esc(int(i)), esc(f"{v:.4g}")] for i, v in zip(a[0], a[1])]
        out.append(_table(["feature index", "value set, in units of the valid range (0: low end, 1: high end; outside [0, 1]: out of range)"], rows,
                          caption=f"The reversed trigger for {labels.get(cls, f'class {cls}')} ({Path(f).name})"))
    return "".join(out)


def _files_for_class(files: Sequence[str], cls: int, n_flagged: int) -> list[str]:
    import re

    pat = re.compile(rf"(?:class|cls|target|label)[_-]?0*{cls}(?!\d)", re.IGNORECASE)
    hit = [f for f in files if pat.search(Path(f).name)]
    if not hit and n_flagged == 1:
        hit = list(files)
    return hit


def _backdoor(ctx: _Ctx) -> str:
    b = ctx.report.backdoor
    if b is None:
        return ""
    parts = ['<section id="backdoor" aria-labelledby="backdoor-h"><h2 id="backdoor-h">Backdoor: is there a hidden trigger?</h2>']
    if b.status != "completed":
        parts.append(f'<p class="sentence">The backdoor search {esc("was not run" if b.status == "not_run" else "failed")}: {esc(b.reason or "no reason recorded")}.</p>')
        return "".join(parts) + _grades(b.grades) + "</section>"
    flagged = set(b.flagged_classes)
    labels = {c.cls: (f"class {c.cls}" + (f" ({c.label})" if c.label else "")) for c in b.classes}
    if flagged:
        names = ", ".join(labels.get(c, f"class {c}") for c in sorted(flagged))
        sent = (f"The search found an anomalously small trigger for {names}: a small change to inputs of other classes "
                f"sends them to that class, the signature of a planted backdoor.")
    else:
        sent = ("No class has an anomalously small trigger: the search found no sign of a planted backdoor "
                "(this is not a proof that none exists).")
    parts.append(f'<p class="sentence">{esc(sent)}</p>')
    rows: list[tuple[str, str]] = [
        ("Method", esc(b.method or "trigger reverse-engineering")),
        ("Threat model", esc("scores visible" if b.threat_model == "scores" else "only labels visible")),
        ("Classes with a full search", esc(", ".join(map(str, b.fully_searched_classes)) or "-")),
        ("Anomaly threshold", esc(f"{b.anomaly_threshold:g}" if b.anomaly_threshold is not None else "-")),
        ("Largest anomaly index", esc(f"{b.max_anomaly_index:.3g}" if b.max_anomaly_index is not None else "-")),
        ("Queries", esc(f"{b.queries:,}" + (f" of a budget of {b.query_budget:,}" if b.query_budget else ""))),
    ]
    cal = b.details.get("calibration") if isinstance(b.details, dict) else None
    if b.p_value is not None:
        rows.append(("Empirical p-value", esc(f"{b.p_value:.3g}" + (f" against {cal['null_n']} clean models" if cal else ""))))
    if cal and cal.get("null_fpr") is not None:
        lo, hi = cal["null_fpr_ci"]
        rows.append(("Threshold calibration", esc(f"{cal['threshold_source']}: false-positive rate {cal['null_fpr']:.0%} on the null "
                                                  f"(95% interval {lo:.0%} to {hi:.0%}, n = {cal['null_n']})")))
    if b.families_searched:
        rows.append(("Trigger families searched", esc(", ".join(b.families_searched))))
    if b.families_not_covered:
        rows.append(("Not covered", esc("; ".join(b.families_not_covered))))
    if b.early_stops:
        rows.append(("Early stops", esc("; ".join(b.early_stops))))
    if b.finding:
        rows.append(("Finding (as recorded)", esc(b.finding)))
    parts.append(_dl(rows))
    cls_sorted = sorted(b.classes, key=lambda c: c.cls)
    if cls_sorted:
        kinds = {c.trigger_kind for c in cls_sorted if c.trigger_kind}

        def note(c: Any) -> str:
            bits = ([c.trigger_kind] if c.trigger_kind and len(kinds) > 1 else []) + ([] if c.full_search else ["pre-screen only"])
            return f"({', '.join(bits)})" if bits else ""

        def is_margin(c: Any) -> bool:  # the maximum-margin family's figure is a margin, not a size: kept off the size chart
            return c.trigger_kind == "margin"

        size_bars = [Bar(labels[c.cls], None if is_margin(c) else c.trigger_size, c.cls in flagged,
                         f"(score margin {c.trigger_size:.3g}: larger is more anomalous)" if is_margin(c) and c.trigger_size is not None else note(c))
                     for c in cls_sorted]
        sdesc = "; ".join(f"{labels[c.cls]}: score margin {c.trigger_size:.4g} (maximum-margin family)" if is_margin(c) and c.trigger_size is not None else
                          f"{labels[c.cls]}: trigger size {c.trigger_size:.4g}" if c.trigger_size is not None else f"{labels[c.cls]}: not measured"
                          for c in cls_sorted)
        parts.append("<figure>" + bar_svg(size_bars, uid=ctx.next_id("bd"), title="Reversed trigger size per class",
                                          desc=sdesc + (f". Flagged: {', '.join(labels.get(c, str(c)) for c in sorted(flagged))}." if flagged else ". No class flagged."),
                                          value_label="trigger size (smaller means easier to trigger)", fmt=lambda v: f"{v:.3g}")
                     + "<figcaption>Size of the smallest trigger found that sends inputs of other classes to each class. "
                       "A backdoored class stands out with a much smaller trigger; flagged classes are hatched and marked FLAGGED."
                       + (" Trigger families differ in scale, so sizes compare within a family (shown in brackets)." if len(kinds) > 1 else "")
                       + "</figcaption></figure>")
        ai = [c for c in cls_sorted if c.anomaly_index is not None]
        if ai:
            abars = [Bar(labels[c.cls], c.anomaly_index, c.cls in flagged) for c in cls_sorted]
            adesc = "; ".join(f"{labels[c.cls]}: anomaly index {c.anomaly_index:.3g}" for c in ai)
            thr = b.anomaly_threshold
            parts.append("<figure>" + bar_svg(abars, uid=ctx.next_id("bd"), title="Anomaly index per class",
                                              desc=adesc + (f". Threshold {thr:g}: a class above it is flagged." if thr is not None else ""),
                                              value_label="anomaly index (median absolute deviations below the median trigger size"
                                                          + ("; margin family: -log10 p against the other classes' margins)" if any(map(is_margin, cls_sorted)) else ")"),
                                              threshold=thr, threshold_label=f"threshold {thr:g}" if thr is not None else "")
                         + "<figcaption>How far each class's trigger size lies below the others, in robust standard deviations; "
                           "the dashed line is the anomaly threshold.</figcaption></figure>")
        trows = [[esc(labels[c.cls]) + (" <strong>FLAGGED</strong>" if c.cls in flagged else ""),
                  esc(f"{c.trigger_size:.4g}" if c.trigger_size is not None else "-"), esc(c.trigger_kind or "-"),
                  esc(rate_text(c.attack_success)), esc(f"{c.anomaly_index:.3g}" if c.anomaly_index is not None else "-"),
                  esc("full" if c.full_search else "pre-screen"), esc(f"{c.queries:,}")] for c in cls_sorted]
        parts.append(_table(["class", "trigger size", "kind", "trigger success on held-back inputs", "anomaly index", "search", "queries"],
                            trows, caption="Per-class figures"))
    layout = image_layout(ctx.report.model.sample_shape)
    for c in sorted(flagged):
        files = _files_for_class(b.trigger_files, c, len(flagged))
        pngs = [f for f in files if f.lower().endswith(".png")]
        if layout is None:
            parts.append(_feature_triggers(ctx, c, [f for f in files if f.lower().endswith(".npy")], labels))
        imgs = []
        for f in pngs or files:  # a PNG drawn by the search says more than its raw array
            uri = _trigger_image(ctx, Path(f), layout, ctx.report.model.sample_shape)
            if uri:
                alt = esc(f"reversed trigger for {labels.get(c, 'class ' + str(c))} from {Path(f).name}")
                imgs.append(f'<figure><img src="{uri}" alt="{alt}"><figcaption>{_code(Path(f).name)}</figcaption></figure>')
        if imgs:
            parts.append(f'<figure class="trigger"><div class="triplets">{"".join(imgs)}</div><figcaption>The reversed trigger for '
                         f"{esc(labels.get(c, f'class {c}'))}, as saved by the search: what it stamps on inputs to send them to this class.</figcaption></figure>")
        elif files and layout is not None:
            parts.append(f'<p class="sub">Trigger files for class {esc(c)} were listed ({", ".join(_code(Path(f).name) for f in files)}) '
                         "but could not be read next to the report.</p>")
    if b.trigger_files:
        parts.append('<p class="sub">Trigger files: ' + ", ".join(_code(f) for f in b.trigger_files) + "</p>")
    return "".join(parts) + _grades(b.grades) + "</section>"


def _transfer(ctx: _Ctx) -> str:
    t = ctx.report.transfer
    if not t:
        return ""
    rows = [[_code(x.source_model), _code(x.source_sha256[:16] + "…"), esc(f"{x.attack} ({x.norm}, epsilon {x.epsilon})"),
             esc(x.n_adversarials), esc(rate_text(x.transfer_rate)), _level(x.risk)] for x in t]
    return ('<section id="transfer" aria-labelledby="transfer-h"><h2 id="transfer-h">Transfer from a surrogate model</h2>'
            + _table(["source model", "sha256", "attack", "adversarials", "transfer rate", "risk"], rows) + "</section>")


def _static(ctx: _Ctx) -> str:
    r = ctx.report
    order = ["critical", "high", "medium", "low", "info"]
    fs = sorted(r.static_findings, key=lambda f: order.index(f.severity))
    body = (_table(["severity", "finding", "detail", "where"],
                   [[f'<span class="lvl">{esc(f.severity)}</span>', esc(f.title), esc(f.detail), _code(f.location) if f.location else "-"] for f in fs])
            if fs else "<p>No findings: the file has no external data outside its folder, no custom operators and no suspicious metadata the static checks look for.</p>")
    return f'<section id="static" aria-labelledby="static-h"><h2 id="static-h">Static checks of the model file</h2>{body}</section>'


def _limits(ctx: _Ctx) -> str:
    r = ctx.report
    items = [f"<li><strong>{esc(n.what)}</strong>: {esc(n.reason)}</li>" for n in r.not_tested]
    if r.model_ran is False:
        items.insert(0, "<li><strong>the model itself</strong>: it could not be run, so this is a static-only report</li>")
    if r.backdoor is None and not any(n.what == "backdoor search" for n in r.not_applicable):
        items.append("<li><strong>backdoor search</strong>: not part of this report</li>")
    if r.data is not None and r.data.synthetic:
        items.append("<li><strong>real inputs</strong>: no sample data was given; every figure was measured on synthetic inputs</li>")
    notes = "".join(f"<li>{esc(n)}</li>" for n in r.notes)
    notes += "".join(f"<li>not applicable to this model (not graded): <strong>{esc(n.what)}</strong>: {esc(n.reason)}</li>" for n in r.not_applicable)
    out = '<section id="limits" aria-labelledby="limits-h"><h2 id="limits-h">What could not be tested, and why</h2>'
    out += f"<ul>{''.join(items)}</ul>" if items else "<p>Every check the policy asks for was run.</p>"
    if notes:
        out += f'<p class="sub">Notes</p><ul>{notes}</ul>'
    out += ('<p class="sub">Attacks find adversarial examples; failing to find one within a budget is not a proof of robustness. '
            "A backdoor search that flags nothing is not a proof that no backdoor exists.</p>")
    return out + "</section>"


def _repro(ctx: _Ctx) -> str:
    r = ctx.report
    e = r.environment
    cmd = ["onnxguard", "scan", r.model.path]
    if r.data is not None and not r.data.synthetic:
        cmd += ["--data", r.data.source]
    if r.policy is not None:
        cmd += ["--policy", r.policy.name]
    cmd += ["--seed", str(r.seed)]
    rows = [
        ("Seed", esc(r.seed)),
        ("Command (approximately)", _code(" ".join(cmd))),
        ("onnxguard", esc(f"{r.tool.name} {r.tool.version}, report schema {r.schema_version}")),
        ("Runtime", esc(f"onnxruntime {e.onnxruntime} ({e.execution_provider}), onnx {e.onnx}, numpy {e.numpy}")),
        ("Python / platform", esc(f"Python {e.python} on {e.platform}")),
        ("Created", esc(r.created_at)),
    ]
    if r.timing is not None:
        t = r.timing
        share = f", {t.ort_share:.0%} of it inside onnxruntime" if t.ort_share is not None else ""
        rows.append(("Time and queries", esc(f"{t.wall_s:.1f} s{share}; {t.queries_total:,} model queries")))
    return ('<section id="repro" aria-labelledby="repro-h"><h2 id="repro-h">Reproducing this report</h2>'
            '<p class="sub">The same model, data, policy, onnxguard version and seed give the same figures.</p>' + _dl(rows) + "</section>")


def render(report: Report, *, verified: Verification | None = None,
           adversarials: str | Path | Mapping[str, str | Path] | None = None, base_dir: str | Path | None = None) -> str:
    """The report as one self-contained HTML page.

    ``verified``: how the report was authenticated (None: a plain, unsigned report).
    ``adversarials``: where the saved adversarial examples are, a folder holding
    ``<check id>.npz`` or a mapping check id -> file; by default the paths recorded
    in the report. ``base_dir``: the report's folder, where relative paths recorded
    in the report (adversarials, trigger files) are also looked for."""
    if isinstance(adversarials, (str, Path)):
        folder = Path(adversarials)
        adv = {c.id: folder / f"{c.id}.npz" for c in report.checks}
    else:
        adv = {k: Path(v) for k, v in (adversarials or {}).items()}
    ctx = _Ctx(report=report, adversarials=adv, base_dir=Path(base_dir) if base_dir is not None else None)
    m = report.model
    name = Path(m.path).name or m.path
    verdict = report.summary.verdict.upper() if report.summary else "UNGRADED"
    title = f"onnxguard report: {name} — {verdict}"
    body = "".join([
        "<header>",
        f"<h1>Security scan of {_code(name)}</h1>",
        f'<p class="sub">onnxguard {esc(report.tool.version)} · {esc(report.created_at)} · sha256 {_code(m.sha256[:16])}…</p>',
        _provenance(verified),
        "</header><main>",
        _summary(ctx),
        _model(ctx),
        _data(ctx),
        _checks(ctx),
        _backdoor(ctx),
        _transfer(ctx),
        _static(ctx),
        _limits(ctx),
        _repro(ctx),
        "</main>",
        f"<footer>Generated by onnxguard {esc(report.tool.version)} from report schema {esc(report.schema_version)}. "
        f"{'Signature verified with key ' + _code(verified.keyid) + '.' if verified is not None and verified.verified else 'Not signature-verified.'}</footer>",
    ])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="onnxguard {esc(report.tool.version)}">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n"
    )


class HtmlFormat(OutputFormat):
    """The governance page: one self-contained HTML file (see :func:`render`)."""

    name = "html"
    description = "a self-contained HTML page for reviewers (marked unsigned unless verified)"

    def render(self, report: Report, ctx: RenderContext | None = None) -> str:
        c = ctx or RenderContext()
        return render(report, verified=c.verified, adversarials=c.adversarials, base_dir=c.base_dir)
