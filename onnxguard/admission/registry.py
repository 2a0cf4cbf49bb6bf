"""What the gate asks of a model registry: the ``Registry`` protocol, and the tags it writes.

A registry plug-in (``plugins/mlflow`` for MLflow) implements these calls and nothing else.
None of them creates a model version or sets an alias, the two events the gate acts on, so the
gate's own writes cannot start a loop.

Trust: everything a registry returns is treated as written by the uploader, except the
attestation's *signature*. Tags are written for humans and never read for a decision. The
attestation is found where the gate stored it (``load_attestations``), but where it lies is not
what makes it trustworthy: anyone with write access to the registry can put a file there. It is
trusted only when it verifies with the gate's key and names this model, version and artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

TAG_PREFIX = "onnxguard."
POLICY_TAG = "onnxguard.policy"  # on the registered model: which policy its versions are scanned under
TAG_STATUS = "onnxguard.status"  # scanning | done | failed
TAG_VERDICT = "onnxguard.verdict"
TAG_RISK = "onnxguard.highest_risk"
TAG_POLICY = "onnxguard.policy"
TAG_POLICY_SHA = "onnxguard.policy_sha256"
TAG_REPORT_SHA = "onnxguard.report_sha256"  # digest of the stored attestation (for humans)
TAG_REPORT_URI = "onnxguard.report_uri"  # where the attestation was stored (for humans)
TAG_SIGNED = "onnxguard.signed"
TAG_FILES = "onnxguard.files"
TAG_ERROR = "onnxguard.error"
TAG_ATTEMPTS = "onnxguard.attempts"
ATTESTATION_FILE = "attestation.dsse.json"
MAX_ATTESTATION_BYTES = 32 << 20
MAX_ATTESTATION_CANDIDATES = 5


def admission_tag(alias: str) -> str:
    return f"onnxguard.admission.{alias}"


class RegistryError(Exception):
    """The registry could not be asked (network, missing entity, bad answer)."""


@runtime_checkable
class Registry(Protocol):
    """A model registry as the admission gate sees it."""

    kind: str  # "mlflow", "memory", ...: bound into the attestation

    def artifact_identity(self, name: str, version: str) -> str:
        """What the version's artifact is (e.g. its source URI and run id): bound into the attestation,
        so that an attestation cannot be replayed onto another version."""

    def download(self, name: str, version: str, dst: Path) -> Path:
        """Copy the version's whole artifact into ``dst``; returns its root folder."""

    def loadable_paths(self, root: Path) -> list[str]:
        """The file(s) the registry's loader would open for this artifact (relative to ``root``),
        read from the registry's own metadata (MLflow: the onnx flavour's ``data`` in ``MLmodel``).
        Raises ``onnxguard.errors.AdmissionDenied`` when that cannot be told."""

    def model_policy(self, name: str) -> str | None:
        """The policy the registered model's tag names, for scanning (never for admission)."""

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None: ...

    def delete_tag(self, name: str, version: str, key: str) -> None: ...

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version the alias points at, None when the alias is not set; ``RegistryError`` when unknown."""

    def delete_alias(self, name: str, alias: str) -> None: ...

    def store_artifacts(self, name: str, version: str, files: dict[str, bytes], work: Path) -> str:
        """Store the gate's files (the signed reports and the attestation) for this version; returns their location."""

    def load_attestations(self, name: str, version: str, max_bytes: int) -> list[bytes | None]:
        """The attestation(s) stored for this version by ``store_artifacts``, newest first, at most
        ``MAX_ATTESTATION_CANDIDATES``; one over ``max_bytes`` is not read and comes back as None."""
