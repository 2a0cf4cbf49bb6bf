"""The Oracle: the only door to the model.

Every attack gets an :class:`Oracle` and nothing else of the model. It

* works in a normalised space: attacks see inputs in ``[0, 1]`` per feature,
  the oracle maps them to the model's valid range ``lo + z * (hi - lo)``, so an
  epsilon always means "this fraction of the valid range" (images in [0, 1]
  are unchanged; each tabular feature is scaled by its own range);
* batches queries into few ``session.run`` calls (chunked to ``max_batch``);
* counts queries per sample and refuses any query past the per-sample budget;
* records the time spent inside onnxruntime;
* hides scores when the threat model is labels-only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import BudgetExhausted, OnnxGuardError, TimeBudgetExhausted
from .model import LoadedModel, ModelOutputs


RUN_BYTES = 24 * 1024**2  # input bytes per session.run: batch 256 on 16x16 digits, about 40 on 3x224x224
WORK_BYTES = 256 * 1024**2


def batch_for(model: LoadedModel, run_bytes: int = RUN_BYTES) -> int:
    """Inputs per ``session.run``, from the input size: a 224x224 network's activations at batch 256 would
    take gigabytes, while small models want large batches. A fixed-batch model runs at its own batch."""
    if model.fixed_batch:
        return int(model.fixed_batch)
    itemsize = np.dtype(getattr(model, "input_dtype", np.float32)).itemsize
    per = max(1, int(np.prod(model.sample_shape)) * itemsize)
    return int(min(256, max(1, run_bytes // per)))


@dataclass(frozen=True)
class Domain:
    """The valid input range, broadcastable to one sample's shape."""

    lo: np.ndarray
    hi: np.ndarray

    @property
    def width(self) -> np.ndarray:
        return self.hi - self.lo

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        w = np.where(self.width > 0, self.width, 1.0)
        return np.clip((np.asarray(x, dtype=np.float64) - self.lo) / w, 0.0, 1.0)

    def from_unit(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        if self.is_unit:
            return z
        if z.dtype == np.float32:  # an attack that works in float32 (large probe batches) stays there
            return self.lo.astype(np.float32) + z * self.width.astype(np.float32)
        return self.lo + np.asarray(z, dtype=np.float64) * self.width

    @property
    def is_unit(self) -> bool:
        """True when the valid range is [0, 1] everywhere (normalised space == model space)."""
        cached = self.__dict__.get("_is_unit")
        if cached is None:
            cached = bool(np.all(self.lo == 0) and np.all(self.hi == 1))
            object.__setattr__(self, "_is_unit", cached)
        return cached


class Oracle:
    """Counted, budgeted, batched access to one model for ``n_samples`` attacked samples."""

    def __init__(
        self,
        model: LoadedModel,
        domain: Domain,
        *,
        n_samples: int,
        budget: int | None,
        labels_only: bool = False,
        max_batch: int | None = None,
        rows: np.ndarray | None = None,
        work_bytes: int | None = None,
        layout: str | None = None,
        deadline: float | None = None,
    ) -> None:
        if labels_only is False and not model.has_scores:
            labels_only = True
        self.model = model
        self.domain = domain
        self.n_samples = n_samples
        self.budget = budget
        self.labels_only = labels_only
        self.max_batch = max_batch or batch_for(model)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)  # prepared sample of each attacked sample
        self.layout = layout  # the resolved sample layout (NCHW / NHWC ...), how attacks see an image
        self.deadline = deadline  # time.monotonic() after which queries are refused (a check's time budget)
        self.work_bytes = work_bytes or WORK_BYTES  # what an attack's per-step temporaries may hold (see attacks.base.work_chunk)
        self.queries = np.zeros(n_samples, dtype=np.int64)
        self.ort_time = 0.0
        self.run_calls = 0
        self.wall_start = time.perf_counter()

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.model.sample_shape

    @property
    def n_classes(self) -> int | None:
        return self.model.n_classes

    def remaining(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Queries left per sample (a large number when there is no budget)."""
        q = self.queries if idx is None else self.queries[np.asarray(idx)]
        if self.budget is None:
            return np.full(q.shape, np.iinfo(np.int64).max // 4, dtype=np.int64)
        return self.budget - q

    def allowance(self, asked: int | None = None) -> int:
        """Queries every sample may still make: the oracle owns the budget, so an attack sizes its loop from
        this (the smallest remaining budget over its samples), capped at what the caller ``asked`` for."""
        left = int(self.remaining().min()) if self.n_samples else 0
        return left if asked is None else int(min(int(asked), left))

    def query(self, z: np.ndarray, idx: np.ndarray) -> ModelOutputs:
        """Evaluate normalised inputs ``z`` (B, *shape) belonging to samples ``idx`` (B,)."""
        z = np.asarray(z)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if z.shape[0] != idx.shape[0]:
            raise OnnxGuardError(f"internal: {z.shape[0]} inputs for {idx.shape[0]} sample indices")
        if z.shape[0] == 0:
            c = self.model.n_classes or 0
            return ModelOutputs(labels=np.zeros((0,), np.int64), scores=None if self.labels_only else np.zeros((0, c)))
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise TimeBudgetExhausted("the check's time budget ran out")
        counts = np.bincount(idx, minlength=self.n_samples)
        if self.budget is not None and np.any(self.queries + counts > self.budget):
            worst = int(np.argmax(self.queries + counts))
            raise BudgetExhausted(
                f"attack asked for {int(self.queries[worst] + counts[worst])} queries on sample {worst}, over the budget of {self.budget}"
            )
        x = self.domain.from_unit(z)
        if getattr(self.model, "uses_rows", False):  # inputs held fixed per sample (onnxguard.inputs.feed)
            out, dt = self.model.predict(x, max_batch=self.max_batch, rows=idx if self.rows is None else self.rows[idx])
        else:
            out, dt = self.model.predict(x, max_batch=self.max_batch)
        self.queries += counts
        self.ort_time += dt
        self.run_calls += -(-len(z) // (self.model.fixed_batch or self.max_batch))
        if self.labels_only:
            return ModelOutputs(labels=out.labels, scores=None)
        return out

    def scores(self, z: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (logits or log-probabilities) and labels; refused under a labels-only threat model."""
        if self.labels_only:
            raise OnnxGuardError("internal: a score-based attack was run under a labels-only threat model")
        out = self.query(z, idx)
        assert out.scores is not None
        return out.scores, out.labels

    def labels(self, z: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return self.query(z, idx).labels
