"""An in-memory model registry implementing the admission kit's ``Registry`` protocol: the test double.

A version's artifact is a dict of files; ``manifest.json`` in it names the file the registry
loads (as ``MLmodel`` does for MLflow). ``fail`` makes a method raise, to test the error paths.
``stored`` is the attestation store: like MLflow's, anyone may write to it (tests do, as an attacker).
"""

from __future__ import annotations

import json
from pathlib import Path

from onnxguard.admission.artifact import safe_relpath
from onnxguard.errors import AdmissionDenied

MANIFEST = "manifest.json"


class MemoryRegistry:
    kind = "memory"

    def __init__(self) -> None:
        self.artifacts: dict[tuple[str, str], dict[str, bytes]] = {}
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        self.model_tags: dict[str, dict[str, str]] = {}
        self.aliases: dict[tuple[str, str], str] = {}
        self.stored: dict[tuple[str, str], list[dict[str, bytes]]] = {}
        self.fail: dict[str, BaseException] = {}
        self.calls: list[str] = []

    # -- test set-up -------------------------------------------------------

    def add_version(self, name: str, version: str, files: dict[str, bytes], loads: str | None = "model.onnx") -> None:
        files = dict(files)
        if loads is not None:
            files[MANIFEST] = json.dumps({"load": loads}).encode()
        self.artifacts[(name, str(version))] = files
        self.tags.setdefault((name, str(version)), {})

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what in self.fail:
            raise self.fail[what]

    # -- the protocol ------------------------------------------------------

    def artifact_identity(self, name: str, version: str) -> str:
        self._call("artifact_identity")
        return f"memory://{name}/{version}"

    def download(self, name: str, version: str, dst: Path) -> Path:
        self._call("download")
        root = dst / "files"
        for rel, data in self.artifacts[(name, str(version))].items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        root.mkdir(parents=True, exist_ok=True)
        return root

    def loadable_paths(self, root: Path) -> list[str]:
        self._call("loadable_paths")
        try:
            doc = json.loads((root / MANIFEST).read_bytes())
        except FileNotFoundError:
            raise AdmissionDenied("no manifest: what the registry loads cannot be told") from None
        return [safe_relpath(doc["load"], "loaded path")]

    def model_policy(self, name: str) -> str | None:
        self._call("model_policy")
        return self.model_tags.get(name, {}).get("onnxguard.policy")

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        self._call("set_tags")
        self.tags.setdefault((name, str(version)), {}).update(tags)

    def delete_tag(self, name: str, version: str, key: str) -> None:
        self.tags.get((name, str(version)), {}).pop(key, None)

    def alias_version(self, name: str, alias: str) -> str | None:
        self._call("alias_version")
        return self.aliases.get((name, alias))

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("delete_alias")
        self.aliases.pop((name, alias), None)

    def store_artifacts(self, name: str, version: str, files: dict[str, bytes], work: Path) -> str:
        self._call("store_artifacts")
        runs = self.stored.setdefault((name, str(version)), [])
        runs.insert(0, dict(files))
        return f"memory://store/{name}/{version}/{len(runs)}"

    def load_attestations(self, name: str, version: str, max_bytes: int) -> list[bytes | None]:
        self._call("load_attestations")
        out: list[bytes | None] = []
        for run in self.stored.get((name, str(version)), [])[:5]:
            data = run.get("attestation.dsse.json")
            if data is not None:
                out.append(data if len(data) <= max_bytes else None)
        return out
