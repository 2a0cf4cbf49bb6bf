"""Loading an ONNX classifier through onnxruntime.

Finds the input to attack and the outputs to read, resolves dynamic axes, and
turns every common output convention into one ``(N, classes)`` score array:

* raw logits                         -> used as they are
* probabilities (softmax, sklearn)   -> log-probabilities (same margins as logits)
* ``(label, probabilities)`` pairs   -> label is the decision, probabilities the scores
* sklearn ZipMap (sequence of maps)  -> unpacked in the map's key order
* a single sigmoid output            -> binary classifier, ``[log(1-p), log(p)]``
* label-only                         -> no scores; only decision-based attacks apply

Nothing here counts queries: attacks never see a ``LoadedModel`` directly but an
:class:`onnxguard.oracle.Oracle` wrapped around it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError, NotAClassifierError

DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3  # onnx protobufs cannot exceed 2 GiB anyway
MAX_SAMPLE_VALUES = 1 << 22  # values per sample (3x1024x1024 fits): a declared input shape beyond this is refused, not allocated
_LOG_FLOOR = 1e-40

_FLOAT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}
_LABEL_TYPES = {"tensor(int64)", "tensor(int32)", "tensor(string)", "tensor(int8)", "tensor(uint8)"}


class Watchdog:
    """One polling thread per model that stops an onnxruntime run after ``timeout_s`` (arm before, disarm after).

    Arming and disarming are a single attribute store (no lock, no wake-up), so a run costs about a
    microsecond more; the thread looks every ``timeout_s / 10`` (at most once a second) and sets
    onnxruntime's terminate flag on a run past its deadline."""

    def __init__(self, timeout_s: float) -> None:
        import threading

        self.timeout_s = float(timeout_s)
        self.fired = False
        self._armed: tuple[Any, float] | None = None
        self._poll = min(1.0, max(0.02, self.timeout_s / 10))
        self._thread = threading.Thread(target=self._loop, name="onnxguard-inference-watchdog", daemon=True)
        self._thread.start()

    def arm(self) -> Any:
        import onnxruntime as ort

        ro = ort.RunOptions()
        ro.log_severity_level = 4  # the terminate message is ours to give
        self.fired = False
        self._armed = (ro, time.monotonic() + self.timeout_s)
        return ro

    def disarm(self) -> None:
        self._armed = None

    def _loop(self) -> None:
        while True:
            time.sleep(self._poll)
            armed = self._armed
            if armed is not None and time.monotonic() >= armed[1]:
                self.fired = self._armed is armed or self.fired
                armed[0].terminate = True  # a run that already ended ignores it: each run has its own RunOptions


@dataclass(frozen=True)
class TensorSpec:
    name: str
    type: str
    shape: tuple[int | str | None, ...] | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "shape": list(self.shape) if self.shape is not None else None}


@dataclass
class ModelOutputs:
    """What one batch of queries returned, in the scanner's own convention."""

    labels: np.ndarray  # (N,) int64 class indices
    scores: np.ndarray | None  # (N, C) float64 logits or log-probabilities; None for label-only models


