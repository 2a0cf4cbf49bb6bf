"""Trigger representation and the cheap patch pre-screen for image inputs.

A trigger is a mask ``m`` (H, W) in [0, 1], shared by all channels, and a
pattern ``p`` (C, H, W) in [0, 1]; stamping gives ``(1 - m) x + m p`` in the
(C, H, W) view of a sample. A patch trigger (BadNets) has a small mask; a
blended trigger (Chen et al. 2017) has ``m = alpha`` everywhere.
"""

from __future__ import annotations

import numpy as np

from .probe import Probe


def stamp(x: np.ndarray, mask: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """x (B, C, H, W); mask broadcastable to (H, W) or (1, H, W); pattern (C, H, W)."""
    m = np.asarray(mask)
    if m.ndim == 2:
        m = m[None]
    return (1.0 - m) * x + m * pattern


BATCH_ELEMENTS = 1 << 22  # values per stamped batch (32 MiB in float64): memory stays O(batch x input) at any size


def batch_rows(sample_size: int, cap: int = 4096) -> int:
    """Rows per batch so that a batch of samples of ``sample_size`` values stays within :data:`BATCH_ELEMENTS`."""
    return max(1, min(cap, BATCH_ELEMENTS // max(sample_size, 1)))


def stamp_box(x: np.ndarray, r: int, c: int, block: np.ndarray) -> np.ndarray:
    """x (B, C, H, W) with the square ``block`` ((s, s) or (C, s, s)) pasted at row ``r``, column ``c``."""
    s = block.shape[-1]
    out = x.copy()
    out[:, :, r : r + s, c : c + s] = block
    return out


def box_trigger(shape: tuple[int, int, int], r: int, c: int, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The full-size (mask, pattern) of a box candidate."""
    ch, h, w = shape
    s = block.shape[-1]
    m = np.zeros((h, w))
    m[r : r + s, c : c + s] = 1.0
    p = np.zeros((ch, h, w))
    p[:, r : r + s, c : c + s] = block
    return m, p


def patch_sizes(h: int, w: int) -> list[int]:
    s = min(h, w)
    return sorted({max(2, round(s / 6)), max(2, round(s / 4))})


def patch_library(c: int, h: int, w: int, seed: int = 0) -> list[tuple[str, int, int, np.ndarray]]:
    """Candidate patches as boxes ``(name, row, col, block)``: two sizes, positions on a 5 x 5 grid (flush and
    one pixel in from each edge, and the middle), six patterns (white, black, two checkerboards, two random).
    Full-size masks are built only for the one kept per class (:func:`box_trigger`)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in patch_sizes(h, w):
        rows = sorted({0, 1, (h - s) // 2, h - s - 1, h - s})
        cols = sorted({0, 1, (w - s) // 2, w - s - 1, w - s})
        ii, jj = np.indices((s, s))
        blocks = {
            "white": np.ones((s, s)),
            "black": np.zeros((s, s)),
            "checker": ((ii + jj) % 2 == 0).astype(float),
            "checker-inv": ((ii + jj) % 2 == 1).astype(float),
            "random-a": (rng.uniform(size=(s, s)) > 0.5).astype(float),
            "random-b": (rng.uniform(size=(s, s)) > 0.5).astype(float),
        }
        for r in rows:
            for cc in cols:
                for name, blk in blocks.items():
                    out.append((f"{name}-{s}x{s}@{r},{cc}", r, cc, blk))
    return out


def prescreen(
    probe: Probe, x: np.ndarray, y: np.ndarray, n_classes: int, library: list, max_queries: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Stamp every library patch on the samples ``x`` (B, C, H, W) of classes ``y``.

    Returns, per class, the best success rate any patch reached (the fraction of
    samples it sent to that class), the index of that patch, and the queries spent.
    One pass serves every candidate target class at once."""
    per = max(1, min(len(x), max_queries // max(len(library), 1)))
    xs, ys = x[:per], y[:per]
    others = np.array([max(int((ys != t).sum()), 1) for t in range(n_classes)])
    best = np.zeros(n_classes)
    best_idx = np.zeros(n_classes, dtype=np.int64)
    q0 = probe.used
    chunk = max(1, batch_rows(xs[0].size) // len(xs))
    for start in range(0, len(library), chunk):
        part = library[start : start + chunk]
        batch = np.concatenate([stamp_box(xs, r, cc, blk) for _, r, cc, blk in part])
        _, labels = probe.run(batch)
        labels = labels.reshape(len(part), len(xs))
        for k in range(len(part)):
            moved = labels[k][labels[k] != ys]
            counts = np.bincount(moved[(moved >= 0) & (moved < n_classes)], minlength=n_classes)[:n_classes] / others
            better = counts > best
            best[better] = counts[better]
            best_idx[better] = start + k
    return best, best_idx, probe.used - q0
