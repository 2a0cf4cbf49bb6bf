"""Refusing data bombs before anything is allocated: sample files are untrusted input too.

* ``.npy``: the header (shape, dtype) is read and checked against the file's size and the
  memory cap before the array is read;
* ``.npz``: a zip archive; each member's uncompressed size comes from the zip's central
  directory and each member's ``.npy`` header is read (the first bytes only) before any array;
* ``.csv``: lines longer than ``MAX_CSV_LINE`` and fields over ``MAX_CSV_FIELD`` are refused
  as they are met, and the cell count is capped.

Every refusal is a :class:`onnxguard.errors.DataError` (exit 2) naming the file.
"""

from __future__ import annotations

import io
import zipfile
from typing import IO, Any

import numpy as np

from .errors import DataError
from .text import sanitize

MAX_DATA_BYTES = 1 * 1024**3  # a data file, and what it expands to
MAX_ARRAY_VALUES = 128 * 1024**2  # values in one array (held as float64: 1 GiB)
MAX_NPZ_MEMBERS = 64
MAX_HEADER_BYTES = 64 * 1024
MAX_CSV_LINE = 16 * 1024**2
MAX_CSV_FIELD = 128 * 1024


def _name(label: str) -> str:
    return sanitize(label, 200)


def read_npy_header(f: IO[bytes], label: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of an ``.npy`` stream positioned at its start; reads only the header."""
    fmt = np.lib.format
    try:
        major, minor = fmt.read_magic(f)
        if (major, minor) == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f, max_header_size=MAX_HEADER_BYTES)
        elif (major, minor) in ((2, 0), (3, 0)):
            shape, _, dtype = fmt.read_array_header_2_0(f, max_header_size=MAX_HEADER_BYTES)
        else:
            raise DataError(f"{_name(label)}: unsupported .npy format version {major}.{minor}")
    except DataError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise DataError(f"cannot read {_name(label)}: not a valid .npy header ({sanitize(str(exc), 160)})") from None
    if dtype.hasobject:
        raise DataError(f"cannot read {_name(label)}: it holds Python objects (pickles are never loaded)")
    return tuple(int(d) for d in shape), dtype, int(f.tell())


def check_array_size(shape: tuple[int, ...], dtype: np.dtype, available: int, label: str) -> None:
    """Refuse an array whose declared size is over the caps, or larger than the bytes that hold it."""
    n = 1
    for d in shape:
        n *= max(int(d), 0)
    nbytes = n * max(int(dtype.itemsize), 1)
    if n > MAX_ARRAY_VALUES:
        raise DataError(f"{_name(label)}: declares an array of shape {list(shape)} ({n:,} values), over the "
                        f"{MAX_ARRAY_VALUES:,}-value limit for sample data; refused before reading it")
    if nbytes > available:
        raise DataError(f"{_name(label)}: declares {nbytes:,} bytes of data (shape {list(shape)}, {dtype}) but holds only "
                        f"{available:,}: truncated or forged; refused before reading it")


def check_npy(path: Any, label: str) -> None:
    """Check an ``.npy`` file's header against its size (reads the header only)."""
    with open(path, "rb") as f:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(0)
        shape, dtype, hlen = read_npy_header(f, label)
    check_array_size(shape, dtype, size - hlen, label)


def check_npz(src: Any, label: str, max_total: int = MAX_DATA_BYTES) -> None:
    """Check an ``.npz`` archive from its zip central directory and each member's ``.npy`` header."""
    try:
        with zipfile.ZipFile(src) as z:
            infos = z.infolist()
            if len(infos) > MAX_NPZ_MEMBERS:
                raise DataError(f"{_name(label)}: holds {len(infos)} arrays, over the limit of {MAX_NPZ_MEMBERS}")
            total = sum(max(int(i.file_size), 0) for i in infos)
            if total > max_total:
                raise DataError(f"{_name(label)}: expands to {total:,} bytes, over the {max_total:,}-byte limit for sample data "
                                "(a compression bomb?); refused before reading it")
            for info in infos:
                member = f"{label} (array '{sanitize(info.filename, 60)}')"
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as m:
                    head = m.read(MAX_HEADER_BYTES + 16)
                bio = io.BytesIO(head)
                shape, dtype, hlen = read_npy_header(bio, member)
                check_array_size(shape, dtype, int(info.file_size) - hlen, member)
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"cannot read {_name(label)} as npz: {sanitize(str(exc), 200)}") from None


def csv_rows(f: IO[str], label: str) -> Any:
    """Rows of a CSV text stream; each line bounded before the csv module sees it."""
    import csv

    def lines() -> Any:
        n = 0
        while True:
            line = f.readline(MAX_CSV_LINE + 1)
            if not line:
                return
            n += 1
            if len(line) > MAX_CSV_LINE:
                raise DataError(f"{_name(label)}: line {n} is longer than {MAX_CSV_LINE:,} characters; refused")
            yield line

    reader = csv.reader(lines())
    try:
        csv.field_size_limit(MAX_CSV_FIELD)
        for row in reader:
            yield row
    except csv.Error as exc:
        raise DataError(f"{_name(label)}: not valid CSV at line {reader.line_num} ({sanitize(str(exc), 120)}; "
                        f"fields are limited to {MAX_CSV_FIELD:,} characters)") from None
