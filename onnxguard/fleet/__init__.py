"""Many scans on an executor: a local pool of sandboxed processes (default) or Ray.

* :func:`get_executor` / :class:`Executor`: ``submit``/``map`` scan jobs, ``scan`` one (blocking);
* :func:`run_fleet`: a resumable fleet scan with signed reports and a summary page;
* :func:`onnxguard.fleet.split.scan_split`: one model's checks spread over workers, then merged.
"""

from .executors import EXECUTORS, Executor, LocalExecutor, RayExecutor, get_executor
from .jobs import Resources, ScanJob, ScanOutcome, execute

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "Resources", "ScanJob", "ScanOutcome", "execute", "get_executor"]
