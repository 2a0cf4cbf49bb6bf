"""What a model version's artifact holds: its files, which of them are ONNX models, their digests.

The gate must scan what the registry will load and every other model file, so it never trusts
a file name: a file is a model file when it is the path the registry's loader opens (the
flavour's model path, given by the registry) or when its *content* parses as an ONNX
``ModelProto`` (:func:`looks_like_onnx`), whatever it is called. Anything in the artifact that is
not a plain regular file (a symlink, a device, a FIFO) refuses the whole version: a link could
make the file that is loaded differ from the file that was scanned.
"""

from __future__ import annotations

import json
import mmap
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from ..digest import sha256_file
from ..errors import AdmissionDenied

MAX_FILES = 10_000  # files in one artifact
MAX_SNIFF_FIELDS = 100_000  # top-level protobuf fields read while sniffing one file

# ModelProto's fields and their wire types (0 varint, 2 length-delimited)
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
# GraphProto's fields: all length-delimited
_GRAPH_FIELDS = {1, 2, 5, 10, 11, 12, 13, 14, 15}


def show(text: object, limit: int = 200) -> str:
    """An untrusted string fit for a message, a tag or a log line: control, bidi and other non-ASCII characters escaped."""
    out = json.dumps(str(text), ensure_ascii=True)[1:-1]
    return out if len(out) <= limit else out[: limit - 1] + "…"


@dataclass(frozen=True)
class ModelFiles:
    """The model files of one version: path (relative, '/'-separated) -> sha256, and which of them the registry loads."""

    files: dict[str, str]
    loadable: tuple[str, ...]

    def describe(self) -> str:
        return ", ".join(f"{show(p)} sha256 {d[:12]}…{' (loaded)' if p in self.loadable else ''}" for p, d in sorted(self.files.items()))


def _varint(buf: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < end and shift < 70:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    return None


def _fields(buf: mmap.mmap | bytes, pos: int, end: int, limit: int) -> list[tuple[int, int, int, int]] | None:
    """(field, wire type, start, stop) of each field in buf[pos:end]; None if it is not protobuf wire format."""
    out: list[tuple[int, int, int, int]] = []
    while pos < end:
        if len(out) >= limit:
            return out  # long enough to tell
        key = _varint(buf, pos, end)
        if key is None:
            return None
        k, pos = key
        field, wt = k >> 3, k & 7
        if field == 0:
            return None
        start = pos
        if wt == 0:
            v = _varint(buf, pos, end)
            if v is None:
                return None
            pos = v[1]
        elif wt == 1:
            pos += 8
        elif wt == 5:
            pos += 4
        elif wt == 2:
            n = _varint(buf, pos, end)
            if n is None:
                return None
            start, pos = n[1], n[1] + n[0]
        else:  # groups (3, 4) never occur in ONNX; 6, 7 are invalid
            return None
        if pos > end:
            return None
        out.append((field, wt, start, pos))
    return out


def looks_like_onnx(path: Path) -> bool:
    """Does the file's content parse as an ONNX ModelProto (a graph, right wire types), whatever its name?

    Reads only field headers (the file is memory-mapped, never loaded), opened without following
    a symlink. Unknown fields are tolerated, as protobuf parsers (and so onnxruntime) tolerate them.
    Fails closed: a file whose first ``MAX_SNIFF_FIELDS`` fields are all well-formed counts as ONNX."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return False
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as buf:
            top = _fields(buf, 0, len(buf), MAX_SNIFF_FIELDS)
            if not top:
                return False
            graph = None
            for field, wt, start, stop in top:
                if field in _MODEL_FIELDS and _MODEL_FIELDS[field] != wt:
                    return False
                if field == 7:
                    graph = (start, stop)
            if graph is None:
                # no graph among the fields read: not ONNX, unless the reading stopped at the cap (a long run of
                # well-formed fields, e.g. unknown ones padding a model): then it counts as a model file and is scanned
                return len(top) >= MAX_SNIFF_FIELDS
            inner = _fields(buf, graph[0], graph[1], 64)
            return inner is not None and all(f not in _GRAPH_FIELDS or wt == 2 for f, wt, _, _ in inner)
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)


def safe_relpath(rel: str, what: str = "path") -> str:
    """A relative, '/'-separated path that stays inside the artifact; ``AdmissionDenied`` otherwise."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        raise AdmissionDenied(f"the {what} '{show(rel)}' is not a plain relative path")
    if rel.startswith("/") or posixpath.isabs(rel):
        raise AdmissionDenied(f"the {what} '{show(rel)}' is absolute: it points outside the artifact")
    norm = posixpath.normpath(rel)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise AdmissionDenied(f"the {what} '{show(rel)}' leads outside the artifact")
    return norm


def list_files(root: Path) -> list[str]:
    """Every file under ``root`` (relative, '/'-separated, sorted), checked with ``lstat``:
    a symlink, device, FIFO or socket anywhere refuses the version."""
    out: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        d = root / rel_dir if rel_dir else root
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            raise AdmissionDenied(f"cannot list {show(rel_dir or '.')} in the artifact: {exc.strerror or exc}") from None
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise AdmissionDenied(f"the artifact holds a symbolic link ({show(rel)}): refused, the loaded file could differ from the scanned one")
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)
            elif stat.S_ISREG(st.st_mode):
                out.append(rel)
            else:
                raise AdmissionDenied(f"the artifact holds {show(rel)}, which is not a regular file")
            if len(out) > MAX_FILES:
                raise AdmissionDenied(f"the artifact holds more than {MAX_FILES} files")
    return sorted(out)


def model_files(root: Path, loadable: list[str]) -> ModelFiles:
    """The loadable path(s) plus every file whose content is ONNX, each with its sha256.

    ``AdmissionDenied`` when a loadable path is missing, escapes the artifact, or is not a regular file."""
    listed = list_files(root)
    present = set(listed)
    load = tuple(dict.fromkeys(safe_relpath(p, "model path the registry loads") for p in loadable))
    if not load:
        raise AdmissionDenied("the registry names no model file to load")
    for p in load:
        if p not in present:
            raise AdmissionDenied(f"the model path the registry loads ({show(p)}) is not a file in the artifact")
    chosen = [p for p in listed if p in load or looks_like_onnx(root / p)]
    return ModelFiles({p: sha256_file(root / p) for p in chosen}, load)
