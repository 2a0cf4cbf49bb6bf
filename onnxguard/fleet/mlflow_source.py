"""``models:/...`` targets: model versions in an MLflow registry, downloaded for scanning.

* ``models:/NAME``          every version of NAME
* ``models:/NAME/VERSION``  one version;  ``models:/NAME@ALIAS``: the version an alias points to
* ``models:/*``             every version of every registered model

The registry is the one ``MLFLOW_TRACKING_URI`` (or ``--tracking-uri``) names. mlflow is imported
only here, and only when such a target is given (``pip install mlflow``, or the MLflow plugin).
Each version's artifacts are downloaded once into ``<out>/.cache/mlflow/NAME/vVERSION`` (a
version's artifacts do not change); every ``.onnx`` file among them is one model of the fleet.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import BadInputError, ScanFailed
from .entry import FleetEntry, slug_for

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,254}$")  # also keeps the search filter free of quotes
_DONE = ".onnxguard-complete"


def parse_target(uri: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of a ``models:/`` target."""
    rest = uri[len("models:/"):]
    alias = version = None
    if "@" in rest:
        rest, alias = rest.split("@", 1)
    elif "/" in rest:
        rest, version = rest.split("/", 1)
        if not version.isdigit():
            raise BadInputError(f"{uri}: the version must be a number (models:/NAME/VERSION)")
    if rest != "*" and not _NAME.match(rest):
        raise BadInputError(f"{uri}: not a registered model name")
    if alias is not None and not re.match(r"^[A-Za-z0-9_\-]{1,255}$", alias):
        raise BadInputError(f"{uri}: not an alias")
    return rest, version, alias


def _client(tracking_uri: str | None) -> Any:
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise BadInputError("models:/ targets need mlflow (pip install mlflow, or the onnxguard MLflow plugin)") from None
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise BadInputError("models:/ targets need a registry: set MLFLOW_TRACKING_URI or pass --tracking-uri")
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def _versions(client: Any, name: str, version: str | None, alias: str | None) -> list[tuple[str, str]]:
    if alias is not None:
        return [(name, str(client.get_model_version_by_alias(name, alias).version))]
    if version is not None:
        return [(name, str(client.get_model_version(name, version).version))]
    names = [m.name for m in client.search_registered_models()] if name == "*" else [name]
    out = []
    for n in names:
        out += sorted(((n, str(v.version)) for v in client.search_model_versions(f"name='{n}'")), key=lambda t: int(t[1]))
    return out


def from_registry(uri: str, cache_dir: Path, tracking_uri: str | None = None) -> list[FleetEntry]:
    """Download (once) and list every ONNX file of the model versions that ``uri`` names."""
    from .store import ensure_dir

    name, version, alias = parse_target(uri)
    client, turi = _client(tracking_uri)
    from mlflow.artifacts import download_artifacts
    try:
        versions = _versions(client, name, version, alias)
    except Exception as exc:  # noqa: BLE001 - the registry's errors become one readable message
        raise BadInputError(f"{uri}: the registry at {turi} says: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    if not versions:
        raise BadInputError(f"{uri}: no model version in the registry at {turi}")
    entries = []
    for n, v in versions:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", n)
        dst = cache_dir / "mlflow" / safe / f"v{v}"
        if not (dst / _DONE).is_file():
            ensure_dir(dst)
            try:
                src = client.get_model_version_download_uri(n, v)
                download_artifacts(artifact_uri=src, dst_path=str(dst), tracking_uri=turi)
            except Exception as exc:  # noqa: BLE001
                raise ScanFailed(f"cannot download models:/{n}/{v}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
            (dst / _DONE).write_text(f"models:/{n}/{v}\n")
        files = [p for p in sorted(dst.rglob("*.onnx")) if p.is_file() and not p.is_symlink()]
        for p in files:
            rel = p.relative_to(dst).as_posix()
            label = f"{n}/{v}" + (f"/{rel}" if len(files) > 1 else "")
            entries.append(FleetEntry(path=p, name=label, slug=slug_for(p, f"{safe}-v{v}-{p.stem}"), source=f"mlflow models:/{n}/{v}"))
    return entries
