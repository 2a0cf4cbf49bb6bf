"""The signed report: an in-toto Statement in a DSSE envelope (see ``onnxguard.signing``)."""

from __future__ import annotations

import json

from ..errors import SigningError
from ..report import Report
from ..signing import sign_report
from .base import OutputFormat, RenderContext


class DsseFormat(OutputFormat):
    name = "dsse"
    description = "the report signed as an in-toto attestation in a DSSE envelope (the default for --out)"
    signed = True

    def render(self, report: Report, ctx: RenderContext | None = None) -> str:
        if ctx is None or ctx.key is None:
            raise SigningError("the dsse format signs the report and needs a private key")
        return json.dumps(sign_report(report, ctx.key), indent=2) + "\n"
