"""HopSkipJump (labels only), Sparse-RS and one-pixel (L0), targeted mode, robustness curves, minimal perturbation, transfer.

Small undefended models built here from scikit-learn's bundled data (tests/zoo.py);
sample counts and budgets are kept small so that the module runs in well under a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxguard.attacks import ATTACKS
from onnxguard.attacks.sparse_rs import l0_count
from onnxguard.cli import main
from onnxguard.data import fit_to_model, load_data, resolve_domain
from onnxguard.model import load_model
from onnxguard.oracle import Oracle
from onnxguard.policy import CheckSpec, parse_policy
from onnxguard.evasion import prepare, run_evasion_check
from onnxguard.scan import ScanOptions, run_scan
from tests.zoo import digits_mlp, mlp_to_onnx, tabular_sklearn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("issue6")
    # the bundled example: an undefended MLP on sklearn's digits (examples/build_examples.py rebuilds it)
    logits = onnx.load(EXAMPLES / "digits_mlp.onnx")
    onnx.save(logits, d / "digits.onnx")
    # the same network behind an ArgMax: a model that outputs labels only
    g = logits.graph
    out_name = g.output[0].name
    g.node.append(onnx.helper.make_node("ArgMax", [out_name], ["label"], axis=1, keepdims=0))
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info("label", onnx.TensorProto.INT64, ["N"]))
    onnx.checker.check_model(logits)
    onnx.save(logits, d / "digits_label.onnx")
    # an independently trained surrogate for the transfer check
    p2, *_ = digits_mlp(hidden=(32,), seed=1, epochs=120)
    onnx.save(mlp_to_onnx(p2, (1, 8, 8), output="softmax"), d / "digits_other.onnx")
    ex = np.load(EXAMPLES / "digits.npz")
    np.savez(d / "digits.npz", x=ex["x"], y=ex["y"])
    onx, x, y = tabular_sklearn("mlp")
    onnx.save(onx, d / "tab.onnx")
    np.savez(d / "tab.npz", x=x, y=y)
    return {"digits": d / "digits.onnx", "digits_label": d / "digits_label.onnx", "digits_other": d / "digits_other.onnx",
            "digits_data": d / "digits.npz", "tab": d / "tab.onnx", "tab_data": d / "tab.npz", "dir": d}


def setup(model: Path, data: Path, n: int, labels_only: bool = False):
    m = load_model(model)
    s = fit_to_model(load_data(data), m)
    dom, _ = resolve_domain(m, s, None)
    z = dom.to_unit(s.x)
    pred = Oracle(m, dom, n_samples=len(z), budget=None).labels(z, np.arange(len(z)))
    ok = np.flatnonzero(pred == s.y)
    pool = (z[ok[n:]], pred[ok[n:]])
    ok = ok[:n]
    return m, dom, z[ok], s.y[ok], pool


def true_labels(m, dom, z_adv):
    return m.predict(dom.from_unit(z_adv))[0].labels


def test_hsj_labels_only_large_l2_budget(models):
    m, dom, z, y, _ = setup(models["digits_label"], models["digits_data"], 30)
    assert not m.has_scores
    budget = 600
    o = Oracle(m, dom, n_samples=len(z), budget=budget, labels_only=True)
    r = ATTACKS["hopskipjump"].fn(o, z, y, norm="l2", epsilon=2.0, budget=budget, rng=np.random.default_rng(0))
    assert r.success.mean() >= 0.9
    assert (o.queries <= budget).all() and (r.queries <= budget).all()
    lab = true_labels(m, dom, r.z_adv)
    assert (lab[r.success] != y[r.success]).all()
    d = np.sqrt(((r.z_adv - z) ** 2).reshape(len(z), -1).sum(1))
    assert np.allclose(d[r.success], r.perturbation[r.success], atol=1e-4)
    assert (r.perturbation[r.success] <= 2.0 + 1e-6).all()


def test_hsj_linf_and_deterministic(models):
    m, dom, z, y, _ = setup(models["digits"], models["digits_data"], 12)
    out = []
    for _ in range(2):
        o = Oracle(m, dom, n_samples=len(z), budget=300, labels_only=True)
        out.append(ATTACKS["hopskipjump"].fn(o, z, y, norm="linf", epsilon=0.3, budget=300, rng=np.random.default_rng(5)))
    assert np.array_equal(out[0].z_adv, out[1].z_adv)
    r = out[0]
    lab = true_labels(m, dom, r.z_adv)
    assert (lab[r.success] != y[r.success]).all()
    assert r.success.mean() >= 0.8


def test_hsj_targeted_reaches_class(models):
    m, dom, z, y, pool = setup(models["digits"], models["digits_data"], 20)
    t = (y + 3) % 10
    o = Oracle(m, dom, n_samples=len(z), budget=400, labels_only=True)
    r = ATTACKS["hopskipjump"].fn(o, z, y, norm="l2", epsilon=None, budget=400, rng=np.random.default_rng(1), target=t, starts=pool)
    lab = true_labels(m, dom, r.z_adv)
    assert r.success.mean() >= 0.9
    assert (lab[r.success] == t[r.success]).all()
    assert (o.queries <= 400).all()


@pytest.mark.parametrize("which,k", [("tab", 3), ("digits", 4)])
def test_sparse_rs_flips_most(models, which, k):
    m, dom, z, y, _ = setup(models[which], models[f"{which}_data"], 40)
    if which == "tab":
        assert k == round(0.1 * z.shape[1])  # 10% of the 30 features
    o = Oracle(m, dom, n_samples=len(z), budget=400)
    r = ATTACKS["sparse-rs"].fn(o, z, y, norm="l0", epsilon=k, budget=400, rng=np.random.default_rng(0))
    assert r.success.mean() >= 0.8
    assert (o.queries <= 400).all()
    lab = true_labels(m, dom, r.z_adv)
    assert (lab[r.success] != y[r.success]).all()
    assert (l0_count(r.z_adv, z, m.sample_shape) <= k).all()


@pytest.mark.parametrize("attack", ["sparse-rs", "one-pixel"])
def test_l0_targeted_reaches_class_and_counts_pixels(models, attack):
    m, dom, z, y, _ = setup(models["digits"], models["digits_data"], 12)
    t = (y + 1) % 10
    budget = 300
    o = Oracle(m, dom, n_samples=len(z), budget=budget)
    r = ATTACKS[attack].fn(o, z, y, norm="l0", epsilon=6, budget=budget, rng=np.random.default_rng(0), target=t)
    assert (o.queries <= budget).all()
    assert r.success.any()
    lab = true_labels(m, dom, r.z_adv)
    assert (lab[r.success] == t[r.success]).all()
    assert (l0_count(r.z_adv, z, m.sample_shape) <= 6).all()


def test_one_pixel_untargeted_tabular(models):
    m, dom, z, y, _ = setup(models["tab"], models["tab_data"], 15)
    o = Oracle(m, dom, n_samples=len(z), budget=200)
    r = ATTACKS["one-pixel"].fn(o, z, y, norm="l0", epsilon=3, budget=200, rng=np.random.default_rng(0))
    assert (o.queries <= 200).all()
    assert r.success.mean() >= 0.3
    lab = true_labels(m, dom, r.z_adv)
    assert (lab[r.success] != y[r.success]).all()


@pytest.mark.parametrize("attack", ["square", "fd-pgd"])
def test_existing_attacks_targeted(models, attack):
    m, dom, z, y, _ = setup(models["digits"], models["digits_data"], 10)
    t = (y + 1) % 10
    o = Oracle(m, dom, n_samples=len(z), budget=500)
    r = ATTACKS[attack].fn(o, z, y, norm="linf", epsilon=0.3, budget=500, rng=np.random.default_rng(0), target=t)
    lab = true_labels(m, dom, r.z_adv)
    assert r.success.mean() >= 0.5
    assert (lab[r.success] == t[r.success]).all()


def _prep(models, which="digits", policy=None):
    from onnxguard.policy import load_policy

    pol = policy or load_policy(None)
    opts = ScanOptions(model_path=models[which], data_path=models["digits_data" if which.startswith("digits") else f"{which}_data"], policy=pol, seed=0)
    return prepare(opts, pol, np.random.default_rng(0), 50)


def test_curve_monotone_and_matches_single_runs(models):
    prep = _prep(models)
    eps = [0.05, 0.1, 0.2]
    spec = CheckSpec(id="c", attack="square", norm="linf", epsilon=eps, samples=60, budget=150)
    chk = run_evasion_check(prep, spec, threat="scores", seed=0)
    rates = [p.success_rate.value for p in chk.robustness_curve]
    robust = [p.robust_accuracy.value for p in chk.robustness_curve]
    assert rates == sorted(rates) and robust == sorted(robust, reverse=True)
    assert chk.queries.max <= 150  # the budget is the total per sample over the whole curve
    assert chk.queries.budget_per_sample == 150
    for p in chk.robustness_curve:
        single = run_evasion_check(prep, CheckSpec(id="c", attack="square", norm="linf", epsilon=p.epsilon, samples=60, budget=150), threat="scores", seed=0)
        a, b = p.success_rate, single.success_rate
        assert a.n == b.n
        # the curve shares one budget over its epsilons: at most what a single run with the whole budget finds
        assert a.ci.low <= b.ci.high, (p.epsilon, a.value, b.value)
        assert single.queries.max <= 150
    top = run_evasion_check(prep, CheckSpec(id="c", attack="square", norm="linf", epsilon=max(eps), samples=60, budget=150), threat="scores", seed=0)
    assert chk.success_rate.value == pytest.approx(top.success_rate.value, abs=0.1)  # the graded epsilon had the full budget


def test_min_perturbation_fixed_and_minimisation(models):
    prep = _prep(models)
    spec = CheckSpec(id="m", attack="square", norm="l2", epsilon=[0.5, 1.0, 2.0], samples=20, budget=100, min_perturbation=True)
    chk = run_evasion_check(prep, spec, threat="scores", seed=0)
    mp = chk.min_perturbation
    assert mp is not None and mp.n == chk.n_attacked and mp.median is not None
    assert mp.ci is not None and mp.ci.low <= mp.median <= mp.ci.high
    # labels-only threat model: the score-based check becomes HopSkipJump, with the curve from one run
    chk2 = run_evasion_check(prep, spec, threat="labels", seed=0)
    assert chk2.attack == "hopskipjump" and "in its place" in chk2.finding
    assert chk2.min_perturbation is not None and chk2.queries.max <= 100
    assert [p.success_rate.value for p in chk2.robustness_curve] == sorted(p.success_rate.value for p in chk2.robustness_curve)


def test_labels_only_model_l0_check_not_run(models):
    prep = _prep(models, "digits_label")
    assert not prep.model.has_scores
    spec = CheckSpec(id="l0", attack="sparse-rs", norm="l0", epsilon=3, samples=5, budget=50)
    chk = run_evasion_check(prep, spec, threat="labels", seed=0)
    assert chk.status == "not_run" and "labels-only" in chk.reason


POLICY = b"""
[policy]
name = "t6"
version = "1"
[threat_model]
access = "labels"
[[checks]]
id = "hsj"
attack = "hopskipjump"
norm = "l2"
epsilon = [0.5, 1.0, 3.0]
samples = 15
budget = 200
[[checks]]
id = "sq"
attack = "square"
norm = "linf"
epsilon = 0.2
samples = 10
budget = 100
targeted = true
[backdoor]
enabled = false
[grading.median_min_perturbation]
worse = "lower"
medium = 0.5
high = 0.2
critical = 0.05
[grading.transfer_rate]
worse = "higher"
medium = 0.1
high = 0.3
critical = 0.6
"""


def test_scan_labels_policy_transfer_and_grading(models):
    pol = parse_policy(POLICY, "t6")
    opts = ScanOptions(model_path=models["digits"], data_path=models["digits_data"], policy=pol, seed=0, transfer_from=models["digits_other"])
    rep = run_scan(opts)
    hsj, sq = rep.checks
    assert hsj.attack == "hopskipjump" and hsj.threat_model == "labels" and hsj.min_perturbation is not None
    assert any(g.metric == "hsj:median_min_perturbation" for g in hsj.grades)
    assert sq.attack == "hopskipjump" and sq.targeted  # square substituted under the labels-only threat model
    assert len(rep.transfer) == 2
    tr = rep.transfer[0]
    assert tr.n_adversarials > 0 and tr.transfer_rate.n == tr.n_adversarials and tr.grades


def test_cli_attack_commands(models, tmp_path):
    out = tmp_path / "r.json"
    rc = main(["attack", "sparse-rs", str(models["digits"]), "--data", str(models["digits_data"]), "--norm", "l0", "--epsilon", "4",
               "--budget", "200", "--samples", "10", "-q", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["attack"] == "sparse-rs" and r["norm"] == "l0"
    rc = main(["attack", "hopskipjump", str(models["digits"]), "--data", str(models["digits_data"]), "--norm", "l2", "--epsilon", "0.5,1,2",
               "--budget", "150", "--samples", "8", "-q", "--target", "2", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["targeted"] and r["target"] == 2 and len(r["robustness_curve"]) == 3 and r["min_perturbation"]["n"] == r["n_attacked"]
    assert main(["attack", "one-pixel", str(models["digits"]), "--norm", "l0", "--epsilon", "1.5", "--budget", "50", "-q"]) == 2
    assert main(["attack", "hopskipjump", str(models["digits"]), "--norm", "l0", "--epsilon", "2", "--budget", "50", "-q"]) == 2


@pytest.mark.parametrize("attack,norm,eps", [("hopskipjump", "l2", 1.0), ("hopskipjump", "linf", 0.1), ("sparse-rs", "l0", 2), ("one-pixel", "l0", 1)])
@pytest.mark.parametrize("budget", [1, 4, 23, 97])
def test_budget_never_exceeded(models, attack, norm, eps, budget):
    m, dom, z, y, pool = setup(models["digits"], models["digits_data"], 6)
    labels_only = not ATTACKS[attack].needs_scores
    for target in (None, (y + 1) % 10):
        o = Oracle(m, dom, n_samples=len(z), budget=budget, labels_only=labels_only)  # raises BudgetExhausted past the budget
        kw = {"starts": pool} if attack == "hopskipjump" else {}
        r = ATTACKS[attack].fn(o, z, y, norm=norm, epsilon=eps, budget=budget, rng=np.random.default_rng(budget), target=target, **kw)
        assert (o.queries <= budget).all() and (r.queries == o.queries).all()
