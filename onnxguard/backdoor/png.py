"""A minimal PNG writer (zlib + struct, no image library): greyscale or RGB, 8 bit."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: Path, img: np.ndarray, scale: int = 1) -> None:
    """``img`` in [0, 1], shape (H, W) greyscale or (H, W, 3) RGB; ``scale`` enlarges by pixel repetition."""
    a = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    if scale > 1:
        a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    a = np.round(a * 255).astype(np.uint8)
    if a.ndim == 2:
        color = 0
    elif a.ndim == 3 and a.shape[2] == 3:
        color = 2
    else:
        raise ValueError(f"cannot write an image of shape {a.shape}")
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
    png += _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def to_display(chw: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for one channel, (H, W, 3) for three; other channel counts show their mean."""
    if chw.shape[0] == 1:
        return chw[0]
    if chw.shape[0] == 3:
        return np.transpose(chw, (1, 2, 0))
    return chw.mean(axis=0)
