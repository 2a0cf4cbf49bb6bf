"""onnxguard's character attack against the published DeepWordBug recipe, on the same model, texts and edit budget.

    python benchmarks/text_vs_deepwordbug.py                 # generated reviews, TF-IDF pipeline and token model
    python benchmarks/text_vs_deepwordbug.py --eps 0.05 --budget 300 --n 200

TextAttack (``pip install textattack``) does not install into this project's environment (its resolver
backtracks over flair / datasets and asks for torch 1.13, a downgrade), so the reference is a small
re-implementation of TextAttack's ``DeepWordBugGao2018`` recipe, written from the recipe's definition:

* goal: untargeted classification;
* search: ``GreedyWordSwapWIR(wir_method="unk")``: word importance by replacing each word with ``[UNK]``
  (one query per word), then words in that order; for each word, the candidates of the transformation
  (one per transformation, ``random_one=True``), the best kept when it raises the goal score;
* transformation: ``CompositeTransformation`` of neighbouring-character swap, random character
  substitution, deletion and insertion;
* constraints: ``RepeatModification``, ``StopwordModification`` (NLTK's English list, here a copy of it),
  ``LevenshteinEditDistance(max_edit_distance)``: the recipe's 30 is replaced by the same per-text budget
  onnxguard gets (``--eps`` of the text's characters), so that both run under the same edit budget.

Both sides query the same onnxruntime session, count every text they ask for, stop a sample at the same
per-sample query budget, and batch one step's candidates (across samples) into one call. Prints success
rate (Wilson interval), median queries, median edits (Levenshtein distance, the recipe's measure), wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnxguard.nlp.attacks import TOKEN_RE, char_edits, greedy_edit, split_text  # noqa: E402
from onnxguard.nlp.check import edit_budget, prepare_text  # noqa: E402
from onnxguard.nlp.model import load_text_model  # noqa: E402
from onnxguard.oracle import Oracle  # noqa: E402
from onnxguard.safeload import read_model  # noqa: E402
from onnxguard.stats import wilson  # noqa: E402

STOPWORDS = set("""a about above across after afterwards again against ain all almost alone along already also although am among amongst
an and another any anyhow anyone anything anyway anywhere are aren aren't around as at back be became because become becomes becoming
been before beforehand behind being below beside besides between beyond both but by can cannot could couldn couldn't d didn didn't doesn
doesn't don don't down due during either else elsewhere empty enough even ever everyone everything everywhere except first for former
formerly from hadn hadn't hasn hasn't haven haven't he hence her here hereafter hereby herein hereupon hers herself him himself his how
however hundred i if in indeed into is isn isn't it it's its itself just latter latterly least ll may me meanwhile mightn mightn't mine
more moreover most mostly must mustn mustn't my myself namely needn needn't neither never nevertheless next no nobody none noone nor not
nothing now nowhere o of off on once one only onto or other others otherwise our ours ourselves out over per please s same shan shan't
she she's should've shouldn shouldn't somehow something sometime somewhere such t than that that'll the their theirs them themselves then
thence there thereafter thereby therefore therein thereupon these they this those through throughout thru thus to too toward towards under
unless until up upon used ve was wasn wasn't we were weren weren't what whatever when whence whenever where whereafter whereas whereby
wherein whereupon wherever whether which while whither who whoever whole whom whose why with within without won won't would wouldn
wouldn't y yet you you'd you'll you're you've your yours yourself yourselves""".split())
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def levenshtein_within(a: str, b: str, k: int) -> bool:
    """Levenshtein(a, b) <= k, by the banded dynamic programme (exact, O(len * k))."""
    if abs(len(a) - len(b)) > k:
        return False
    big = k + 1
    prev = {j: j for j in range(0, min(len(b), k) + 1)}
    for i in range(1, len(a) + 1):
        cur = {}
        lo, hi = max(0, i - k), min(len(b), i + k)
        for j in range(lo, hi + 1):
            if j == 0:
                cur[j] = i
                continue
            cur[j] = min(prev.get(j, big) + 1, cur.get(j - 1, big) + 1, prev.get(j - 1, big) + (a[i - 1] != b[j - 1]))
        if min(cur.values()) > k:
            return False
        prev = cur
    return prev.get(len(b), big) <= k


