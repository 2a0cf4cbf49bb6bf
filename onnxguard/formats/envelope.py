"""Reading a report that may be wrapped in a signed DSSE envelope, for rendering and diffing.

This module never decides that a signature is valid: ``report_from_json`` only
unwraps. Verification belongs to ``onnxguard.signing``; ``load_for_render``
calls it when a trusted key is given, and refuses to present an envelope as
verified otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import BadInputError
from ..report import Report, load_report


def is_envelope(doc: Any) -> bool:
    return isinstance(doc, dict) and "payloadType" in doc and "payload" in doc and "signatures" in doc


def report_from_json(data: bytes | str) -> tuple[Report, dict[str, Any] | None]:
    """(report, envelope or None). A DSSE envelope is unwrapped WITHOUT verifying it."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"not a JSON report: {exc}") from None
    env = None
    if is_envelope(doc):
        env = doc
        try:
            statement = json.loads(base64.b64decode(doc["payload"], validate=True))
        except (binascii.Error, ValueError, TypeError) as exc:
            raise BadInputError(f"signed envelope with an unreadable payload: {exc}") from None
        if not isinstance(statement, dict) or not isinstance(statement.get("predicate"), dict):
            raise BadInputError("signed envelope whose payload is not an in-toto Statement with a report as its predicate")
        doc = statement["predicate"]
    try:
        return load_report(doc), env
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "report"
        raise BadInputError(f"not a valid onnxguard report ({exc.error_count()} problem(s); first: {where}: {first['msg']})") from None


def envelope_keyids(env: dict[str, Any]) -> list[str]:
    return [str(s.get("keyid", "")) for s in env.get("signatures", []) if isinstance(s, dict)]


def resolve(path: str | None, base_dir: Path | None) -> Path | None:
    """A file recorded in a report: as recorded, else relative to the report's folder, else by name there."""
    if not path:
        return None
    p = Path(path)
    if p.is_file() or base_dir is None:
        return p
    for cand in (base_dir / p, base_dir / p.name):
        if cand.is_file():
            return cand
    return p


def load_for_render(path: str | Path, key: str | Path | list[str | Path] | None = None, allow_unverified: bool = False,
                    model_path: str | Path | None = None):
    """The report to render and how it was authenticated: ``(Report, Verification | None)``.

    * a plain report: rendered marked UNSIGNED (``key`` is refused: nothing to verify);
    * a signed envelope with trusted key(s): verified by ``onnxguard.signing`` first (signature, schema,
      and the model file's digest when ``model_path`` is given); any failure raises ``VerificationError``
      naming the check, and the report from the verified payload is the one rendered;
    * a signed envelope without a key: refused unless ``allow_unverified``, then marked NOT VERIFIED.
    """
    from ..errors import VerificationError
    from .html import Verification

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    report, env = report_from_json(data)
    keys = [key] if isinstance(key, (str, Path)) else list(key or [])
    if keys:
        if env is None:
            raise VerificationError("signature", f"{path} is a plain report without a signature; there is nothing to verify with {keys[0]}")
        return _verify(data, keys, model_path)
    if model_path is not None:
        raise BadInputError("--model needs --key: the model's digest is checked as part of verifying a signed report")
    if env is None:
        return report, None
    if not allow_unverified:
        raise BadInputError(f"{path} is a signed report: pass --key PUBLIC_KEY to verify it before rendering, "
                            "or --no-verify to render it marked NOT VERIFIED")
    ids = envelope_keyids(env)
    return report, Verification(keyid=", ".join(ids) or "none", verified=False, note="Rendered with --no-verify.")


def _verify(data: bytes, keys: list[str | Path], model_path: str | Path | None):
    from ..signing import load_public_key, verify_envelope
    from .html import Verification

    trusted = [load_public_key(k) for k in keys]
    vr = verify_envelope(data, trusted, model_path=model_path)  # raises VerificationError naming the failed check
    held = tuple(o.name for o in vr.checks if o.ok)
    subject = vr.subjects[0] if vr.subjects else {}
    digest = (subject.get("digest") or {}).get("sha256", "") if isinstance(subject, dict) else ""
    note = f"The signed statement's subject is {subject.get('name', '?')} (sha256 {digest[:16]}…)" if subject else ""
    if "model-digest" in held:
        note += f"; the model file {Path(str(model_path)).name} was checked against it"
    return vr.report, Verification(keyid=vr.keyid, verified=True, key_source=", ".join(Path(str(k)).name for k in keys),
                                   key_type=vr.key_type, checks=held, note=note + "." if note else None)
