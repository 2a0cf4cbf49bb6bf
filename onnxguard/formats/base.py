"""The one-method interface every output format implements (pip-audit style)."""

from __future__ import annotations

from typing import Protocol

from ..report import Report


class OutputFormat(Protocol):
    def render(self, report: Report) -> str:
        """The whole document for ``report``, as text."""
        ...


class JsonFormat:
    """The plain report, as the versioned JSON of ``onnxguard.report``."""

    def render(self, report: Report) -> str:
        return report.to_json() + "\n"
