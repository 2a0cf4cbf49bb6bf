"""The plugin's door to onnxguard: scan in an isolated child, seal and open reports.

Uses ``onnxguard.sandbox.scan_isolated`` and ``onnxguard.signing`` when the
installed onnxguard has them. Without them it falls back, and says so:
scans run as a separate ``python -m onnxguard scan`` process (isolated, but
without the sandbox's resource limits), and reports are stored unsigned,
protected only by the sha256 digest written into the registry's tags.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxguard.digest import sha256_file
from onnxguard.errors import BadInputError, ScanFailed, VerificationError
from onnxguard.policy import LoadedPolicy
from onnxguard.report import Report, load_report
from onnxguard.scan import ScanOptions

try:  # issue 7
    from onnxguard.sandbox import scan_isolated as _scan_isolated
except ImportError:  # pragma: no cover - depends on the installed onnxguard
    _scan_isolated = None

try:  # issue 4
    from onnxguard import keys as _keys
    from onnxguard import signing as _signing
    from onnxguard import verify as _verify
except ImportError:  # pragma: no cover - depends on the installed onnxguard
    _keys = _signing = _verify = None  # type: ignore[assignment]

HAS_SANDBOX = _scan_isolated is not None
HAS_SIGNING = _signing is not None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scan_file(path: Path, policy: LoadedPolicy, policy_ref: str, seed: int = 0) -> Report:
    """Scan one ONNX file under ``policy`` in a child process; returns the graded report."""
    opts = ScanOptions(model_path=path, policy=policy, seed=seed)
    if _scan_isolated is not None:
        return _scan_isolated(opts, policy.policy.limits)
    return _scan_subprocess(path, policy, policy_ref, seed)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the scan child gets SIGKILL if the receiver dies, so no orphan keeps scanning."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _scan_subprocess(path: Path, policy: LoadedPolicy, policy_ref: str, seed: int) -> Report:
    with tempfile.TemporaryDirectory(prefix="onnxguard-mlflow-") as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "onnxguard", "scan", str(path), "--policy", policy_ref, "--seed", str(seed), "--format", "json", "--out", str(out), "--quiet"]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=policy.policy.limits.timeout_s,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )
        except subprocess.TimeoutExpired:
            raise ScanFailed(f"scan timed out after {policy.policy.limits.timeout_s:g}s") from None
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        if proc.returncode == 2:
            raise BadInputError(tail[0] or "the model was refused as bad input")
        if proc.returncode not in (0, 1) or not out.is_file():
            raise ScanFailed(f"scan process exited with {proc.returncode}: {tail[0]}")
        report = load_report(out.read_bytes())
    if report.policy is None or report.policy.sha256 != policy.sha256:
        raise ScanFailed("the scan ran under a different policy than the one resolved")
    return report


@dataclass
class Sealed:
    data: bytes
    filename: str
    signed: bool

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


class Sealer:
    """Signs reports (DSSE) with the receiver's key, or stores them plain when signing is unavailable."""

    def __init__(self, key_path: Path | None = None, passphrase: str | None = None) -> None:
        self.key: Any = None
        if key_path is not None:
            if _signing is None:
                raise BadInputError("a signing key was given but this onnxguard has no signing support (onnxguard.signing)")
            self.key = _keys.load_private_key(key_path, passphrase)

    @property
    def signs(self) -> bool:
        return self.key is not None

    def seal(self, report: Report, stem: str) -> Sealed:
        if self.key is not None:
            env = _signing.sign_report(report, self.key)  # type: ignore[union-attr]
            return Sealed(json.dumps(env, indent=2).encode("utf-8") + b"\n", f"{stem}.dsse.json", True)
        return Sealed(report.to_json().encode("utf-8") + b"\n", f"{stem}.report.json", False)


class Opener:
    """Reads a stored report back and checks it: signature (when keys are trusted), model digest, policy."""

    def __init__(self, trusted_key_paths: list[Path] | None = None, allow_unsigned: bool = False) -> None:
        self.keys: list[Any] = []
        if trusted_key_paths:
            if _signing is None:
                raise BadInputError("trusted keys were given but this onnxguard has no signing support (onnxguard.signing)")
            self.keys = [_keys.load_public_key(p) for p in trusted_key_paths]
        self.allow_unsigned = allow_unsigned

    def open(self, data: bytes, model_path: Path, policy: LoadedPolicy) -> Report:
        """The verified report, or ``VerificationError`` naming the check that failed."""
        try:
            doc = json.loads(data)
        except ValueError:
            raise VerificationError("format", "the stored report is not JSON") from None
        is_envelope = isinstance(doc, dict) and "payloadType" in doc and "signatures" in doc
        if is_envelope:
            if _signing is None or not self.keys:
                raise VerificationError("signature", "the report is signed but no trusted key is configured")
            report = _verify.verify_envelope(doc, self.keys, model_path=model_path, policy=policy).report
        else:
            if not self.allow_unsigned:
                raise VerificationError("signature", "the report is not signed")
            report = load_report(doc)
        if report.model.sha256 != sha256_file(model_path):
            raise VerificationError("digest", "the report is for a different model file")
        if report.policy is None or report.policy.sha256 != policy.sha256:
            raise VerificationError("policy", f"the report was not made under the required policy '{policy.policy.name}' (sha256 {policy.sha256[:12]})")
        return report
