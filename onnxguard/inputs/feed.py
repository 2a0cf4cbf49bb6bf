"""Models with several inputs, or a float output that is not class scores: one feed per query.

:class:`FeedModel` is a :class:`onnxguard.model.LoadedModel` whose attacked
representation is the model's float inputs (one input: its own shape, so image
attacks keep their layout; several: one flat vector, attacked jointly) while
every other input is held at the value it has in the prepared sample the
query belongs to (the oracle passes ``rows``). A regressor's outputs are read
as values (``scores`` holds them, ``labels`` is zero).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ModelLoadError, NotAClassifierError
from ..model import (
    _FLOAT_TYPES, MAX_SAMPLE_VALUES, LoadedModel, ModelOutputs, TensorSpec, _classify_outputs, _resolve_kind, _shape_of,
    open_session,
)
from .spaces import InputRole, plan_inputs

_NP_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
             "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_, **_FLOAT_TYPES}


@dataclass
class FeedModel(LoadedModel):
    """A LoadedModel fed through several inputs (see the module docstring)."""

    box: list[tuple[str, tuple[int, ...], Any]] = field(default_factory=list)  # (name, sample shape, dtype)
    fixed_values: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (rows, *shape)
    roles: list[InputRole] = field(default_factory=list)
    regression: bool = False
    uses_rows: bool = True
    output_index: int = 0  # regressor: which output holds the values

    def feed(self, x: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x)
        out: dict[str, np.ndarray] = {}
        if len(self.box) == 1:
            name, shape, dt = self.box[0]
            out[name] = np.ascontiguousarray(x.reshape(x.shape[0], *shape), dtype=dt)
        else:
            flat = x.reshape(x.shape[0], -1)
            pos = 0
            for name, shape, dt in self.box:
                k = int(np.prod(shape)) if shape else 1
                out[name] = np.ascontiguousarray(flat[:, pos:pos + k].reshape(x.shape[0], *shape), dtype=dt)
                pos += k
        for name, vals in self.fixed_values.items():
            out[name] = np.ascontiguousarray(vals[np.asarray(rows) % len(vals)])
        return out

    def run_raw(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[list[Any], float]:  # type: ignore[override]
        rows = np.arange(len(x)) if rows is None else rows
        names = [o.name for o in self.outputs] if self.regression else [n for n in (self._label_name, self._score_name) if n]
        return self.session_run(names, self.feed(x, rows), f"a batch of {len(x)}")

    def predict(self, x: np.ndarray, max_batch: int = 256, rows: np.ndarray | None = None) -> tuple[ModelOutputs, float]:
        x = np.asarray(x)
        n = x.shape[0]
        rows = np.arange(n) if rows is None else np.asarray(rows)
        step = self.fixed_batch or max_batch
        labels, scores, total = [], [], 0.0
        for start in range(0, n, step):
            chunk, r = x[start:start + step], rows[start:start + step]
            real = len(chunk)
            if self.fixed_batch and real < self.fixed_batch:
                pad = self.fixed_batch - real
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
                r = np.concatenate([r, np.repeat(r[-1:], pad)])
            raw, dt = self.run_raw(chunk, r)
            total += dt
            o = self._interpret(raw)
            labels.append(o.labels[:real])
            if o.scores is not None:
                scores.append(o.scores[:real])
        return ModelOutputs(labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
                            scores=np.concatenate(scores) if scores else None), total

    def _interpret(self, raw: list[Any]) -> ModelOutputs:
        if not self.regression:
            return super()._interpret(raw)
        v = np.asarray(raw[self.output_index], dtype=np.float64)
        v = v.reshape(v.shape[0], -1)
        v = np.nan_to_num(v, nan=0.0, posinf=1e30, neginf=-1e30)
        return ModelOutputs(labels=np.zeros(len(v), np.int64), scores=v)


def _default_fixed(role: InputRole, shape: tuple[int, ...], dt: Any) -> np.ndarray:
    fill = 1 if "mask" in role.detail else 0
    return np.full((1, *shape), fill, dtype=dt)


def _resolve(spec: TensorSpec, data: np.ndarray | None) -> tuple[tuple[int, ...], int | None]:
    shape = list(spec.shape or (None, None))
    if len(shape) < 1:
        raise NotAClassifierError(f"input '{spec.name}' is a scalar; onnxguard needs a batch axis")
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    rest = shape[1:]
    if any(not isinstance(d, int) or d <= 0 for d in rest):
        if data is None or data.ndim != len(shape):
            raise NotAClassifierError(
                f"input '{spec.name}' has shape {list(shape)} with dynamic axes besides the batch; pass --data with samples so they can be resolved"
            )
        rest = list(data.shape[1:])
    s = tuple(int(d) for d in rest)
    if int(np.prod(s)) > MAX_SAMPLE_VALUES:
        raise ModelLoadError(f"input '{spec.name}' declares {int(np.prod(s))} values per sample, over the {MAX_SAMPLE_VALUES} onnxguard will allocate")
    return s, batch


def load_feed_model(
    path: Path, *, arrays: dict[str, np.ndarray] | None, raw: Any, max_bytes: int, regression: bool,
    inference_timeout_s: float | None = None,
) -> tuple[FeedModel, np.ndarray | None]:
    """Open the model for a box attack over its float inputs; ``arrays`` holds data per input name.

    Returns the model and the attacked representation of the data (None without data)."""
    sess, loaded = open_session(path, raw=raw, max_bytes=max_bytes)
    proto = loaded.proto
    inputs = [TensorSpec(i.name, i.type, _shape_of(i.shape)) for i in sess.get_inputs()]
    outputs = [TensorSpec(o.name, o.type, _shape_of(o.shape)) for o in sess.get_outputs()]
    roles = plan_inputs(inputs)
    if not any(r.kind == "box" for r in roles):
        raise NotAClassifierError("the model has no float input to attack")
    arrays = arrays or {}
    box: list[tuple[str, tuple[int, ...], Any]] = []
    fixed: dict[str, np.ndarray] = {}
    fixed_batch = None
    n_rows = None
    for spec, role in zip(inputs, roles):
        data = arrays.get(spec.name)
        if data is not None:
            if n_rows is not None and len(data) != n_rows:
                raise DataError(f"data arrays have different numbers of samples ({n_rows} and {len(data)} for '{spec.name}')")
            n_rows = len(data)
        shape, batch = _resolve(spec, data)
        fixed_batch = fixed_batch or batch
        dt = np.dtype(_NP_TYPES.get(spec.type, np.float32))
        if data is not None and tuple(data.shape[1:]) != shape:
            if int(np.prod(data.shape[1:])) != int(np.prod(shape)):
                raise DataError(f"data for input '{spec.name}' has shape {list(data.shape[1:])}, the model expects {list(shape)}")
            data = data.reshape(len(data), *shape)
        if role.kind == "box":
            box.append((spec.name, shape, dt))
        elif role.kind == "fixed" or role.kind in ("text", "tokens"):
            if spec.type not in _NP_TYPES:
                raise NotAClassifierError(f"input '{spec.name}' is {spec.type}; onnxguard cannot hold it fixed")
            fixed[spec.name] = np.asarray(data, dtype=dt) if data is not None else _default_fixed(role, shape, dt)
    if len(box) == 1:
        sample_shape = box[0][1]
    else:
        sample_shape = (int(sum(int(np.prod(s)) for _, s, _ in box)),)
    label_name = score_name = None
    hint = "regression"
    if not regression:
        label_name, score_name, hint = _classify_outputs(proto, outputs)
    model = FeedModel(
        path=path, sha256=loaded.sha256, size_bytes=loaded.size_bytes,
        opset={(d.domain or "ai.onnx"): int(d.version) for d in proto.opset_import}, ir_version=int(proto.ir_version),
        producer=" ".join(str(x) for x in (proto.producer_name, proto.producer_version) if x)[:200],
        inputs=inputs, outputs=outputs, input_name=box[0][0], input_dtype=np.dtype(box[0][2]), sample_shape=sample_shape,
        fixed_batch=fixed_batch, output_kind="regression" if regression else ("label" if hint == "label" else hint),
        n_classes=None, class_labels=None, session=sess, external_files=loaded.external_files,
        _score_name=score_name, _label_name=label_name, box=box, fixed_values=fixed, roles=roles, regression=regression,
        inference_timeout_s=inference_timeout_s,
    )
    x = None
    if all(arrays.get(name) is not None for name, _, _ in box):
        parts = [np.asarray(arrays[name], dtype=np.float64).reshape(len(arrays[name]), -1) for name, _, _ in box]
        x = np.concatenate(parts, axis=1).reshape(len(parts[0]), *sample_shape)
    if not regression:
        probe = x if x is not None else None
        _resolve_kind(model, proto, probe)
    else:
        model.output_index = next(i for i, o in enumerate(outputs) if o.type in _FLOAT_TYPES)
    return model, x
