"""Text attacks against an undefended tiny text classifier, compared with random edits of the same size."""

from __future__ import annotations

import numpy as np
import pytest

from onnxguard.nlp.attacks import greedy_edit, char_edits, homoglyphs, random_char_edits, split_text, word_substitutes, zero_width
from onnxguard.nlp.check import edit_budget, prepare_text
from onnxguard.nlp.model import load_text_model
from onnxguard.oracle import Oracle
from onnxguard.safeload import read_model
from tests import task_zoo as tz

EPS = 0.05  # at most 5% of each text's characters


@pytest.fixture(scope="module", params=["tfidf", "tokens"])
def victim(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    texts, y = tz.sentiment_texts(320, seed=3)
    tok = None
    if request.param == "tfidf":
        path = tz.tfidf_pipeline(d / "m.onnx", texts[:220], y[:220])
    else:
        path = tz.token_model(d, texts[:220], y[:220])
        from onnxguard.inputs.tokenizer import load_tokenizer

        tok = load_tokenizer(d / "tokenizer.json")
    model = load_text_model(path, raw=read_model(path, max_bytes=1 << 30), max_bytes=1 << 30, tokenizer=tok, probe_texts=texts[:8])
    prep = prepare_text(model, texts[220:], y[220:], source="generated", sha256=None)
    ok = np.flatnonzero(prep.pred == prep.y)
    assert len(ok) >= 80  # the model is accurate on clean texts
    return prep, ok


def _run(prep, idx, propose, *, budget=300, seed=0, eps=EPS, unit="chars"):
    items = [prep.samples[i] for i in idx]
    max_edits = np.array([edit_budget(s, eps, unit, False) for s in items])
    oracle = Oracle(prep.model, prep.domain, n_samples=len(idx), budget=budget)
    res = greedy_edit(oracle, items, prep.y[idx], propose=propose, max_edits=max_edits, budget=budget,
                      rng=np.random.default_rng(seed), unit_cost=unit)
    return res, max_edits, oracle


def test_char_attack_fools_most_within_5_percent_and_beats_random_edits(victim):
    prep, ok = victim
    res, max_edits, oracle = _run(prep, ok, char_edits())
    lengths = np.array([len(prep.samples[i]) for i in ok])
    rate = res.success.mean()
    assert rate >= 0.8, rate
    assert (res.edits[res.success] / lengths[res.success] <= EPS + 1e-9).all()
    assert (res.edits <= max_edits).all()
    # the adversarial texts really are what the model mislabels, at the recorded edit count
    adv = [res.adversarial[j] for j in np.flatnonzero(res.success)]
    from onnxguard.nlp.attacks import osa_distance

    for j in np.flatnonzero(res.success)[:20]:
        assert osa_distance(prep.samples[ok[j]], res.adversarial[j]) <= res.edits[j]
    check = Oracle(prep.model, prep.domain, n_samples=len(adv), budget=None)
    arr = np.empty(len(adv), dtype=object)
    arr[:] = adv
    assert (check.labels(arr, np.arange(len(adv))) != prep.y[ok[res.success]]).all()
    # random character edits of the full budget, on random words, fool far fewer
    base = random_char_edits(Oracle(prep.model, prep.domain, n_samples=len(ok), budget=None), [prep.samples[i] for i in ok],
                             prep.y[ok], n_edits=max_edits, rng=np.random.default_rng(0))
    assert base.success.mean() <= rate - 0.4, (base.success.mean(), rate)


def test_queries_never_exceed_the_budget(victim):
    prep, ok = victim
    for budget in (5, 17, 40):
        res, _, oracle = _run(prep, ok[:30], char_edits(), budget=budget)
        assert res.queries.max() <= budget and (oracle.queries <= budget).all()


def test_same_seed_same_adversarial_texts(victim):
    prep, ok = victim
    a, _, _ = _run(prep, ok[:25], char_edits(), seed=7)
    b, _, _ = _run(prep, ok[:25], char_edits(), seed=7)
    c, _, _ = _run(prep, ok[:25], char_edits(), seed=8)
    assert a.adversarial == b.adversarial and (a.queries == b.queries).all()
    assert a.adversarial != c.adversarial or (a.queries != c.queries).any()


def test_targeted_char_attack(victim):
    prep, ok = victim
    idx = ok[:30]
    items = [prep.samples[i] for i in idx]
    tgt = 1 - prep.y[idx]
    oracle = Oracle(prep.model, prep.domain, n_samples=len(idx), budget=300)
    res = greedy_edit(oracle, items, prep.y[idx], propose=char_edits(), max_edits=np.array([edit_budget(s, EPS, "chars", False) for s in items]),
                      budget=300, rng=np.random.default_rng(0), target=tgt)
    assert res.success.mean() >= 0.7 and (res.labels[res.success] == tgt[res.success]).all()


def test_homoglyphs_and_zero_width_are_invisible_edits(victim):
    prep, ok = victim
    h, _, _ = _run(prep, ok[:30], homoglyphs())
    z, _, _ = _run(prep, ok[:30], zero_width())
    for res in (h, z):
        assert res.success.any()
    for j in np.flatnonzero(h.success)[:5]:
        assert any(ord(ch) > 0x7F for ch in h.adversarial[j])
    for j in np.flatnonzero(z.success)[:5]:
        orig = prep.samples[ok[j]]
        assert z.adversarial[j].replace("\u200b", "").replace("\u200c", "").replace("\u200d", "").replace("\u2060", "") == orig


def test_word_swap_uses_the_named_source(victim):
    prep, ok = victim
    from onnxguard.nlp.check import substitute_source

    name, source = substitute_source(prep.model)
    assert ("embedding" in name) == (prep.model.tokenizer is not None)
    res, _, _ = _run(prep, ok[:30], word_substitutes(source), eps=0.2, unit="words")
    for j in np.flatnonzero(res.success)[:5]:
        toks, words = split_text(res.adversarial[j])
        orig, _ = split_text(prep.samples[ok[j]])
        changed = [k for k in words if toks[k] != orig[k]]
        assert changed and all(toks[k].lower() in source(orig[k].lower()) for k in changed)
