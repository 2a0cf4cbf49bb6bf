"""One model of a fleet, and its scan options: what the manifest, a folder and a registry source all produce."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EntryOptions(BaseModel):
    """Per-model scan options (the same meaning as ``onnxguard scan``'s flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int | None = None
    budget: int | None = Field(default=None, ge=1)
    samples: int | None = Field(default=None, ge=1)
    target: int | None = Field(default=None, ge=0)
    range: tuple[float, float] | None = None

    @field_validator("range", mode="before")
    @classmethod
    def _range(cls, v: Any) -> Any:
        if isinstance(v, str):
            from ..data import parse_range

            return parse_range(v)
        return v


@dataclass(frozen=True)
class FleetEntry:
    """One model of the fleet. ``slug`` names its report files; ``name`` is what people read."""

    path: Path
    name: str
    slug: str
    data: Path | None = None
    policy: str | None = None
    options: EntryOptions = EntryOptions()
    source: str = ""  # folder, manifest:ROW, mlflow:NAME/VERSION


def slug_for(path: Path, name: str) -> str:
    """A file-name-safe, stable name: the readable part plus a digest of the resolved path."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.removesuffix(".onnx"))[-80:].strip("._") or "model"
    h = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    return f"{stem}-{h}"
