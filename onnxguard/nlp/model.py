"""A text classifier queried with texts: string inputs, or token ids through a tokenizer, or raw ids.

``TextModel`` is a :class:`onnxguard.inputs.feed.FeedModel` whose attacked
representation is a 1-D object array of strings (modes ``string`` and
``tokenizer``) or an ``(N, L)`` int64 array of token ids (mode ``ids``, no
tokenizer). Masks and token type ids come from the tokenizer; in id space,
every input other than the ids is held at its data values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, NotAClassifierError
from ..inputs.feed import _NP_TYPES, FeedModel
from ..inputs.spaces import MASK_NAMES, TYPE_ID_NAMES, _is, plan_inputs
from ..inputs.tokenizer import PAD_TOKENS, special_id
from ..model import TensorSpec, _classify_outputs, _resolve_kind, _shape_of, is_token_input, open_session

DEFAULT_MAX_LEN = 256
PROBE_TEXTS = ("a short probe text", "another probe sentence for the model", "the", "good", "bad", "ok then")


@dataclass
class TextModel(FeedModel):
    mode: str = "string"  # string | tokenizer | ids
    tokenizer: Any = None
    text_input: str = ""
    max_len: int = DEFAULT_MAX_LEN
    pad_id: int = 0
    vocab_size: int | None = None
    embedding: np.ndarray | None = None  # (V, D) when the model has an embedding table matching the vocabulary
    embedding_name: str | None = None

    def _text_feed(self, texts: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        spec = next(i for i in self.inputs if i.name == self.text_input)
        n = len(texts)
        if self.mode == "string":
            arr = np.array([str(t) for t in texts], dtype=object)
            shape = spec.shape or (None, 1)
            return {self.text_input: arr.reshape(n, 1) if len(shape) == 2 else arr.reshape(n)}
        encs = self.tokenizer.encode_batch([str(t) for t in texts])
        fixed_len = spec.shape[1] if spec.shape and len(spec.shape) > 1 and isinstance(spec.shape[1], int) and spec.shape[1] > 0 else None
        L = fixed_len or max(1, min(self.max_len, max(len(e.ids) for e in encs)))
        ids = np.full((n, L), self.pad_id, np.int64)
        mask = np.zeros((n, L), np.int64)
        types = np.zeros((n, L), np.int64)
        for k, e in enumerate(encs):
            m = min(L, len(e.ids))
            ids[k, :m] = e.ids[:m]
            mask[k, :m] = e.attention_mask[:m]  # a tokenizer.json with padding enabled pads itself
            types[k, :m] = e.type_ids[:m]
        feed: dict[str, np.ndarray] = {}
        for t in self.inputs:
            dt = np.dtype(_NP_TYPES.get(t.type, np.int64))
            if t.name == self.text_input:
                feed[t.name] = ids.astype(dt)
            elif _is(t.name, MASK_NAMES):
                feed[t.name] = mask.astype(dt)
            elif _is(t.name, TYPE_ID_NAMES):
                feed[t.name] = types.astype(dt)
            else:
                feed[t.name] = np.zeros((n, L), dt)
        return feed

    def feed(self, x: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        if self.mode in ("string", "tokenizer"):
            return self._text_feed(np.asarray(x, dtype=object).reshape(-1), rows)
        spec_dt = next(np.dtype(_NP_TYPES.get(i.type, np.int64)) for i in self.inputs if i.name == self.text_input)
        out = {self.text_input: np.ascontiguousarray(np.asarray(x), dtype=spec_dt)}
        for name, vals in self.fixed_values.items():
            out[name] = np.ascontiguousarray(vals[np.asarray(rows) % len(vals)])
        return out

    def run_raw(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[list[Any], float]:  # type: ignore[override]
        rows = np.arange(len(x)) if rows is None else rows
        names = [n for n in (self._label_name, self._score_name) if n]
        return self.session_run(names, self.feed(x, rows), f"a batch of {len(x)} texts")


def _embedding_table(proto: Any, vocab: int | None) -> tuple[str | None, np.ndarray | None]:
    """The (V, D) initializer a Gather reads token ids from, when V matches the vocabulary (or is the only one)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Gather" and node.input and node.input[0] in inits:
            t = inits[node.input[0]]
            if len(t.dims) == 2 and (vocab is None or int(t.dims[0]) == vocab) and int(t.dims[0]) * int(t.dims[1]) <= 50_000_000:
                return node.input[0], numpy_helper.to_array(t).astype(np.float32)
    return None, None


