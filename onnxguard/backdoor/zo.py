"""Zeroth-order mask-and-pattern search for one candidate target class.

Neural Cleanse (Wang et al. 2019) asks for the smallest mask ``m`` and a pattern
``p`` such that ``(1 - m) x + m p`` sends clean samples of other classes to the
target ``t``: minimise ``loss_t + lambda * |m|_1``, with ``lambda`` tuned on the
fly so the trigger keeps working while it shrinks. Here the model is a black
box, so the gradient is estimated as in B3D (Dong et al. 2021): antithetic
Gaussian directions around each stamped input, through the oracle only.

One estimate serves both unknowns. With ``g_i`` the estimated input gradient at
stamped sample ``i`` (``2 q`` queries), the chain rule gives
``dL/dm = mean_i sum_channels g_i (p - x_i)`` and ``dL/dp = mean_i g_i m``; the
samples carry independent directions, so the batch averages ``B q`` directions
for the price of ``2 B q`` queries.

Two families share the machinery:

* ``patch``: a free mask per pixel (BadNets-style localised triggers); size = ``sum(m)``;
* ``blend``: one blend ratio ``alpha`` for the whole input (a faint global pattern,
  which a mask-size criterion misses); size = ``alpha * pixels`` (the same L1 units).

Score access uses the cross-entropy towards ``t``; under a labels-only threat
model the loss is the 0/1 "not yet ``t``" indicator, smoothed by wider probes,
which walks the trigger along the decision boundary while the L1 term shrinks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..attacks.base import cross_entropy
from .probe import OutOfBudget, Probe
from .triggers import stamp


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(a, -30, 30)))


def _logit(p: np.ndarray, eps: float = 0.02) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


@dataclass
class Best:
    size: float = np.inf
    success: float = 0.0
    mask: np.ndarray | None = None
    pattern: np.ndarray | None = None


@dataclass
class ZOSearch:
    """Resumable search state for one (target class, family)."""

    family: str  # patch | blend
    target: int
    pool: np.ndarray  # (P, C, H, W) clean samples of other classes, normalised
    labels_only: bool
    rng: np.random.Generator
    init_mask: np.ndarray | None = None  # (H, W) for patch
    init_pattern: np.ndarray | None = None  # (C, H, W)
    init_alpha: float = 0.25  # blend ratio to start from
    batch: int = 10
    directions: int = 6
    success_target: float = 0.9
    lr: float = 0.15
    eval_every: int = 8
    eval_size: int = 48
    cell: int = 1  # the mask and pattern live on a grid of cell x cell pixel blocks (coarse on large inputs)
    queries: int = 0
    steps: int = 0
    best: Best = field(default_factory=Best)
    last_success: float = 0.0

    def __post_init__(self) -> None:
        _, c, h, w = self.pool.shape
        self.pixels = h * w
        self.hw = (h, w)
        self.h = 0.05 if self.labels_only else 0.01
        gh, gw = -(-h // self.cell), -(-w // self.cell)
        if self.family == "patch":
            m0 = self.init_mask if self.init_mask is not None else np.full((h, w), 0.1)
            self.a = _logit(self._down(m0), 0.05)
        else:
            self.a = np.array(_logit(np.array(self.init_alpha)))
        p0 = self.init_pattern if self.init_pattern is not None else self.rng.uniform(0.2, 0.8, size=(c, gh, gw))
        self.b = _logit(self._down(p0) if p0.shape[-2:] == (h, w) else p0, 0.1)
        self.ma, self.va = np.zeros_like(self.a), np.zeros_like(self.a)
        self.mb, self.vb = np.zeros_like(self.b), np.zeros_like(self.b)
        self.t_adam = 0
        self.lam = 1e-3 if not self.labels_only else 2e-3
        self.up = self.down = 0
        self.eval_idx = self.rng.permutation(len(self.pool))[: self.eval_size]

    # -- the coarse grid ----------------------------------------------------------
    def _up(self, g: np.ndarray) -> np.ndarray:
        """Grid values (..., gh, gw) to pixels (..., H, W)."""
        if self.cell == 1:
            return g
        h, w = self.hw
        return np.repeat(np.repeat(g, self.cell, axis=-2), self.cell, axis=-1)[..., :h, :w]

    def _sum_down(self, v: np.ndarray) -> np.ndarray:
        """Pixel values (..., H, W) summed over each cell (the chain rule through :meth:`_up`)."""
        if self.cell == 1:
            return v
        h, w = self.hw
        e_h, e_w = np.arange(0, h, self.cell), np.arange(0, w, self.cell)
        return np.add.reduceat(np.add.reduceat(v, e_h, axis=-2), e_w, axis=-1)

    def _down(self, v: np.ndarray) -> np.ndarray:
        """Pixel values to the grid (mean over each cell)."""
        if self.cell == 1:
            return v
        return self._sum_down(v) / self._sum_down(np.ones(self.hw))

    # -- the trigger ----------------------------------------------------------
    def mask(self) -> np.ndarray:
        m = _sigmoid(self.a)
        return self._up(m) if self.family == "patch" else np.full(self.pool.shape[2:], float(m))

    def pattern(self) -> np.ndarray:
        return self._up(_sigmoid(self.b))

    def size(self) -> float:
        return float(self.mask().sum())

    def step_cost(self) -> int:
        """Queries of the next step, with the trigger's evaluation when that step ends with one (without it,
        a search given ``q`` queries overran them by an evaluation, and the last class's search ran into the
        held-back check's reserve)."""
        c = min(self.batch, len(self.pool)) * (2 * self.directions + 1)
        if (self.steps + 1) % self.eval_every == 0:
            c += len(self.eval_idx)
        return c

    def _loss(self, scores: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
        if scores is None:
            return (labels != self.target).astype(np.float64)
        return cross_entropy(scores, np.full(len(scores), self.target))

    # -- one optimisation step ---------------------------------------------------
    def step(self, probe: Probe) -> None:
        probe.check(self.step_cost())
        n = min(self.batch, len(self.pool))
        q = self.directions
        x = self.pool[self.rng.choice(len(self.pool), size=n, replace=False)]
        m, p = self.mask(), self.pattern()
        xs = stamp(x, m, p)
        d = xs[0].size
        # probes in float32, what the model reads anyway: half the memory traffic of float64
        u = self.rng.standard_normal(size=(n, q, d), dtype=np.float32)
        base = xs.reshape(n, 1, d).astype(np.float32)
        hu = np.float32(self.h) * u
        probes = np.empty((n, 2 * q + 1, d), dtype=np.float32)  # (n, 1 + 2q, d)
        probes[:, :1] = base
        np.add(base, hu, out=probes[:, 1 : 1 + q])
        np.subtract(base, hu, out=probes[:, 1 + q :])
        scores, labels = probe.run(probes.reshape(n * (2 * q + 1), *xs.shape[1:]))
        self.queries += n * (2 * q + 1)
        loss = self._loss(scores, labels).reshape(n, 2 * q + 1)
        hit = (labels.reshape(n, 2 * q + 1)[:, 0] == self.target).mean()
        self.last_success = float(hit)
        diff = (loss[:, 1 : 1 + q] - loss[:, 1 + q :])[:, :, None]  # (n, q, 1)
        g = (np.einsum("nq,nqd->nd", diff[:, :, 0], u, dtype=np.float64) / (2 * self.h * q)).reshape(xs.shape)  # (n, C, H, W)
        g_m = (g * (p[None] - x)).sum(axis=1).mean(axis=0)  # (H, W)
        g_p = (g * m[None, None]).mean(axis=0)  # (C, H, W)
        sm = _sigmoid(self.a)
        if self.family == "patch":
            cells = self._sum_down(np.ones(self.hw))  # pixels per cell: the L1 term's weight
            grad_a = (self._sum_down(g_m) + self.lam * cells) * sm * (1 - sm)
        else:
            grad_a = np.array((g_m.sum() + self.lam * self.pixels) * sm * (1 - sm))
        sp = _sigmoid(self.b)
        grad_b = self._sum_down(g_p) * sp * (1 - sp)
        self._adam(grad_a, grad_b)
        self._tune_lambda(hit)
        self.steps += 1
        if self.steps % self.eval_every == 0:
            self.evaluate(probe)

    def _adam(self, ga: np.ndarray, gb: np.ndarray) -> None:
        self.t_adam += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        c1, c2 = 1 - b1**self.t_adam, 1 - b2**self.t_adam
        self.ma = b1 * self.ma + (1 - b1) * ga
        self.va = b2 * self.va + (1 - b2) * ga**2
        self.mb = b1 * self.mb + (1 - b1) * gb
        self.vb = b2 * self.vb + (1 - b2) * gb**2
        self.a = self.a - self.lr * (self.ma / c1) / (np.sqrt(self.va / c2) + eps)
        self.b = self.b - self.lr * (self.mb / c1) / (np.sqrt(self.vb / c2) + eps)

    def _tune_lambda(self, hit: float) -> None:
        """Neural Cleanse's schedule: raise lambda while the trigger works, lower it when it does not."""
        if hit >= self.success_target:
            self.up, self.down = self.up + 1, 0
        else:
            self.up, self.down = 0, self.down + 1
        if self.up >= 3:
            self.lam *= 1.5
            self.up = 0
        elif self.down >= 3:
            self.lam /= 1.5**1.5
            self.down = 0

    def evaluate(self, probe: Probe) -> float:
        """Success of the current trigger on a fixed subset of the pool; keeps the smallest working one."""
        x = self.pool[self.eval_idx]
        probe.check(len(x))
        m, p = self.mask(), self.pattern()
        _, labels = probe.run(stamp(x, m, p))
        self.queries += len(x)
        rate = float((labels == self.target).mean())
        size = self.size()
        if rate >= self.success_target and size < self.best.size:
            self.best = Best(size=size, success=rate, mask=m.copy(), pattern=p.copy())
        elif not np.isfinite(self.best.size) and rate > self.best.success:
            self.best = Best(size=np.inf, success=rate, mask=m.copy(), pattern=p.copy())
        return rate

    def run(self, probe: Probe, queries: int) -> None:
        """Spend about ``queries`` more on this search (stops early on the probe's budget or deadline)."""
        stop = self.queries + queries
        try:
            while self.queries + self.step_cost() <= stop:
                self.step(probe)
        except OutOfBudget as exc:
            probe.stopped(f"{self.family} search, class {self.target}, step {self.steps}", exc.reason)

    def estimated_size(self) -> float:
        """The best working trigger's size; when none reached the success target, an
        extrapolation (size / success * target, at most the whole input)."""
        if np.isfinite(self.best.size):
            return self.best.size
        s = self.size()
        rate = max(self.best.success, 0.05)
        return float(min(self.pixels, s * self.success_target / rate if self.family == "patch" else self.pixels))
