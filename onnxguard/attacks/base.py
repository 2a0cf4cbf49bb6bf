"""What every attack shares: the result object, losses, norms and projections.

An attack is a function ``(oracle, z, y, *, norm, epsilon, budget, rng, target=None,
progress=None) -> AttackResult`` working in the oracle's normalised space
(inputs in [0, 1] per feature). Attacks are pure: no globals, no printing;
progress goes through the ``progress`` callback ``(done, total)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import BadInputError

if TYPE_CHECKING:
    from ..oracle import Oracle

Progress = Callable[[int, int], None]
NORMS = ("linf", "l2", "l0")


@dataclass
class AttackResult:
    attack: str
    norm: str
    epsilon: float | None
    success: np.ndarray  # (n,) bool
    queries: np.ndarray  # (n,) int64, every model query made for the sample
    z_adv: np.ndarray  # (n, *shape) best input found, normalised space
    perturbation: np.ndarray  # (n,) norm of z_adv - z in the attack's norm (nan where unsuccessful and unchanged)
    budget: int | None
    target: np.ndarray | None = None  # (n,) target classes of a targeted attack
    wall_time: float = 0.0
    ort_time: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.success.shape[0])


def check_norm(norm: str, allowed: tuple[str, ...]) -> str:
    n = norm.lower().replace("-", "").replace("_", "")
    n = {"inf": "linf", "linfinity": "linf", "2": "l2", "0": "l0"}.get(n, n)
    if n not in allowed:
        raise BadInputError(f"norm '{norm}' is not supported by this attack (supported: {', '.join(allowed)})")
    return n


def perturbation_norm(delta: np.ndarray, norm: str, pixel_axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Per-sample norm of ``delta`` (n, *shape). For L0 on images, ``pixel_axes`` are the channel axes
    collapsed so that a pixel (all its channels) counts once."""
    d = delta.reshape(delta.shape[0], -1) if pixel_axes is None else delta
    if norm == "linf":
        return np.abs(d).reshape(d.shape[0], -1).max(axis=1) if d.size else np.zeros(d.shape[0])
    if norm == "l2":
        return np.sqrt((d.reshape(d.shape[0], -1) ** 2).sum(axis=1))
    if norm == "l0":
        nz = np.abs(d) > 1e-12
        if pixel_axes is not None:
            nz = nz.any(axis=pixel_axes)
        return nz.reshape(nz.shape[0], -1).sum(axis=1).astype(np.float64)
    raise ValueError(norm)


def project(z_adv: np.ndarray, z: np.ndarray, norm: str, eps: float) -> np.ndarray:
    """Project onto the eps-ball around ``z`` and the [0, 1] box."""
    delta = z_adv - z
    if norm == "linf":
        delta = np.clip(delta, -eps, eps)
    elif norm == "l2":
        flat = delta.reshape(delta.shape[0], -1)
        nrm = np.sqrt((flat**2).sum(axis=1))
        factor = np.minimum(1.0, eps / np.maximum(nrm, 1e-12))
        delta = (flat * factor[:, None]).reshape(delta.shape)
    return np.clip(z + delta, 0.0, 1.0)