@dataclass
class LoadedModel:
    path: Path
    sha256: str
    size_bytes: int
    opset: dict[str, int]
    ir_version: int
    producer: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    input_name: str
    input_dtype: np.dtype
    sample_shape: tuple[int, ...]
    fixed_batch: int | None
    output_kind: str
    n_classes: int | None
    class_labels: list[Any] | None
    session: Any = field(repr=False)
    inference_timeout_s: float | None = None  # per-run watchdog (policy limits.inference_timeout_s)
    _watchdog: "Watchdog | None" = field(default=None, repr=False)
    external_files: list[tuple[str, str, int]] = field(default_factory=list)  # (relative path, sha256, size)
    shape_source: str = "model"  # where the per-sample shape came from: model, data, metadata, given
    metadata: dict[str, str] = field(default_factory=dict)  # the model's metadata_props (sanitised, bounded)
    provider: str = "CPUExecutionProvider"  # the execution provider onnxruntime actually used
    _score_name: str | None = field(default=None, repr=False)
    _label_name: str | None = field(default=None, repr=False)
    _zipmap_keys: list[Any] | None = field(default=None, repr=False)
    _label_index: dict[Any, int] | None = field(default=None, repr=False)

    @property
    def has_scores(self) -> bool:
        return self.output_kind != "label"

    @property
    def n_features(self) -> int:
        return int(np.prod(self.sample_shape))

    @property
    def is_image(self) -> bool:
        """Rank-3 samples (C,H,W) or (H,W,C), or rank-2 (H,W): pixels, not features."""
        return len(self.sample_shape) >= 2

    def run_raw(self, x: np.ndarray) -> tuple[list[Any], float]:
        """One ``session.run`` on a batch already shaped for the model. Returns outputs and seconds spent.

        With ``inference_timeout_s`` set, a watchdog stops a run that takes longer (onnxruntime's
        terminate flag, honoured between nodes and between Loop iterations) and raises
        :class:`onnxguard.errors.InferenceTimeout`."""
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        names = [n for n in (self._label_name, self._score_name) if n]
        return self.session_run(names, feed, f"a batch of shape {tuple(x.shape)}")

    def session_run(self, names: list[str], feed: dict[str, Any], what: str) -> tuple[list[Any], float]:
        """The one ``session.run`` every model kind goes through: timed, under the per-run watchdog,
        onnxruntime's errors typed. ``what`` says which batch, for messages."""
        t0 = time.perf_counter()
        dog = self._watchdog
        if dog is None and self.inference_timeout_s:
            dog = self._watchdog = Watchdog(self.inference_timeout_s)
        ro = dog.arm() if dog is not None else None
        try:
            out = self.session.run(names, feed, ro) if ro is not None else self.session.run(names, feed)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            if dog is not None and dog.fired:
                from .errors import InferenceTimeout

                raise InferenceTimeout(
                    f"one model run ({what}) took longer than the policy's "
                    f"limits.inference_timeout_s = {dog.timeout_s:g} s and was stopped by the watchdog"
                ) from None
            raise ort_error(exc, f"the model failed while running on {what}") from exc
        finally:
            if dog is not None:
                dog.disarm()
        return out, time.perf_counter() - t0

    def predict(self, x: np.ndarray, max_batch: int = 256, rows: np.ndarray | None = None) -> tuple[ModelOutputs, float]:
        """Run any number of samples, chunked; returns outputs and time inside onnxruntime.

        ``rows`` (which prepared sample each input belongs to) matters only to models with inputs held
        fixed per sample (``onnxguard.inputs.feed``); a single-input model ignores it."""
        x = np.asarray(x)
        if x.shape[1:] != self.sample_shape:
            raise ModelLoadError(f"internal: batch of shape {x.shape[1:]} does not match model sample shape {self.sample_shape}")
        n = x.shape[0]
        step = self.fixed_batch or max_batch
        if n == step or (n < step and not self.fixed_batch):  # one session.run: the common case
            raw, dt = self.run_raw(x)
            return self._interpret(raw), dt
        label_parts, score_parts, total = [], [], 0.0
        for start in range(0, n, step):
            chunk = x[start : start + step]
            real = chunk.shape[0]
            if self.fixed_batch and real < self.fixed_batch:
                pad = np.repeat(chunk[-1:], self.fixed_batch - real, axis=0)
                chunk = np.concatenate([chunk, pad], axis=0)
            raw, dt = self.run_raw(chunk)
            total += dt
            out = self._interpret(raw)
            label_parts.append(out.labels[:real])
            if out.scores is not None:
                score_parts.append(out.scores[:real])
        labels = np.concatenate(label_parts) if label_parts else np.zeros((0,), np.int64)
        scores = np.concatenate(score_parts) if score_parts else None
        return ModelOutputs(labels=labels, scores=scores), total

    # -- interpretation -------------------------------------------------
    def _interpret(self, raw: list[Any]) -> ModelOutputs:
        i = 0
        label_vals = None
        if self._label_name:
            label_vals = np.asarray(raw[0]).reshape(-1)
            i = 1
        scores = None
        if self._score_name:
            s = raw[i]
            if self.output_kind == "zipmap":
                keys = self._zipmap_keys or []
                s = np.array([[row[k] for k in keys] for row in s], dtype=np.float64)
            s = np.asarray(s, dtype=np.float64)
            s = s.reshape(s.shape[0], -1)
            if self.output_kind == "sigmoid":
                p = np.clip(s[:, :1], _LOG_FLOOR, 1.0)
                q = np.clip(1.0 - s[:, :1], _LOG_FLOOR, 1.0)
                s = np.concatenate([np.log(q), np.log(p)], axis=1)
            elif self.output_kind in ("probabilities", "label+probabilities", "zipmap"):
                s = np.log(np.clip(s, _LOG_FLOOR, None))
            if not np.isfinite(s).all():
                s = np.nan_to_num(s, nan=-1e30, posinf=1e30, neginf=-1e30)
            scores = s
        if label_vals is not None:
            labels = self._map_labels(label_vals, scores)
        else:
            assert scores is not None
            labels = np.argmax(scores, axis=1).astype(np.int64)
        return ModelOutputs(labels=labels, scores=scores)

    def _map_labels(self, vals: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
        if self._label_index is not None:
            idx = np.fromiter((self._label_index.get(_py(v), -1) for v in vals), dtype=np.int64, count=len(vals))
            if scores is not None and (idx < 0).any():
                idx = np.where(idx < 0, np.argmax(scores, axis=1), idx)
            return idx
        return vals.astype(np.int64)


def _py(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


def _short(exc: BaseException, limit: int = 300) -> str:
    from .text import sanitize

    msg = sanitize(str(exc)).strip().splitlines()
    text = msg[0] if msg else type(exc).__name__
    return text[:limit]


_RESOURCE_HINTS = (
    "bad_alloc", "bad allocation", "failed to allocate", "out of memory", "cannot allocate", "memoryerror",
    "resource temporarily unavailable",
)


def ort_error(exc: BaseException, what: str) -> Exception:
    """A typed error for an onnxruntime failure: allocation failures become ResourceLimitError (exit 3)."""
    from .errors import ResourceLimitError

    import re

    text = f"{type(exc).__name__}: {exc}".lower()
    if isinstance(exc, MemoryError) or any(h in text for h in _RESOURCE_HINTS):
        node = re.search(r"running (\w+) node", str(exc))
        size = re.search(r"buffer of size (\d+)", str(exc))
        where = f" in a {node.group(1)} node" if node else ""
        asked = f" (it asked for {int(size.group(1)) / 1024**2:,.0f} MiB)" if size else ""
        return ResourceLimitError(f"{what}: the model ran out of memory{where}{asked}")
    return ModelLoadError(f"{what}: {_short(exc)}")


def _as_str(v: Any) -> str:
    from .text import as_str

    return as_str(v)


def _clean(text: str, limit: int = 200) -> str:
    from .text import sanitize

    return sanitize(text, limit=limit)


_STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training", "com.microsoft.nchwc"}


def _load_error(exc: BaseException, proto: Any, name: str) -> Exception:
    """Why onnxruntime refused the model, in words; custom operator domains named explicitly."""
    err = ort_error(exc, f"onnxruntime cannot load {name}")
    if not isinstance(err, ModelLoadError):
        return err
    custom = sorted({_as_str(n.domain) for n in proto.graph.node if _as_str(n.domain) not in _STANDARD_DOMAINS})
    if custom:
        doms = ", ".join(ascii(_as_str(d))[1:-1][:60] for d in custom[:5])
        from .errors import CannotRunError

        return CannotRunError(
            f"{name} uses operators from custom domain(s) {doms}; onnxguard never loads custom-operator libraries, "
            "so the model cannot be run. Static checks: `onnxguard inspect`."
        )
    return err


def _shape_of(type_proto_shape: Any) -> tuple[int | str | None, ...] | None:
    if type_proto_shape is None:
        return None
    return tuple(d if isinstance(d, int) else (d if isinstance(d, str) else None) for d in type_proto_shape)


def _classify_outputs(model_proto: Any, outputs: list[TensorSpec]) -> tuple[str | None, str | None, str]:
    """Pick the label output and the score output; returns (label_name, score_name, kind_hint)."""
    label_name = None
    score_candidates: list[TensorSpec] = []
    zipmap_name = None
    for o in outputs:
        if o.type in _LABEL_TYPES and (o.shape is None or len(o.shape) <= 2):
            if label_name is None:
                label_name = o.name
        elif o.type.startswith("seq(map("):
            zipmap_name = zipmap_name or o.name
        elif o.type in _FLOAT_TYPES:
            score_candidates.append(o)
    if zipmap_name:
        return label_name, zipmap_name, "zipmap"
    ranked = [o for o in score_candidates if o.shape is None or len(o.shape) in (1, 2) or _squeezable(o.shape)]
    bad = [o for o in score_candidates if o not in ranked]
    if not ranked:
        if bad:
            shapes = ", ".join(f"{o.name}{list(o.shape or [])}" for o in bad)
            raise NotAClassifierError(
                f"the model's float outputs ({shapes}) are not per-class scores: it looks like a detector or "
                "segmentation model. Not tested: evasion attacks and backdoor search (they need a classifier). "
                "Static checks of the file can still be run with `onnxguard inspect`."
            )
        if label_name is None:
            raise NotAClassifierError("the model has no float score output and no integer/string label output; it is not a classifier")
        return label_name, None, "label"
    # prefer an output whose name says probabilities/logits
    def rank(o: TensorSpec) -> int:
        n = o.name.lower()
        return 0 if any(k in n for k in ("prob", "softmax", "logit", "score", "output")) else 1

    ranked.sort(key=rank)
    return label_name, ranked[0].name, "scores"


def _squeezable(shape: tuple[int | str | None, ...]) -> bool:
    # (N, C, 1, 1) style outputs
    return len(shape) > 2 and all(d == 1 for d in shape[2:])


def _classifier_labels(model_proto: Any) -> list[Any] | None:
    """Class labels declared by an ai.onnx.ml classifier node (in column order), if any."""
    for node in model_proto.graph.node:
        if node.op_type in ("ZipMap", "LinearClassifier", "SVMClassifier", "TreeEnsembleClassifier"):
            for a in node.attribute:
                if a.name == "classlabels_int64s" and len(a.ints):
                    return list(a.ints)
                if a.name == "classlabels_strings" and len(a.strings):
                    return [s.decode("utf-8", "replace") for s in a.strings]
    return None


def _producer_of(model_proto: Any, output_name: str) -> str | None:
    for node in model_proto.graph.node:
        if output_name in node.output:
            return node.op_type
    return None


def open_session(
    p: Path, *, raw: Any = None, max_bytes: int = DEFAULT_MAX_MODEL_BYTES, intra_op_threads: int = 0, provider: str | None = None,
) -> tuple[Any, Any]:
    """An onnxruntime session for the model at ``p`` (read safely unless ``raw`` is given); returns (session, RawModel).

    ``provider``: any execution provider the installed onnxruntime offers (CPU when None)."""
    from . import safeload

    loaded = raw if raw is not None else safeload.read_model(p, max_bytes=max_bytes)
    proto = loaded.proto

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    # never register a custom-operator library: a model naming a custom domain simply fails to load
    intra_op_threads = intra_op_threads or int(os.environ.get("ONNXGUARD_ORT_THREADS", "0") or 0)  # set by the sandbox
    if intra_op_threads:
        so.intra_op_num_threads = intra_op_threads
    if loaded.external:
        names = list(loaded.external.keys())
        arrays = [loaded.external[n] for n in names]
        so.add_external_initializers_from_files_in_memory(names, arrays, [len(a) for a in arrays])
    providers = ["CPUExecutionProvider"]
    if provider:
        want = provider if provider.endswith("ExecutionProvider") else provider[:1].upper() + provider[1:] + "ExecutionProvider"
        offered = {a.lower(): a for a in ort.get_available_providers()}
        match = offered.get(want.lower()) or offered.get(provider.lower())
        if match is None:
            from .errors import BadInputError

            raise BadInputError(f"execution provider '{provider[:60]}' is not offered by this onnxruntime (available: {', '.join(ort.get_available_providers())})")
        providers = [match] + ([] if match == "CPUExecutionProvider" else ["CPUExecutionProvider"])
    try:
        sess = ort.InferenceSession(loaded.session_bytes or loaded.model_bytes, sess_options=so, providers=providers)
    except Exception as exc:
        raise _load_error(exc, proto, p.name) from exc
    return sess, loaded


def load_model(
    path: str | os.PathLike[str],
    *,
    probe: np.ndarray | None = None,
    sample_shape: tuple[int, ...] | None = None,
    max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    intra_op_threads: int = 0,
    raw: Any = None,
    inference_timeout_s: float | None = None,
    provider: str | None = None,
) -> LoadedModel:
    """Load ``path`` safely and work out how to query it.

    ``probe`` (a few samples) resolves dynamic non-batch axes and tells
    probabilities from logits; without it, dynamic non-batch axes must be
    given in ``sample_shape`` and a small synthetic probe is used.
    ``raw`` is a :class:`onnxguard.safeload.RawModel` already read from ``path``.

    Dynamic non-batch axes are resolved from ``probe`` (the data), then from the model's metadata
    (``input_shape`` / ``image_size``), then from ``sample_shape`` (``--input-shape``); with none of
    these the model is not attacked (the report says so). ``provider``: see :func:`open_session`.
    """
    p = Path(path)
    sess, loaded = open_session(p, raw=raw, max_bytes=max_bytes, intra_op_threads=intra_op_threads, provider=provider)
    proto = loaded.proto
    meta = {_clean(str(m.key), 60): _clean(str(m.value), 200) for m in list(proto.metadata_props)[:64]}

    inputs = [TensorSpec(i.name, i.type, _shape_of(i.shape)) for i in sess.get_inputs()]
    outputs = [TensorSpec(o.name, o.type, _shape_of(o.shape)) for o in sess.get_outputs()]
    if not inputs:
        raise NotAClassifierError("the model declares no inputs; there is nothing to attack")
    if len(inputs) > 1:
        desc = ", ".join(f"{i.name} ({i.type})" for i in inputs)
        raise NotAClassifierError(
            f"the model has {len(inputs)} inputs ({desc}); onnxguard attacks single-input classifiers. "
            "Not tested: evasion attacks and backdoor search. Static checks: `onnxguard inspect`."
        )
    inp = inputs[0]
    if inp.type not in _FLOAT_TYPES:
        raise NotAClassifierError(
            f"the model's input '{inp.name}' is {inp.type}; onnxguard's attacks perturb continuous inputs "
            "(float16/float32/float64). Not tested: evasion attacks and backdoor search."
        )
    dtype = np.dtype(_FLOAT_TYPES[inp.type])
    shape = inp.shape or (None,)
    if len(shape) < 2:
        raise NotAClassifierError(f"the model's input '{inp.name}' has shape {list(shape)}; expected a batch axis and at least one feature axis")
    batch = shape[0]
    fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
    rest = list(shape[1:])
    shape_source = "model"
    if any(not isinstance(d, int) or d <= 0 for d in rest):
        from .conventions import metadata_shape
        from .errors import DataError

        if probe is not None and probe.ndim == len(shape):
            rest = [d if isinstance(d, int) and d > 0 else probe.shape[i + 1] for i, d in enumerate(rest)]
            if tuple(rest) != probe.shape[1:]:
                raise DataError(f"data samples have shape {list(probe.shape[1:])} but the model expects {list(shape[1:])}")
            if sample_shape is not None and tuple(sample_shape) != tuple(rest):
                raise DataError(f"--input-shape {list(sample_shape)} disagrees with the data's samples {list(rest)}")
            shape_source = "data"
        else:
            filled = None
            for src, cand in (("metadata", metadata_shape(meta)), ("given", sample_shape)):
                filled = _fill_dynamic(rest, cand)
                if filled is not None:
                    rest, shape_source = filled, src
                    break
            if filled is None:
                raise NotAClassifierError(
                    f"the model's input shape {list(shape)} has dynamic axes besides the batch; pass --data with samples "
                    "so they can be resolved, or --input-shape"
                )
    s_shape = tuple(int(d) for d in rest)
    if sample_shape is not None and shape_source == "model" and tuple(sample_shape) != s_shape:
        from .errors import DataError

        raise DataError(f"--input-shape {list(sample_shape)} does not match the model's fixed input shape {list(s_shape)}")
    n_values = 1
    for d in s_shape:
        n_values *= d
    if n_values > MAX_SAMPLE_VALUES:
        raise ModelLoadError(
            f"the model's input '{inp.name}' declares {n_values} values per sample (shape {list(shape)}), over the "
            f"{MAX_SAMPLE_VALUES} onnxguard will allocate; not scanned"
        )

    label_name, score_name, hint = _classify_outputs(proto, outputs)
    model = LoadedModel(
        path=p,
        sha256=loaded.sha256,
        size_bytes=loaded.size_bytes,
        opset={(d.domain or "ai.onnx"): int(d.version) for d in proto.opset_import},
        ir_version=int(proto.ir_version),
        producer=_clean(" ".join(_as_str(x) for x in (proto.producer_name, proto.producer_version) if x)),
        inputs=inputs,
        outputs=outputs,
        input_name=inp.name,
        input_dtype=dtype,
        sample_shape=s_shape,
        fixed_batch=fixed_batch,
        output_kind="label" if hint == "label" else hint,
        n_classes=None,
        class_labels=None,
        session=sess,
        inference_timeout_s=inference_timeout_s,
        external_files=loaded.external_files,
        shape_source=shape_source,
        metadata=meta,
        provider=(sess.get_providers() or ["CPUExecutionProvider"])[0],
        _score_name=score_name,
        _label_name=label_name,
    )
    _resolve_kind(model, proto, probe)
    return model


def _fill_dynamic(rest: list, cand: tuple[int, ...] | None) -> list[int] | None:
    """``rest`` (per-sample dims, some dynamic) filled from ``cand``: a full per-sample shape that agrees
    with the fixed dims, or just the values of the dynamic dims in order (e.g. H, W)."""
    if cand is None:
        return None
    dyn = [i for i, d in enumerate(rest) if not isinstance(d, int) or d <= 0]
    if len(cand) == len(rest) and all(not (isinstance(d, int) and d > 0) or d == c for d, c in zip(rest, cand)):
        return [int(c) for c in cand]
    if len(cand) == len(dyn):
        out = list(rest)
        for i, c in zip(dyn, cand):
            out[i] = int(c)
        return out
    return None


def _resolve_kind(model: LoadedModel, proto: Any, probe: np.ndarray | None) -> None:
    """Run a probe batch and decide logits vs probabilities, classes and label mapping."""
    if probe is None or probe.shape[1:] != model.sample_shape:
        rng = np.random.default_rng(0)
        probe = rng.uniform(0.0, 1.0, size=(8, *model.sample_shape))
    probe = probe[:64]
    # raw run to see what comes out
    step = model.fixed_batch or len(probe)
    chunk = probe[:step]
    if model.fixed_batch and len(chunk) < model.fixed_batch:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], model.fixed_batch - len(chunk), axis=0)])
    raw, _ = model.run_raw(chunk)
    i = 1 if model._label_name else 0
    declared = _classifier_labels(proto)

    if model.output_kind == "zipmap":
        first = raw[i][0] if len(raw[i]) else {}
        model._zipmap_keys = list(first.keys())
        model.class_labels = [_py(k) for k in model._zipmap_keys]
        model.n_classes = len(model._zipmap_keys)
    elif model.output_kind == "scores":
        s = np.asarray(raw[i], dtype=np.float64)
        s = s.reshape(s.shape[0], -1)
        c = s.shape[1]
        producer = _producer_of(proto, model._score_name or "")
        if c == 1:
            if producer == "Sigmoid":
                model.output_kind = "sigmoid"
                c = 2
            else:
                raise NotAClassifierError(
                    f"the model's output '{model._score_name}' is one float per sample (a regression model?). "
                    "Not tested: evasion attacks and backdoor search, which need per-class scores or labels."
                )
        else:
            finite = np.isfinite(s).all()
            is_prob = finite and s.min() >= -1e-6 and s.max() <= 1 + 1e-6 and np.allclose(s.sum(axis=1), 1.0, atol=1e-3)
            if producer in ("Softmax", "ZipMap") or is_prob:
                model.output_kind = "label+probabilities" if model._label_name else "probabilities"
            else:
                model.output_kind = "label+logits" if model._label_name else "logits"
        model.n_classes = c
        if declared and len(declared) == c:
            model.class_labels = declared
    elif model.output_kind == "label":
        if declared:
            model.class_labels = declared
            model.n_classes = len(declared)

    if model._label_name:
        if model.class_labels is not None:
            model._label_index = {_py(v): k for k, v in enumerate(model.class_labels)}
        else:
            vals = np.asarray(raw[0]).reshape(-1)
            if vals.dtype.kind in "iu":
                model._label_index = _empirical_label_index(vals, raw[i] if model._score_name else None, model)
            else:
                raise NotAClassifierError(
                    "the model outputs string labels without declaring its classes; cannot map labels to classes"
                )


