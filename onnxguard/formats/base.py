"""The one interface every output format implements (pip-audit style), and what a render may be given."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from ..report import Report

if TYPE_CHECKING:  # pragma: no cover
    from ..verify import Verification


@dataclass(frozen=True)
class RenderContext:
    """What some formats need beyond the report: how it was authenticated (html), where its files are
    (html), the key that signs it (dsse)."""

    verified: "Verification | None" = None
    adversarials: str | Path | Mapping[str, str | Path] | None = None
    base_dir: str | Path | None = None
    key: Any = None  # a private key from onnxguard.keys, for signed formats


class OutputFormat(ABC):
    """``render(report, ctx) -> str``: the whole document for one report."""

    name: ClassVar[str]
    description: ClassVar[str]
    signed: ClassVar[bool] = False  # an attestation (needs ``ctx.key``), not a plain rendering

    @abstractmethod
    def render(self, report: Report, ctx: RenderContext | None = None) -> str:
        """The whole document for ``report``, as text."""


class JsonFormat(OutputFormat):
    """The plain report, as the versioned JSON of ``onnxguard.report``."""

    name = "json"
    description = "the plain report (versioned JSON, unsigned)"

    def render(self, report: Report, ctx: RenderContext | None = None) -> str:
        return report.to_json() + "\n"