def margin(scores: np.ndarray, y: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """Margin loss on logits / log-probabilities; negative means the attack has succeeded.

    Untargeted: ``s_y - max_{j != y} s_j``. Targeted: ``max_{j != t} s_j - s_t``."""
    s = np.asarray(scores, dtype=np.float64)
    rows = np.arange(s.shape[0])
    if target is None:
        own = s[rows, y]
        other = s.copy()
        other[rows, y] = -np.inf
        return own - other.max(axis=1)
    tgt = s[rows, target]
    other = s.copy()
    other[rows, target] = -np.inf
    return other.max(axis=1) - tgt


def cross_entropy(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """-log softmax(scores)[y], per sample (scores may be logits or log-probabilities)."""
    s = np.asarray(scores, dtype=np.float64)
    m = s.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
    return lse - s[np.arange(s.shape[0]), y]


def is_success(labels: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    return labels == target if target is not None else labels != y


def image_view_shape(shape: tuple[int, ...], layout: str | None = None) -> tuple[tuple[int, int, int], tuple[int, ...] | None]:
    """How to see a sample as (C, H, W) for square/patch based attacks.

    Returns the (C, H, W) shape and the transpose that gets there from the sample
    layout (None when a plain reshape does). Tabular (F,) becomes (1, 1, F);
    (H, W) becomes (1, H, W); a rank-3 sample follows ``layout`` (the resolved NCHW / NHWC, see
    ``onnxguard.conventions``) and without it: (C, H, W) with C <= 4 stays; (H, W, C) with C <= 4 is transposed."""
    if len(shape) == 3 and layout in ("NCHW", "NHWC"):
        if layout == "NCHW":
            return (shape[0], shape[1], shape[2]), None
        return (shape[2], shape[0], shape[1]), (2, 0, 1)
    if len(shape) == 1:
        return (1, 1, shape[0]), None
    if len(shape) == 2:
        return (1, shape[0], shape[1]), None
    if len(shape) == 3:
        if shape[0] <= 4 or shape[2] > 4:
            return (shape[0], shape[1], shape[2]), None
        return (shape[2], shape[0], shape[1]), (2, 0, 1)
    flat = int(np.prod(shape))
    return (1, 1, flat), None


def to_chw(z: np.ndarray, shape: tuple[int, ...], layout: str | None = None) -> np.ndarray:
    chw, perm = image_view_shape(shape, layout)
    if perm is None:
        return z.reshape(z.shape[0], *chw)
    return np.transpose(z, (0, *(p + 1 for p in perm)))


def from_chw(z: np.ndarray, shape: tuple[int, ...], layout: str | None = None) -> np.ndarray:
    _, perm = image_view_shape(shape, layout)
    if perm is None:
        return z.reshape(z.shape[0], *shape)
    inv = np.argsort(perm)
    return np.transpose(z, (0, *(int(p) + 1 for p in inv)))


def pixel_channel_axes(shape: tuple[int, ...], layout: str | None = None) -> tuple[int, ...] | None:
    """Axes (of a batched array) holding the channels of one pixel, for L0 counting; None for tabular."""
    if len(shape) != 3:
        return None
    _, perm = image_view_shape(shape, layout)
    return (1,) if perm is None else (3,)


DEFAULT_WORK_BYTES = 256 * 1024**2  # an attack's per-step temporaries, when the oracle does not say


def work_chunk(oracle: "Oracle", sample_bytes: int, arrays: int = 4, floor: int = 1) -> int:
    """Samples (or probes) to process at once so that ``arrays`` temporaries of ``sample_bytes`` each stay
    within the oracle's working-memory budget (``oracle.work_bytes``): O(chunk x input), never O(input^2)."""
    budget = int(getattr(oracle, "work_bytes", None) or DEFAULT_WORK_BYTES)
    return max(floor, budget // max(1, arrays * int(sample_bytes)))


class Meter:
    """What an attack's result reports about its own run: wall time, and the queries and time inside
    onnxruntime it spent on this oracle since it started."""

    def __init__(self, oracle: "Oracle", attack: str, norm: str, epsilon: float | None, target: np.ndarray | None) -> None:
        self.oracle, self.attack, self.norm, self.target = oracle, attack, norm, target
        self.epsilon = None if epsilon is None else float(epsilon)
        self.t0 = time.perf_counter()
        self.ort0 = oracle.ort_time
        self.q0 = oracle.queries.copy()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def queries(self) -> np.ndarray:
        return self.oracle.queries - self.q0

    def result(
        self, z_adv: np.ndarray, success: np.ndarray, perturbation: np.ndarray, budget: int | None, extra: dict | None = None
    ) -> AttackResult:
        return AttackResult(
            attack=self.attack, norm=self.norm, epsilon=self.epsilon, success=success, queries=self.queries(),
            z_adv=z_adv, perturbation=perturbation, budget=budget, target=self.target,
            wall_time=self.elapsed(), ort_time=self.oracle.ort_time - self.ort0, extra=dict(extra or {}),
        )
