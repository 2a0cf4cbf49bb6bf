"""Image-input conventions: layout (NCHW / NHWC), channel order, per-channel valid range, normalisation.

Everything here is pure numpy and resolves *where each convention came from*:

* **layout** of a rank-3 sample: ``--layout`` ("given"), the model's metadata
  (``layout`` / ``data_format`` / ``image_layout`` keys: "given" by the
  producer, reported as "metadata"), else the shape: a leading axis of 1, 3 or
  4 with a larger trailing axis is NCHW, the reverse is NHWC ("shape"); an
  ambiguous shape is taken as NCHW ("assumed");
* **channels**: gray for one channel, RGB for three unless ``--channels bgr``;
* **range** per channel: ``--range lo,hi`` (every channel) or
  ``--range lo,hi;lo,hi;lo,hi`` (one pair per channel), or
  ``--normalize imagenet`` / ``--normalize mean=..,..,std=..,..``: the model
  takes ``(pixel - mean) / std`` of pixels in [0, 1] (or in [0, 255] when a
  mean exceeds 1, as in Caffe-style BGR mean subtraction), so channel ``c``
  spans ``[(0 - mean_c) / std_c, (P - mean_c) / std_c]``.

Attacks work in the normalised space where each channel's valid range is
[0, 1], so an epsilon keeps its pixel-range meaning under any normalisation:
8/255 is eight grey levels of the original pixel, as on RobustBench.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, pixels in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT_KEYS = ("layout", "data_format", "image_layout", "input_layout", "onnxguard.layout")
SHAPE_KEYS = ("input_shape", "image_size", "onnxguard.input_shape")
CHANNEL_COUNTS = (1, 3, 4)


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixel_max: float  # pixels in [0, pixel_max] before normalisation
    name: str

    def describe(self) -> str:
        m = ",".join(f"{v:g}" for v in self.mean)
        s = ",".join(f"{v:g}" for v in self.std)
        return f"{self.name}: the model takes (pixel - mean) / std of pixels in [0, {self.pixel_max:g}], mean={m}, std={s}"


def _norm_layout(text: str) -> str:
    t = text.strip().upper().replace("_", "").replace("-", "")
    t = {"CHANNELSFIRST": "NCHW", "CHANNELSLAST": "NHWC", "CHW": "NCHW", "HWC": "NHWC"}.get(t, t)
    if t not in ("NCHW", "NHWC"):
        raise DataError(f"layout '{text[:40]}' is not one of NCHW, NHWC (channels_first, channels_last)")
    return t


def resolve_layout(shape: tuple[int, ...], metadata: dict[str, str] | None = None, override: str | None = None) -> tuple[str, str]:
    """The layout of one sample of ``shape`` and its source ('given', 'metadata', 'shape', 'assumed')."""
    if len(shape) == 1:
        return "features", "shape"
    if len(shape) == 2:
        return "HW", "shape"
    if len(shape) != 3:
        return "flat", "shape"
    if override:
        lay = _norm_layout(override)
        _check_fits(shape, lay, "--layout")
        return lay, "given"
    for k in LAYOUT_KEYS:
        v = (metadata or {}).get(k)
        if v:
            try:
                lay = _norm_layout(v)
                _check_fits(shape, lay, f"model metadata '{k}'")
                return lay, "metadata"
            except DataError:
                continue  # the producer's word is a hint; a metadata value that does not fit is ignored
    first, last = shape[0] in CHANNEL_COUNTS, shape[2] in CHANNEL_COUNTS
    if first and not last:
        return "NCHW", "shape"
    if last and not first:
        return "NHWC", "shape"
    return "NCHW", "assumed"


def _check_fits(shape: tuple[int, ...], layout: str, what: str) -> None:
    c = shape[0] if layout == "NCHW" else shape[2]
    if c > 16:
        raise DataError(f"{what} says {layout}, but that makes {c} channels of a {list(shape)} sample")


def channel_axis(layout: str) -> int | None:
    """The channel axis of one sample (None for tabular / gray HxW)."""
    return 0 if layout == "NCHW" else 2 if layout == "NHWC" else None


def n_channels(shape: tuple[int, ...], layout: str) -> int:
    ax = channel_axis(layout)
    return 1 if ax is None else int(shape[ax])


def parse_normalize(text: str, channels: int, order: str = "rgb") -> Normalization:
    """``imagenet`` or ``mean=a,b,c,std=d,e,f`` (one value, or one per channel)."""
    t = text.strip().lower()
    if t in ("imagenet", "imagenet-rgb", "imagenet-bgr", "torchvision"):
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        bgr = t.endswith("bgr") or order == "bgr"
        if bgr:
            mean, std = mean[::-1], std[::-1]
        if channels == 1:
            mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
        elif channels != 3:
            raise DataError(f"--normalize imagenet needs 1 or 3 channels, the model's input has {channels}")
        return Normalization(tuple(mean), tuple(std), 1.0, "imagenet" + (" (BGR)" if bgr and channels == 3 else ""))
    m = re.fullmatch(r"\s*mean\s*=\s*([-+0-9.e,\s]+?)\s*[,;:]\s*std\s*=\s*([-+0-9.e,\s]+?)\s*([,;:]\s*(scale|pixel_max)\s*=\s*([0-9.e+]+))?\s*", t)
    if not m:
        raise DataError(f"--normalize takes 'imagenet' or 'mean=M1,M2,M3,std=S1,S2,S3', got '{text[:80]}'")
    try:
        mean = tuple(float(v) for v in m.group(1).split(",") if v.strip())
        std = tuple(float(v) for v in m.group(2).split(",") if v.strip())
        pmax = float(m.group(5)) if m.group(5) else None
    except ValueError:
        raise DataError(f"--normalize: not a number in '{text[:80]}'") from None
    if len(mean) == 1:
        mean = mean * channels
    if len(std) == 1:
        std = std * channels
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"--normalize gives {len(mean)} means and {len(std)} stds; the model's input has {channels} channels")
    if any(not np.isfinite(s) or s <= 0 for s in std) or any(not np.isfinite(v) for v in mean):
        raise DataError("--normalize: every std must be a positive number and every mean finite")
    if pmax is None:
        pmax = 255.0 if max(abs(v) for v in mean) > 1.0 or min(std) > 1.0 else 1.0
    return Normalization(mean, std, pmax, "mean/std")


def normalization_range(norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    mean, std = np.asarray(norm.mean), np.asarray(norm.std)
    return (0.0 - mean) / std, (norm.pixel_max - mean) / std


def parse_pair(text: str, what: str = "'lo,hi' (two numbers)") -> tuple[float, float]:
    """One ``lo,hi`` range: two finite numbers, lo < hi."""
    try:
        lo_s, hi_s = text.split(",")
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        raise DataError(f"--range takes {what}, got '{text[:80]}'") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise DataError(f"--range needs finite lo < hi, got {lo},{hi}")
    return lo, hi


def parse_channel_ranges(text: str) -> tuple[tuple[float, float], ...]:
    """``lo,hi`` or ``lo,hi;lo,hi;...`` (one pair per channel)."""
    return tuple(parse_pair(part, "'lo,hi' or one 'lo,hi' per channel separated by ';'") for part in text.split(";"))


def broadcast_channels(shape: tuple[int, ...], layout: str, values: np.ndarray) -> np.ndarray:
    """Per-channel values (C,) as a full sample-shaped array."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ax = channel_axis(layout)
    if v.size == 1:
        return np.full(shape, float(v[0]))
    if ax is None or shape[ax] != v.size:
        raise DataError(f"{v.size} per-channel values for a sample of shape {list(shape)} ({layout})")
    view = [1] * len(shape)
    view[ax] = v.size
    return np.broadcast_to(v.reshape(view), shape).copy()


