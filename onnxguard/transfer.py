"""Transfer check: adversarial inputs found on one model, replayed on another.

The realistic attack on a model reachable only through an API: the attacker
attacks a local surrogate (``--transfer-from other.onnx``) with full access to
its scores, then sends the adversarial inputs it found to the target. For each
policy check the surrogate is attacked with the check's attack at its largest
epsilon, on the same samples; every adversarial whose clean input the scanned
model classifies correctly is replayed once on the scanned model (through a
counted oracle). The transfer rate is the share that fools it too
(untargeted: any wrong label; targeted: the asked class), with its interval.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DataError
from .model import load_model
from .oracle import Oracle
from .policy import CheckSpec
from .report import Rate, TransferResult


def run_transfers(
    prep: "object",
    source_path: Path,
    specs: list[CheckSpec],
    *,
    seed: int,
    policy: "object" = None,
    progress: Callable[[str, int], Callable[[int, int], None]] | None = None,
) -> list[tuple[TransferResult, int]]:
    """One ``TransferResult`` per check (with the replay queries spent on the scanned model)."""
    from .evasion import Prepared, inspect_path, run_evasion_check
    from .policy import LoadedPolicy, load_policy

    assert isinstance(prep, Prepared)
    lp = policy if isinstance(policy, LoadedPolicy) else load_policy(None)
    # the surrogate is as untrusted as the scanned model: the same safe read and static refusals
    raw, _ = inspect_path(source_path, lp, what="--transfer-from model ")
    src = load_model(source_path, probe=prep.samples.x if prep.samples.x.ndim > 1 else None,
                     max_bytes=lp.policy.limits.max_model_mb * 1024 * 1024, raw=raw,
                     inference_timeout_s=lp.policy.limits.inference_timeout_s)
    if src.sample_shape != prep.model.sample_shape:
        raise DataError(
            f"--transfer-from model takes inputs of shape {list(src.sample_shape)}, the scanned model {list(prep.model.sample_shape)}"
        )
    clean = Oracle(src, prep.domain, n_samples=len(prep.z), budget=None)
    src_pred = clean.labels(prep.z, np.arange(len(prep.z)))
    src_prep = dataclasses.replace(prep, model=src, pred=src_pred)
    threat = "scores" if src.has_scores else "labels"
    out: list[tuple[TransferResult, int]] = []
    for spec in specs:
        one = spec.model_copy(update={"epsilon": max(spec.epsilons), "min_perturbation": False})
        got: list = []
        cb = progress(f"transfer:{spec.check_id}", 1000) if progress else None
        chk = run_evasion_check(
            src_prep, one, threat=threat, seed=seed, progress=cb, collect=got,
        )
        n_adv, hits, spent = 0, 0, 0
        if chk.status == "completed" and got:
            idx, ya, ta, run = got[0]
            adv = run.broken_at(max(spec.epsilons)) & (prep.pred[idx] == ya)  # the scanned model gets these right when clean
            sel = np.flatnonzero(adv)
            n_adv = int(sel.size)
            if n_adv:
                oracle = Oracle(prep.model, prep.domain, n_samples=n_adv, budget=1)
                labels = oracle.labels(run.z_adv[sel], np.arange(n_adv))
                fooled = labels == ta[sel] if ta is not None else labels != ya[sel]
                hits = int(fooled.sum())
                spent = int(oracle.queries.sum())
        out.append((
            TransferResult(
                source_model=str(source_path), source_sha256=src.sha256, attack=chk.attack, norm=spec.norm,
                epsilon=max(spec.epsilons), n_adversarials=n_adv, transfer_rate=Rate.of(hits, n_adv),
            ),
            spent,
        ))
    return out
