"""Synonym sources for word substitution; each names itself in the report.

* ``shipped``: the list in ``synonyms.txt`` (common English, hand-made, small);
* ``embedding``: nearest neighbours (cosine) of a word in the model's own token
  embedding table, among whole-word vocabulary entries (TextFooler-style, with
  the model's embeddings instead of counter-fitted ones).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

SHIPPED = Path(__file__).with_name("synonyms.txt")


@lru_cache(maxsize=1)
def shipped_synonyms() -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for line in SHIPPED.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        for w in words:
            lst = table.setdefault(w, [])
            for o in words:
                if o != w and o not in lst:
                    lst.append(o)
    return table


def shipped_source() -> tuple[str, Callable[[str], list[str]]]:
    table = shipped_synonyms()
    return f"shipped synonym list (onnxguard/nlp/synonyms.txt, {len(table)} words)", lambda w: table.get(w, [])


def embedding_source(tokenizer: Any, table: np.ndarray, name: str, k: int = 8) -> tuple[str, Callable[[str], list[str]]]:
    """Neighbours of a word in the model's embedding table (whole-word vocabulary entries of >= 3 letters)."""
    vocab = tokenizer.get_vocab()
    words = sorted((w, i) for w, i in vocab.items() if w.isalpha() and len(w) >= 3 and i < len(table))
    ids = np.array([i for _, i in words], dtype=np.int64)
    names = [w for w, _ in words]
    emb = table[ids].astype(np.float64) if len(ids) else np.zeros((0, table.shape[1]))
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    cache: dict[str, list[str]] = {}

    def neighbours(w: str) -> list[str]:
        if w in cache:
            return cache[w]
        i = vocab.get(w)
        out: list[str] = []
        if i is not None and i < len(table) and len(ids):
            v = table[i].astype(np.float64)
            v /= max(float(np.linalg.norm(v)), 1e-12)
            sim = emb @ v
            for j in np.argsort(-sim)[: k + 1]:
                if names[j] != w:
                    out.append(names[j])
        cache[w] = out[:k]
        return cache[w]

    return f"the model's own token embeddings ({name}, {table.shape[0]}x{table.shape[1]}; cosine neighbours among {len(ids)} whole words)", neighbours