def per_channel(a: np.ndarray, shape: tuple[int, ...], layout: str) -> list[float] | float:
    """The per-channel value of a sample-shaped array that is constant within each channel (for reports)."""
    a = np.asarray(a, dtype=np.float64)
    if a.size and np.all(a == a.reshape(-1)[0]):
        return float(a.reshape(-1)[0])
    ax = channel_axis(layout)
    if ax is not None and a.shape == tuple(shape):
        moved = np.moveaxis(a, ax, 0).reshape(shape[ax], -1)
        if np.all(moved == moved[:, :1]):
            return [float(v) for v in moved[:, 0]]
    return [float(v) for v in a.reshape(-1)[:64]]


def metadata_shape(metadata: dict[str, str] | None) -> tuple[int, ...] | None:
    """A per-sample shape (or H,W) written by the producer in the model's metadata, if any."""
    for k in SHAPE_KEYS:
        v = (metadata or {}).get(k)
        if not v:
            continue
        nums = [int(x) for x in re.findall(r"\d+", v)[:4]]
        if 2 <= len(nums) <= 4 and all(0 < x <= 16384 for x in nums):
            return tuple(nums)
    return None


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in re.split(r"[,x×\s]+", text.strip()) if x)
    except ValueError:
        raise DataError(f"--input-shape takes the per-sample shape, e.g. '3,224,224', got '{text[:40]}'") from None
    if not dims or any(d <= 0 or d > 1 << 20 for d in dims):
        raise DataError(f"--input-shape needs positive dimensions, got '{text[:40]}'")
    return dims
