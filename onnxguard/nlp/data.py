"""Texts with optional labels: CSV (a ``text`` column), JSONL (``{"text": ..., "label": ...}``) or .npz.

A .npz holds either ``texts`` (strings; ``x`` is accepted too) or ``input_ids``
(with optional ``attention_mask`` / ``token_type_ids``) for id space, and an
optional ``y``/``label``. Nothing is unpickled.
"""

from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..digest import sha256_file
from ..errors import DataError

TEXT_COLUMNS = ("text", "sentence", "review", "content", "message", "body", "input")
LABEL_KEYS = ("label", "y", "target", "class", "labels")
MAX_TEXT_DATA_BYTES = 256 * 1024**2
MAX_TEXT_CHARS = 20_000
MAX_TEXTS = 100_000


@dataclass
class TextSamples:
    texts: list[str] | None  # None in id space
    ids: np.ndarray | None  # (N, L) token ids, id space only
    fixed: dict[str, np.ndarray] = field(default_factory=dict)  # other arrays of an id-space .npz
    y: np.ndarray | None = None
    source: str = ""
    sha256: str | None = None

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.ids)  # type: ignore[arg-type]


def _check_texts(texts: list[str], name: str) -> list[str]:
    if not texts:
        raise DataError(f"{name} holds no texts")
    if len(texts) > MAX_TEXTS:
        raise DataError(f"{name} holds {len(texts)} texts, over the {MAX_TEXTS} limit")
    long = [i for i, t in enumerate(texts) if len(t) > MAX_TEXT_CHARS]
    if long:
        raise DataError(f"{name}: text {long[0]} has {len(texts[long[0]])} characters, over the {MAX_TEXT_CHARS} limit")
    return texts


def _labels(raw: list) -> np.ndarray | None:
    if not raw or all(v is None or v == "" for v in raw):
        return None
    if any(v is None or v == "" for v in raw):
        raise DataError("some samples have a label and some do not")
    try:
        return np.array([int(float(v)) for v in raw], dtype=np.int64)
    except (TypeError, ValueError):
        return np.array([str(v) for v in raw])


def load_texts(path: Path) -> TextSamples:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    size = p.stat().st_size
    if size == 0 or size > MAX_TEXT_DATA_BYTES:
        raise DataError(f"data file {p} is {size} bytes; text data must be 1..{MAX_TEXT_DATA_BYTES} bytes")
    suf = p.suffix.lower()
    texts: list[str] | None = None
    ids = None
    fixed: dict[str, np.ndarray] = {}
    y = None
    if suf == ".csv":
        with open(p, newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.reader(f))
        rows = [r for r in rows if r]
        if len(rows) < 2:
            raise DataError(f"{p.name}: expected a header row naming a text column and at least one row")
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
        if col is None:
            raise DataError(f"{p.name}: no text column (one of {', '.join(TEXT_COLUMNS)}) in the header {header[:10]}")
        lcol = next((header.index(c) for c in LABEL_KEYS if c in header), None)
        texts = [r[col] if col < len(r) else "" for r in rows[1:]]
        y = _labels([r[lcol] if lcol < len(r) else "" for r in rows[1:]]) if lcol is not None else None
    elif suf in (".jsonl", ".ndjson"):
        texts, raw_y = [], []
        with open(p, encoding="utf-8", errors="replace") as f:
            for k, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{p.name}: line {k + 1} is not JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{p.name}: line {k + 1} is not a JSON object")
                key = next((c for c in TEXT_COLUMNS if c in obj), None)
                if key is None or not isinstance(obj[key], str):
                    raise DataError(f"{p.name}: line {k + 1} has no text field (one of {', '.join(TEXT_COLUMNS)})")
                texts.append(obj[key])
                raw_y.append(next((obj[c] for c in LABEL_KEYS if c in obj), None))
        y = _labels(raw_y)
    elif suf == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                tkey = next((k for k in ("texts", "text", "x") if k in keys and z[k].dtype.kind == "U"), None)
                if tkey is not None:
                    texts = [str(t) for t in z[tkey].reshape(-1)]
                elif "input_ids" in keys:
                    ids = np.asarray(z["input_ids"])
                    if ids.ndim != 2 or ids.dtype.kind not in "iu":
                        raise DataError(f"{p.name}: 'input_ids' must be a 2-D integer array, got {ids.dtype} {list(ids.shape)}")
                    fixed = {k: np.asarray(z[k]) for k in keys if k not in ("input_ids", *LABEL_KEYS) and z[k].shape == ids.shape}
                else:
                    raise DataError(f"{p.name} holds arrays {keys}; a text .npz needs 'texts' (strings) or 'input_ids'")
                lkey = next((k for k in LABEL_KEYS if k in keys), None)
                y = np.asarray(z[lkey]).reshape(-1) if lkey else None
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read {p.name} as npz: {str(exc)[:200]}") from None
    else:
        raise DataError(f"unsupported text data format '{suf or p.name}': use .csv (a text column), .jsonl or .npz")
    if texts is not None:
        texts = _check_texts(texts, p.name)
    n = len(texts) if texts is not None else len(ids)  # type: ignore[arg-type]
    if y is not None and len(y) != n:
        raise DataError(f"{p.name}: {n} samples but {len(y)} labels")
    return TextSamples(texts=texts, ids=ids, fixed=fixed, y=y, source=str(p), sha256=sha256_file(p))
