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
    value_range: tuple | None = None  # (lo, hi), or one (lo, hi) per channel
    layout: str | None = None  # NCHW / NHWC (--layout); else metadata, then shape
    normalize: str | None = None  # "imagenet" or "mean=..,std=.." (--normalize)
    channels: str | None = None  # rgb / bgr / gray (--channels)
    input_shape: tuple[int, ...] | None = None  # per-sample shape for dynamic axes (--input-shape)
    bounds_path: Path | None = None  # per-feature bounds file for tabular inputs (--bounds)
    provider: str | None = None  # onnxruntime execution provider (--provider); CPU when None
    threads: int | None = None  # onnxruntime intra-op threads (--threads)
    policy: "LoadedPolicy | None" = None
    seed: int = 0
    # library convenience: overrides that run_scan applies to the policy (policy.apply_overrides), recorded as deviations
    budget: int | None = None  # every check's per-sample budget
    samples: int | None = None  # every check's sample count
    save_adversarials: Path | None = None
    target: int | None = None
    transfer_from: Path | None = None  # replay adversarials found on this model on the scanned one
    follow_symlinks: bool = False  # open a model path that is a symlink (its target's folder confines external data)
    backdoor_out: Path | None = None  # folder for reversed triggers (.npy, and .png for images)
    extra_notes: list[str] = field(default_factory=list)
    # run only these policy checks (ids; "backdoor" selects the backdoor search); None: all. A shard of a split scan
    only_checks: list[str] | None = None
    tokenizer_path: Path | None = None  # a Hugging Face tokenizer.json for token-id models (default: tokenizer.json beside the model)
