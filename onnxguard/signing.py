"""Signed risk reports: the report as the predicate of an in-toto Statement v1, in a DSSE envelope.

A registry admits a model on the strength of its report, so the report it receives must be
tamper-evident, bound to the exact model file, and checkable with tools that are not onnxguard.

Format (documented in the README, "Signed reports")::

    envelope   {"payload": base64(STATEMENT), "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"keyid": KEYID, "sig": base64(SIG)}]}
    STATEMENT  RFC 8785 canonical JSON of
               {"_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "model.onnx", "digest": {"sha256": ...}}, <each external-data file>],
                "predicateType": "https://onnxguard.dev/attestation/risk-report/v1",
                "predicate": <the plain report>}
    SIG        over the DSSE pre-authentication encoding
               PAE = "DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload
               ECDSA P-256 with SHA-256 (DER-encoded signature; the default) or Ed25519
    KEYID      hex sha256 of the public key's DER SubjectPublicKeyInfo

Keys live in ``onnxguard.keys``; verification (named checks, each failure naming its check) in
``onnxguard.verify``.

Signing happens in the process that holds the key, after the scan; the key is never handed to
(or loaded before) the scan, which may run in a sandboxed child process.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import rfc8785
from pydantic import ValidationError

from .errors import SigningError
from .keys import PrivateKey, keyid, sign_bytes
from .report import Report, load_report

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://onnxguard.dev/attestation/risk-report/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"


# -- encodings -------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def canonical(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON."""
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise SigningError(f"the report cannot be written as canonical JSON (RFC 8785): {exc}") from None


def first_errors(exc: ValidationError, n: int = 3) -> str:
    """The first few validation errors of a pydantic model, as one line."""
    errs = exc.errors()
    parts = [f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in errs[:n]]
    more = f" (+{len(errs) - n} more)" if len(errs) > n else ""
    return "; ".join(parts) + more


# -- signing -----------------------------------------------------------------


def subjects_for(report: Report) -> list[dict[str, Any]]:
    """The model file, then each external-data file (named by its location relative to the model)."""
    m = report.model
    subj = [{"name": Path(m.path).name or m.path, "digest": {"sha256": m.sha256}}]
    subj += [{"name": f.path, "digest": {"sha256": f.sha256}} for f in m.external_data]
    return subj


def statement_for(report: Report) -> dict[str, Any]:
    """The in-toto Statement v1 whose predicate is the report (as its plain JSON)."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects_for(report),
        "predicateType": PREDICATE_TYPE,
        "predicate": json.loads(report.model_dump_json()),
    }


def sign_report(report: Report, key: PrivateKey) -> dict[str, Any]:
    """The report as a signed DSSE envelope (a dict; write it with ``json.dumps``)."""
    statement = statement_for(report)
    try:  # never emit an attestation that would fail its own schema check
        load_report(statement["predicate"])
    except ValidationError as exc:
        raise SigningError(f"the report does not read back as a valid report, so it was not signed: {first_errors(exc)}") from None
    payload = canonical(statement)
    sig = sign_bytes(key, pae(PAYLOAD_TYPE, payload))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": keyid(key), "sig": base64.b64encode(sig).decode("ascii")}],
    }


def sign_statement(statement: dict[str, Any], key: PrivateKey) -> dict[str, Any]:
    """Any in-toto statement (a JSON object) as a signed DSSE envelope, with the same encoding as reports
    (the admission gate's attestation)."""
    payload = canonical(statement)
    sig = sign_bytes(key, pae(PAYLOAD_TYPE, payload))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": keyid(key), "sig": base64.b64encode(sig).decode("ascii")}],
    }
