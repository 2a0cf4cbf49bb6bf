"""Smooth global patterns: SIG-style sinusoids and low-frequency fields, added to the whole input.

A patch search looks for a small mask; a blend search for one faint pattern it
must learn pixel by pixel. Some triggers are neither: SIG (Barni et al. 2019)
adds a horizontal sinusoid ``x + A sin(2 pi f j / W)`` of small amplitude to the
whole image, and low-frequency blends (Zeng et al. 2021, "Rethinking the backdoor
attacks' triggers: a frequency perspective") hide in the smooth part of the
spectrum. Neural Cleanse misses both (BackdoorBench).

The search here is a dictionary search, cheap and the same for every class:

* patterns: sinusoids at several frequencies (cycles per image side), both
  orientations, two phases and both signs, and low-frequency random fields
  (a 2 x 2 to 4 x 4 grid of random values per channel, upsampled bilinearly),
  each scaled to ``max |v| = 1``;
* amplitudes: a geometric ladder from 1% to 50% of the valid range;
* screening: every (pattern, amplitude) on a few samples per class, one pass
  serving every candidate target; then, per class, the best few patterns are
  confirmed on other samples along the whole ladder.

A class's size is the smallest amplitude at which a pattern sends ``level`` of
the other classes' samples to it (interpolated on the log ladder); the statistic
is on log amplitudes, like the square sweep's areas. Memory is O(batch x input)
and the cost per class is bounded at any input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .probe import OutOfBudget, Probe
from .triggers import batch_rows

FREQUENCIES = (1, 2, 3, 4, 6, 8, 12)  # cycles per side (capped at a quarter of the side)
FIELD_GRIDS = (2, 3, 4)
FIELDS_PER_GRID = 3
AMPLITUDES = tuple(float(a) for a in np.geomspace(0.01, 0.5, 10))
CONFIRM_KEEP = 3


def _upsample(g: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of (C, gh, gw) to (C, H, W)."""
    c, gh, gw = g.shape
    ri = np.linspace(0, gh - 1, h)
    ci = np.linspace(0, gw - 1, w)
    r0 = np.floor(ri).astype(int)
    c0 = np.floor(ci).astype(int)
    r1, c1 = np.minimum(r0 + 1, gh - 1), np.minimum(c0 + 1, gw - 1)
    fr, fc = (ri - r0)[:, None], (ci - c0)[None, :]
    top = g[:, r0][:, :, c0] * (1 - fc) + g[:, r0][:, :, c1] * fc
    bot = g[:, r1][:, :, c0] * (1 - fc) + g[:, r1][:, :, c1] * fc
    return top * (1 - fr) + bot * fr


