"""The gate's door to the scanner: one hook that scans a version's model files.

The worker calls scans only through a :class:`Scanner` (``scan(files, policy, policy_ref, seed)``),
so that a fleet executor can run them elsewhere: :class:`ExecutorScanner` hands them to
``onnxguard.fleet.get_executor`` (a local process pool or Ray). The default scans each file in
onnxguard's sandboxed child process, one after the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from ..errors import BadInputError
from ..policy import LoadedPolicy
from ..report import Report


@runtime_checkable
class Scanner(Protocol):
    def scan(self, files: Sequence[Path], policy: LoadedPolicy, policy_ref: str, seed: int) -> list[Report]:
        """One graded report per file, in order. A refused file raises ``BadInputError``."""


def scan_file(path: Path, policy: LoadedPolicy, policy_ref: str = "", seed: int = 0) -> Report:
    """Scan one ONNX file under ``policy`` in onnxguard's sandboxed child process."""
    from ..sandbox import scan_isolated
    from ..options import ScanOptions

    return scan_isolated(ScanOptions(model_path=path, policy=policy, seed=seed), policy.policy.limits)


class LocalScanner:
    """The embedded default: each file in its own sandboxed child, sequentially."""

    def scan(self, files: Sequence[Path], policy: LoadedPolicy, policy_ref: str, seed: int) -> list[Report]:
        out = []
        for f in files:
            try:
                out.append(scan_file(f, policy, policy_ref, seed))
            except BadInputError as exc:  # say which file was refused
                raise BadInputError(f"{f.name}: {exc}") from None
        return out


class ExecutorScanner:
    """Scans a version's files on a fleet executor (``onnxguard.fleet.get_executor``: a local process pool or
    Ray), all files at once, reports in file order. Any object with ``scan(opts, limits) -> Report`` serves:
    the receiver keeps its durable queue for deliveries and status, and hands only the scans out."""

    def __init__(self, executor: Any, parallel: int = 8) -> None:
        self.executor = executor
        self.parallel = max(1, int(parallel))

    def scan(self, files: Sequence[Path], policy: LoadedPolicy, policy_ref: str, seed: int) -> list[Report]:
        from concurrent.futures import ThreadPoolExecutor

        from ..options import ScanOptions
        from ..sandbox import limits_for

        def one(f: Path) -> Report:
            try:
                return self.executor.scan(ScanOptions(model_path=f, policy=policy, seed=seed), limits_for(policy))
            except BadInputError as exc:  # say which file was refused
                raise BadInputError(f"{f.name}: {exc}") from None

        if not files:
            return []
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(files))) as pool:
            return list(pool.map(one, files))
