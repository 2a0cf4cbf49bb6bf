"""Shared by the backdoor tests: random baselines (what an uninformed search finds with the same queries), and
the oracle and samples that the per-family tests search on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxguard.evasion import prepare
from onnxguard.options import ScanOptions
from onnxguard.policy import load_policy


def random_patch_area(model: Path, data: Path, target: int, queries: int, seed: int, salt: int = 99) -> float:
    """The smallest random square patch (random size on the sweep's ladder, position, binary pattern) that sends
    90% of other-class samples to ``target`` within ``queries`` model queries; inf if none does. ``salt`` seeds
    the patches apart from the scan's own draws."""
    from onnxguard.backdoor.squares import ladder
    from onnxguard.oracle import Oracle

    pol = load_policy("standard")
    prep = prepare(ScanOptions(model_path=model, data_path=data), pol, np.random.default_rng(seed), 0)
    x = prep.z[(prep.y != target) & (prep.pred == prep.y)][:30].astype(np.float64)
    oracle = Oracle(prep.model, prep.domain, n_samples=1, budget=queries)
    rng = np.random.default_rng([seed, salt])
    _, h, w = x.shape[1:]
    best = np.inf
    while oracle.remaining()[0] >= len(x):
        s = int(rng.choice(ladder(h, w)))
        r, c = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        xt = x.copy()
        xt[:, :, r : r + s, c : c + s] = rng.uniform(size=(s, s)) > 0.5
        if (oracle.query(xt, np.zeros(len(xt), dtype=np.int64)).labels == target).mean() >= 0.9:
            best = min(best, s * s)
    return best


def oracle_and_samples(model: Path, data: Path, *, per_class: int, n_classes: int = 10, budget: int = 10_000_000,
                       seed: int = 0):  # noqa: ANN201
    """The standard policy's preparation of ``model`` on ``data``: an oracle of ``budget`` queries (scores), and up
    to ``per_class`` correctly classified samples of each class in the (C, H, W) view, with their labels."""
    from onnxguard.attacks.base import to_chw
    from onnxguard.oracle import Oracle

    pol = load_policy("standard")
    prep = prepare(ScanOptions(model_path=model, data_path=data, policy=pol), pol, np.random.default_rng(seed), 0)
    oracle = Oracle(prep.model, prep.domain, n_samples=1, budget=budget, labels_only=False)
    x = to_chw(np.asarray(prep.z, dtype=np.float64), oracle.sample_shape)
    y = np.asarray(prep.y)
    ok = prep.pred == y
    rng = np.random.default_rng([seed, 3])
    keep = np.concatenate([rng.permutation(np.flatnonzero(ok & (y == c)))[:per_class] for c in range(n_classes)])
    return oracle, x[keep], y[keep]
