"""Reading an untrusted ONNX file without letting it touch anything else.

The file is read into memory with a size cap and parsed with external data
off. External-data references are resolved here, never by onnx or
onnxruntime (see ``_resolve_external``), and handed to onnxruntime as
in-memory buffers.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError


@dataclass
class RawModel:
    proto: Any
    model_bytes: bytes
    sha256: str
    size_bytes: int
    external: dict[str, np.ndarray] = field(default_factory=dict)  # location -> bytes as uint8 array
    external_files: list[tuple[str, str, int]] = field(default_factory=list)  # (location, sha256, size)


def read_model(path: Path, *, max_bytes: int) -> RawModel:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelLoadError(f"{path} is a directory, not an ONNX file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelLoadError(f"{path} is not a regular file")
    if st.st_size == 0:
        raise ModelLoadError(f"{path} is empty (0 bytes), not an ONNX model")
    if st.st_size > max_bytes:
        raise ModelLoadError(f"{path} is {st.st_size} bytes, over the {max_bytes}-byte limit for a model file")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise ModelLoadError(f"{path} grew past the {max_bytes}-byte limit while being read")

    import onnx

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:
        raise ModelLoadError(f"{path.name} is not a valid ONNX model (protobuf parse failed: {type(exc).__name__})") from None
    if not proto.HasField("graph"):
        raise ModelLoadError(f"{path.name} parsed, but holds no graph: not an ONNX model")
    raw = RawModel(proto=proto, model_bytes=data, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    _resolve_external(raw, path)
    return raw


def _resolve_external(raw: RawModel, path: Path) -> None:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    locations = set()
    for t in _get_all_tensors(raw.proto):
        if uses_external_data(t):
            for e in t.external_data:
                if e.key == "location":
                    locations.add(e.value)
    if locations:
        raise ModelLoadError(f"{path.name} stores tensors in external data files ({', '.join(sorted(locations))[:200]}), which this build does not load")
