"""The maximum-margin family alone (``onnxguard.backdoor.margin``) at several query budgets and seeds.

    nice -n 10 python benchmarks/backdoor_margin_budget.py [--budgets 30000 90000 150000] [--seeds 0 1 2]
        [--models zoo:c32_cnn_wanet null:null_c32_mlp ...] [--few]

For each image model with 4 or more classes (by default: the zoo's backdoored ones and the null's clean ones,
both built by ``backdoor_zoo.py`` and ``backdoor_null.py`` under ``benchmarks/out``), the search's own sample
draw (the standard policy's ``samples_per_class`` correctly classified samples per class, 20) and
``margin_sweep`` within each budget; prints the family's ``-log10 p`` (``anomaly.margin_indices``) of the
planted target (backdoored) or the largest over the classes (clean), then per budget the largest clean value
and each target's values. The family flags at ``-log10 p > 3`` (p < 0.001).

It asks whether the family's budget share is worth raising: more steps per class help a backdoor's margin
stand out only if the clean models' largest values do not grow with them.

``--few`` asks instead whether the family could serve image models with 2 or 3 classes, where the search does not
run it (a Gamma fit needs 3 other classes). It takes the image models with 2 or 3 classes (the few-class image
null's clean models, and the zoo's, backdoored and clean), prints each class's largest margin and its natural
margin (the largest margin among the model's correctly classified data samples of that class), and scores two
statistics that need no fit: ``log2`` of a class's margin over the other classes' median, and over its natural
margin. At the end: the clean models' largest value of each, against each planted target's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxguard.attacks.base import margin, to_chw  # noqa: E402
from onnxguard.backdoor.anomaly import margin_indices  # noqa: E402
from onnxguard.backdoor.margin import margin_sweep  # noqa: E402
from onnxguard.backdoor.probe import Probe  # noqa: E402
from onnxguard.backdoor.search import _split  # noqa: E402
from onnxguard.evasion import prepare  # noqa: E402
from onnxguard.options import ScanOptions  # noqa: E402
from onnxguard.oracle import Oracle  # noqa: E402
from onnxguard.policy import load_policy  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
POLICY = load_policy("standard")
NULL = ROOT / "onnxguard" / "backdoor" / "null.json"


def default_models(few: bool = False) -> list[str]:
    """The zoo's backdoored and the null's clean models; ``few``: the zoo's clean ones too, and of the null only the
    models of the shipped few-class image null (the others failed to train)."""
    out = []
    shipped = {m["name"] for m in json.loads(NULL.read_text())["provenance"]["models"] if m.get("regime") == "few-image"}
    for kind in ("zoo", "null"):
        for meta_file in sorted((OUT / f"backdoor_{kind}").glob("*.json")):
            if meta_file.name in ("manifest.json", "no-null.json"):
                continue
            meta = json.loads(meta_file.read_text())
            if not isinstance(meta, dict) or "data" not in meta or (kind == "zoo" and not few and not meta.get("backdoored")):
                continue
            if kind == "null" and (meta.get("backdoored") or (few and meta_file.stem not in shipped)):
                continue
            out.append(f"{kind}:{meta_file.stem}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", type=int, nargs="+", default=[30_000, 90_000, 150_000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--models", nargs="*", help="kind:name (kind zoo or null); default: the zoo's backdoored and the null's clean models")
    ap.add_argument("--few", action="store_true", help="image models with 2 or 3 classes, scored without a fit (see the module doc)")
    args = ap.parse_args(argv)
    if args.few:
        return few_classes(args.models or default_models(few=True), args.budgets, args.seeds)
    clean: dict[int, list[float]] = {b: [] for b in args.budgets}
    targets: dict[str, dict[int, list[float]]] = {}
    for name, meta, prep, k in _image_models(args.models or default_models(), lambda k: k >= 4):
        tgts = _targets(meta)
        cells = []
        for b in args.budgets:
            for seed in args.seeds:
                t0 = time.perf_counter()
                res, _ = _sweep(prep, k, b, seed, natural=False)
                idx = margin_indices(res.margin)
                if tgts:
                    vals = [float(idx[t]) for t in tgts]
                    targets.setdefault(name, {}).setdefault(b, []).extend(vals)
                    cells.append(f"{b // 1000}k s{seed}: target {', '.join(f'{v:.2f}' for v in vals)}")
                else:
                    clean[b].append(float(np.nanmax(idx)))
                    cells.append(f"{b // 1000}k s{seed}: max {np.nanmax(idx):.2f} (class {int(np.nanargmax(idx))})")
                cells[-1] += f" {res.queries} q {time.perf_counter() - t0:.1f}s"
        print(f"{name:28s} {meta.get('trigger') or 'clean':12s} " + " | ".join(cells), flush=True)
    print()
    for b in args.budgets:
        line = f"{b:>8,d} queries: clean models' largest -log10 p {max(clean[b]):.2f} (n = {len(clean[b])})" if clean[b] else f"{b:>8,d} queries:"
        hits = {n: v[b] for n, v in targets.items() if b in v}
        if hits:
            line += "; targets " + ", ".join(f"{n} {'/'.join(f'{x:.2f}' for x in v)}" for n, v in hits.items())
        print(line)
    return 0


def _image_models(models: list[str], classes_ok: Callable[[int], bool]) -> Iterator[tuple[str, dict, object, int]]:
    """(name, meta, prepared scan, classes) of each ``kind:name`` that is built, an image model, and whose class
    count ``classes_ok`` accepts."""
    for item in models:
        kind, name = item.split(":")
        root = OUT / f"backdoor_{kind}"
        if not (root / f"{name}.onnx").exists():
            print(f"{name}: not built (run benchmarks/backdoor_{kind}.py first)")
            continue
        meta = json.loads((root / f"{name}.json").read_text())
        prep = prepare(ScanOptions(model_path=root / f"{name}.onnx", data_path=root / f"{meta['data']}.npz", policy=POLICY, threads=1),
                       POLICY, np.random.default_rng(0), 0)
        k = prep.model.n_classes or 0
        if len(prep.model.sample_shape) > 1 and classes_ok(k):
            yield name, meta, prep, k


def _targets(meta: dict) -> list[int]:
    tgt = meta.get("target") if meta.get("backdoored") else None
    return (tgt if isinstance(tgt, list) else [tgt]) if tgt is not None else []


def _sweep(prep, k: int, budget: int, seed: int, natural: bool = True) -> tuple[object, np.ndarray]:
    """``margin_sweep`` on the search's own sample draw; and (``natural``) each class's natural margin (nan: no
    sample), its queries outside ``budget``."""
    oracle = Oracle(prep.model, prep.domain, n_samples=1, budget=budget + len(prep.y), labels_only=False)
    rng = np.random.default_rng([seed, 5])
    x = to_chw(np.asarray(prep.z, dtype=np.float64), oracle.sample_shape)
    y = np.asarray(prep.y)
    ok = np.asarray(prep.pred) == y
    s_idx, _ = _split(y, ok, k, POLICY.policy.backdoor.samples_per_class, rng)  # the search's own draw
    probe = Probe(oracle, time.perf_counter() + 3600)
    res = margin_sweep(probe, x[s_idx], y[s_idx], k, max_queries=budget, rng=rng, classes=sorted(set(y[s_idx].tolist())))
    nat = np.full(k, np.nan)
    if natural and ok.any():
        scores, _ = probe.run(x[ok])
        m = margin(scores, y[ok])
        for c in range(k):
            if np.any(y[ok] == c):
                nat[c] = float(np.max(m[y[ok] == c]))
    return res, nat


def few_classes(models: list[str], budgets: list[int], seeds: list[int]) -> int:
    """See ``--few`` in the module doc."""
    clean: dict[int, list[tuple[float, float]]] = {b: [] for b in budgets}
    targets: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for name, meta, prep, k in _image_models(models, lambda k: 2 <= k <= 3):
        tgts = _targets(meta)
        cells = []
        for b in budgets:
            for seed in seeds:
                res, natural = _sweep(prep, k, b, seed)
                mg = np.maximum(res.margin, 1e-6)
                over_others = np.array([np.log2(mg[c] / np.median(np.delete(mg, c))) for c in range(k)])
                over_natural = np.log2(mg / np.maximum(natural, 1e-6))
                if tgts:
                    for t in tgts:
                        targets.setdefault(name, {}).setdefault(b, []).append((float(over_others[t]), float(over_natural[t])))
                else:
                    clean[b].append((float(np.nanmax(over_others)), float(np.nanmax(over_natural))))
                cells.append(f"{b // 1000}k s{seed}: margins {' '.join(f'{v:.1f}' for v in res.margin)}, natural "
                             f"{' '.join(f'{v:.1f}' for v in natural)}")
        print(f"{name:28s} {meta.get('trigger') or 'clean':12s} k={k} target {tgts or '-'}: " + " | ".join(cells), flush=True)
    print()
    for b in budgets:
        if clean[b]:
            oo, on = (max(v[i] for v in clean[b]) for i in (0, 1))
            line = f"{b:>8,d} queries: clean models' largest log2(margin / others' median) {oo:.2f}, log2(margin / natural) {on:.2f} (n = {len(clean[b])})"
        else:
            line = f"{b:>8,d} queries:"
        hits = {n: v[b] for n, v in targets.items() if b in v}
        if hits:
            line += "; targets " + ", ".join(f"{n} {'/'.join(f'{a:.2f}, {c:.2f}' for a, c in v)}" for n, v in hits.items())
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
