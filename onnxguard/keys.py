"""Signing keys: generating, storing, loading and fingerprinting them, and the raw signature primitives.

Keys are ECDSA P-256 (the default) or Ed25519. A key id is the hex sha256 of the public key's DER
SubjectPublicKeyInfo. Private keys are written 0600 and never through a symlink; the per-user key lives
in ``$XDG_CONFIG_HOME/onnxguard`` (``~/.config/onnxguard``) unless ``$ONNXGUARD_SIGNING_KEY`` names one.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .errors import BadInputError, KeyFileError

KEY_TYPES: tuple[str, ...] = ("ecdsa-p256", "ed25519")
DEFAULT_KEY_TYPE = "ecdsa-p256"
ENV_KEY = "ONNXGUARD_SIGNING_KEY"
DEFAULT_KEY_NAME = "signing-key"

PrivateKey = Union[ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey]


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


# -- signature primitives ------------------------------------------------------


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_bytes(key: PublicKey, sig: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
