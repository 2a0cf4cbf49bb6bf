"""A minimal PNG encoder (zlib + struct, no imaging library): 8-bit greyscale or RGB."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(img: np.ndarray) -> bytes:
    """Encode a uint8 image, (H, W) greyscale or (H, W, 3) RGB, as PNG."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 2:
        colour = 0
    elif img.ndim == 3 and img.shape[2] == 3:
        colour = 2
    else:
        raise ValueError(f"expected (H, W) or (H, W, 3), got {img.shape}")
    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def image_png(img: np.ndarray, scale: int = 1) -> bytes:
    """``img`` in [0, 1], shape (H, W) greyscale or (H, W, 3) RGB, as PNG bytes; ``scale`` enlarges by pixel repetition."""
    a = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    if scale > 1:
        a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    return png_bytes(np.round(a * 255).astype(np.uint8))


def write_png(path: Path, img: np.ndarray, scale: int = 1) -> None:
    """``image_png`` to a file."""
    Path(path).write_bytes(image_png(img, scale))


def to_display(chw: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for one channel, (H, W, 3) for three; other channel counts show their mean."""
    if chw.shape[0] == 1:
        return chw[0]
    if chw.shape[0] == 3:
        return np.transpose(chw, (1, 2, 0))
    return chw.mean(axis=0)
