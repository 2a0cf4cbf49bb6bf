"""Text attacks through the counted oracle: greedy edits on the most important words.

One engine (:func:`greedy_edit`) serves every text attack, in the spirit of
DeepWordBug (Gao et al. 2018) and TextAttack's ``GreedyWordSwapWIR``:

1. word importance by deletion: one query per word (the text with that word
   deleted; in id space, the token replaced by the pad id), ranked by how much
   the deletion lowers the margin of the true class (or raises the target's);
2. words in that order: each gets a few candidate edits from the attack's
   transformation, all queried in one batch (across samples too); the best is
   kept if it lowers the margin, and the attack stops at the first success,
   when the edit budget or the query budget is spent, or when words run out.

Transformations: character edits (swap neighbours, substitute, delete,
insert), homoglyph substitution, zero-width insertion, word substitution from
a synonym source, token substitution in id space. Edits are counted in the
attack's unit: characters (the optimal-string-alignment distance per word, so a
swap of neighbours is one edit), words or tokens. Every query is counted by the
oracle and never exceeds the per-sample budget; the same rng gives the same
adversarial texts.
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..attacks.base import margin

if TYPE_CHECKING:  # pragma: no cover
    from ..oracle import Oracle

TOKEN_RE = re.compile(r"\w+|\W+", re.UNICODE)
LETTERS = string.ascii_lowercase
HOMOGLYPHS = {  # Latin -> visually identical Cyrillic / Greek code points
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "j": "\u0458", "o": "\u043e", "p": "\u0440",
    "s": "\u0455", "x": "\u0445", "y": "\u0443", "A": "\u0410", "B": "\u0412", "C": "\u0421", "E": "\u0415",
    "H": "\u041d", "I": "\u0406", "K": "\u041a", "M": "\u041c", "O": "\u041e", "P": "\u0420", "T": "\u0422",
    "X": "\u0425", "Y": "\u03a5", "v": "\u03bd", "n": "\u0578", "h": "\u04bb", "d": "\u0501",
}
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")

Propose = Callable[[Any, np.random.Generator, int], list[tuple[Any, int]]]  # (unit, rng, edits left) -> [(new unit, cost)]


@dataclass
class TextAttackResult:
    success: np.ndarray  # (n,) bool
    queries: np.ndarray  # (n,) int64
    adversarial: list[Any]  # per sample: the edited text (str) or ids (array); the original where nothing was kept
    edits: np.ndarray  # (n,) edits kept, in the attack's unit
    edited: list[list[int]]  # per sample: indices of the edited units (tokens of TOKEN_RE, or id positions)
    labels: np.ndarray  # (n,) the model's label of the adversarial
    wall_time: float = 0.0
    ort_time: float = 0.0
    extra: dict = field(default_factory=dict)


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein plus adjacent transpositions)."""
    la, lb = len(a), len(b)
    d = [[0] * (lb + 1) for _ in range(la + 1)]
    for i in range(la + 1):
        d[i][0] = i
    for j in range(lb + 1):
        d[0][j] = j
    for i in range(1, la + 1):
        for j in range(1, lb + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[la][lb]


def split_text(text: str) -> tuple[list[str], list[int]]:
    """Tokens (words and the text between them, which join back to ``text``) and the indices of words."""
    toks = TOKEN_RE.findall(text)
    words = [k for k, t in enumerate(toks) if t and (t[0].isalnum() or t[0] == "_")]
    return toks, words


# -- transformations -----------------------------------------------------
def char_edits(per_word: int = 8) -> Propose:
    """DeepWordBug's four character edits (swap neighbours, substitute, delete, insert), ``per_word`` candidates."""

    def propose(w: str, rng: np.random.Generator, left: int) -> list[tuple[str, int]]:
        if left < 1 or not w:
            return []
        out: list[str] = []
        ops = ["swap", "sub", "del", "ins"]
        for k in range(per_word * 3):
            if len(out) >= per_word:
                break
            op = ops[k % 4]
            i = int(rng.integers(0, len(w)))
            if op == "swap" and len(w) >= 2:
                i = min(i, len(w) - 2)
                cand = w[:i] + w[i + 1] + w[i] + w[i + 2:]
            elif op == "sub":
                cand = w[:i] + LETTERS[int(rng.integers(0, 26))] + w[i + 1:]
            elif op == "del" and len(w) >= 2:
                cand = w[:i] + w[i + 1:]
            elif op == "ins":
                cand = w[:i] + LETTERS[int(rng.integers(0, 26))] + w[i:]
            else:
                continue
            if cand != w and cand not in out:
                out.append(cand)
        return [(c, 1) for c in out]

    return propose


def homoglyphs(per_word: int = 8) -> Propose:
    """Replace characters by look-alikes from other scripts: one at each eligible position, and all at once."""

    def propose(w: str, rng: np.random.Generator, left: int) -> list[tuple[str, int]]:
        pos = [i for i, ch in enumerate(w) if ch in HOMOGLYPHS]
        if not pos or left < 1:
            return []
        picks = list(rng.permutation(pos)[:per_word])
        out = [(w[:i] + HOMOGLYPHS[w[i]] + w[i + 1:], 1) for i in picks]
        if len(pos) > 1 and len(pos) <= left:
            out.append(("".join(HOMOGLYPHS.get(ch, ch) for ch in w), len(pos)))
        return out

    return propose


def zero_width(per_word: int = 8) -> Propose:
    """Insert an invisible character (zero-width space / joiners, word joiner) inside the word."""

    def propose(w: str, rng: np.random.Generator, left: int) -> list[tuple[str, int]]:
        if len(w) < 2 or left < 1:
            return []
        slots = list(range(1, len(w)))
        picks = rng.permutation(slots)[:per_word]
        return [(w[:i] + ZERO_WIDTH[int(rng.integers(0, len(ZERO_WIDTH)))] + w[i:], 1) for i in picks]

    return propose


def word_substitutes(source: Callable[[str], list[str]], per_word: int = 12) -> Propose:
    """Replace the word by one of its substitutes from ``source`` (case kept); one word edit."""

    def propose(w: str, rng: np.random.Generator, left: int) -> list[tuple[str, int]]:
        if left < 1:
            return []
        subs = [s for s in source(w.lower()) if s != w.lower()][:per_word]
        if w[:1].isupper():
            subs = [s[:1].upper() + s[1:] for s in subs]
        return [(s, 1) for s in subs]

    return propose


def token_substitutes(vocab_size: int, avoid: set[int], per_position: int = 12,
                      neighbours: Callable[[int], list[int]] | None = None) -> Propose:
    """Replace a token id by other ids (the model's embedding neighbours when known, else random ids)."""

    def propose(t: int, rng: np.random.Generator, left: int) -> list[tuple[int, int]]:
        if left < 1:
            return []
        cands = list(neighbours(int(t))[:per_position]) if neighbours is not None else []
        tries = 0
        while len(cands) < per_position and tries < per_position * 4:
            c = int(rng.integers(0, vocab_size))
            tries += 1
            if c != t and c not in avoid and c not in cands:
                cands.append(c)
        return [(c, 1) for c in cands]

    return propose


# -- the engine ----------------------------------------------------------
@dataclass
class _Doc:
    units: list  # tokens (str) or ids (int)
    editable: list[int]  # indices of units that may be edited (words / non-pad ids)
    original: list


def _render(doc_units: list, ids: bool) -> Any:
    return np.asarray(doc_units, dtype=np.int64) if ids else "".join(doc_units)


def _stack(items: list, ids: bool) -> np.ndarray:
    if ids:
        return np.stack(items) if items else np.zeros((0, 0), np.int64)
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def greedy_edit(
    oracle: "Oracle", samples: list[Any], y: np.ndarray, *, propose: Propose, max_edits: np.ndarray, budget: int,
    rng: np.random.Generator, target: np.ndarray | None = None, ids: bool = False, unit_cost: str = "chars",
    mask_id: int = 0, progress: Callable[[int, int], None] | None = None,
) -> TextAttackResult:
    """Greedy importance-ordered edits (see the module docstring). ``samples`` are texts, or id rows when ``ids``.

    ``unit_cost`` is ``chars`` (a word's cost is its OSA distance to the original word), ``words`` or
    ``tokens`` (one per edited unit)."""
    t0 = time.perf_counter()
    ort0 = oracle.ort_time
    q0 = oracle.queries.copy()
    n = len(samples)
    docs: list[_Doc] = []
    for s in samples:
        if ids:
            row = [int(v) for v in np.asarray(s).reshape(-1)]
            docs.append(_Doc(list(row), [k for k, v in enumerate(row) if v != mask_id], list(row)))
        else:
            toks, words = split_text(str(s))
            docs.append(_Doc(list(toks), words, list(toks)))
    idx_all = np.arange(n)
    success = np.zeros(n, bool)
    labels = np.zeros(n, np.int64)
    edits = np.zeros(n, np.int64)
    edited: list[list[int]] = [[] for _ in range(n)]
    tgt = None if target is None else np.asarray(target)

    def margins(batch: list, who: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, lab = oracle.scores(_stack(batch, ids), who)
        return margin(s, y[who], None if tgt is None else tgt[who]), lab

    def left(i: int) -> int:  # queries left for sample i: the oracle's budget, and this call's own
        return int(min(oracle.remaining(np.array([i]))[0], budget - (oracle.queries[i] - q0[i])))

    # clean pass (one query each): the starting margin
    active = np.array([left(i) >= 1 for i in range(n)])
    cur = np.full(n, np.inf)
    if active.any():
        who = idx_all[active]
        m, lab = margins([_render(docs[i].units, ids) for i in who], who)
        cur[who], labels[who] = m, lab
        done_now = (lab == tgt[who]) if tgt is not None else (lab != y[who])
        success[who[done_now]] = True
    # importance by deletion, capped at half of what is left of the budget
    order: list[list[int]] = [[] for _ in range(n)]
    batch, owner, which = [], [], []
    for i in range(n):
        if success[i] or not active[i]:
            continue
        cap = max(0, left(i) // 2)
        cand = docs[i].editable
        if len(cand) > cap:
            cand = sorted(rng.choice(cand, size=cap, replace=False).tolist()) if cap else []
        for k in cand:
            u = list(docs[i].units)
            u[k] = mask_id if ids else ""
            batch.append(_render(u, ids))
            owner.append(i)
            which.append(k)
    imp: dict[int, list[tuple[float, int]]] = {i: [] for i in range(n)}
    if batch:
        ow = np.asarray(owner)
        m, _ = margins(batch, ow)
        for j, (i, k) in enumerate(zip(owner, which)):
            imp[i].append((float(cur[i] - m[j]), k))
    for i in range(n):
        scored = sorted(imp[i], key=lambda t: (-t[0], t[1]))
        seen = {k for _, k in scored}
        order[i] = [k for _, k in scored] + [k for k in docs[i].editable if k not in seen]
    ptr = np.zeros(n, np.int64)
    live = [i for i in range(n) if active[i] and not success[i]]
    steps = 0
    total_steps = max([len(o) for o in order] + [1])
    while live:
        batch, owner, meta = [], [], []
        for i in live:
            room = int(max_edits[i] - edits[i])
            q_left = left(i)
            cands: list[tuple[Any, int]] = []
            k = -1
            while not cands and ptr[i] < len(order[i]) and room > 0 and q_left > 0:
                k = order[i][int(ptr[i])]
                orig = docs[i].original[k]
                for new, c in propose(orig, rng, room):
                    cost = c if unit_cost != "chars" or ids else osa_distance(str(orig), str(new))
                    if 0 < cost <= room:
                        cands.append((new, cost))
                if not cands:
                    ptr[i] += 1
            cands = cands[:q_left]
            for new, cost in cands:
                u = list(docs[i].units)
                u[k] = new
                batch.append(_render(u, ids))
                owner.append(i)
                meta.append((k, new, cost))
        if not batch:
            break
        ow = np.asarray(owner)
        m, lab = margins(batch, ow)
        for i in set(owner):
            js = [j for j, o in enumerate(owner) if o == i]
            hit = [j for j in js if (lab[j] == tgt[i] if tgt is not None else lab[j] != y[i])]
            best = min(hit, key=lambda j: (meta[j][2], m[j])) if hit else min(js, key=lambda j: m[j])
            k, new, cost = meta[best]
            if hit or m[best] < cur[i]:
                docs[i].units[k] = new
                edits[i] += cost
                edited[i].append(k)
                cur[i], labels[i] = m[best], lab[best]
                if hit:
                    success[i] = True
            ptr[i] += 1
        live = [i for i in live if not success[i] and ptr[i] < len(order[i]) and edits[i] < max_edits[i] and left(i) > 0]
        steps += 1
        if progress:
            progress(min(steps, total_steps), total_steps)
    adv = [_render(d.units, ids) for d in docs]
    return TextAttackResult(success=success, queries=(oracle.queries - q0).astype(np.int64), adversarial=adv, edits=edits,
                            edited=[sorted(e) for e in edited], labels=labels, wall_time=time.perf_counter() - t0,
                            ort_time=oracle.ort_time - ort0)


def random_char_edits(
    oracle: "Oracle", texts: list[str], y: np.ndarray, *, n_edits: np.ndarray, rng: np.random.Generator,
    target: np.ndarray | None = None, tries: int = 1,
) -> TextAttackResult:
    """The baseline: ``n_edits[i]`` random character edits on random words (one query per try), no importance."""
    t0 = time.perf_counter()
    q0 = oracle.queries.copy()
    ort0 = oracle.ort_time
    n = len(texts)
    prop = char_edits(1)
    success = np.zeros(n, bool)
    labels = np.zeros(n, np.int64)
    adv = list(texts)
    for _ in range(tries):
        batch, who = [], []
        for i in range(n):
            if success[i]:
                continue
            toks, words = split_text(texts[i])
            if not words:
                continue
            for _e in range(int(n_edits[i])):
                k = int(words[int(rng.integers(0, len(words)))])
                c = prop(toks[k], rng, 1)
                if c:
                    toks[k] = c[0][0]
            batch.append("".join(toks))
            who.append(i)
        if not batch:
            break
        w = np.asarray(who)
        lab = oracle.labels(_stack(batch, False), w)
        hit = (lab == np.asarray(target)[w]) if target is not None else (lab != y[w])
        for j, i in enumerate(who):
            if hit[j]:
                success[i], adv[i], labels[i] = True, batch[j], lab[j]
    return TextAttackResult(success=success, queries=(oracle.queries - q0).astype(np.int64), adversarial=adv,
                            edits=np.asarray(n_edits, np.int64), edited=[[] for _ in range(n)], labels=labels,
                            wall_time=time.perf_counter() - t0, ort_time=oracle.ort_time - ort0)
