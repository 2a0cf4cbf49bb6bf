"""Writing output files safely: every report, page, adversarial and trigger goes through here.

* ``check_file`` / ``check_folder`` run before the scan starts: a missing folder, a symlink at
  the final component, a directory or device where a file should go, or a target that is the
  scanned model (or its data) is refused with :class:`onnxguard.errors.OutputError` (exit 2) at once.
* ``write_atomic`` writes a temporary file in the target's folder and renames it over the
  target: a reader never sees half a file, and a symlink at the final component is replaced,
  never followed. The target is checked again just before the rename.

A path is *protected* when writing it would destroy an input of the scan: the model file (and
what a followed symlink points to), its external data, the sample data, a surrogate model.
Protection compares device and inode numbers, so a hard link or another spelling of the same
file is caught too.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Union

from .errors import OutputError
from .text import sanitize

Writer = Callable[[object], None]  # receives a binary file object
Data = Union[bytes, str]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _shown(path: Path | str) -> str:
    return sanitize(str(path), 300)


def safe_name(text: str, limit: int = 120) -> str:
    """A file name made from an untrusted string (a check id): no separators, no leading dot."""
    name = _SAFE_NAME.sub("_", text)[:limit].lstrip(".")
    return name or "_"


@dataclass(frozen=True)
class Protected:
    """Files an output may never replace, by (device, inode), with the paths for messages."""

    inodes: frozenset[tuple[int, int]] = frozenset()
    paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, paths: Iterable[Path | str | None]) -> "Protected":
        inodes, shown = set(), []
        for p in paths:
            if p is None:
                continue
            for follow in (False, True):  # the link itself and what it points to
                try:
                    st = os.stat(p, follow_symlinks=follow)
                except (OSError, ValueError):
                    continue
                inodes.add((st.st_dev, st.st_ino))
            shown.append(str(p))
        return cls(frozenset(inodes), tuple(shown))

    def __or__(self, other: "Protected") -> "Protected":
        return Protected(self.inodes | other.inodes, self.paths + other.paths)

    def holds(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) in self.inodes


def _check_target(path: Path, flag: str, protected: Protected) -> None:
    """The final component: absent, or a regular file that is not protected. Never a link."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{flag} {_shown(path)}: cannot examine it ({exc.strerror or exc})") from None
    if stat.S_ISLNK(lst.st_mode):
        raise OutputError(f"{flag} {_shown(path)} is a symbolic link; onnxguard never writes through a link (remove it or pick another name)")
    if stat.S_ISDIR(lst.st_mode):
        raise OutputError(f"{flag} {_shown(path)} is a directory; give a file name")
    if not stat.S_ISREG(lst.st_mode):
        raise OutputError(f"{flag} {_shown(path)} is not a regular file (a device, FIFO or socket); not written")
    if protected.holds(lst):
        raise OutputError(f"{flag} {_shown(path)} is an input of this scan (the model or its data); it is never overwritten")


def _check_parent(folder: Path, flag: str, target: Path) -> None:
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise OutputError(f"{flag} {_shown(target)}: the folder {_shown(folder)} does not exist") from None
    except OSError as exc:
        raise OutputError(f"{flag} {_shown(target)}: cannot use the folder {_shown(folder)} ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{flag} {_shown(target)}: {_shown(folder)} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {_shown(target)}: the folder {_shown(folder)} is not writable")


def check_file(path: Path | str, flag: str, protected: Protected = Protected()) -> Path:
    """Before the scan: ``path`` can be written as ``flag``'s output file."""
    p = Path(path)
    _check_parent(p.parent if str(p.parent) else Path("."), flag, p)
    _check_target(p, flag, protected)
    return p


def check_folder(path: Path | str, flag: str, protected: Protected = Protected()) -> Path:
    """Before the scan: ``path`` is (or can be made) a folder for ``flag``'s files; not a link."""
    p = Path(path)
    try:
        lst = os.lstat(p)
    except FileNotFoundError:
        parent = p.parent if str(p.parent) else Path(".")
        _check_parent(parent, flag, p)
        return p
    except OSError as exc:
        raise OutputError(f"{flag} {_shown(p)}: cannot examine it ({exc.strerror or exc})") from None
    if stat.S_ISLNK(lst.st_mode):
        raise OutputError(f"{flag} {_shown(p)} is a symbolic link; onnxguard never writes through a link")
    if not stat.S_ISDIR(lst.st_mode):
        raise OutputError(f"{flag} {_shown(p)} exists and is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {_shown(p)}: the folder is not writable")
    return p


def check_distinct(paths: dict[str, Path | None]) -> None:
    """Two outputs may not name the same file."""
    seen: dict[str, str] = {}
    for flag, p in paths.items():
        if p is None:
            continue
        key = os.path.abspath(p)
        if key in seen:
            raise OutputError(f"{flag} and {seen[key]} name the same file {_shown(p)}")
        seen[key] = flag


def write_atomic(path: Path | str, data: Data | Writer, *, flag: str = "output", protected: Protected = Protected(), mode: int = 0o644) -> Path:
    """Write ``data`` (bytes, text, or a function that writes to a binary file) to ``path`` atomically."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    _check_parent(folder, flag, p)
    _check_target(p, flag, protected)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:60]}.", suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, mode & ~umask)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        _check_target(p, flag, protected)  # again, just before the rename
        os.replace(tmp, p)  # replaces a link at the final component itself; never follows it
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # the rename itself survives a crash only once the folder is on disk
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse a directory fsync
        pass
    return p


@dataclass(frozen=True)
class OutputDir:
    """A folder of output files (``--save-adversarials``, ``--backdoor-out``), checked and written safely."""

    path: Path
    flag: str = "output folder"
    protected: Protected = field(default_factory=Protected)

    def ensure(self) -> Path:
        check_folder(self.path, self.flag, self.protected)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.flag} {_shown(self.path)}: cannot create it ({exc.strerror or exc})") from None
        check_folder(self.path, self.flag, self.protected)
        return self.path

    def write(self, name: str, data: Data | Writer) -> Path:
        self.ensure()
        return write_atomic(self.path / safe_name(name), data, flag=self.flag, protected=self.protected)

    def __truediv__(self, name: str) -> Path:
        return self.path / safe_name(name)


def as_output_dir(value: "Path | str | OutputDir | None", flag: str, protected: Protected = Protected()) -> OutputDir | None:
    if value is None or isinstance(value, OutputDir):
        return value
    return OutputDir(Path(value), flag, protected)
