"""Memory is O(batch x input) at 224x224, and Square never spends a query on an unchanged input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from onnxguard.attacks import ATTACKS
from onnxguard.attacks.base import margin
from onnxguard.model import load_model
from onnxguard.oracle import Domain, Oracle, batch_for

from .realsize_models import pooled_classifier

MB = 1024**2


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    p = pooled_classifier(tmp_path_factory.mktemp("rs") / "pooled224.onnx", c=3, h=224, w=224, pool=32)
    m = load_model(p)
    dom = Domain(np.zeros(m.sample_shape), np.ones(m.sample_shape))
    z = np.random.default_rng(0).uniform(0.2, 0.8, (4, *m.sample_shape)).astype(np.float32)
    y = m.predict(z)[0].labels
    return m, dom, z, y


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("attack,norm,eps", [("square", "linf", 0.01), ("square", "l2", 0.5), ("fd-pgd", "linf", 0.01), ("sparse-rs", "l0", 10)])
def test_attack_memory_on_224_input_is_bounded_and_flat(big, attack, norm, eps):
    """4 samples of 3x224x224 (2.4 MB in float32): an O((HW)^2) placement table would be gigabytes. The
    peak must stay under a fixed bound and not grow with the number of iterations."""
    m, dom, z, y = big

    def go(budget: int) -> None:
        o = Oracle(m, dom, n_samples=len(z), budget=budget, work_bytes=32 * MB)
        ATTACKS[attack].fn(o, z, y, norm=norm, epsilon=eps, budget=budget, rng=np.random.default_rng(0))

    short, longer = _peak(lambda: go(12)), _peak(lambda: go(60))
    assert short < 80 * MB, f"{attack} {norm}: peak {short / MB:.0f} MB"
    assert longer < 80 * MB, f"{attack} {norm}: peak {longer / MB:.0f} MB"
    assert longer < short * 1.25 + 4 * MB  # flat in the iterations


def test_oracle_batch_follows_input_size(big, make_digits_model):
    m, *_ = big
    assert 8 <= batch_for(m) <= 64  # 3x224x224 float32: tens of inputs per session.run, not 256
    assert batch_for(load_model(make_digits_model("logits"))) == 256


class _Recorder(Oracle):
    """An oracle that checks, for every query, that the input differs from the sample's best so far
    (Square keeps the candidate with the lowest margin; ties and successes as in the attack)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.best: dict[int, tuple[np.ndarray, float]] = {}
        self.repeats = 0
        self.calls = 0

    def scores(self, z, idx):
        s, lab = super().scores(z, idx)
        loss = margin(s, self.y[idx])
        for k, i in enumerate(np.asarray(idx).tolist()):
            self.calls += 1
            prev = self.best.get(i)
            if prev is not None and np.array_equal(prev[0], z[k]):
                self.repeats += 1
            if prev is None or loss[k] < prev[1]:
                self.best[i] = (np.array(z[k], copy=True), float(loss[k]))
        return s, lab


@pytest.mark.parametrize("eps", [0.3, 1.0])
def test_square_never_requeries_the_current_best(make_digits_model, digits_params, eps):
    """On the small digits MLP with a large epsilon most windows saturate at the box's corners; the
    reference implementation redraws such windows instead of querying an unchanged input."""
    _, x, yall = digits_params
    m = load_model(make_digits_model("logits"), probe=x[:8])
    dom = Domain(np.zeros(m.sample_shape), np.ones(m.sample_shape))
    z = x[:30].astype(np.float64)
    y = m.predict(z)[0].labels
    o = _Recorder(m, dom, n_samples=len(z), budget=300)
    o.y = y
    res = ATTACKS["square"].fn(o, z, y, norm="linf", epsilon=eps, budget=300, rng=np.random.default_rng(0))
    assert o.calls > len(z)
    assert o.repeats == 0
    assert (res.queries <= 300).all()


def test_margin_search_memory_on_224_input_is_bounded_and_flat_in_classes(tmp_path):
    """The maximum-margin search holds every restart of a chunk of classes at once: the chunk is sized to a fixed
    state (``margin.STATE_ELEMENTS``: 3 classes of 8 restarts at 3x224x224), so 12 classes peak no higher than 6,
    whatever the input size."""
    import time

    from onnxguard.backdoor import margin as M
    from onnxguard.backdoor.probe import Probe

    def go(classes: int) -> tuple[int, M.MarginResult]:
        p = pooled_classifier(tmp_path / f"pooled224_{classes}.onnx", c=3, h=224, w=224, pool=32, classes=classes)
        m = load_model(p)
        dom = Domain(np.zeros(m.sample_shape), np.ones(m.sample_shape))
        rng = np.random.default_rng(0)
        xs = rng.uniform(0.2, 0.8, (2 * classes, 3, 224, 224))
        ys = np.repeat(np.arange(classes), 2)
        o = Oracle(m, dom, n_samples=1, budget=10**6, work_bytes=32 * MB)
        out: dict = {}
        peak = _peak(lambda: out.setdefault("r", M.margin_sweep(Probe(o, time.perf_counter() + 600), xs, ys, classes,
                                                                max_queries=classes * M.RESTARTS * 3, rng=rng)))
        return peak, out["r"]

    (p10, r10), (p20, r20) = go(6), go(12)
    assert np.isfinite(r10.margin).all() and np.isfinite(r20.margin).all() and r10.steps == r20.steps == 2
    assert p10 < 128 * MB, f"peak {p10 / MB:.0f} MB"  # the state (32 MiB), the windows it replaces, one scored batch
    assert p20 < p10 * 1.25 + 4 * MB, (p10 / MB, p20 / MB)  # flat in the number of classes
