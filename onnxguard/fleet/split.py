"""One scan across workers: the policy's checks split into shards, each shard a sandboxed scan, then merged.

Every check draws its randomness from ``[seed, hash(check id)]`` and every shard prepares the
same samples from the same seed, so a shard computes exactly the figures the single-process
scan would. The merge keeps the policy's order, takes the static findings and the clean pass
from one shard (each shard repeats the clean pass; it is counted once), and grades the
merged report again. A shard that dies fails the whole scan (its crash report is returned).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import ScanFailed
from .executors import Executor
from .jobs import Resources, ScanJob

if TYPE_CHECKING:  # pragma: no cover
    from ..policy import LoadedPolicy
    from ..report import Report
    from ..sandbox import IsolatedResult, SandboxLimits
    from ..options import ScanOptions

BACKDOOR = "backdoor"


def _cost(policy: "LoadedPolicy", item: str, opts: "ScanOptions") -> float:
    pol = policy.policy
    if item == BACKDOOR:
        return float(pol.backdoor.budget)
    spec = next(c for c in pol.checks if c.check_id == item)
    return float((opts.samples or spec.samples) * (opts.budget or spec.budget) * len(spec.epsilons))


def plan_shards(policy: "LoadedPolicy", workers: int, opts: "ScanOptions") -> list[list[str]]:
    """The check ids (and ``backdoor``) in at most ``workers`` shards, balanced by query budget (largest first)."""
    items = [c.check_id for c in policy.policy.checks] + ([BACKDOOR] if policy.policy.backdoor.enabled else [])
    n = max(1, min(workers, len(items)))
    shards: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for it in sorted(items, key=lambda i: -_cost(policy, i, opts)):
        k = load.index(min(load))
        shards[k].append(it)
        load[k] += _cost(policy, it, opts)
    return [s for s in shards if s]


def _clean_queries(r: "Report") -> int:
    """A shard's clean-pass queries: its total less what its checks and backdoor search spent."""
    assert r.timing is not None
    return r.timing.queries_total - sum(c.queries.total for c in r.checks if c.queries) - (r.backdoor.queries if r.backdoor else 0)


def merge_reports(parts: list["Report"], policy: "LoadedPolicy", wall_s: float) -> "Report":
    """The single-process report from the shards' partial reports (same order, figures, grading)."""
    from ..grading import grade_report
    from ..report import NotTested, Timing

    if not parts:
        raise ScanFailed("nothing to merge")
    base = parts[0].model_copy(deep=True)
    for p in parts[1:]:
        same = (p.model.sha256 == base.model.sha256 and (p.data.sha256 if p.data else None) == (base.data.sha256 if base.data else None)
                and p.seed == base.seed and (p.data.n_samples if p.data else None) == (base.data.n_samples if base.data else None))
        if not same:
            raise ScanFailed("the shards of a split scan disagree on the model, data or seed; not merged")
    clean = {_clean_queries(p) for p in parts}
    if len(clean) != 1:
        raise ScanFailed(f"the shards' clean passes differ ({sorted(clean)} queries); not merged")
    by_id = {c.id: c for p in parts for c in p.checks}
    order = [c.check_id for c in policy.policy.checks]
    base.checks = [by_id[i] for i in order if i in by_id]
    base.backdoor = next((p.backdoor for p in parts if p.backdoor is not None), None)
    base.not_tested = [NotTested(what=f"check {c.id}", reason=c.reason or "not run") for c in base.checks if c.status != "completed"]
    if base.backdoor is not None and base.backdoor.status != "completed":
        base.not_tested.append(NotTested(what="backdoor search", reason=base.backdoor.reason or base.backdoor.status))
    grade_report(base, policy)
    assert parts[0].timing is not None
    t0 = parts[0].timing
    clean_ort = t0.ort_s - sum(c.ort_time_s for c in parts[0].checks) - (parts[0].backdoor.details.get("ort_time_s", 0.0) if parts[0].backdoor else 0.0)
    ort = clean_ort + sum(c.ort_time_s for c in base.checks) + (base.backdoor.details.get("ort_time_s", 0.0) if base.backdoor else 0.0)
    q = clean.pop() + sum(c.queries.total for c in base.checks if c.queries) + (base.backdoor.queries if base.backdoor else 0)
    base.timing = Timing(wall_s=wall_s, ort_s=ort, ort_share=ort / wall_s if wall_s > 0 else None, queries_total=q)
    return base


def scan_split(opts: "ScanOptions", limits: "SandboxLimits", executor: Executor, *, workers: int | None = None, retries: int = 1) -> "IsolatedResult":
    """Scan one model with its checks spread over the executor's workers; returns the merged result."""
    import dataclasses

    from .. import errors
    from ..policy import load_policy
    from ..sandbox import IsolatedResult

    if opts.transfer_from is not None:
        raise errors.BadInputError("--transfer-from cannot be combined with a split scan (--workers > 1)")
    if opts.only_checks is not None:
        raise errors.BadInputError("a split scan runs the whole policy; only_checks is set by the split itself")
    t0 = time.monotonic()
    policy = opts.policy or load_policy(None)
    import os
    from pathlib import Path

    absolute = {k: Path(os.path.abspath(v)) for k in ("model_path", "data_path", "save_adversarials", "backdoor_out")
                if (v := getattr(opts, k)) is not None}  # a Ray worker does not run in the caller's folder
    given = opts
    opts = dataclasses.replace(opts, policy=policy, **absolute)
    shards = plan_shards(policy, workers or executor.workers, opts)
    cpus = executor.default_cpus() if len(shards) > 1 else max(1, executor.default_cpus() * executor.workers)
    jobs = [ScanJob(key=f"shard{i}", opts=dataclasses.replace(opts, only_checks=ids), limits=limits,
                    resources=Resources.for_scan(limits, cpus)) for i, ids in enumerate(shards)]
    outcomes = {o.key: o for o in executor.map(jobs, retries=retries)}
    parts = []
    for j in jobs:
        o = outcomes[j.key]
        if o.kind == "bad_input":
            cls = getattr(errors, o.error_type or "", None)
            raise (cls if isinstance(cls, type) and issubclass(cls, errors.BadInputError) else errors.BadInputError)(o.message or "bad input")
        rep = o.report()
        if rep is None:
            raise ScanFailed(f"a shard of the split scan could not run ({o.kind}: {o.message})")
        if o.kind != "report":
            rep.notes.append(f"split scan: shard {j.key} ({', '.join(j.opts.only_checks or [])}) failed; no figure of the scan is reported")
            return IsolatedResult(rep, crashed=o.message, timed_out=o.kind == "timed_out")
        parts.append(rep)
    merged = merge_reports(parts, policy, time.monotonic() - t0)
    # the paths as the caller wrote them, as a single-process scan records them
    if merged.model.path == str(opts.model_path):
        merged.model.path = str(given.model_path)
    if merged.data is not None and given.data_path is not None and merged.data.source == str(opts.data_path):
        merged.data.source = str(given.data_path)
    return IsolatedResult(merged)
