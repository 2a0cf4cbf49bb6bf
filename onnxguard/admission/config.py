"""The gate's settings and policy resolution."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PolicyError
from ..policy import LoadedPolicy, load_policy, shipped_policies

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Settings:
    state_dir: Path
    secret: str | None = None
    default_policy: str = "standard"
    policy_dir: Path | None = None
    # policies a version's report may be under to hold a protected alias (default: the default policy);
    # chosen by the operator, never by a tag
    admission_policies: tuple[str, ...] = ()
    protected_aliases: tuple[str, ...] = ("champion", "production")
    key_path: Path | None = None
    key_passphrase: str | None = None
    trusted_keys: list[Path] = field(default_factory=list)
    allow_unsigned: bool = False  # only `check --allow-unsigned`; the receiver never sets it
    max_attempts: int = 3
    retry_delay_s: float = 30.0
    tolerance_s: float = 300.0
    seed: int = 0
    admission_timeout_s: float = 120.0  # an alias check that takes longer is a refusal
    # the receiver against hostile clients
    http_workers: int = 4  # threads that serve HTTP requests
    max_connections: int = 32  # open connections at once; more are refused at once
    socket_timeout_s: float = 10.0  # per read or write on a connection
    request_deadline_s: float = 30.0  # a whole request, however slowly it drips in
    max_body: int = 1 << 20

    @property
    def queue_path(self) -> Path:
        return self.state_dir / "queue.sqlite"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "work"


def resolve_policy(ref: str | None, settings: Settings) -> tuple[LoadedPolicy, str]:
    """A policy named by the registered model's tag (or the configured default), for scanning.

    A tag may only *name* a policy: a shipped one or a ``NAME.toml`` in the
    configured policy folder. Paths are refused so that whoever can tag a
    model cannot make the receiver read arbitrary files. Returns the loaded
    policy and the reference to pass to a child scan."""
    return _named(ref, settings, operator=ref is None)


def _named(ref: str | None, settings: Settings, operator: bool) -> tuple[LoadedPolicy, str]:
    name = (ref or settings.default_policy).strip()
    if operator and (Path(name).suffix in (".toml", ".json") or "/" in name):
        return load_policy(name), name  # the operator's own setting may be a file
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


def admission_policies(settings: Settings) -> list[LoadedPolicy]:
    """The policies a version's report may have been produced under to hold a protected alias.

    Set by the operator (``--admission-policy``, repeatable), else the default policy. Never the
    model's ``onnxguard.policy`` tag: whoever can tag a model must not be able to lower the bar for
    production by naming a milder policy."""
    refs = settings.admission_policies or (settings.default_policy,)
    return [_named(r, settings, operator=True)[0] for r in refs]