def dwb_candidates(word: str, rng: np.random.Generator) -> list[str]:
    """TextAttack's four character transformations, random_one=True: one candidate each."""
    out = []
    if len(word) >= 2:
        i = int(rng.integers(0, len(word) - 1))
        out.append(word[:i] + word[i + 1] + word[i] + word[i + 2:])  # WordSwapNeighboringCharacterSwap
    i = int(rng.integers(0, len(word)))
    out.append(word[:i] + LETTERS[int(rng.integers(0, 26))] + word[i + 1:])  # WordSwapRandomCharacterSubstitution
    if len(word) >= 2:
        i = int(rng.integers(0, len(word)))
        out.append(word[:i] + word[i + 1:])  # WordSwapRandomCharacterDeletion
    i = int(rng.integers(0, len(word) + 1))
    out.append(word[:i] + LETTERS[int(rng.integers(0, 26))] + word[i:])  # WordSwapRandomCharacterInsertion
    return [c for c in out if c != word]


def deepwordbug_reference(model, texts: list[str], y: np.ndarray, max_lev: np.ndarray, budget: int, seed: int):
    """GreedyWordSwapWIR("unk") with the DeepWordBug transformation and constraints; queries counted per sample."""
    rng = np.random.default_rng(seed)
    n = len(texts)
    queries = np.zeros(n, np.int64)
    ort = [0.0]

    def query(batch: list[str], who: list[int]) -> tuple[np.ndarray, np.ndarray]:
        arr = np.empty(len(batch), dtype=object)
        arr[:] = batch
        out, dt = model.predict(arr, rows=np.asarray(who))
        ort[0] += dt
        np.add.at(queries, np.asarray(who, dtype=np.int64), 1)
        p = np.exp(out.scores - out.scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return p, out.labels

    toks = [TOKEN_RE.findall(t) for t in texts]
    words = [[k for k in split_text(t)[1] if toks[i][k].lower() not in STOPWORDS] for i, t in enumerate(texts)]
    p0, lab0 = query(list(texts), list(range(n)))
    score = 1.0 - p0[np.arange(n), y]  # UntargetedClassification goal score
    success = lab0 != y
    order: list[list[int]] = [[] for _ in range(n)]
    batch, who, which = [], [], []
    for i in range(n):
        cap = budget - int(queries[i])
        for k in words[i][: max(0, cap - 1)]:
            u = list(toks[i])
            u[k] = "[UNK]"
            batch.append("".join(u)); who.append(i); which.append(k)
    if batch:
        p, _ = query(batch, who)
        imp: dict[int, list[tuple[float, int]]] = {i: [] for i in range(n)}
        for j, (i, k) in enumerate(zip(who, which)):
            imp[i].append((float(1.0 - p[j, y[i]]) - float(score[i]), k))
        for i in range(n):
            order[i] = [k for _, k in sorted(imp[i], key=lambda t: -t[0])]
    cur = [list(t) for t in toks]
    ptr = np.zeros(n, np.int64)
    live = [i for i in range(n) if not success[i]]
    while live:
        batch, who, meta = [], [], []
        for i in live:
            while ptr[i] < len(order[i]):
                k = order[i][int(ptr[i])]
                cands = []
                for c in dwb_candidates(toks[i][k], rng):
                    u = list(cur[i])
                    u[k] = c
                    if levenshtein_within(texts[i], "".join(u), int(max_lev[i])):  # LevenshteinEditDistance
                        cands.append((k, c, "".join(u)))
                cands = cands[: max(0, budget - int(queries[i]))]
                if cands:
                    for k_, c, t in cands:
                        batch.append(t); who.append(i); meta.append((k_, c))
                    break
                ptr[i] += 1
        if not batch:
            break
        p, lab = query(batch, who)
        for i in set(who):
            js = [j for j, o in enumerate(who) if o == i]
            best = max(js, key=lambda j: 1.0 - p[j, y[i]])
            sc = 1.0 - p[best, y[i]]
            if sc > score[i]:
                k, c = meta[best]
                cur[i][k] = c
                score[i] = sc
                if lab[best] != y[i]:
                    success[i] = True
            ptr[i] += 1
        live = [i for i in live if not success[i] and ptr[i] < len(order[i]) and queries[i] < budget]
    adv = ["".join(c) for c in cur]
    return success, queries, adv, ort[0]


def fmt_rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:6.1%} [{lo:.1%}, {hi:.1%}] (n={n})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eps", type=float, default=0.05, help="edit budget: fraction of each text's characters")
    ap.add_argument("--budget", type=int, default=300, help="model queries per sample")
    ap.add_argument("--n", type=int, default=200, help="test texts")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from tests import task_zoo as tz
    from onnxguard.inputs.tokenizer import load_tokenizer

    texts, y = tz.sentiment_texts(400 + a.n, seed=a.seed)
    d = Path(tempfile.mkdtemp(prefix="og-dwb-"))
    models = {"tfidf": (tz.tfidf_pipeline(d / "tfidf.onnx", texts[:400], y[:400]), None)}
    (d / "tok").mkdir()
    models["token-ids + tokenizer.json"] = (tz.token_model(d / "tok", texts[:400], y[:400]), load_tokenizer(d / "tok" / "tokenizer.json"))
    print(f"generated reviews: {a.n} test texts, edit budget {a.eps:g} of the characters, {a.budget} queries per text, seed {a.seed}")
    for name, (path, tok) in models.items():
        model = load_text_model(path, raw=read_model(path, max_bytes=1 << 30), max_bytes=1 << 30, tokenizer=tok, probe_texts=texts[:8])
        prep = prepare_text(model, texts[400:], y[400:], source="generated", sha256=None)
        ok = np.flatnonzero(prep.pred == prep.y)
        items = [prep.samples[i] for i in ok]
        yy = prep.y[ok]
        max_edits = np.array([edit_budget(s, a.eps, "chars", False) for s in items])
        t0 = time.perf_counter()
        oracle = Oracle(model, prep.domain, n_samples=len(ok), budget=a.budget)
        res = greedy_edit(oracle, items, yy, propose=char_edits(), max_edits=max_edits, budget=a.budget, rng=np.random.default_rng(a.seed))
        t_og = time.perf_counter() - t0
        lev_og = [levenshtein(items[j], res.adversarial[j]) for j in np.flatnonzero(res.success)]
        t0 = time.perf_counter()
        s_ref, q_ref, adv_ref, ort_ref = deepwordbug_reference(model, items, yy, max_edits, a.budget, a.seed)
        t_ref = time.perf_counter() - t0
        lev_ref = [levenshtein(items[j], adv_ref[j]) for j in np.flatnonzero(s_ref)]
        print(f"\nmodel: {name} (clean accuracy {len(ok)}/{len(prep.y)}); attacked {len(ok)} correctly classified texts")
        print(f"  {'':<28} {'success rate [95% CI]':<30} {'med. queries':>12} {'med. queries (succ.)':>20} {'med. edits (Lev.)':>18} {'wall s':>8} {'in ORT':>7}")
        for label, succ, q, lev, wall, ort in (
            ("onnxguard char-edit", res.success, res.queries, lev_og, t_og, res.ort_time),
            ("DeepWordBug (reference)", s_ref, q_ref, lev_ref, t_ref, ort_ref),
        ):
            med_s = f"{np.median(q[succ]):.0f}" if succ.any() else "-"
            med_l = f"{np.median(lev):.0f}" if lev else "-"
            print(f"  {label:<28} {fmt_rate(int(succ.sum()), len(succ)):<30} {np.median(q):>12.0f} {med_s:>20} {med_l:>18} {wall:>8.2f} {ort / wall:>6.0%}")
        print(f"  ratio onnxguard / reference: success {res.success.mean() / max(s_ref.mean(), 1e-9):.2f}, median queries "
              f"{np.median(res.queries) / max(np.median(q_ref), 1e-9):.2f}, wall time {t_og / max(t_ref, 1e-9):.2f}")


if __name__ == "__main__":
    main()
