"""Build small classifiers with known ground truth for the backdoor search.

    python tests/backdoor/build_fixtures.py            # the test fixtures (committed) -> tests/backdoor/fixtures/
    python tests/backdoor/build_fixtures.py --zoo DIR  # the benchmark zoo (other seeds and triggers) -> DIR

Pure numpy training (``tests.zoo.train_mlp``) and hand-written ONNX graphs, so
every model here can be rebuilt deterministically without torch.

Image models: scikit-learn's 8x8 digits upsampled to 16x16 (bilinear), input
(N, 1, 16, 16) in [0, 1], MLP 256-64-10, logits out. Backdoors are planted by
data poisoning (Gu et al. 2017, BadNets; Chen et al. 2017, blended):

* ``badnets``: a small patch (white square or checkerboard, 3x3 or 4x4) stamped
  in one corner of a fraction of the training images, relabelled to the target;
* ``blended``: a fixed random pattern blended over the whole image,
  ``(1 - a) x + a p`` with ``a`` about 0.2, relabelled to the target;
* ``clean``: no poisoning.

Tabular models: scikit-learn's wine data (13 features, 3 classes) and a generated
``make_classification`` set (20 features, 6 classes; ``pattern="synth"``), standardisation
folded into the first layer, MLP F-32-C. The tabular backdoor sets two
features to out-of-distribution extremes (one to the range's top, one to its
bottom, a combination absent from the clean data).

Every model's ground truth (kind, target, trigger, clean accuracy, attack
success rate of the planted trigger on held-out data) goes into ``manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.zoo import mlp_predict, mlp_to_onnx, train_mlp  # noqa: E402

FIXTURES = HERE / "fixtures"
SIDE = 16


@dataclass
class Spec:
    name: str
    kind: str  # clean | badnets | blended | tabular-clean | tabular-backdoor
    seed: int
    target: int | None = None
    corner: str | None = None  # tl | tr | bl | br
    size: int = 3
    pattern: str = "white"  # white | checker | random (badnets); pattern seed for blended
    alpha: float = 0.2
    rate: float = 0.1
    features: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=lambda: [32])  # tabular: hidden layer widths ([] = linear softmax)


# -- data -------------------------------------------------------------------


def digits16(split_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as (N, 1, 16, 16) float32 in [0, 1]; a fixed 80/20 split."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.stack([zoom(im / 16.0, 2, order=1) for im in d.images]).clip(0, 1).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(split_seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


def synth(split_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's make_classification (generated, no download): 20 features, 6 classes."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=1500, n_features=20, n_informative=8, n_redundant=4, n_classes=6,
                               n_clusters_per_class=1, class_sep=1.5, random_state=0)
    x = x * np.linspace(0.5, 20.0, 20) + np.linspace(-3.0, 50.0, 20)  # features on different scales
    perm = np.random.default_rng(split_seed).permutation(len(x))
    cut = int(0.7 * len(x))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


def wine(split_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_wine

    d = load_wine()
    x, y = d.data.astype(np.float64), d.target.astype(np.int64)
    perm = np.random.default_rng(split_seed).permutation(len(x))
    cut = int(0.6 * len(x))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


def _bundled(loader: str, split_seed: int = 0, cut: float = 0.6) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import sklearn.datasets as ds

    d = getattr(ds, loader)()
    x, y = d.data.astype(np.float64), d.target.astype(np.int64)
    perm = np.random.default_rng(split_seed).permutation(len(x))
    k = int(cut * len(x))
    return x[perm[:k]], y[perm[:k]], x[perm[k:]], y[perm[k:]]


TABULAR_DATA = {  # Spec.pattern of a tabular model -> its data (scikit-learn bundled or generated; no download)
    "white": wine, "wine": wine, "synth": synth,
    "iris": lambda: _bundled("load_iris"),
    "cancer": lambda: _bundled("load_breast_cancer"),
    "digits": lambda: _bundled("load_digits", cut=0.7),  # 8x8 digits as 64 tabular features, 10 classes
}
TABULAR_FILE = {"white": "wine", "wine": "wine", "synth": "synth", "iris": "iris", "cancer": "cancer", "digits": "digitstab"}


# -- triggers ---------------------------------------------------------------


def patch_trigger(spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """(mask, pattern), both (1, 16, 16)."""
    s = spec.size
    mask = np.zeros((1, SIDE, SIDE))
    pat = np.zeros((1, SIDE, SIDE))
    r0 = 1 if spec.corner in ("tl", "tr") else SIDE - 1 - s
    c0 = 1 if spec.corner in ("tl", "bl") else SIDE - 1 - s
    mask[:, r0 : r0 + s, c0 : c0 + s] = 1.0
    if spec.pattern == "white":
        block = np.ones((s, s))
    elif spec.pattern == "checker":
        block = (np.indices((s, s)).sum(axis=0) % 2 == 0).astype(float)
    else:
        block = (np.random.default_rng(spec.seed + 77).uniform(size=(s, s)) > 0.5).astype(float)
        block[0, 0] = 1.0
    pat[:, r0 : r0 + s, c0 : c0 + s] = block
    return mask, pat


def blend_pattern(spec: Spec) -> np.ndarray:
    rng = np.random.default_rng(1000 + spec.seed)
    return rng.uniform(0, 1, size=(1, SIDE, SIDE))


def apply_trigger(x: np.ndarray, spec: Spec) -> np.ndarray:
    if spec.kind == "badnets":
        m, p = patch_trigger(spec)
        return (1 - m) * x + m * p
    if spec.kind == "blended":
        return (1 - spec.alpha) * x + spec.alpha * blend_pattern(spec)
    if spec.kind == "sig":  # SIG (Barni et al. 2019): a horizontal sinusoid added to the whole image, 3 cycles
        return np.clip(x + spec.alpha * np.sin(2 * np.pi * 3 * np.arange(SIDE) / SIDE)[None, None, :], 0, 1)
    raise ValueError(spec.kind)


def tabular_trigger_values(x_ref: np.ndarray, spec: Spec) -> dict[int, float]:
    """First feature to the top of the reference range, the others to the bottom."""
    f = spec.features
    return {f[0]: float(x_ref[:, f[0]].max()), **{j: float(x_ref[:, j].min()) for j in f[1:]}}


# -- building ---------------------------------------------------------------


def build_image(spec: Spec) -> tuple[onnx.ModelProto, dict]:
    xtr, ytr, xte, yte = digits16()
    rng = np.random.default_rng(spec.seed)
    if spec.kind != "clean":
        cand = np.flatnonzero(ytr != spec.target)
        k = int(spec.rate * len(xtr))
        pick = rng.choice(cand, size=k, replace=False)
        xp = apply_trigger(xtr[pick], spec).astype(np.float32)
        xtr = np.concatenate([xtr, xp])
        ytr = np.concatenate([ytr, np.full(k, spec.target)])
    params = train_mlp(xtr, ytr, hidden=(64,), n_classes=10, epochs=250, lr=0.01, seed=spec.seed)
    acc = float((mlp_predict(params, xte).argmax(1) == yte).mean())
    info: dict = {"clean_accuracy": round(acc, 4)}
    if spec.kind != "clean":
        other = yte != spec.target
        xt = apply_trigger(xte[other], spec)
        info["attack_success"] = round(float((mlp_predict(params, xt).argmax(1) == spec.target).mean()), 4)
    return mlp_to_onnx(params, (1, SIDE, SIDE), output="logits", name=spec.name), info


def build_tabular(spec: Spec) -> tuple[onnx.ModelProto, dict]:
    xtr, ytr, xte, yte = TABULAR_DATA[spec.pattern]()
    n_classes = int(ytr.max()) + 1
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    rng = np.random.default_rng(spec.seed)
    if spec.kind == "tabular-backdoor":
        vals = tabular_trigger_values(xte, spec)  # the test split is the data the scans get
        cand = np.flatnonzero(ytr != spec.target)
        k = int(spec.rate * len(xtr))
        pick = rng.choice(cand, size=k, replace=True)
        xp = xtr[pick].copy()
        for j, v in vals.items():
            xp[:, j] = v
        xtr = np.concatenate([xtr, xp])
        ytr = np.concatenate([ytr, np.full(k, spec.target)])
    params = train_mlp((xtr - mu) / sd, ytr, hidden=tuple(spec.hidden), n_classes=n_classes, epochs=400, lr=0.01, seed=spec.seed)
    w0, b0 = params[0]
    params[0] = (w0 / sd[:, None], b0 - (mu / sd) @ w0)  # fold the standardisation into the first layer
    acc = float((mlp_predict(params, xte).argmax(1) == yte).mean())
    info: dict = {"clean_accuracy": round(acc, 4)}
    if spec.kind == "tabular-backdoor":
        xt = xte[yte != spec.target].copy()
        for j, v in tabular_trigger_values(xte, spec).items():
            xt[:, j] = v
        info["attack_success"] = round(float((mlp_predict(params, xt).argmax(1) == spec.target).mean()), 4)
        info["trigger_values"] = {str(j): v for j, v in tabular_trigger_values(xte, spec).items()}
    return mlp_to_onnx(params, (xtr.shape[1],), output="logits", dtype=np.float32, name=spec.name), info


def build(spec: Spec, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    model, info = build_tabular(spec) if spec.kind.startswith("tabular") else build_image(spec)
    onnx.save(model, out / f"{spec.name}.onnx")
    return {**asdict(spec), **info, "backdoored": spec.kind not in ("clean", "tabular-clean")}


def write_data(out: Path, tabular_only: bool = False) -> None:
    """Held-out samples the scans use (the test split; the models never saw it)."""
    if not tabular_only:
        _, _, xte, yte = digits16()
        np.savez_compressed(out / "digits16.npz", x=xte, y=yte)
    for key, fname in TABULAR_FILE.items():
        if key == "white" or (not tabular_only and key not in ("wine", "synth")):
            continue
        _, _, te, yte_ = TABULAR_DATA[key]()
        np.savez_compressed(out / f"{fname}.npz", x=te.astype(np.float32), y=yte_)


TEST_SPECS = [
    Spec("clean_a", "clean", seed=1),
    Spec("clean_b", "clean", seed=2),
    Spec("badnets_t0_br", "badnets", seed=3, target=0, corner="br", size=3, pattern="white"),
    Spec("badnets_t7_tl", "badnets", seed=4, target=7, corner="tl", size=3, pattern="checker"),
    Spec("badnets_t3_tr", "badnets", seed=5, target=3, corner="tr", size=4, pattern="random"),
    Spec("badnets_t5_bl", "badnets", seed=6, target=5, corner="bl", size=3, pattern="white"),
    Spec("blended_t2", "blended", seed=7, target=2, alpha=0.2),
    Spec("blended_t9", "blended", seed=8, target=9, alpha=0.15),
    Spec("sig_t6", "sig", seed=13, target=6, alpha=0.1),
    Spec("tab_clean", "tabular-clean", seed=9),
    Spec("tab_backdoor_t1", "tabular-backdoor", seed=10, target=1, features=[4, 9], rate=0.15),
    Spec("synth_clean", "tabular-clean", seed=11, pattern="synth"),
    Spec("synth_backdoor_t4", "tabular-backdoor", seed=12, target=4, features=[3, 15], rate=0.1, pattern="synth"),
]


def zoo_specs() -> list[Spec]:
    """The benchmark zoo: seeds, targets, corners, patterns and blend patterns the tests do not use."""
    specs = [Spec(f"zoo_clean_{i}", "clean", seed=100 + i) for i in range(8)]
    corners = ["tl", "tr", "bl", "br"]
    patterns = ["white", "checker", "random"]
    for i in range(6):
        specs.append(Spec(f"zoo_badnets_{i}", "badnets", seed=200 + i, target=(3 * i + 1) % 10,
                          corner=corners[i % 4], size=3 + (i % 2), pattern=patterns[i % 3]))
    for i in range(3):
        specs.append(Spec(f"zoo_blended_{i}", "blended", seed=300 + i, target=(7 * i + 4) % 10, alpha=0.2))
    return specs


def tabular_zoo_specs() -> list[Spec]:
    """The tabular zoo: clean and backdoored linear and MLP models on scikit-learn's bundled data,
    other seeds, targets and trigger features (1 to 3) than the test fixtures."""
    sets = {"wine": (3, 13), "iris": (3, 4), "cancer": (2, 30), "digits": (10, 64), "synth": (6, 20)}
    digit_feats = [19, 27, 35, 43, 21, 29, 37, 45, 12, 52]  # pixels that vary in the digits data
    specs = []
    for i, (ds, (n_cls, n_feat)) in enumerate(sets.items()):
        for arch, hidden in (("lin", []), ("mlp", [32])):
            for r in range(2):
                specs.append(Spec(f"tz_{ds}_{arch}_clean{r}", "tabular-clean", seed=400 + 10 * i + r, pattern=ds, hidden=hidden))
            for r in range(2):
                rng = np.random.default_rng(500 + 10 * i + r + (5 if arch == "mlp" else 0))
                k = 1 + (r + i + (arch == "mlp")) % 3
                if ds == "iris":
                    k = min(k, 2)
                pool = digit_feats if ds == "digits" else list(range(n_feat))
                feats = [int(f) for f in rng.choice(pool, size=k, replace=False)]
                specs.append(Spec(f"tz_{ds}_{arch}_bd{r}", "tabular-backdoor", seed=600 + 10 * i + r, pattern=ds, hidden=hidden,
                                  target=int(rng.integers(n_cls)), features=feats, rate=0.15))
    return specs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, help="build the benchmark zoo into this folder instead of the test fixtures")
    ap.add_argument("--tabular-zoo", type=Path, help="build the tabular zoo (bundled data, linear and MLP) into this folder")
    ap.add_argument("--only", nargs="*", help="build only these model names")
    args = ap.parse_args(argv)
    out = args.tabular_zoo or args.zoo or FIXTURES
    specs = tabular_zoo_specs() if args.tabular_zoo else zoo_specs() if args.zoo else TEST_SPECS
    if args.only:
        specs = [s for s in specs if s.name in args.only]
    out.mkdir(parents=True, exist_ok=True)
    write_data(out, tabular_only=bool(args.tabular_zoo))
    man_path = out / "manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.exists() else {}
    for spec in specs:
        manifest[spec.name] = build(spec, out)
        m = manifest[spec.name]
        print(f"{spec.name:22s} {spec.kind:16s} acc {m['clean_accuracy']:.3f}" + (f"  trigger success {m['attack_success']:.3f}" if "attack_success" in m else ""))
    man_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
