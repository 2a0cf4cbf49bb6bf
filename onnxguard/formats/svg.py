"""Inline SVG charts for the HTML report: readable without colour (shapes, hatching,
labels), each with a <title> and a <desc> that spells out the data."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from ..text import sanitize

INK = "#1a1a1a"
GRID = "#c8c8c8"
ACCENT = "#1f4e9a"


def esc(value: object) -> str:
    return escape(sanitize(str(value)), quote=True)


def num(v: float) -> str:
    return f"{v:.6g}"


@dataclass(frozen=True)
class CurveDatum:
    x: float
    y: float | None  # a rate in [0, 1]
    lo: float
    hi: float
    label: str


def _ticks(hi: float, n: int = 5) -> list[float]:
    if hi <= 0:
        return [0.0]
    return [hi * i / (n - 1) for i in range(n)]


def curve_svg(points: list[CurveDatum], *, uid: str, title: str, desc: str, x_label: str, x_fmt=lambda v: f"{v:g}") -> str:
    """Success rate (0-100%) against epsilon, with 95% interval whiskers; square markers."""
    w, h = 560, 300
    left, right, top, bottom = 64, 24, 20, 56
    pw, ph = w - left - right, h - top - bottom
    xmax = max((p.x for p in points), default=1.0) or 1.0
    xmax *= 1.05

    def sx(v: float) -> float:
        return left + pw * (v / xmax)

    def sy(v: float) -> float:
        return top + ph * (1.0 - v)

    out = [
        f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{uid}-t">{esc(title)}</title><desc id="{uid}-d">{esc(desc)}</desc>',
        f'<g font-family="system-ui, sans-serif" font-size="12" fill="{INK}">',
    ]
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{num(y)}" x2="{left + pw}" y2="{num(y)}" stroke="{GRID}" stroke-width="1"/>')
        out.append(f'<text x="{left - 8}" y="{num(y + 4)}" text-anchor="end">{int(t * 100)}%</text>')
    for p in points:
        x = sx(p.x)
        out.append(f'<line x1="{num(x)}" y1="{top + ph}" x2="{num(x)}" y2="{top + ph + 5}" stroke="{INK}"/>')
        out.append(f'<text x="{num(x)}" y="{top + ph + 18}" text-anchor="middle">{esc(x_fmt(p.x))}</text>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="{INK}"/>')
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{INK}"/>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 12}" text-anchor="middle">{esc(x_label)}</text>')
    out.append(f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" text-anchor="middle">attack success rate</text>')
    pts = [p for p in points if p.y is not None]
    if len(pts) > 1:
        path = " ".join(f"{'M' if i == 0 else 'L'}{num(sx(p.x))},{num(sy(p.y))}" for i, p in enumerate(pts))  # type: ignore[arg-type]
        out.append(f'<path d="{path}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
    for p in pts:
        x, y = sx(p.x), sy(p.y)  # type: ignore[arg-type]
        y0, y1 = sy(p.lo), sy(p.hi)
        out.append(f'<line x1="{num(x)}" y1="{num(y0)}" x2="{num(x)}" y2="{num(y1)}" stroke="{INK}" stroke-width="1.5"/>')
        for yy in (y0, y1):
            out.append(f'<line x1="{num(x - 5)}" y1="{num(yy)}" x2="{num(x + 5)}" y2="{num(yy)}" stroke="{INK}" stroke-width="1.5"/>')
        out.append(f'<rect x="{num(x - 4)}" y="{num(y - 4)}" width="8" height="8" fill="{ACCENT}" stroke="{INK}"/>')
        out.append(f'<text x="{num(x + 8)}" y="{num(y - 6)}">{esc(p.label)}</text>')
    out.append("</g></svg>")
    return "".join(out)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    flagged: bool = False
    note: str = ""


def bar_svg(bars: list[Bar], *, uid: str, title: str, desc: str, value_label: str,
            threshold: float | None = None, threshold_label: str = "", fmt=lambda v: f"{v:.3g}") -> str:
    """Horizontal bars, one per class. Flagged bars are hatched and labelled FLAGGED;
    an optional dashed threshold line is labelled with its value."""
    row = 22
    left, right, top, bottom = 120, 150, 26 if threshold is not None else 10, 40
    w = 640
    pw = w - left - right
    h = top + bottom + row * len(bars)
    vals = [b.value for b in bars if b.value is not None]
    vmax = max(vals + ([threshold] if threshold is not None else []) + [1e-12])
    vmax *= 1.08

    def sx(v: float) -> float:
        return left + pw * max(0.0, v) / vmax

    out = [
        f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{uid}-t">{esc(title)}</title><desc id="{uid}-d">{esc(desc)}</desc>',
        f'<defs><pattern id="{uid}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="#f2f2f2"/><line x1="0" y1="0" x2="0" y2="6" stroke="{INK}" stroke-width="3"/></pattern></defs>',
        f'<g font-family="system-ui, sans-serif" font-size="12" fill="{INK}">',
    ]
    for i, b in enumerate(bars):
        y = top + i * row
        weight = ' font-weight="bold"' if b.flagged else ""
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end"{weight}>{esc(b.label)}</text>')
        if b.value is None:
            out.append(f'<text x="{left + 4}" y="{y + 15}" font-style="italic">{esc(b.note or "not measured")}</text>')
            continue
        fill = f"url(#{uid}-hatch)" if b.flagged else ACCENT
        bw = max(1.0, sx(b.value) - left)
        out.append(f'<rect x="{left}" y="{y + 4}" width="{num(bw)}" height="{row - 8}" fill="{fill}" stroke="{INK}" stroke-width="1"/>')
        tail = fmt(b.value) + (" FLAGGED" if b.flagged else "") + (f" {b.note}" if b.note else "")
        out.append(f'<text x="{num(left + bw + 6)}" y="{y + 15}"{weight}>{esc(tail)}</text>')
    base = top + row * len(bars)
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="{INK}"/>')
    out.append(f'<line x1="{left}" y1="{base}" x2="{left + pw}" y2="{base}" stroke="{INK}"/>')
    out.append(f'<text x="{left + pw / 2}" y="{base + 28}" text-anchor="middle">{esc(value_label)}</text>')
    if threshold is not None:
        x = sx(threshold)
        out.append(f'<line x1="{num(x)}" y1="{top - 6}" x2="{num(x)}" y2="{base}" stroke="{INK}" stroke-width="1.5" stroke-dasharray="5 3"/>')
        out.append(f'<text x="{num(x)}" y="{top - 10}" text-anchor="middle">{esc(threshold_label)}</text>')
    out.append("</g></svg>")
    return "".join(out)
