"""Sample inputs, labels and the valid value range.

Formats: ``.npz`` (array ``x``, optional ``y``), ``.npy`` (inputs only) and
``.csv`` (numeric; a header naming a ``label``/``y``/``target``/``class``
column supplies labels). Pickled objects are never loaded. Without data the
scanner makes synthetic inputs inside the valid range and says so.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datacheck import MAX_ARRAY_VALUES, MAX_DATA_BYTES, check_npy, check_npz, csv_rows
from .digest import sha256_file
from .errors import DataError
from .model import LoadedModel
from .oracle import Domain

LABEL_COLUMNS = ("label", "y", "target", "class")


@dataclass
class Samples:
    x: np.ndarray  # (N, *sample_shape) float64, model units
    y: np.ndarray | None  # (N,) labels as given (mapped to class indices by ``labels_for``)
    source: str
    sha256: str | None
    synthetic: bool


def load_data(path: str | os.PathLike[str]) -> Samples:
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if p.is_dir():
        raise DataError(f"{p} is a directory; --data takes a .npz, .npy or .csv file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read data file {p}: {exc.strerror}") from None
    if size == 0:
        raise DataError(f"data file {p} is empty")
    if size > MAX_DATA_BYTES:
        raise DataError(f"data file {p} is {size} bytes, over the {MAX_DATA_BYTES}-byte limit")
    suffix = p.suffix.lower()
    try:
        check_data_file(p)  # headers only: a data bomb is refused before anything is allocated
        if suffix == ".npz":
            x, y = _load_npz(p)
        elif suffix == ".npy":
            x, y = np.load(p, allow_pickle=False), None
        elif suffix == ".csv":
            x, y = _load_csv(p)
        else:
            raise DataError(f"unsupported data format '{suffix or p.name}': use .npz (arrays x, y), .npy or .csv")
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{p.name}: the data does not fit in memory") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {p.name} as {suffix[1:]}: {str(exc)[:200]}") from None
    x = _check_x(np.asarray(x), p.name)
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise DataError(f"{p.name}: {x.shape[0]} samples but {y.shape[0]} labels")
    return Samples(x=x, y=y, source=str(p), sha256=sha256_file(p), synthetic=False)


def check_data_file(path: str | os.PathLike[str]) -> None:
    """Cheap checks of a data file from its headers (no array is read): size caps, declared shapes,
    zip member sizes. Raises :class:`DataError` naming the file."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if p.stat().st_size == 0:
            raise DataError(f"data file {p} is empty")
        if suffix == ".npz":
            check_npz(p, p.name)
        elif suffix == ".npy":
            check_npy(p, p.name)
    except OSError as exc:
        raise DataError(f"cannot read data file {p.name}: {exc.strerror or exc}") from None


