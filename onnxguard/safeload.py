"""Reading an untrusted ONNX file without letting it touch anything else.

The file is read into memory with a size cap and parsed with external data
off. External-data references are resolved here, never by onnx or
onnxruntime: every ``location`` must name a regular, singly-linked file inside
the model's folder, reached without following a symlink at any step
(``O_NOFOLLOW`` on each component, relative to an open directory), with the
offset and length inside the file and the total under a cap. The bytes are read
here, cut to each tensor, and handed to onnxruntime in memory under names this
module chooses (``session_bytes`` carries the rewritten locations), so
onnxruntime never opens a file, nor interprets a location string, on the
model's behalf. Custom-operator libraries are never loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError
from .text import as_str

# bits per element of each TensorProto data type (STRING has no fixed size)
_BITS = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64,
    14: 64, 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2, 27: 8, 28: 8,
}
_EXTERNAL = 1  # TensorProto.EXTERNAL
_MAX_LOCATION = 1024
_MEM_NAME = "onnxguard-external-{}"

# first bytes of formats that get mistaken for ONNX
_SIGNATURES: list[tuple[int, bytes, str]] = [
    (0, b"PK\x03\x04", "a ZIP archive (a PyTorch .pt/.pth checkpoint, a Keras .keras file or an .npz?)"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model?)"),
    (0, b"GGUF", "a GGUF file (a llama.cpp model)"),
    (4, b"TFL3", "a TensorFlow Lite flatbuffer"),
    (4, b"ORTM", "an onnxruntime .ort flatbuffer, not an .onnx protobuf"),
    (0, b"\x1f\x8b", "gzip-compressed (decompress it first)"),
    (0, b"\x93NUMPY", "a NumPy .npy array"),
    (0, b"\x7fELF", "an ELF executable or shared library"),
]


@dataclass
class ExternalRef:
    """One tensor stored outside the model file, as the model declares it."""

    tensor: str  # tensor name, escaped for display
    where: str  # where in the model the tensor sits
    location: str  # the declared location, unchanged (may be hostile: display with ascii())
    offset: int | None
    length: int | None
    problem: str | None = None  # why it was refused; None when it resolved safely
    file_size: int | None = None


@dataclass
class RawModel:
    proto: Any
    model_bytes: bytes
    sha256: str
    size_bytes: int
    external: dict[str, np.ndarray] = field(default_factory=dict)  # in-memory name -> bytes as uint8 array
    external_files: list[tuple[str, str, int]] = field(default_factory=list)  # (location, sha256, size)
    external_refs: list[ExternalRef] = field(default_factory=list)
    session_bytes: bytes | None = None  # the model onnxruntime gets (external locations rewritten); None: model_bytes
    path: Path | None = None  # the file read (a followed symlink's target)
    link: Path | None = None  # the symlink given on the command line, when --follow-symlinks followed one


def _describe_magic(data: bytes) -> str | None:
    for off, sig, what in _SIGNATURES:
        if data[off : off + len(sig)] == sig:
            return what
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (a PyTorch checkpoint?); pickles are never loaded"
    if len(data) > 10 and data[8:10] == b'{"' and int.from_bytes(data[:8], "little") < len(data):
        return "a safetensors file"
    head = data[:64].lstrip()
    if head[:1] in (b"{", b"["):
        return "JSON text"
    if head[:1] == b"<":
        return "XML/HTML text"
    return None


def _examine(path: Path, follow_symlinks: bool) -> tuple[Path, os.stat_result]:
    """``lstat`` the model path (nothing is opened): refuse symlinks (unless opted in), directories,
    devices, FIFOs, sockets. Returns the path to open (the link's target when following) and its lstat."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {path}") from None
    except PermissionError:
        raise ModelLoadError(f"cannot read model file {path}: permission denied") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot open model file {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(lst.st_mode):
        if not follow_symlinks:
            raise ModelLoadError(
                f"{path} is a symbolic link; onnxguard does not open a model through a link "
                "(pass --follow-symlinks to scan its target, for example a Hugging Face cache snapshot)"
            )
        try:
            target = Path(os.path.realpath(path, strict=True))
            lst = os.lstat(target)
        except OSError as exc:
            raise ModelLoadError(f"cannot open model file {path}: the link does not resolve ({exc.strerror or exc})") from None
        path = target
    if stat.S_ISDIR(lst.st_mode):
        raise ModelLoadError(f"{path} is a directory, not an ONNX file")
    if not stat.S_ISREG(lst.st_mode):
        raise ModelLoadError(f"{path} is not a regular file (a device, FIFO or socket), not an ONNX file; it was not opened")
    return path, lst


def _open_model(path: Path) -> int:
    try:
        # O_NOFOLLOW: the path was examined with lstat; O_NONBLOCK: a FIFO swapped in must not hang
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {path}") from None
    except PermissionError:
        raise ModelLoadError(f"cannot read model file {path}: permission denied") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot open model file {path}: {exc.strerror or exc}") from None


def resolve_model_path(path: Path, *, follow_symlinks: bool = False) -> Path:
    """The file a scan of ``path`` reads (its target when it is a followed symlink); refuses what ``read_model`` refuses."""
    return _examine(Path(path), follow_symlinks)[0]


def _open_checked(path: Path, max_bytes: int, follow_symlinks: bool = False) -> tuple[int, os.stat_result, Path]:
    """Open the model file; refuse links, directories, devices, FIFOs (from lstat, before opening), empty and oversized files."""
    path, lst = _examine(path, follow_symlinks)
    if lst.st_size == 0:
        raise ModelLoadError(f"{path} is empty (0 bytes), not an ONNX model")
    if lst.st_size > max_bytes:
        raise ModelLoadError(f"{path} is {lst.st_size} bytes, over the {max_bytes}-byte limit for a model file")
    fd = _open_model(path)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (lst.st_dev, lst.st_ino) or not stat.S_ISREG(st.st_mode):
            raise ModelLoadError(f"{path} changed between examining and opening it; not read")
        if st.st_size == 0:
            raise ModelLoadError(f"{path} is empty (0 bytes), not an ONNX model")
        if st.st_size > max_bytes:
            raise ModelLoadError(f"{path} is {st.st_size} bytes, over the {max_bytes}-byte limit for a model file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st, path


def digest_model(path: Path, *, max_bytes: int, follow_symlinks: bool = False) -> tuple[str, int]:
    """(sha256, size) of the model file, streamed: the file is checked as ``read_model`` does, never parsed."""
    fd, st, path = _open_checked(Path(path), max_bytes, follow_symlinks)
    h, n = hashlib.sha256(), 0
    try:
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            h.update(block)
            n += len(block)
            if n > max_bytes:
                raise ModelLoadError(f"{path} grew past the {max_bytes}-byte limit while being read")
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return h.hexdigest(), n


def _read_exact(fd: int, size: int, limit: int, what: str) -> bytes:
    """Read the whole file behind ``fd`` (expected ``size`` bytes), never more than ``limit`` + 1."""
    chunks, got = [], 0
    while True:
        block = os.read(fd, min(1 << 24, limit + 1 - got))
        if not block:
            break
        chunks.append(block)
        got += len(block)
        if got > limit:
            raise ModelLoadError(f"{what} grew past the {limit}-byte limit while being read")
    return b"".join(chunks)


def read_model(
    path: Path, *, max_bytes: int, max_external_bytes: int | None = None, strict: bool = True, follow_symlinks: bool = False
) -> RawModel:
    """Read and parse ``path``; resolve its external data safely.

    ``strict`` (scanning): any unsafe external-data reference raises
    :class:`ModelLoadError`. Not strict (``onnxguard inspect``): unsafe
    references are recorded in ``external_refs`` with their problem and not read.
    A symlinked ``path`` is refused unless ``follow_symlinks``; then its target is read, ``RawModel.path``
    names the target and external data is confined to the target's folder.
    """
    path = Path(path)
    given = path
    fd, st, path = _open_checked(path, max_bytes, follow_symlinks)
    try:
        try:
            data = _read_exact(fd, st.st_size, max_bytes, str(path))
        except OSError as exc:
            raise ModelLoadError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if not data:
        raise ModelLoadError(f"{path} is empty (0 bytes), not an ONNX model")

    name = path.name
    other = _describe_magic(data)
    if other:
        raise ModelLoadError(f"{name} is not an ONNX model: it looks like {other}")

    import onnx

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:
        raise ModelLoadError(
            f"{name} is not a valid ONNX model: the protobuf does not parse ({type(exc).__name__}); "
            "the file is truncated, corrupted or another format"
        ) from None
    if not proto.HasField("graph"):
        raise ModelLoadError(f"{name} parsed, but holds no graph: not an ONNX model (truncated, or another format)")
    g = proto.graph
    if not g.node and not g.output:
        raise ModelLoadError(f"{name} holds an empty graph (no nodes, no outputs): not a usable ONNX model")
    if proto.ir_version <= 0:
        raise ModelLoadError(f"{name} declares no IR version: not a valid ONNX model (truncated or corrupted?)")
    raw = RawModel(proto=proto, model_bytes=data, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), path=path,
                   link=given if path != given else None)
    _resolve_external(raw, path, max_bytes if max_external_bytes is None else max_external_bytes, strict)
    return raw


# -- external data ------------------------------------------------------------


def _expected_bytes(t: Any) -> tuple[int | None, str | None]:
    bits = _BITS.get(int(t.data_type))
    if bits is None:
        kind = "strings" if t.data_type == 8 else f"data type {int(t.data_type)}"
        return None, f"external data holding {kind} is not supported"
    n = 1
    for d in t.dims:
        if d < 0:
            return None, f"negative dimension {d}"
        n *= int(d)
    return (n * bits + 7) // 8, None


def _lexical_problem(loc: str) -> str | None:
    if not loc:
        return "empty location"
    if len(loc) > _MAX_LOCATION:
        return f"location longer than {_MAX_LOCATION} characters"
    if "_ORT_MEM_ADDR_" in loc:
        return "location is onnxruntime's in-memory-address marker (it would make onnxruntime read raw process memory)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in loc):
        return "location contains control characters"
    if loc.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", loc) or loc.startswith("~"):
        return "absolute path (external data must sit inside the model's folder)"
    if "\\" in loc:
        return "location uses backslashes; only relative paths with '/' are accepted"
    if any(part == ".." for part in loc.split("/")):
        return "path traversal ('..'): the location leaves the model's folder"
    if not [p for p in loc.split("/") if p not in ("", ".")]:
        return "location names no file"
    return None


def _open_inside(base_fd: int, parts: list[str]) -> tuple[int | None, str | None]:
    """Open ``parts`` below the directory ``base_fd`` without following any symlink."""
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    dfd = os.dup(base_fd)
    try:
        for i, comp in enumerate(parts):
            last = i == len(parts) - 1
            shown = "/".join(parts[: i + 1])
            try:
                lst = os.lstat(comp, dir_fd=dfd)
            except FileNotFoundError:
                return None, f"'{ascii(shown)[1:-1]}' does not exist in the model's folder"
            except OSError as exc:
                return None, f"cannot examine '{ascii(shown)[1:-1]}': {exc.strerror or exc}"
            if stat.S_ISLNK(lst.st_mode):
                return None, f"'{ascii(shown)[1:-1]}' is a symbolic link; symlinks are never followed"
            if last and stat.S_ISREG(lst.st_mode) and lst.st_nlink != 1:
                # from fstatat(AT_SYMLINK_NOFOLLOW), before any open: the file is never opened
                return None, (f"'{ascii(shown)[1:-1]}' has {lst.st_nlink} hard links; a hard-linked file may be another "
                              "file outside the folder, so it is refused (it was not opened)")
            try:
                if not last:
                    if not stat.S_ISDIR(lst.st_mode):
                        return None, f"'{ascii(shown)[1:-1]}' is not a directory"
                    nfd = os.open(comp, flags_dir, dir_fd=dfd)
                    os.close(dfd)
                    dfd = nfd
                else:
                    if not stat.S_ISREG(lst.st_mode):
                        return None, f"'{ascii(shown)[1:-1]}' is not a regular file"
                    ffd = os.open(comp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dfd)
                    return ffd, None
            except OSError as exc:  # ELOOP: it became a symlink between lstat and open
                return None, f"cannot open '{ascii(shown)[1:-1]}' safely: {exc.strerror or exc}"
        return None, "location names no file"
    finally:
        os.close(dfd)


def _locate(t: Any) -> tuple[str, str | None, str | None, list[str]]:
    loc = off = ln = None
    keys = []
    for e in t.external_data:
        key, value = as_str(e.key), as_str(e.value)
        keys.append(key)
        if key == "location":
            loc = value
        elif key == "offset":
            off = value
        elif key == "length":
            ln = value
    return loc or "", off, ln, keys


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", text):
        raise ValueError(text)
    return int(text)


def _resolve_external(raw: RawModel, path: Path, max_total: int, strict: bool) -> None:
    from .protowalk import walk

    ext = []
    for ref in walk(raw.proto).tensors:
        t = ref.tensor
        if t.data_location == _EXTERNAL:
            ext.append(ref)
        elif len(t.external_data):
            ext.append(ref)  # inconsistent: refused below
    if not ext:
        return

    base = os.path.realpath(path.parent if str(path.parent) else ".")
    try:
        base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ModelLoadError(f"cannot open the model's folder {base}: {exc.strerror or exc}") from None

    files: dict[tuple[int, int], tuple[str, bytes, str]] = {}  # (dev, ino) -> (location, bytes, sha256)
    total = 0
    try:
        for i, tref in enumerate(ext):
            t = tref.tensor
            loc, off_s, len_s, _ = _locate(t)
            er = ExternalRef(tensor=ascii(as_str(t.name))[1:-1], where=tref.where, location=loc, offset=None, length=None)
            raw.external_refs.append(er)
            if t.data_location != _EXTERNAL:
                er.problem = "tensor lists external-data keys but is not marked as external (inconsistent tensor)"
                continue
            try:
                er.offset = _parse_int(off_s) or 0
                er.length = _parse_int(len_s)
            except ValueError:
                er.problem = "offset/length is not a non-negative decimal integer"
                continue
            er.problem = _lexical_problem(loc)
            if er.problem:
                continue
            need, why = _expected_bytes(t)
            if why:
                er.problem = why
                continue
            assert need is not None
            if er.length is not None and er.length != need:
                er.problem = f"length {er.length} does not match the tensor's {need} bytes (dims {list(t.dims)})"
                continue
            er.length = need
            if need > max_total:
                er.problem = f"tensor needs {need} bytes, over the {max_total}-byte limit for external data"
                continue
            parts = [p for p in loc.split("/") if p not in ("", ".")]
            fd, why = _open_inside(base_fd, parts)
            if fd is None:
                er.problem = why
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    er.problem = "not a regular file"
                    continue
                if st.st_nlink != 1:
                    er.problem = f"the file has {st.st_nlink} hard links; a hard-linked file may be another file outside the folder, so it is refused"
                    continue
                er.file_size = st.st_size
                real = os.path.realpath(os.path.join(base, *parts))
                if os.path.commonpath([real, base]) != base:
                    er.problem = "the file's real path leaves the model's folder"
                    continue
                if er.offset + need > st.st_size:
                    er.problem = f"offset {er.offset} + length {need} runs past the end of the {st.st_size}-byte file"
                    continue
                key = (st.st_dev, st.st_ino)
                if key not in files:
                    if total + st.st_size > max_total:
                        er.problem = f"external data files total more than the {max_total}-byte limit"
                        continue
                    try:
                        blob = _read_exact(fd, st.st_size, st.st_size, loc)
                    except (OSError, ModelLoadError) as exc:
                        er.problem = f"cannot read: {getattr(exc, 'strerror', None) or exc}"
                        continue
                    if len(blob) != st.st_size:
                        er.problem = "the file changed size while being read"
                        continue
                    total += len(blob)
                    files[key] = (loc, blob, hashlib.sha256(blob).hexdigest())
            finally:
                os.close(fd)
            blob = files[key][1]
            if tref.top_initializer:
                mem_name = _MEM_NAME.format(i)
                raw.external[mem_name] = np.frombuffer(blob, dtype=np.uint8, count=need, offset=er.offset) if need else np.zeros(0, np.uint8)
                _rewrite(t, mem_name, need)
            else:
                # onnxruntime takes in-memory external data for main-graph initialisers only; its checker
                # looks for other locations on disk. Those tensors (attributes, subgraphs) get their bytes inline.
                _inline(t, blob[er.offset : er.offset + need])
    finally:
        os.close(base_fd)

    bad = [e for e in raw.external_refs if e.problem]
    if bad and strict:
        first = bad[0]
        more = f" (and {len(bad) - 1} more refused reference(s))" if len(bad) > 1 else ""
        raise ModelLoadError(
            f"{path.name}: refused external data: tensor '{first.tensor}' points to '{ascii(first.location)[1:-1][:200]}': "
            f"{first.problem}{more}. External data must be regular files inside the model's folder."
        )
    raw.external_files = [(loc, sha, len(blob)) for loc, blob, sha in files.values()]
    if not bad:
        if raw.proto.ByteSize() >= 2**31:
            raise ModelLoadError(f"{path.name}: with its external data inlined where onnxruntime needs it, the model exceeds 2 GiB")
        raw.session_bytes = raw.proto.SerializeToString()


def _inline(t: Any, data: bytes) -> None:
    del t.external_data[:]
    t.data_location = 0  # DEFAULT
    t.raw_data = data


def _rewrite(t: Any, mem_name: str, length: int) -> None:
    """Point the tensor at the in-memory buffer onnxguard hands to onnxruntime."""
    del t.external_data[:]
    for k, v in (("location", mem_name), ("offset", "0"), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v
