"""Verifying a signed risk report: named checks in order, and each failure names its check.

``envelope`` (well-formed DSSE, in-toto payload type), ``signature`` (by one of the trusted keys),
``schema`` (in-toto Statement v1 with our predicate type, a valid report, subjects consistent with it),
``model-digest`` (the model file given hashes to the subject), ``policy`` (the required policy was
applied, and the verdict is good enough). ``load_for_render`` is what the HTML page and ``report render``
use: it verifies when a trusted key is given and never presents an unverified envelope as verified.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import ValidationError

from .digest import sha256_file
from .errors import BadInputError, VerificationError
from .keys import PublicKey, key_type, keyid, load_public_key, public_key_of, verify_bytes
from .report import VERDICTS, Report, load_report
from .signing import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, first_errors, pae, subjects_for

CHECKS: tuple[str, ...] = ("envelope", "signature", "schema", "model-digest", "policy")

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _b64decode(text: Any, what: str) -> bytes:
    """Standard or URL-safe base64, padding optional (as DSSE allows); the encoding must be exact,
    so that two different strings never stand for the same bytes."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9+/_-]*={0,2}", text):
        raise VerificationError("envelope", f"{what} is not base64 text")
    urlsafe = "-" in text or "_" in text
    bare = text.rstrip("=")
    try:
        raw = base64.b64decode(bare.translate(str.maketrans("-_", "+/")) + "=" * (-len(bare) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("envelope", f"{what} is not valid base64") from None
    again = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode("ascii")
    if again.rstrip("=") != bare or (text != bare and text != again):
        raise VerificationError("envelope", f"{what} is not canonically encoded base64")
    return raw


# -- verification ------------------------------------------------------------

Status = Literal["ok", "failed", "skipped", "not requested"]


@dataclass
class CheckOutcome:
    name: str  # one of CHECKS
    status: Status
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class VerifiedReport:
    """A report whose every requested check held."""

    report: Report
    statement: dict[str, Any]
    keyid: str
    key_type: str
    subjects: list[dict[str, Any]]
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def verdict(self) -> str | None:
        return self.report.summary.verdict if self.report.summary else None


def _strict_json(data: bytes) -> Any:
    """JSON with no duplicate keys and no NaN/Infinity: a signed payload must mean one thing."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in items:
            if k in d:
                raise ValueError(f"duplicate key {k!r}")
            d[k] = v
        return d

    def constant(name: str) -> Any:
        raise ValueError(f"non-JSON number {name}")

    return json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)


def _parse_envelope(envelope: dict[str, Any] | str | bytes) -> tuple[bytes, list[tuple[str | None, bytes]]]:
    if isinstance(envelope, (str, bytes)):
        try:
            envelope = _strict_json(envelope.encode("utf-8") if isinstance(envelope, str) else envelope)
        except (ValueError, UnicodeDecodeError) as exc:
            raise VerificationError("envelope", f"not valid JSON ({exc})") from None
    if not isinstance(envelope, dict):
        raise VerificationError("envelope", "not a DSSE envelope (expected a JSON object)")
    if "payload" not in envelope and "schema_version" in envelope and "tool" in envelope:
        raise VerificationError("envelope", "this is a plain, unsigned onnxguard report, not a signed DSSE envelope")
    missing = [k for k in ("payload", "payloadType", "signatures") if k not in envelope]
    if missing:
        raise VerificationError("envelope", f"not a DSSE envelope: missing {', '.join(missing)}")
    if envelope["payloadType"] != PAYLOAD_TYPE:
        raise VerificationError("envelope", f"payloadType is {str(envelope['payloadType'])[:80]!r}, expected {PAYLOAD_TYPE!r}")
    payload = _b64decode(envelope["payload"], "payload")
    sigs = envelope["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise VerificationError("envelope", "the envelope carries no signatures")
    out: list[tuple[str | None, bytes]] = []
    for i, s in enumerate(sigs):
        if not isinstance(s, dict) or "sig" not in s:
            raise VerificationError("envelope", f"signature {i} is malformed (expected {{keyid, sig}})")
        kid = s.get("keyid")
        if kid is not None and not isinstance(kid, str):
            raise VerificationError("envelope", f"signature {i} has a non-string keyid")
        out.append((kid or None, _b64decode(s["sig"], f"signature {i}")))
    return payload, out


def _check_signature(payload: bytes, sigs: list[tuple[str | None, bytes]], keys: list[PublicKey]) -> tuple[str, str]:
    """(keyid, key type) of a trusted key with a valid signature, else VerificationError('signature')."""
    trusted = {keyid(k): k for k in keys}
    if not trusted:
        raise VerificationError("signature", "no trusted key given")
    msg = pae(PAYLOAD_TYPE, payload)
    tried = False
    for kid, sig in sigs:
        for tid, key in trusted.items():
            if kid is not None and kid != tid:
                continue
            tried = True
            if verify_bytes(key, sig, msg):
                return tid, key_type(key)
    if not tried:
        signers = ", ".join(sorted(f"{k[:16]}…" for k, _ in sigs if k)) or "?"
        raise VerificationError(
            "signature", f"signed by keyid {signers}, which is not a trusted key (trusted: {', '.join(f'{t[:16]}…' for t in trusted)})"
        )
    raise VerificationError("signature", "the signature does not verify with the trusted key: the payload or the signature was altered, or another key signed it")


def _check_schema(payload: bytes) -> tuple[dict[str, Any], Report, list[dict[str, Any]]]:
    try:
        st = _strict_json(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError("schema", f"the payload is not valid JSON ({exc})") from None
    if not isinstance(st, dict):
        raise VerificationError("schema", "the payload is not an in-toto Statement (not a JSON object)")
    if st.get("_type") != STATEMENT_TYPE:
        raise VerificationError("schema", f"_type is {str(st.get('_type'))[:80]!r}, expected {STATEMENT_TYPE!r}")
    if st.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError("schema", f"predicateType is {str(st.get('predicateType'))[:120]!r}, expected {PREDICATE_TYPE!r}")
    subj = st.get("subject")
    if not isinstance(subj, list) or not subj:
        raise VerificationError("schema", "the statement has no subject")
    for i, s in enumerate(subj):
        ok = (
            isinstance(s, dict)
            and isinstance(s.get("name"), str)
            and isinstance(s.get("digest"), dict)
            and isinstance(s["digest"].get("sha256"), str)
            and _SHA256_HEX.match(s["digest"]["sha256"])
        )
        if not ok:
            raise VerificationError("schema", f"subject {i} is not {{name, digest: {{sha256: <64 hex>}}}}")
    if "predicate" not in st:
        raise VerificationError("schema", "the statement has no predicate")
    try:
        report = load_report(st["predicate"])
    except ValidationError as exc:
        raise VerificationError("schema", f"the predicate is not a valid onnxguard report: {first_errors(exc)}") from None
    expected = [(s["name"], s["digest"]["sha256"]) for s in subjects_for(report)]
    actual = [(s["name"], s["digest"]["sha256"]) for s in subj]
    if actual[0][1] != report.model.sha256:
        raise VerificationError("schema", "the subject's digest differs from the model digest inside the report")
    if sorted(actual[1:]) != sorted(expected[1:]):
        raise VerificationError("schema", "the subjects differ from the external-data files listed in the report")
    return st, report, subj


def _check_model(model_path: Path, subj: list[dict[str, Any]]) -> str:
    try:
        got = sha256_file(model_path)
    except OSError as exc:
        raise BadInputError(f"cannot read model {model_path}: {exc.strerror or exc}") from None
    want = subj[0]["digest"]["sha256"]
    if got != want:
        raise VerificationError(
            "model-digest", f"{model_path.name} has sha256 {got[:16]}…, but the report is about {subj[0]['name']} with sha256 {want[:16]}…"
        )
    base = model_path.parent.resolve()
    for s in subj[1:]:
        name = s["name"]
        p = (base / name).resolve()
        if os.path.isabs(name) or (p != base and base not in p.parents):
            raise VerificationError("model-digest", f"external data {name!r} lies outside the model's folder")
        try:
            h = sha256_file(p)
        except OSError as exc:
            raise VerificationError("model-digest", f"external data {name} cannot be read: {exc.strerror or exc}") from None
        if h != s["digest"]["sha256"]:
            raise VerificationError("model-digest", f"external data {name} has sha256 {h[:16]}…, the report says {s['digest']['sha256'][:16]}…")
    extra = f" and its {len(subj) - 1} external-data file(s) match" if len(subj) > 1 else " matches"
    return f"{model_path.name}{extra} the subject (sha256 {got[:16]}…)"


def _short_value(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:40] + "…"


def _check_policy(report: Report, policy: Any, require_verdict: str | None) -> str:
    from .policy import LoadedPolicy, load_policy

    pol = report.policy
    if policy is not None:
        lp: LoadedPolicy = policy if isinstance(policy, LoadedPolicy) else load_policy(str(policy))
        if pol is None:
            raise VerificationError("policy", f"the report records no policy; required '{lp.policy.name}' v{lp.policy.version}")
        if pol.name != lp.policy.name or pol.sha256 != lp.sha256:
            raise VerificationError(
                "policy",
                f"the report was graded under '{pol.name}' v{pol.version} (sha256 {pol.sha256[:16]}…), "
                f"not the required '{lp.policy.name}' v{lp.policy.version} (sha256 {lp.sha256[:16]}…)",
            )
        if pol.deviations:
            shown = "; ".join(f"{d.key} {_short_value(d.policy_value)} -> {_short_value(d.effective_value)}" for d in pol.deviations[:4])
            more = f" (and {len(pol.deviations) - 4} more)" if len(pol.deviations) > 4 else ""
            raise VerificationError("policy", f"report deviates from '{lp.policy.name}': {shown}{more}")
        if pol.effective_sha256 is None:
            raise VerificationError(
                "policy", f"the report (schema {report.schema_version}) does not record its effective policy, so it cannot be "
                f"shown to have run '{lp.policy.name}' unchanged; rescan with onnxguard >= schema 1.2"
            )
        want = lp.effective_sha256
        if pol.effective_sha256 != want:
            raise VerificationError(
                "policy", f"the report's effective policy (sha256 {pol.effective_sha256[:16]}…) differs from "
                f"'{lp.policy.name}' (sha256 {want[:16]}…)",
            )
    verdict = report.summary.verdict if report.summary else None
    pname = f"'{pol.name}' v{pol.version}" if pol else "no policy"
    if require_verdict is not None:
        if require_verdict not in VERDICTS:
            raise BadInputError(f"required verdict must be one of {', '.join(VERDICTS)}, not {require_verdict!r}")
        if verdict is None:
            raise VerificationError("policy", "the report has no verdict")
        if VERDICTS.index(verdict) > VERDICTS.index(require_verdict):
            raise VerificationError("policy", f"verdict is {verdict} under {pname}; required {require_verdict}{' or better' if require_verdict != 'pass' else ''}")
    pinned = "" if policy is not None else " (policy not pinned: pass --policy to require one)"
    if pol is not None and pol.deviations and policy is None:
        pinned += f" (DEVIATES from '{pol.name}' in {len(pol.deviations)} setting(s): not graded under that policy)"
    return f"{pname} applied (sha256 {pol.sha256[:16]}…), verdict {verdict}{pinned}" if pol else f"verdict {verdict}{pinned}"


def check_envelope(
    envelope: dict[str, Any] | str | bytes,
    keys: PublicKey | Iterable[PublicKey],
    model_path: str | Path | None = None,
    policy: Any = None,
    require_verdict: str | None = None,
) -> tuple[list[CheckOutcome], VerifiedReport | None]:
    """Run every check and say how each went; a check that depends on a failed one is skipped.

    Returns (outcomes in the order of ``CHECKS``, the verified report or None if any check failed).
    Unreadable inputs (a model file that cannot be read, an unknown policy) raise ``BadInputError``."""
    if isinstance(keys, (str, Path, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        keys = [keys]  # type: ignore[list-item]
    key_list = [load_public_key(k) if isinstance(k, (str, Path)) else public_key_of(k) for k in keys]
    mp = Path(model_path) if model_path is not None else None
    if mp is not None and not mp.is_file():
        raise BadInputError(f"model file not found: {mp}")
    outcomes: list[CheckOutcome] = []
    failed = False

    def run(name: str, requested: bool, fn: Callable[[], str]) -> None:
        nonlocal failed
        if not requested:
            outcomes.append(CheckOutcome(name, "not requested"))
        elif failed:
            outcomes.append(CheckOutcome(name, "skipped", "an earlier check failed"))
        else:
            try:
                outcomes.append(CheckOutcome(name, "ok", fn()))
            except VerificationError as exc:
                failed = True
                outcomes.append(CheckOutcome(name, "failed", exc.detail if exc.check == name else str(exc)))

    state: dict[str, Any] = {}

    def env() -> str:
        state["payload"], state["sigs"] = _parse_envelope(envelope)
        return f"DSSE, {PAYLOAD_TYPE}, {len(state['sigs'])} signature(s)"

    def sig() -> str:
        state["keyid"], state["key_type"] = _check_signature(state["payload"], state["sigs"], key_list)
        return f"{state['key_type']}, keyid {state['keyid'][:16]}…"

    def schema() -> str:
        state["statement"], state["report"], state["subjects"] = _check_schema(state["payload"])
        r: Report = state["report"]
        return f"in-toto Statement v1, predicate {PREDICATE_TYPE}, report schema {r.schema_version}, subject {state['subjects'][0]['name']}"

    run("envelope", True, env)
    run("signature", True, sig)
    run("schema", True, schema)
    run("model-digest", mp is not None, lambda: _check_model(mp, state["subjects"]))  # type: ignore[arg-type]
    run("policy", policy is not None or require_verdict is not None, lambda: _check_policy(state["report"], policy, require_verdict))
    if failed:
        return outcomes, None
    return outcomes, VerifiedReport(
        report=state["report"], statement=state["statement"], keyid=state["keyid"], key_type=state["key_type"],
        subjects=state["subjects"], checks=outcomes,
    )


def verify_envelope(
    envelope: dict[str, Any] | str | bytes,
    keys: PublicKey | Iterable[PublicKey],
    model_path: str | Path | None = None,
    policy: Any = None,
    require_verdict: str | None = None,
) -> VerifiedReport:
    """Verify a signed report; raise ``VerificationError`` naming the first check that failed
    (``envelope``, ``signature``, ``schema``, ``model-digest`` or ``policy``).

    ``keys``: the trusted public key(s), as key objects or PEM file paths. ``model_path``: the model file the report must be about.
    ``policy``: a shipped policy name, a policy file or a ``LoadedPolicy`` that must have been applied.
    ``require_verdict``: the worst acceptable verdict (``pass``: only pass; ``warn``: pass or warn)."""
    outcomes, verified = check_envelope(envelope, keys, model_path, policy, require_verdict)
    for o in outcomes:
        if o.status == "failed":
            raise VerificationError(o.name, o.detail)
    assert verified is not None
    return verified


def open_statement(envelope: dict[str, Any] | str | bytes, keys: PublicKey | Iterable[PublicKey]) -> tuple[dict[str, Any], str, str]:
    """The statement inside a DSSE envelope signed by one of ``keys``: (statement, keyid, key type).

    Runs the ``envelope`` and ``signature`` checks of :func:`verify_envelope`; the caller checks the
    statement's type and content. Raises ``VerificationError`` naming the check that failed."""
    if isinstance(keys, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        keys = [keys]
    payload, sigs = _parse_envelope(envelope)
    kid, kt = _check_signature(payload, sigs, list(keys))
    try:
        st = _strict_json(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError("schema", f"the payload is not valid JSON ({exc})") from None
    if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE:
        raise VerificationError("schema", "the payload is not an in-toto Statement v1")
    return st, kid, kt


# -- unwrapping and rendering ------------------------------------------------


def is_envelope(doc: Any) -> bool:
    return isinstance(doc, dict) and "payloadType" in doc and "payload" in doc and "signatures" in doc


def report_from_json(data: bytes | str) -> tuple[Report, dict[str, Any] | None]:
    """(report, envelope or None). A DSSE envelope is unwrapped WITHOUT verifying it (for diffs and
    pages that say so); whatever decides on a report verifies it with ``verify_envelope``."""
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


@dataclass(frozen=True)
class Verification:
    """How a rendered report was obtained. ``verified`` is True only when the
    signature was checked against a trusted key; ``checks`` names what held."""

    keyid: str
    verified: bool = True
    key_source: str | None = None
    key_type: str | None = None
    checks: tuple[str, ...] = ()
    note: str | None = None


def load_for_render(path: str | Path, key: str | Path | list[str | Path] | None = None, allow_unverified: bool = False,
                    model_path: str | Path | None = None) -> tuple[Report, Verification | None]:
    """The report to render and how it was authenticated: ``(Report, Verification | None)``.

    * a plain report: rendered marked UNSIGNED (``key`` is refused: nothing to verify);
    * a signed envelope with trusted key(s): verified first (signature, schema,
      and the model file's digest when ``model_path`` is given); any failure raises ``VerificationError``
      naming the check, and the report from the verified payload is the one rendered;
    * a signed envelope without a key: refused unless ``allow_unverified``, then marked NOT VERIFIED.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    report, env = report_from_json(data)
    keys = [key] if isinstance(key, (str, Path)) else list(key or [])
    if keys:
        if env is None:
            raise VerificationError("signature", f"{path} is a plain report without a signature; there is nothing to verify with {keys[0]}")
        return _verify_for_render(data, keys, model_path)
    if model_path is not None:
        raise BadInputError("--model needs --key: the model's digest is checked as part of verifying a signed report")
    if env is None:
        return report, None
    if not allow_unverified:
        raise BadInputError(f"{path} is a signed report: pass --key PUBLIC_KEY to verify it before rendering, "
                            "or --no-verify to render it marked NOT VERIFIED")
    ids = envelope_keyids(env)
    return report, Verification(keyid=", ".join(ids) or "none", verified=False, note="Rendered with --no-verify.")


def _verify_for_render(data: bytes, keys: list[str | Path], model_path: str | Path | None) -> tuple[Report, Verification]:
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