def _load_npz(p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(p, allow_pickle=False) as z:
        keys = list(z.keys())
        if "x" not in keys:
            raise DataError(f"{p.name} holds arrays {keys}; expected an array named 'x' (and optionally 'y')")
        return z["x"], (z["y"] if "y" in keys else None)


def _load_csv(p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    cells = 0
    rows = []
    with open(p, newline="", encoding="utf-8", errors="replace") as f:
        for r in csv_rows(f, p.name):
            if not r:
                continue
            cells += len(r)
            if cells > MAX_ARRAY_VALUES:
                raise DataError(f"{p.name}: more than {MAX_ARRAY_VALUES:,} values; refused")
            rows.append(r)
    if not rows:
        raise DataError(f"{p.name} holds no rows")
    header = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = [h.strip().lower() for h in rows[0]], rows[1:]
    if not rows:
        raise DataError(f"{p.name} has a header but no data rows")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise DataError(f"{p.name}: rows have different numbers of columns")
    label_col = None
    if header:
        for name in LABEL_COLUMNS:
            if name in header:
                label_col = header.index(name)
                break
    try:
        arr = np.array([[float(v) for i, v in enumerate(r) if i != label_col] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{p.name}: non-numeric value in a feature column ({exc})") from None
    y = None
    if label_col is not None:
        raw = [r[label_col].strip() for r in rows]
        try:
            y = np.array([int(float(v)) for v in raw], dtype=np.int64)
        except ValueError:
            y = np.array(raw)
    return arr, y


def _check_x(x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype.kind not in "fiub":
        raise DataError(f"{name}: inputs have dtype {x.dtype}; expected numbers")
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError(f"{name}: holds no samples")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(x.shape[0], -1).any(axis=1))
        raise DataError(f"{name}: {len(rows)} sample(s) contain NaN or infinite values (first: sample {int(rows[0])})")
    return x


def fit_to_model(samples: Samples, model: LoadedModel) -> Samples:
    """Reshape flat samples to the model's sample shape; reject shapes that cannot fit."""
    x = samples.x
    want = model.sample_shape
    if x.shape[1:] == want:
        return samples
    if int(np.prod(x.shape[1:])) == int(np.prod(want)):
        samples.x = x.reshape(x.shape[0], *want)
        return samples
    raise DataError(
        f"data samples have shape {list(x.shape[1:])} ({int(np.prod(x.shape[1:]))} values) but the model's input "
        f"'{model.input_name}' takes {list(want)} ({int(np.prod(want))} values)"
    )


def labels_for(samples: Samples, model: LoadedModel) -> np.ndarray | None:
    """Map given labels to the model's class indices; None when there are none."""
    y = samples.y
    if y is None:
        return None
    if model.class_labels is not None:
        index = {str(c): i for i, c in enumerate(model.class_labels)}
        keys = [str(int(v)) if isinstance(v, (np.integer, int)) or (isinstance(v, (float, np.floating)) and float(v).is_integer()) else str(v) for v in y.tolist()]
        if all(k in index for k in keys):
            return np.array([index[k] for k in keys], dtype=np.int64)
    if y.dtype.kind in "iuf":
        yi = y.astype(np.int64)
        if np.all(yi == y) and yi.min() >= 0 and (model.n_classes is None or yi.max() < model.n_classes):
            return yi
    classes = model.class_labels if model.class_labels is not None else f"0..{(model.n_classes or 1) - 1}"
    raise DataError(f"data labels {sorted(set(map(str, y.tolist())))[:10]} do not match the model's classes {classes}")


def parse_range(text: str) -> tuple[float, float]:
    """``lo,hi``: one range for every feature."""
    from .conventions import parse_pair

    return parse_pair(text)


@dataclass
class ResolvedInput:
    """The input conventions a scan works under, each with where it came from (all go in the report)."""

    domain: Domain
    range_source: str  # given, policy, normalization, bounds, data, assumed
    layout: str  # NCHW, NHWC, HW, features, flat
    layout_source: str  # given, metadata, shape, assumed
    channels: str | None  # gray, rgb, bgr (images), None for tabular
    normalization: str | None
    shape_source: str
    degenerate: list[int]  # features (tabular) whose valid range has zero width: no attack can move them


def load_bounds(path: str | os.PathLike[str], n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature bounds from a file: JSON ``[[lo, hi], ...]`` or ``{"lo": [...], "hi": [...]}``, or a CSV
    with one ``lo,hi`` row per feature (an optional header)."""
    import json

    p = Path(path)
    try:
        if p.stat().st_size > 64 * 1024**2:
            raise DataError(f"bounds file {p.name} is over 64 MB")
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read bounds file {p}: {exc.strerror}") from None
    try:
        if p.suffix.lower() == ".json":
            doc = json.loads(text)
            pairs = list(zip(doc["lo"], doc["hi"])) if isinstance(doc, dict) else [tuple(r) for r in doc]
        else:
            import io

            rows = [r for r in csv_rows(io.StringIO(text), str(p)) if r]
            if rows and not _numeric(rows[0]):
                rows = rows[1:]
            pairs = [(r[0], r[1]) for r in rows]
        lo = np.array([float(a) for a, _ in pairs])
        hi = np.array([float(b) for _, b in pairs])
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        raise DataError(f"bounds file {p.name}: expected one [lo, hi] pair per feature (JSON or CSV)") from None
    if lo.size != n_features:
        raise DataError(f"bounds file {p.name} gives {lo.size} features; the model takes {n_features}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (hi < lo).any():
        raise DataError(f"bounds file {p.name}: bounds must be finite with lo <= hi")
    return lo, hi


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
        return True
    except ValueError:
        return False


def resolve_input(
    model: LoadedModel,
    samples: Samples | None,
    value_range: tuple | None = None,
    *,
    range_source: str = "given",
    layout: str | None = None,
    normalize: str | None = None,
    channels: str | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    bounds_source: str = "bounds",
) -> ResolvedInput:
    """Layout, channels and the per-channel (images) or per-feature (tabular) valid range.

    Precedence for the range: ``value_range`` (``--range``: one pair, or one per channel), then
    ``normalize`` (``--normalize``), then ``bounds`` (tabular, from the policy or a bounds file), then
    the data, then [0, 1] ("assumed")."""
    from .conventions import broadcast_channels, n_channels, normalization_range, parse_normalize, resolve_layout

    shape = model.sample_shape
    lay, lay_src = resolve_layout(shape, getattr(model, "metadata", None), layout)
    nch = n_channels(shape, lay)
    order = (channels or "").lower() or None
    if order not in (None, "rgb", "bgr", "gray"):
        raise DataError(f"--channels takes rgb, bgr or gray, got '{channels}'")
    if lay in ("NCHW", "NHWC", "HW"):
        chan = order or ("gray" if nch == 1 else "rgb" if nch == 3 else f"{nch} channels")
    else:
        chan = None
    norm_desc = None
    src = range_source
    if value_range is not None and len(value_range) and isinstance(value_range[0], (tuple, list)) and len(value_range) == 1:
        value_range = tuple(value_range[0])
    if value_range is not None and len(value_range) and isinstance(value_range[0], (tuple, list)):
        if lay not in ("NCHW", "NHWC") or len(value_range) != nch:
            raise DataError(f"--range gives {len(value_range)} per-channel ranges; the model's input {list(shape)} ({lay}) has {nch} channel(s)")
        lo_c = np.array([float(a) for a, _ in value_range])
        hi_c = np.array([float(b) for _, b in value_range])
        dom = Domain(broadcast_channels(shape, lay, lo_c), broadcast_channels(shape, lay, hi_c))
        _check_inside(samples, dom)
    elif value_range is not None:
        dom, _ = resolve_domain(model, samples, value_range)  # type: ignore[arg-type]
    elif normalize:
        if lay not in ("NCHW", "NHWC", "HW"):
            raise DataError(f"--normalize applies to image inputs; the model's input {list(shape)} is {lay}")
        nm = parse_normalize(normalize, nch, order or "rgb")
        lo_c, hi_c = normalization_range(nm)
        dom = Domain(broadcast_channels(shape, lay, lo_c), broadcast_channels(shape, lay, hi_c))
        _check_inside(samples, dom, tol_frac=1e-3)
        src, norm_desc = "normalization", nm.describe()
    elif bounds is not None:
        lo, hi = bounds
        if lo.size != int(np.prod(shape)):
            raise DataError(f"bounds give {lo.size} features; the model takes {int(np.prod(shape))}")
        dom = Domain(lo.reshape(shape).astype(np.float64), hi.reshape(shape).astype(np.float64))
        _check_inside(samples, dom)
        src = bounds_source
    else:
        dom, src = resolve_domain(model, samples, None, layout=lay)
    width = np.asarray(dom.width).reshape(-1)
    degenerate = np.flatnonzero(width <= 0).tolist() if lay == "features" else []
    return ResolvedInput(dom, src, lay, lay_src, chan, norm_desc, getattr(model, "shape_source", "model"), degenerate[:1000])


def _check_inside(samples: Samples | None, dom: Domain, tol_frac: float = 1e-9) -> None:
    if samples is None or samples.synthetic:
        return
    tol = tol_frac * np.maximum(np.asarray(dom.width), 1.0)
    below = samples.x < dom.lo - tol - 1e-9
    above = samples.x > dom.hi + tol + 1e-9
    if below.any() or above.any():
        raise DataError(
            f"data values span [{samples.x.min():.4g}, {samples.x.max():.4g}], outside the valid range "
            f"[{float(np.min(dom.lo)):.4g}, {float(np.max(dom.hi)):.4g}] (--range / --normalize / bounds)"
        )


def resolve_domain(
    model: LoadedModel, samples: Samples | None, value_range: tuple[float, float] | None, *, layout: str | None = None
) -> tuple[Domain, str]:
    """The valid input range and where it came from ('given', 'data', 'assumed').

    From data, images snap to [0, 1], [0, 255] or [-1, 1] when the data fit inside; otherwise the
    per-channel (``layout`` NCHW/NHWC) or global min and max of the data."""
    shape = model.sample_shape
    if value_range is not None:
        lo, hi = value_range
        dom = Domain(np.full(shape, lo), np.full(shape, hi))
        if samples is not None and not samples.synthetic:
            if samples.x.min() < lo - 1e-9 or samples.x.max() > hi + 1e-9:
                raise DataError(
                    f"data values span [{samples.x.min():.4g}, {samples.x.max():.4g}], outside the valid range [{lo:g}, {hi:g}]"
                )
        return dom, "given"
    if samples is None:
        return Domain(np.zeros(shape), np.ones(shape)), "assumed"
    x = samples.x
    if len(shape) == 1:  # tabular: per feature
        lo, hi = x.min(axis=0), x.max(axis=0)
        return Domain(lo, hi), "data"
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    elif lo >= 0 and hi <= 255:
        lo, hi = 0.0, 255.0
    elif lo >= -1 and hi <= 1:
        lo, hi = -1.0, 1.0
    elif layout in ("NCHW", "NHWC"):  # e.g. mean-subtracted channels: each its own span
        from .conventions import broadcast_channels, channel_axis

        ax = channel_axis(layout)
        assert ax is not None
        red = tuple(i for i in range(x.ndim) if i != ax + 1)
        return Domain(broadcast_channels(shape, layout, x.min(axis=red)), broadcast_channels(shape, layout, x.max(axis=red))), "data"
    return Domain(np.full(shape, lo), np.full(shape, hi)), "data"


def synthetic_samples(model: LoadedModel, domain: Domain, n: int, rng: np.random.Generator) -> Samples:
    z = rng.uniform(0.0, 1.0, size=(n, *model.sample_shape))
    return Samples(x=domain.from_unit(z), y=None, source="synthetic", sha256=None, synthetic=True)
