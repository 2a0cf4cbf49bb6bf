"""The search's door to the model: one :class:`~onnxguard.oracle.Oracle` holding the
whole search's query budget, plus the wall-time deadline.

The whole search is one budgeted unit (oracle sample 0), so the oracle counts
and enforces the policy's budget for the search as a whole. Every stage asks
first (:meth:`Probe.affords`) and stops cleanly with :class:`OutOfBudget` rather
than letting the oracle raise.
"""

from __future__ import annotations

import time

import numpy as np

from ..attacks.base import from_chw
from ..oracle import Oracle


class OutOfBudget(Exception):
    """The query budget or the wall-time limit is spent; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Probe:
    def __init__(self, oracle: Oracle, deadline: float, max_time_reserve: float = float("inf")) -> None:
        self.oracle = oracle
        self.deadline = deadline
        self.max_time_reserve = max_time_reserve  # the reserved queries' expected time kept from the stages, at most
        self.stops: list[dict] = []  # every early stop: where, why, and the queries used by then
        self.ort0, self.used0 = oracle.ort_time, int(oracle.queries[0])  # onnxruntime time and queries before this search
        self.reserved = 0  # queries kept back for a later stage (the held-back check): no earlier stage may spend them (nor their time)

    def stopped(self, where: str, reason: str) -> None:
        """Record that the stage ``where`` stopped early on ``reason`` (query budget or time limit)."""
        self.stops.append({"where": where, "reason": reason, "queries_used": self.used})

    @property
    def labels_only(self) -> bool:
        return self.oracle.labels_only

    @property
    def used(self) -> int:
        return int(self.oracle.queries[0])

    @property
    def left(self) -> int:
        """Queries the current stage may still spend: the budget's remainder less what is reserved."""
        return max(0, int(self.oracle.remaining()[0]) - self.reserved)

    def query_time(self, n: int) -> float:
        """Expected seconds for ``n`` more queries: the onnxruntime time per query so far, with a 50% margin."""
        done = self.used - self.used0
        return 1.5 * (self.oracle.ort_time - self.ort0) / done * n if done > 0 else 0.0

    def time_left(self) -> float:
        """Seconds the current stage may still run: to the deadline, less the expected time of the reserved queries
        (at most ``max_time_reserve``: on a slow model the reserve's time could exceed the whole limit)."""
        return self.deadline - time.perf_counter() - min(self.query_time(self.reserved), self.max_time_reserve)

    def affords(self, n: int) -> bool:
        return n <= self.left and self.time_left() > 0

    def check(self, n: int) -> None:
        if n > self.left:
            raise OutOfBudget("query budget")
        if self.time_left() <= 0:
            raise OutOfBudget("time limit")

    def run(self, z: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Scores (None under labels-only) and labels of normalised inputs ``z`` in the (C, H, W) view."""
        self.check(len(z))
        z = from_chw(np.clip(z, 0.0, 1.0), self.oracle.sample_shape)
        out = self.oracle.query(z, np.zeros(len(z), dtype=np.int64))
        return out.scores, out.labels
