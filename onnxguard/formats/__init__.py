"""Output formats, one module per format, in one registry (pip-audit style).

Each format implements :class:`~onnxguard.formats.base.OutputFormat`; the CLI's ``--format`` choices
come from :data:`FORMATS`. Formats are imported on first use (``html`` needs numpy, ``dsse`` the
signing code), so listing them costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .base import OutputFormat

FORMATS: dict[str, str] = {
    "dsse": "dsse:DsseFormat",
    "json": "base:JsonFormat",
    "sarif": "sarif:SarifFormat",
    "html": "html:HtmlFormat",
    "text": "text:TextFormat",
}


def get_format(name: str) -> "OutputFormat":
    """An instance of the format registered as ``name``; ``KeyError`` for an unknown name."""
    module, cls = FORMATS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()


__all__ = ["FORMATS", "get_format"]
