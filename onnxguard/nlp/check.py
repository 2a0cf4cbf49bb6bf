"""Text checks: the samples every text check shares, and one policy check run as an ``EvasionCheck``.

The edit budget ("epsilon" of a text check) is a fraction of the text's
characters / words / tokens when below 1, else a count. One greedy run at the
largest epsilon answers every smaller one: a sample broken with ``e`` edits is
broken at each epsilon whose budget for that sample is at least ``e``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..attacks import ATTACKS
from ..oracle import Domain, Oracle
from ..outputs import Protected, as_output_dir
from ..policy import CheckSpec
from ..report import CurvePoint, EvasionCheck, QueryStats, Quantity, Rate, TextExample
from .attacks import char_edits, greedy_edit, homoglyphs, split_text, token_substitutes, word_substitutes, zero_width
from .model import TextModel

MAX_EXAMPLES = 20
UNIT_OF_NORM = {"chars": "characters", "words": "words", "tokens": "tokens"}


@dataclass
class TextPrepared:
    model: TextModel
    samples: list[Any]  # texts (str), or id rows (np.ndarray) in id space
    y: np.ndarray
    pred: np.ndarray
    labels_given: bool
    clean_queries: int
    clean_ort_time: float
    source: str
    sha256: str | None
    ids: bool = False

    @property
    def domain(self) -> Domain:
        return Domain(np.zeros(()), np.ones(()))  # identity: texts pass through the oracle unchanged

    def stacked(self, idx: np.ndarray) -> np.ndarray:
        if self.ids:
            return np.stack([self.samples[i] for i in idx])
        arr = np.empty(len(idx), dtype=object)
        arr[:] = [self.samples[i] for i in idx]
        return arr


def prepare_text(model: TextModel, samples: list[Any], y_given: np.ndarray | None, *, source: str, sha256: str | None) -> TextPrepared:
    prep = TextPrepared(model, samples, np.zeros(0, np.int64), np.zeros(0, np.int64), y_given is not None, 0, 0.0, source, sha256,
                        ids=model.mode == "ids")
    clean = Oracle(model, prep.domain, n_samples=len(samples), budget=None)
    pred = clean.labels(prep.stacked(np.arange(len(samples))), np.arange(len(samples)))
    prep.pred, prep.y = pred, (y_given if y_given is not None else pred)
    prep.clean_queries, prep.clean_ort_time = int(clean.queries.sum()), clean.ort_time
    return prep


def edit_budget(sample: Any, eps: float, norm: str, ids: bool, pad_id: int = 0) -> int:
    if ids:
        size = int((np.asarray(sample) != pad_id).sum())
    elif norm == "words":
        size = len(split_text(str(sample))[1])
    else:
        size = len(str(sample))
    if eps >= 1:
        return int(eps)
    return max(1, int(math.floor(eps * size + 1e-9)))


def _size(sample: Any, norm: str, ids: bool, pad_id: int = 0) -> int:
    if ids:
        return max(1, int((np.asarray(sample) != pad_id).sum()))
    return max(1, len(split_text(str(sample))[1]) if norm == "words" else len(str(sample)))


def substitute_source(model: TextModel) -> tuple[str, Callable[[str], list[str]]]:
    from .synonyms import embedding_source, shipped_source

    if model.tokenizer is not None and model.embedding is not None:
        return embedding_source(model.tokenizer, model.embedding, model.embedding_name or "embedding")
    return shipped_source()


def _marked(text: str, edited: list[int]) -> list[list[int]]:
    toks, _ = split_text(text)
    spans, pos = [], 0
    for k, t in enumerate(toks):
        if k in edited:
            spans.append([pos, pos + len(t)])
        pos += len(t)
    return spans


def _not_run(spec: CheckSpec, threat: str, reason: str, seed: int, space: str | None) -> EvasionCheck:
    return EvasionCheck(id=spec.check_id, attack=spec.attack, norm=spec.norm, epsilon=max(spec.epsilons), epsilons=spec.epsilons,
                        threat_model=threat, targeted=spec.targeted, target=spec.target, status="not_run", reason=reason,  # type: ignore[arg-type]
                        seed=seed, space=space)


def run_text_check(
    prep: TextPrepared, spec: CheckSpec, *, threat: str, seed: int,
    progress: Callable[[int, int], None] | None = None, save_dir: Path | None = None,
) -> EvasionCheck:
    from ..evasion import _pick, _stable_hash, pick_targets

    space = "tokens" if prep.ids else "text"
    attack = ATTACKS.get(spec.attack)
    if attack is None:
        return _not_run(spec, threat, f"attack '{spec.attack}' is not available", seed, space)
    if space not in attack.spaces:
        return _not_run(spec, threat, f"{spec.attack} works on {'/'.join(attack.spaces)} inputs; this model is attacked in {space} space", seed, space)
    if threat == "labels":
        why = "the model outputs labels only" if not prep.model.has_scores else "the policy's threat model is labels-only"
        return _not_run(spec, threat, f"{spec.attack} ranks edits by the model's scores and {why}; no labels-only text attack is available", seed, space)
    rng = np.random.default_rng([seed, _stable_hash(spec.check_id)])
    n_budget = spec.budget
    sel = _pick(len(prep.samples), spec.samples, rng)
    y = prep.y[sel]
    correct = prep.pred[sel] == y
    tgt_class = spec.target
    targeted = spec.targeted or tgt_class is not None
    targets_all = pick_targets(y, prep.model.n_classes, tgt_class, rng) if targeted else None
    attackable = correct & (targets_all != y if targets_all is not None else True)
    idx = sel[attackable]
    ya = y[attackable]
    ta = targets_all[attackable] if targets_all is not None else None
    items = [prep.samples[i] for i in idx]
    eps_list = spec.epsilons
    eps_max = max(eps_list)
    pad = prep.model.pad_id
    unit_cost = {"chars": "chars", "words": "words", "tokens": "tokens"}[spec.norm]
    max_edits = np.array([edit_budget(s, eps_max, spec.norm, prep.ids, pad) for s in items], dtype=np.int64)
    substitutes = None
    if spec.attack == "char-edit":
        propose = char_edits()
    elif spec.attack == "homoglyph":
        propose = homoglyphs()
    elif spec.attack == "zero-width":
        propose = zero_width()
    elif spec.attack == "word-swap":
        substitutes, source = substitute_source(prep.model)
        propose = word_substitutes(source)
    else:  # token-swap, id space
        vocab = int(prep.model.vocab_size or 2)
        nb = None
        if prep.model.embedding is not None:
            emb = prep.model.embedding.astype(np.float64)
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            cache: dict[int, list[int]] = {}

            def nb(t: int) -> list[int]:
                if t not in cache:
                    cache[t] = [int(j) for j in np.argsort(-(emb @ emb[t]))[1:9] if j != pad] if 0 <= t < len(emb) else []
                return cache[t]
            substitutes = f"nearest neighbours in the model's embedding table ({prep.model.embedding_name}, {emb.shape[0]}x{emb.shape[1]}), then random ids"
        else:
            substitutes = f"random token ids below {vocab} (no embedding table found): an attack in id space, not on text"
        propose = token_substitutes(vocab, {pad}, neighbours=nb)
    oracle = Oracle(prep.model, prep.domain, n_samples=len(idx), budget=n_budget, rows=idx)
    res = greedy_edit(oracle, items, ya, propose=propose, max_edits=max_edits, budget=n_budget, rng=rng, target=ta,
                      ids=prep.ids, unit_cost=unit_cost, mask_id=pad, progress=progress)
    if (oracle.queries > n_budget).any():
        raise AssertionError("internal: a text attack exceeded its query budget")
    n = len(idx)
    succ = res.success & (res.edits <= max_edits)
    sizes = np.array([_size(s, spec.norm, prep.ids, pad) for s in items], dtype=np.float64)
    frac = np.where(succ, res.edits / np.maximum(sizes, 1), np.inf)
    curve = []
    for eps in eps_list:
        b = np.array([edit_budget(s, eps, spec.norm, prep.ids, pad) for s in items], dtype=np.int64)
        s_ = int((succ & (res.edits <= b)).sum())
        curve.append(CurvePoint(epsilon=eps, success_rate=Rate.of(s_, n), robust_accuracy=Rate.of(n - s_, int(len(sel)))))
    unit = UNIT_OF_NORM[spec.norm]
    budget_txt = f"{eps_max:g} of the {unit}" if eps_max < 1 else f"{int(eps_max)} {unit}"
    k = int(succ.sum())
    if n == 0:
        finding = "no correctly classified sample to attack"
    elif k == 0:
        finding = f"no adversarial text found for any of {n} samples within {n_budget} queries per sample and an edit budget of {budget_txt}; this is not a proof of robustness"
    else:
        med = float(np.median(res.edits[succ]))
        finding = (f"adversarial texts found for {k} of {n} correctly classified samples with at most {budget_txt} edited "
                   f"(median {med:g} {unit}); not found within {n_budget} queries per sample for the other {n - k}")
    if prep.ids:
        finding = "token substitution in id space (no tokenizer: the edits are token ids, not text). " + finding
    if targeted and n:
        finding += f" (targeted{' at class ' + str(tgt_class) if tgt_class is not None else ', a random other class per sample'})"
    examples: list[TextExample] = []
    saved = None
    if save_dir is not None and n:
        lines: list[str] = []
        for j, i in enumerate(idx):
            orig = items[j] if not prep.ids else np.asarray(items[j]).tolist()
            adv = res.adversarial[j] if not prep.ids else np.asarray(res.adversarial[j]).tolist()
            rec = {"index": int(i), "original": orig, "adversarial": adv, "label": int(ya[j]), "adversarial_label": int(res.labels[j]),
                   "success": bool(succ[j]), "edits": int(res.edits[j]), "edited_units": res.edited[j]}
            if ta is not None:
                rec["target"] = int(ta[j])
            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        out = as_output_dir(save_dir, "--save-adversarials", Protected.of([prep.model.path, prep.source]))
        assert out is not None
        saved = str(out.write(f"{spec.check_id}.jsonl", "".join(lines)))
        if not prep.ids:
            order = [j for j in range(n) if succ[j]] + [j for j in range(n) if not succ[j]]
            for j in order[:MAX_EXAMPLES]:
                examples.append(TextExample(index=int(idx[j]), original=str(items[j]), adversarial=str(res.adversarial[j]),
                                            label=int(ya[j]), adversarial_label=int(res.labels[j]), success=bool(succ[j]),
                                            edits=int(res.edits[j]), marked=_marked(str(res.adversarial[j]), res.edited[j])))
    return EvasionCheck(
        id=spec.check_id, attack=spec.attack, norm=spec.norm, epsilon=eps_max, epsilons=eps_list, threat_model=threat,  # type: ignore[arg-type]
        targeted=targeted, target=tgt_class, status="completed", n_samples=int(len(sel)), n_attacked=n,
        clean_accuracy=Rate.of(int(correct.sum()), int(len(sel))), success_rate=Rate.of(k, n), finding=finding,
        queries=QueryStats.of(res.queries, n_budget),
        perturbation=Quantity.of(frac[succ]) if succ.any() else None,
        robustness_curve=curve if len(eps_list) > 1 else [], seed=seed, wall_time_s=res.wall_time, ort_time_s=res.ort_time,
        adversarials=saved, space=space, edit_unit=unit, edits=Quantity.of(res.edits[succ].astype(np.float64)) if succ.any() else None,
        substitutes=substitutes, examples=examples,
    )