def _empirical_label_index(vals: np.ndarray, raw_scores: Any, model: LoadedModel) -> dict[Any, int] | None:
    """Integer labels with no declared class list: identity when they already are column indices,
    else the mapping label -> score column observed on the probe batch."""
    if raw_scores is None or model.output_kind == "zipmap":
        return None
    s = np.asarray(raw_scores, dtype=np.float64).reshape(len(vals), -1)
    cols = s.argmax(axis=1)
    c = s.shape[1]
    if vals.min() >= 0 and vals.max() < c and (vals == cols).mean() >= 0.9:
        return None
    index: dict[Any, int] = {}
    for v in np.unique(vals):
        picks = cols[vals == v]
        index[int(v)] = int(np.bincount(picks).argmax())
    return index


# -- task detection ------------------------------------------------------
TASKS = ("classifier", "classifier-labels", "regressor", "text-classifier", "other")
TOKEN_INPUT_NAMES = ("input_ids", "ids", "token_ids", "tokens", "input")
_INT_TYPES = {"tensor(int64)", "tensor(int32)", "tensor(int16)", "tensor(int8)", "tensor(uint8)", "tensor(bool)"}


@dataclass(frozen=True)
class TaskInfo:
    """What kind of model this is, as far as its inputs and outputs tell.

    ``task``: classifier (with scores), classifier-labels (labels only), regressor,
    text-classifier, or other; ``detail`` names the kind of "other" (detector,
    segmentation, embedding, generative, unknown) or the output convention;
    ``reason`` says in one line what the decision rests on."""

    task: str
    detail: str
    reason: str