def load_text_model(path: Path, *, raw: Any, max_bytes: int, tokenizer: Any = None, ids: np.ndarray | None = None,
                    fixed: dict[str, np.ndarray] | None = None, probe_texts: list[str] | None = None,
                    inference_timeout_s: float | None = None) -> TextModel:
    """Open a text model. ``tokenizer`` for token-id models (else id space with ``ids``/``fixed`` from the data)."""
    sess, loaded = open_session(path, raw=raw, max_bytes=max_bytes)
    proto = loaded.proto
    inputs = [TensorSpec(i.name, i.type, _shape_of(i.shape)) for i in sess.get_inputs()]
    outputs = [TensorSpec(o.name, o.type, _shape_of(o.shape)) for o in sess.get_outputs()]
    strings = [i for i in inputs if i.type == "tensor(string)"]
    tokens = [i for i in inputs if is_token_input(i)]
    if strings:
        mode, text_input = "string", strings[0].name
        others = [i for i in inputs if i.name != text_input]
        if others:
            raise NotAClassifierError(f"the text model has inputs besides its text input '{text_input}': {[i.name for i in others]}; not supported")
    elif tokens:
        text_input = tokens[0].name
        mode = "tokenizer" if tokenizer is not None else "ids"
    else:
        raise NotAClassifierError("the model has no string or token-id input")
    roles = plan_inputs(inputs, tokenizer=tokenizer is not None)
    label_name, score_name, hint = _classify_outputs(proto, outputs)
    fixed_values: dict[str, np.ndarray] = {}
    if mode == "ids":
        if ids is None:
            raise NotAClassifierError(
                f"token-id input '{text_input}' and no tokenizer: give --tokenizer (or a tokenizer.json beside the model) to attack it as text, "
                "or --data with an 'input_ids' array to attack it in id space"
            )
        for t in inputs:
            if t.name == text_input:
                continue
            dt = np.dtype(_NP_TYPES.get(t.type, np.int64))
            v = (fixed or {}).get(t.name)
            if v is None:
                v = (ids != 0).astype(dt) if _is(t.name, MASK_NAMES) else np.zeros_like(ids, dtype=dt)
            if len(v) != len(ids):
                raise DataError(f"data array '{t.name}' has {len(v)} rows, 'input_ids' has {len(ids)}")
            fixed_values[t.name] = np.asarray(v, dtype=dt)
    vocab = tokenizer.get_vocab_size() if tokenizer is not None else None
    emb_name, emb = _embedding_table(proto, vocab) if mode != "string" else (None, None)
    if mode == "ids":
        vocab = int(emb.shape[0]) if emb is not None else int(ids.max()) + 1
    model = TextModel(
        path=path, sha256=loaded.sha256, size_bytes=loaded.size_bytes,
        opset={(d.domain or "ai.onnx"): int(d.version) for d in proto.opset_import}, ir_version=int(proto.ir_version),
        producer=" ".join(str(x) for x in (proto.producer_name, proto.producer_version) if x)[:200],
        inputs=inputs, outputs=outputs, input_name=text_input, input_dtype=np.dtype(object),
        sample_shape=() if mode != "ids" else tuple(ids.shape[1:]), fixed_batch=None,
        output_kind="label" if hint == "label" else hint, n_classes=None, class_labels=None, session=sess,
        external_files=loaded.external_files, _score_name=score_name, _label_name=label_name,
        fixed_values=fixed_values, roles=roles, mode=mode, tokenizer=tokenizer, text_input=text_input,
        pad_id=special_id(tokenizer, PAD_TOKENS, 0) if tokenizer is not None else 0, vocab_size=vocab,
        embedding=emb, embedding_name=emb_name, inference_timeout_s=inference_timeout_s,
    )
    if mode == "ids":
        probe = np.asarray(ids[:16], dtype=np.int64)
    else:
        probe = np.array(list(probe_texts or [])[:16] or list(PROBE_TEXTS), dtype=object)
    _resolve_kind(model, proto, probe)
    return model
