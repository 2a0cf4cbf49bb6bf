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

Verification runs named checks in order, and each failure names its check:
``envelope`` (well-formed DSSE, in-toto payload type), ``signature`` (by one of the trusted keys),
``schema`` (in-toto Statement v1 with our predicate type, a valid report, subjects consistent with it),
``model-digest`` (the model file given hashes to the subject), ``policy`` (the required policy was
applied, and the verdict is good enough).

Signing happens in the process that holds the key, after the scan; the key is never handed to
(or loaded before) the scan, which may run in a sandboxed child process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Union

import rfc8785
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import ValidationError

from .digest import sha256_file
from .errors import BadInputError, KeyFileError, SigningError, VerificationError
from .report import VERDICTS, Report, load_report

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://onnxguard.dev/attestation/risk-report/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"

KEY_TYPES: tuple[str, ...] = ("ecdsa-p256", "ed25519")
DEFAULT_KEY_TYPE = "ecdsa-p256"
ENV_KEY = "ONNXGUARD_SIGNING_KEY"
DEFAULT_KEY_NAME = "signing-key"

CHECKS: tuple[str, ...] = ("envelope", "signature", "schema", "model-digest", "policy")

PrivateKey = Union[ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey]

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


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


# -- keys --------------------------------------------------------------------


def key_type(key: PrivateKey | PublicKey) -> str:
    """'ecdsa-p256' or 'ed25519'; anything else is refused."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256"
        raise KeyFileError(f"unsupported elliptic curve {key.curve.name}: onnxguard signs with ECDSA P-256 or Ed25519")
    raise KeyFileError(f"unsupported key type {type(key).__name__}: onnxguard signs with ECDSA P-256 or Ed25519")


def public_key_of(key: PrivateKey | PublicKey) -> PublicKey:
    key_type(key)
    return key.public_key() if isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)) else key


def keyid(key: PrivateKey | PublicKey) -> str:
    """Stable fingerprint: hex sha256 of the public key's DER SubjectPublicKeyInfo."""
    der = public_key_of(key).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def generate_key(kind: str = DEFAULT_KEY_TYPE) -> PrivateKey:
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise BadInputError(f"unknown key type '{kind}': use one of {', '.join(KEY_TYPES)}")


def _passphrase_bytes(passphrase: str | bytes | None) -> bytes | None:
    if passphrase is None or passphrase == "" or passphrase == b"":
        return None
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase


def private_pem(key: PrivateKey, passphrase: str | bytes | None = None) -> bytes:
    pw = _passphrase_bytes(passphrase)
    enc = serialization.BestAvailableEncryption(pw) if pw else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    return public_key_of(key).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _create_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never follow or reuse an existing file) with exactly ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; never added any
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def keypair_paths(name: str | Path) -> tuple[Path, Path]:
    """``NAME`` -> (``NAME.pem``, ``NAME.pub.pem``); a trailing ``.pem`` on NAME is tolerated."""
    s = str(name)
    if s.endswith(".pub.pem"):
        s = s[: -len(".pub.pem")]
    elif s.endswith(".pem"):
        s = s[: -len(".pem")]
    return Path(s + ".pem"), Path(s + ".pub.pem")


def write_keypair(
    name: str | Path, passphrase: str | bytes | None = None, kind: str = DEFAULT_KEY_TYPE, overwrite: bool = False
) -> tuple[Path, Path]:
    """Generate a key and write ``NAME.pem`` (PKCS#8, mode 0600, encrypted when a passphrase is
    given) and ``NAME.pub.pem`` (SubjectPublicKeyInfo). Returns both paths."""
    priv, pub = keypair_paths(name)
    for p in (priv, pub):
        if p.exists() or p.is_symlink():
            if not overwrite:
                raise KeyFileError(f"{p} already exists: choose another name (keygen --force overwrites)")
    key = generate_key(kind)
    try:
        priv.parent.mkdir(parents=True, exist_ok=True)
        for p in (priv, pub):
            if overwrite and (p.exists() or p.is_symlink()):
                p.unlink()
        _create_file(priv, private_pem(key, passphrase), 0o600)
        _create_file(pub, public_pem(key), 0o644)
    except OSError as exc:
        raise KeyFileError(f"cannot write key pair {priv}: {exc.strerror or exc}") from None
    return priv, pub


def _read_key_file(path: str | Path) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key {p}: {exc.strerror or exc}") from None


