"""What one scan is asked to do: the options every entry point (CLI, sandbox child, plugins) fills in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .policy import LoadedPolicy

ProgressFactory = Callable[[str, int], Callable[[int, int], None]]


@dataclass
class ScanOptions:
    model_path: Path
    data_path: Path | None = None
    value_range: tuple[float, float] | None = None
    policy: "LoadedPolicy | None" = None
    seed: int = 0
    budget: int | None = None  # overrides every check's per-sample budget
    samples: int | None = None  # overrides every check's sample count
    save_adversarials: Path | None = None
    target: int | None = None
    transfer_from: Path | None = None  # replay adversarials found on this model on the scanned one
    backdoor_out: Path | None = None  # folder for reversed triggers (.npy, and .png for images)
    extra_notes: list[str] = field(default_factory=list)
    tokenizer_path: Path | None = None  # a Hugging Face tokenizer.json for token-id models (default: tokenizer.json beside the model)