def is_token_input(t: TensorSpec) -> bool:
    n = t.name.lower()
    return t.type in _INT_TYPES and (n in TOKEN_INPUT_NAMES or n.endswith("input_ids") or n.endswith("token_ids"))


def detect_task(inputs: list[TensorSpec], outputs: list[TensorSpec], proto: Any = None) -> TaskInfo:
    """The model's task from its declared inputs and outputs (no query is made)."""
    texty = any(i.type == "tensor(string)" for i in inputs) or any(is_token_input(i) for i in inputs)
    labels = [o for o in outputs if o.type in _LABEL_TYPES and (o.shape is None or len(o.shape) <= 2)]
    zipmaps = [o for o in outputs if o.type.startswith("seq(map(")]
    floats = [o for o in outputs if o.type in _FLOAT_TYPES]

    def rank(o: TensorSpec) -> int | None:
        return None if o.shape is None else len(o.shape)

    def last(o: TensorSpec) -> int | str | None:
        return o.shape[-1] if o.shape else None

    if not outputs:
        return TaskInfo("other", "unknown", "the model declares no outputs")
    high = [o for o in floats if rank(o) is not None and rank(o) > 2 and not _squeezable(o.shape or ())]  # type: ignore[arg-type]
    if not labels and not zipmaps and high:
        o = high[0]
        n = o.name.lower()
        shape = list(o.shape or [])
        if any(k in n for k in ("box", "bbox", "anchor", "det", "loc")) or (rank(o) == 3 and last(o) in (4, 5, 6, 7, 85)):
            return TaskInfo("other", "detector", f"output '{o.name}' {shape} looks like per-box coordinates/scores")
        if rank(o) == 4:
            return TaskInfo("other", "segmentation", f"output '{o.name}' {shape} is a per-pixel map")
        if rank(o) == 3 and texty and ("logit" in n or (isinstance(last(o), int) and int(last(o)) >= 1000)):  # type: ignore[arg-type]
            return TaskInfo("other", "generative", f"output '{o.name}' {shape} gives per-token scores over a vocabulary (a language model)")
        if rank(o) == 3:
            return TaskInfo("other", "embedding", f"output '{o.name}' {shape} is one vector per position (hidden states / embeddings)")
        return TaskInfo("other", "unknown", f"output '{o.name}' {shape} is not per-class scores")
    if not labels and not zipmaps and floats:
        o = floats[0]
        n = o.name.lower()
        if any(k in n for k in ("embed", "pooler", "hidden", "feature", "sentence")):
            return TaskInfo("other", "embedding", f"output '{o.name}' {list(o.shape or [])} is named as an embedding")
        one = [f for f in floats if rank(f) == 1 or (rank(f) == 2 and last(f) == 1)]
        if one and len(one) == len(floats):
            producer = _producer_of(proto, o.name) if proto is not None else None
            if producer != "Sigmoid":
                return TaskInfo("text-classifier" if texty else "regressor", "regression" if not texty else "sigmoid",
                                f"output '{o.name}' {list(o.shape or [])} is one float per sample" + (" (not a sigmoid)" if not texty else ""))
    if not labels and not zipmaps and not floats:
        return TaskInfo("other", "unknown", "no float, label or class-map output")
    kind = "scores" if (floats or zipmaps) else "labels"
    if texty:
        return TaskInfo("text-classifier", kind, "the model reads text (string or token-id input) and outputs class " + ("scores" if kind == "scores" else "labels"))
    if kind == "labels":
        return TaskInfo("classifier-labels", "labels", f"output '{labels[0].name}' gives labels and no scores")
    return TaskInfo("classifier", "scores", "per-class score output")
