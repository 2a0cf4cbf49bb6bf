"""Finding and loading a Hugging Face ``tokenizer.json`` (the ``tokenizers`` library), safely.

The file is read once, without following a symbolic link, with a size cap; a
``tokenizer.json`` found automatically must sit in the model's own folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from ..errors import DataError

MAX_TOKENIZER_BYTES = 64 * 1024**2
PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>", "[pad]")
UNK_TOKENS = ("[UNK]", "<unk>", "<UNK>")


def find_tokenizer(model_path: Path, given: Path | None) -> Path | None:
    """``given`` (``--tokenizer``), else ``tokenizer.json`` beside the model, else None."""
    if given is not None:
        return Path(given)
    cand = Path(model_path).parent / "tokenizer.json"
    try:
        st = os.lstat(cand)
    except OSError:
        return None
    return cand if stat.S_ISREG(st.st_mode) else None


def load_tokenizer(path: Path) -> Any:
    """A ``tokenizers.Tokenizer`` from ``path``; a typed error (exit 2) when it is not one."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise DataError(f"tokenizer not found: {path} ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise DataError(f"tokenizer {path} is not a regular file (symbolic links are not followed)")
    if st.st_nlink > 1:
        raise DataError(f"tokenizer {Path(path).name} has {st.st_nlink} hard links; onnxguard reads only files that are not linked elsewhere")
    if st.st_size > MAX_TOKENIZER_BYTES:
        raise DataError(f"tokenizer {path} is {st.st_size} bytes, over the {MAX_TOKENIZER_BYTES}-byte limit")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DataError(f"cannot open tokenizer {Path(path).name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DataError(f"tokenizer {Path(path).name} is not a regular file")
        data = f.read(MAX_TOKENIZER_BYTES + 1)
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception:  # the library raises its own untyped errors; their text may quote the file, so it is not shown
        raise DataError(f"{Path(path).name} is not a Hugging Face tokenizer.json (the tokenizers library cannot read it)") from None


def special_id(tok: Any, names: tuple[str, ...], default: int = 0) -> int:
    for n in names:
        i = tok.token_to_id(n)
        if i is not None:
            return int(i)
    return default