def patterns(c: int, h: int, w: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """The dictionary: (name, pattern (C, H, W) with max |v| = 1)."""
    out: list[tuple[str, np.ndarray]] = []
    jj = np.arange(w)[None, :] / w
    ii = np.arange(h)[:, None] / h
    for f in FREQUENCIES:
        if f > min(h, w) / 4:
            continue
        for phase in (0.0, 0.5 * np.pi):
            for orient, grid in (("h", jj), ("v", ii)):
                v = np.sin(2 * np.pi * f * grid + phase) * np.ones((h, w))
                for sign in (1.0, -1.0):
                    out.append((f"sin-{orient}{f}-p{int(phase > 0)}{'+' if sign > 0 else '-'}", np.broadcast_to(sign * v, (c, h, w)).copy()))
    rng = np.random.default_rng([seed, 77])
    for g in FIELD_GRIDS:
        for k in range(FIELDS_PER_GRID):
            v = _upsample(rng.uniform(-1, 1, size=(c, g, g)), h, w)
            v /= max(np.abs(v).max(), 1e-9)
            out.append((f"field-{g}x{g}-{k}", v))
    return out


@dataclass
class SmoothTrigger:
    """An additive global pattern ``x + amplitude * pattern``, clipped to the valid box."""

    name: str
    amplitude: float
    pattern: np.ndarray  # (C, H, W), max |v| = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return add(x, self.amplitude, self.pattern)

    def delta(self) -> np.ndarray:
        return self.amplitude * self.pattern


@dataclass
class SmoothResult:
    amplitude: np.ndarray  # (K,) interpolated smallest amplitude reaching the level; nan when not reached
    rate: np.ndarray  # (K,) confirmed rate of the trigger kept
    triggers: dict[int, SmoothTrigger] = field(default_factory=dict)
    queries: int = 0
    complete: bool = False  # every class was swept (unreached classes are then censored at CENSOR)


CENSOR = 1.0  # the statistic's amplitude for a class no pattern reached within the ladder: at least the valid range


def add(x: np.ndarray, a: float, v: np.ndarray) -> np.ndarray:
    return np.clip(x + a * v, 0.0, 1.0)


def _rates(probe: Probe, x: np.ndarray, cands: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """Labels (n_cands, len(x)) of every candidate added to every sample; batches bounded in memory."""
    out = []
    chunk = max(1, batch_rows(x[0].size) // len(x))
    for i in range(0, len(cands), chunk):
        part = cands[i : i + chunk]
        _, lab = probe.run(np.concatenate([add(x, a, v) for a, v in part]))
        out.append(lab.reshape(len(part), len(x)))
    return np.concatenate(out)


def log_crossing(ladder, rates, level: float) -> float:  # noqa: ANN001
    """Where the rate along the increasing ``ladder`` first reaches ``level``, interpolated on the log ladder
    (from half the first rung at rate 0); nan if never."""
    prev_a, prev_r = np.log(ladder[0]) - np.log(2.0), 0.0
    for a, r in zip(np.log(np.asarray(ladder, dtype=np.float64)), rates):
        if r >= level:
            frac = (level - prev_r) / max(r - prev_r, 1e-9)
            return float(np.exp(prev_a + (a - prev_a) * np.clip(frac, 0.0, 1.0)))
        if r >= prev_r:
            prev_a, prev_r = a, r
    return float("nan")


def _crossing(rates: np.ndarray, level: float) -> float:
    """Amplitude where the rate along :data:`AMPLITUDES` first reaches ``level`` (log-interpolated); nan if never."""
    return log_crossing(AMPLITUDES, rates, level)


def smooth_sweep(
    probe: Probe, screen: tuple[np.ndarray, np.ndarray], confirm: tuple[np.ndarray, np.ndarray], n_classes: int,
    *, level: float, seed: int, classes: list[int] | None = None,
) -> SmoothResult:
    """The smallest smooth global pattern towards each class (see the module doc)."""
    xs, ys = screen
    xc, yc = confirm
    c, h, w = xs.shape[1:]
    pats = patterns(c, h, w, seed)
    res = SmoothResult(amplitude=np.full(n_classes, np.nan), rate=np.zeros(n_classes))
    q0 = probe.used
    todo = classes if classes is not None else list(range(n_classes))
    try:
        cands = [(a, v) for _, v in pats for a in AMPLITUDES]
        lab = _rates(probe, xs, cands).reshape(len(pats), len(AMPLITUDES), len(xs))
        for t in todo:
            other = ys != t
            if not other.any():
                continue
            r = (lab[:, :, other] == t).mean(axis=2)  # (patterns, amplitudes)
            cross = np.array([_crossing(row, level * 0.8) for row in r])
            key = np.where(np.isfinite(cross), cross, 10.0 - r.max(axis=1))  # reached first, then the highest rate
            best_amp, best = np.nan, None
            oc = yc != t
            if not oc.any():
                continue
            for k in np.argsort(key, kind="stable")[:CONFIRM_KEEP]:
                name, v = pats[int(k)]
                lc = _rates(probe, xc[oc], [(a, v) for a in AMPLITUDES])
                rc = (lc == t).mean(axis=1)
                amp = _crossing(rc, level)
                if np.isfinite(amp) and not (amp >= best_amp):
                    best_amp = amp
                    best = (name, amp, v, float(rc[np.searchsorted(AMPLITUDES, amp)] if amp <= AMPLITUDES[-1] else rc[-1]))
            if best is not None:
                res.amplitude[t] = best_amp
                res.rate[t] = best[3]
                res.triggers[t] = SmoothTrigger(*best[:3])
        res.complete = True
    except OutOfBudget as exc:
        probe.stopped("smooth-pattern sweep", exc.reason)
    res.queries = probe.used - q0
    return res
