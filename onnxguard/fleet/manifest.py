"""What to scan: a folder of models, a manifest file, or ``models:/NAME`` in an MLflow registry.

A manifest has one row per model: ``path`` (required), ``data``, ``policy`` and options
(``seed``, ``budget``, ``samples``, ``target``, ``range``). Relative paths are relative to the
manifest's folder. Formats, by suffix:

* TOML: ``[[model]]`` tables;  * JSON: a list of rows, or ``{"models": [...]}``;
* CSV: a header row naming the columns (``path,data,policy,seed,budget,samples,target,range``).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from ..errors import BadInputError
from .entry import EntryOptions, FleetEntry, slug_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MANIFEST_SUFFIXES = (".toml", ".json", ".csv")
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class ManifestRow(EntryOptions):
    path: str = Field(min_length=1)
    data: str | None = None
    policy: str | None = None


def _entry(path: Path, name: str, **kw: Any) -> FleetEntry:
    return FleetEntry(path=path, name=name, slug=slug_for(path, name), **kw)


def from_folder(folder: Path) -> list[FleetEntry]:
    """Every ``*.onnx`` file under ``folder`` (sorted; symbolic links are not followed)."""
    found = []
    for p in sorted(folder.rglob("*.onnx")):
        if p.is_symlink() or any(q.is_symlink() for q in p.relative_to(folder).parents if str(q) != "."):
            continue
        if p.is_file():
            rel = p.relative_to(folder).as_posix()
            found.append(_entry(p, rel, source=f"folder {folder}"))
    return found


def _rows(path: Path, text: str) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            doc = tomllib.loads(text)
            rows = doc.get("model", doc.get("models"))
            extra = set(doc) - {"model", "models"}
            if extra:
                raise BadInputError(f"manifest {path}: unknown top-level key(s) {', '.join(sorted(extra))} (expected [[model]] tables)")
        elif suffix == ".json":
            doc = json.loads(text)
            rows = doc.get("models") if isinstance(doc, dict) else doc
        else:
            reader = csv.DictReader(io.StringIO(text))
            rows = [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items() if k and v not in (None, "")} for r in reader]
            if reader.fieldnames is None or "path" not in [f.strip() for f in reader.fieldnames]:
                raise BadInputError(f"manifest {path}: the CSV needs a header row with a 'path' column")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise BadInputError(f"manifest {path} is not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadInputError(f"manifest {path}: expected a list of rows (objects with at least 'path')")
    return rows


def from_manifest(path: Path) -> list[FleetEntry]:
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BadInputError(f"manifest {path} is over {MAX_MANIFEST_BYTES // 2**20} MB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read manifest {path}: {getattr(exc, 'strerror', None) or exc}") from None
    base = path.parent
    out = []
    for i, raw in enumerate(_rows(path, text), start=1):
        try:
            row = ManifestRow.model_validate(raw)
        except ValidationError as exc:
            errs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()[:3])
            raise BadInputError(f"manifest {path}, row {i}: {errs}") from None
        mp = Path(row.path) if Path(row.path).is_absolute() else base / row.path
        data = (Path(row.data) if Path(row.data).is_absolute() else base / row.data) if row.data else None
        pol = row.policy
        if pol and (pol.endswith((".toml", ".json")) and not Path(pol).is_absolute()):
            pol = str(base / pol)
        opts = EntryOptions(**row.model_dump(include=set(EntryOptions.model_fields)))
        out.append(_entry(mp, row.path, data=data, policy=pol, options=opts, source=f"manifest {path.name} row {i}"))
    return out


def resolve(targets: list[str], cache_dir: Path, tracking_uri: str | None = None) -> list[FleetEntry]:
    """Every model named by the command line's PATH arguments, in order, without duplicates."""
    entries: list[FleetEntry] = []
    for t in targets:
        if t.startswith("models:/"):
            from .mlflow_source import from_registry

            entries += from_registry(t, cache_dir, tracking_uri)
            continue
        p = Path(t)
        if p.is_dir():
            found = from_folder(p)
            if not found:
                raise BadInputError(f"no .onnx model under {p}")
            entries += found
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            entries += from_manifest(p)
        elif p.is_file() and p.suffix.lower() == ".onnx":
            entries.append(_entry(p, p.name, source="command line"))
        elif not p.exists():
            raise BadInputError(f"not found: {t}")
        else:
            raise BadInputError(f"{t}: expected a folder of models, a manifest (.toml, .json, .csv), an .onnx file or models:/NAME")
    seen: dict[str, FleetEntry] = {}
    for e in entries:
        prev = seen.setdefault(e.slug, e)
        if prev is not e and (prev.data, prev.policy, prev.options) != (e.data, e.policy, e.options):
            raise BadInputError(f"{e.path} is listed twice with different data, policy or options ({prev.source}; {e.source}): "
                                "one report per model file; copy the file to scan it two ways")
    return list(seen.values())
