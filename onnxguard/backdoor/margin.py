"""Maximum-margin search (MM-BD: Wang et al., "MM-BD: Post-Training Detection of Backdoor Attacks with
Arbitrary Backdoor Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024), black-box.

A backdoor is a shortcut the model learned to trust: with its trigger present the target's score
rises far above what any natural evidence gives. MM-BD measures, per class ``c``, the largest margin
``s_c(x) - max_{j != c} s_j(x)`` that any input ``x`` in the input box reaches, and flags a class whose
maximum margin is anomalously large against the other classes'. It assumes nothing about the
trigger's form (patch, blend, SIG, warp): the size-based families each need their trigger family;
this one needs only scores. Scores are logits, or log-probabilities for probability outputs (the same
margins). A float32 probability output underflows near 1e-38 to 1e-45, so its margins saturate at
about 87 to 103; a logit output has no such cap.

MM-BD ascends the gradient. Here a Square-Attack-style random search does it with scores only
(Andriushchenko et al. 2020): each step overwrites one random square window of every restart with one
random colour (per channel: uniform in the box, or a corner of it) and keeps the change when the
margin grows; the window's share of the input shrinks over the run, as in Square Attack. Restarts:
half start from the class's own correctly classified samples (so every class that has one starts at a
positive margin: a model with a dead region, a constant output on noise, cannot stall every restart),
half from uniform noise (MM-BD's start: no data assumed).

Every class advances in lock step, one step for all (class, restart) pairs per batch: a budget or time
stop leaves each class with the same number of steps, so the classes stay comparable. Memory is
O(classes x restarts x input).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..attacks.base import margin  # s_c - max_{j != c} s_j, the attacks' untargeted margin
from .probe import OutOfBudget, Probe
from .triggers import batch_rows

RESTARTS = 8
P_START, P_END = 0.3, 0.002  # the window's share of the input area at the first and the last step
STATE_ELEMENTS = 1 << 22  # input values held at once (32 MiB in float64): on 3x224x224, 3 classes x 8 restarts


@dataclass
class MarginResult:
    margin: np.ndarray  # (n_classes,) the largest margin reached per class; nan: not searched
    queries: int
    steps: int
    complete: bool = True  # False when a budget or time stop cut the steps short
    inputs: dict[int, np.ndarray] = field(default_factory=dict)  # class -> the input (C, H, W) that reached it


def window_side(step: int, steps: int, h: int, w: int) -> int:
    """The square window's side at ``step`` of ``steps``: its area share falls from ``P_START`` to ``P_END``."""
    frac = P_END + (P_START - P_END) * (1.0 - step / max(1, steps)) ** 2
    return int(max(1, min(h, w, round(float(np.sqrt(frac * h * w))))))


def margin_sweep(probe: Probe, xs: np.ndarray, ys: np.ndarray, n_classes: int, *, max_queries: int,
                 rng: np.random.Generator, classes: list[int] | None = None, restarts: int = RESTARTS) -> MarginResult:
    """Per class, the largest score margin a random search over the input box reaches, within ``max_queries``
    in all (an equal number of steps per class). ``xs``, ``ys``: the search samples (C, H, W) and their labels
    (correctly classified). Classes are searched in chunks whose state fits :data:`STATE_ELEMENTS`, each class
    with the same number of steps: as many as ``max_queries`` allows and, on a slow model, as the time left
    allows at the search's query rate so far. A chunk cut short by a budget or time stop is left out (its
    classes got fewer steps than the others)."""
    todo = [int(t) for t in (classes if classes is not None else range(n_classes))]
    out = np.full(n_classes, np.nan)
    if not todo or len(xs) == 0:
        return MarginResult(out, 0, 0)
    c, h, w = xs.shape[1:]
    size = c * h * w
    per_chunk = max(1, STATE_ELEMENTS // (restarts * size))  # classes whose restarts are held at once
    rows_all = len(todo) * restarts
    steps = max(0, max_queries // rows_all - 1)  # the first batch of a chunk scores its starts
    per_step = probe.query_time(rows_all)  # expected seconds of one step of every class (0 before any query)
    if per_step > 0:  # a slow model: as many steps as fit the time left, so that every chunk gets them
        steps = min(steps, max(0, int(probe.time_left() / per_step) - 1))
    used0 = probe.used
    complete = steps > 0
    if not complete:  # not even one step per class fits
        probe.stopped("margin search", "query budget" if max_queries < 2 * rows_all or probe.left < 2 * rows_all else "time limit")
    inputs: dict[int, np.ndarray] = {}
    own_n = restarts // 2
    for k0 in range(0, len(todo) if complete else 0, per_chunk):
        chunk = todo[k0:k0 + per_chunk]
        x = np.empty((len(chunk) * restarts, c, h, w))  # filled in place: no second copy of the state
        for j, t in enumerate(chunk):
            own = np.flatnonzero(ys == t)
            r = j * restarts
            x[r:r + own_n] = xs[rng.choice(own, own_n, replace=len(own) < own_n)] if len(own) else rng.random((own_n, c, h, w))
            x[r + own_n:r + restarts] = rng.random((restarts - own_n, c, h, w))
        cls_a = np.repeat(np.asarray(chunk, dtype=np.int64), restarts)
        n = len(x)
        try:
            best = margin(_score(probe, x), cls_a)
            for k in range(steps):
                side = window_side(k, steps, h, w)
                r0 = rng.integers(0, h - side + 1, size=n)
                c0 = rng.integers(0, w - side + 1, size=n)
                corner = rng.random(n) < 0.5
                colour = np.where(corner[:, None], rng.integers(0, 2, size=(n, c)).astype(np.float64), rng.random((n, c)))
                old = np.empty((n, c, side, side))
                for i in range(n):  # in place; the rejected windows are put back below (no copy of the state)
                    win = x[i, :, r0[i]:r0[i] + side, c0[i]:c0[i] + side]
                    old[i] = win
                    win[...] = colour[i][:, None, None]
                m = margin(_score(probe, x), cls_a)
                up = m > best
                best[up] = m[up]
                for i in np.flatnonzero(~up):
                    x[i, :, r0[i]:r0[i] + side, c0[i]:c0[i] + side] = old[i]
        except OutOfBudget as exc:
            complete = False
            probe.stopped("margin search", exc.reason)
            break
        for t in chunk:
            rows = np.flatnonzero(cls_a == t)
            j = rows[int(np.argmax(best[rows]))]
            out[t] = float(best[j])
            inputs[t] = x[j].copy()
    return MarginResult(out, probe.used - used0, steps, complete, inputs)


def _score(probe: Probe, z: np.ndarray) -> np.ndarray:
    """Scores of the whole batch ``z``: the budget is checked for all of it first (no half-scored step)."""
    probe.check(len(z))
    rows = batch_rows(int(z[0].size))
    parts = []
    for i in range(0, len(z), rows):
        s, _ = probe.run(z[i:i + rows])
        if s is None:  # labels only: there is no margin to measure (the search does not run then)
            raise OutOfBudget("labels only")
        parts.append(s)
    return np.concatenate(parts)
