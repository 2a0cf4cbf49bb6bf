"""Images for the HTML report: a minimal PNG writer (zlib + struct) and the
conversion of model inputs into displayable pixels. No imaging library needed."""

from __future__ import annotations

import base64
import math
from typing import Sequence

import numpy as np

from ..png import PNG_SIGNATURE, png_bytes

__all__ = ["PNG_SIGNATURE", "data_uri", "image_layout", "png_bytes", "scale_to_unit", "to_pixels", "upscale"]

def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_layout(sample_shape: Sequence[int] | None) -> str | None:
    """'hw', 'chw' or 'hwc' when a sample of this shape looks like an image, else None."""
    if not sample_shape:
        return None
    s = list(sample_shape)
    if len(s) == 2 and min(s) >= 4:
        return "hw"
    if len(s) == 3:
        if s[0] in (1, 3, 4) and min(s[1:]) >= 4:
            return "chw"
        if s[2] in (1, 3, 4) and min(s[:2]) >= 4:
            return "hwc"
    return None


def to_pixels(x: np.ndarray, layout: str, unit: bool = True) -> np.ndarray:
    """One sample already scaled to [0, 1] -> uint8 (H, W) or (H, W, 3)."""
    a = np.asarray(x, dtype=np.float64)
    if layout == "chw":
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3:
        if a.shape[2] == 1:
            a = a[:, :, 0]
        elif a.shape[2] == 4:
            a = a[:, :, :3]
    a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def upscale(img: np.ndarray, target: int = 96, limit: int = 384) -> np.ndarray:
    """Nearest-neighbour upscaling so small inputs (8x8 digits) stay crisp in print."""
    h, w = img.shape[:2]
    k = max(1, min(math.ceil(target / max(h, w)), max(1, limit // max(h, w))))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1) if k > 1 else img


def scale_to_unit(x: np.ndarray, lo: float | list[float], hi: float | list[float], sample_shape: Sequence[int]) -> np.ndarray:
    """Map samples from the model's value range to [0, 1] (per-feature ranges reshaped to the sample)."""
    def arr(v: float | list[float]) -> np.ndarray:
        a = np.asarray(v, dtype=np.float64)
        if a.ndim and a.size == int(np.prod(sample_shape)):
            a = a.reshape(tuple(sample_shape))
        elif a.ndim:
            a = np.asarray(float(a.reshape(-1)[0]))
        return a

    lo_a, hi_a = arr(lo), arr(hi)
    span = np.where(hi_a - lo_a > 0, hi_a - lo_a, 1.0)
    return (np.asarray(x, dtype=np.float64) - lo_a) / span