def load_private_key(path: str | Path, passphrase: str | bytes | None = None) -> PrivateKey:
    data = _read_key_file(path)
    pw = _passphrase_bytes(passphrase)
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0] or b"Proc-Type: 4,ENCRYPTED" in data
    try:
        key = serialization.load_pem_private_key(data, password=pw if encrypted else None)
    except TypeError:
        raise KeyFileError(f"signing key {path} is passphrase-protected: give its passphrase (--passphrase-env VAR)") from None
    except (ValueError, UnsupportedAlgorithm):
        if encrypted:
            raise KeyFileError(f"cannot decrypt signing key {path}: wrong passphrase") from None
        if b"PUBLIC KEY" in data:
            raise KeyFileError(f"{path} is a public key: signing needs the private key (NAME.pem)") from None
        raise KeyFileError(f"{path} is not a PEM private key") from None
    key_type(key)  # refuses RSA, other curves, ...
    return key  # type: ignore[return-value]


def load_public_key(path: str | Path) -> PublicKey:
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise KeyFileError(f"{path} is a private key: verify with the public key (NAME.pub.pem), and keep the private key private")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not a PEM public key") from None
    key_type(key)
    return key  # type: ignore[return-value]


def preflight_private_key(path: str | Path, have_passphrase: bool) -> None:
    """Cheap checks before a long scan, without reading the key material: the file exists and is
    readable, and a passphrase is at hand if its PEM header says it is encrypted."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY)
        try:
            head = os.read(fd, 40)  # the PEM header line only
        finally:
            os.close(fd)
    except OSError as exc:
        raise KeyFileError(f"cannot read signing key {p}: {exc.strerror or exc}") from None
    if b"ENCRYPTED" in head and not have_passphrase:
        raise KeyFileError(f"signing key {p} is passphrase-protected: give its passphrase (--passphrase-env VAR)")
    if not head.startswith(b"-----BEGIN") or b"PUBLIC KEY" in head:
        raise KeyFileError(f"{p} is not a PEM private key")


def config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "onnxguard"


def default_key_path() -> Path:
    """``$ONNXGUARD_SIGNING_KEY`` if set, else the per-user key under ``$XDG_CONFIG_HOME/onnxguard``."""
    env = os.environ.get(ENV_KEY)
    return Path(env) if env else config_dir() / f"{DEFAULT_KEY_NAME}.pem"


def default_key(passphrase: str | bytes | None = None, notify: Callable[[str], None] | None = None) -> PrivateKey:
    """The signing key when none is named: ``$ONNXGUARD_SIGNING_KEY`` (must exist), else the
    per-user default key, created (ECDSA P-256, mode 0600) on first use, with a message on stderr."""
    env = os.environ.get(ENV_KEY)
    if env:
        return load_private_key(env, passphrase)
    priv = config_dir() / f"{DEFAULT_KEY_NAME}.pem"
    if not priv.exists():
        try:
            priv.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise KeyFileError(f"cannot create {priv.parent} for the default signing key: {exc.strerror or exc}") from None
        try:
            _, pub = write_keypair(priv, passphrase=passphrase)
        except KeyFileError:
            if not priv.exists():  # not a concurrent creation: a real failure
                raise
        else:
            say = notify or (lambda m: print(m, file=sys.stderr))
            say(
                f"onnxguard: created a new signing key {priv} (ECDSA P-256, mode 0600) and its public key {pub}; "
                f"registries verify your reports with the public key (set {ENV_KEY} or pass --key to use another)"
            )
    return load_private_key(priv, passphrase)


# -- signing -----------------------------------------------------------------


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _verify_sig(key: PublicKey, sig: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


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
        raise SigningError(f"the report does not read back as a valid report, so it was not signed: {_first_errors(exc)}") from None
    payload = canonical(statement)
    sig = _sign(key, pae(PAYLOAD_TYPE, payload))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": keyid(key), "sig": base64.b64encode(sig).decode("ascii")}],
    }


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


def _first_errors(exc: ValidationError, n: int = 3) -> str:
    errs = exc.errors()
    parts = [f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in errs[:n]]
    more = f" (+{len(errs) - n} more)" if len(errs) > n else ""
    return "; ".join(parts) + more


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
            if _verify_sig(key, sig, msg):
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
        raise VerificationError("schema", f"the predicate is not a valid onnxguard report: {_first_errors(exc)}") from None
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


# -- other statements (e.g. the admission gate's attestation) -----------------


def sign_statement(statement: dict[str, Any], key: PrivateKey) -> dict[str, Any]:
    """Any in-toto statement (a JSON object) as a signed DSSE envelope, with the same encoding as reports."""
    payload = canonical(statement)
    sig = _sign(key, pae(PAYLOAD_TYPE, payload))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": keyid(key), "sig": base64.b64encode(sig).decode("ascii")}],
    }


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
