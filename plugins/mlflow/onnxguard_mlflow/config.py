"""Receiver settings and policy resolution."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from onnxguard.errors import PolicyError
from onnxguard.policy import LoadedPolicy, load_policy, shipped_policies

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Settings:
    tracking_uri: str
    state_dir: Path
    secret: str | None = None
    default_policy: str = "standard"
    policy_dir: Path | None = None
    admission_policy: str | None = None  # required for protected aliases whatever the model's tag says
    protected_aliases: tuple[str, ...] = ("champion", "production")
    key_path: Path | None = None
    key_passphrase: str | None = None
    trusted_keys: list[Path] = field(default_factory=list)
    allow_unsigned: bool = False
    max_attempts: int = 3
    retry_delay_s: float = 30.0
    tolerance_s: float = 300.0
    experiment: str = "onnxguard-scans"
    seed: int = 0

    @property
    def queue_path(self) -> Path:
        return self.state_dir / "queue.sqlite"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "work"


def resolve_policy(ref: str | None, settings: Settings) -> tuple[LoadedPolicy, str]:
    """A policy named by the registered model's tag (or the configured default).

    A tag may only *name* a policy: a shipped one or a ``NAME.toml`` in the
    configured policy folder. Paths are refused so that whoever can tag a
    model cannot make the receiver read arbitrary files. Returns the loaded
    policy and the reference to pass to a child scan."""
    name = (ref or settings.default_policy).strip()
    if ref is None and (Path(name).suffix in (".toml", ".json") or "/" in name):
        return load_policy(name), name  # the operator's own default may be a file
    if not _NAME.match(name) or ".." in name:
        raise PolicyError(f"policy tag must name a policy (letters, digits, '-', '_', '.'), got {name!r}")
    if settings.policy_dir is not None:
        for ext in (".toml", ".json"):
            p = settings.policy_dir / f"{name}{ext}"
            if p.is_file():
                return load_policy(str(p)), str(p)
    if name in shipped_policies():
        return load_policy(name), name
    raise PolicyError(f"unknown policy {name!r}: not shipped and not in the policy folder")


def admission_policy(ref: str | None, settings: Settings) -> LoadedPolicy:
    """The policy a version's report must have been produced under to hold a protected alias.

    With ``settings.admission_policy`` set by the operator, that one, whatever the model's
    ``onnxguard.policy`` tag says: whoever can tag a model must not be able to lower the bar
    for production by naming a milder policy. Otherwise the policy the tag names (or the default)."""
    if settings.admission_policy:
        return load_policy(settings.admission_policy)
    return resolve_policy(ref, settings)[0]
