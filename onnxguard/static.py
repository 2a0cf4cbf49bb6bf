"""Static checks of an ONNX file: what it is and where it points, without running it.

``inspect_model`` walks every graph, node and tensor (subgraphs and
model-local functions included) and returns :class:`StaticFinding` objects,
each with a severity the policy grades (``grading.static_findings``):

* external data, and every reference that was refused (traversal, absolute
  paths, symlinks, hard links, offsets past the end)
* custom or unknown operator domains; operators their domain does not define
* unusual IR versions and opsets
* operators that allocate from values: constant sizes over the memory limit
  (``alloc-bomb``: refused before the model runs), sizes an input controls
* giant initialisers, tensors whose data does not match their shape
* metadata, doc strings and names carrying control characters, terminal
  escapes or markup
* subgraphs nested beyond a sane depth

Every string taken from the model is shown escaped (``ascii``), so findings
are safe to print. Nothing here executes the model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .protowalk import ModelWalk, walk
from .report import StaticFinding
from .safeload import _BITS, RawModel
from .text import as_str, has_control, sanitize

SEVERITIES = ("info", "low", "medium", "high", "critical")
STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml"}
RUNTIME_DOMAINS = {
    "com.microsoft": "onnxruntime's contrib operators",
    "com.microsoft.nchwc": "onnxruntime's internal layout operators",
    "com.ms.internal.nhwc": "onnxruntime's internal layout operators",
    "ai.onnx.preview.training": "ONNX training operators",
    "ai.onnx.training": "ONNX training operators",
    "ai.onnx.preview": "ONNX preview operators",
}
MAX_SUBGRAPH_DEPTH = 8
LARGE_ALLOCATION = 256 * 1024**2
GIANT_INITIALIZER = 1024**3
LONG_LOOP = 10_000_000
REFUSE_LOOP = 1_000_000_000  # loop iterations per model run (nested loops multiply) that refuse the model
DEFAULT_MEMORY_LIMIT = 4096 * 1024**2
# finding ids that stop a scan before the model is run
REFUSE_IDS = {"alloc-bomb", "external-data-refused", "long-loop"}

_MARKUP = re.compile(r"<\s*/?\s*(script|iframe|img|svg|object|embed|style|link|meta|form|a|body|html)\b|javascript:|\bon[a-z]+\s*=", re.I)
_TAG = re.compile(r"<[A-Za-z/][^>]{0,200}>")
_ELEM = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string", 9: "bool",
         10: "float16", 11: "double", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16"}


def esc(text: str, limit: int = 80) -> str:
    """A model-supplied string made printable: escapes shown, not interpreted."""
    out = ascii(as_str(text))[1:-1]
    return out if len(out) <= limit else out[:limit] + "..."


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def _f(id: str, severity: str, title: str, detail: str, location: str | None = None) -> StaticFinding:
    return StaticFinding(
        id=id, severity=severity,  # type: ignore[arg-type]
        title=sanitize(title, 200), detail=sanitize(detail, 2000), location=sanitize(location, 300) if location else None,
    )


@dataclass(frozen=True)
class StaticContext:
    """What a static check reads: the file as read by safeload, its walk, the memory limit, its options."""

    raw: RawModel
    walk: ModelWalk
    memory_limit: int
    options: Mapping[str, Any]


@dataclass(frozen=True)
class StaticCheck:
    """One entry of the static-check registry. A check that ``can_refuse`` decides whether a model may
    run at all (a memory bomb, external data outside the folder): a policy cannot switch it off."""

    id: str
    fn: Callable[[StaticContext], list[StaticFinding]]
    description: str
    can_refuse: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)  # option name -> default


def _register(*checks: StaticCheck) -> dict[str, StaticCheck]:
    return {c.id: c for c in checks}


STATIC_CHECKS: dict[str, StaticCheck] = _register(
    StaticCheck("external-data", lambda c: _external(c.raw), "external data and every reference refused (traversal, links, offsets)",
                can_refuse=True),
    StaticCheck("domains", lambda c: _domains(c.raw.proto, c.walk), "custom or unknown operator domains; operators a domain does not define"),
    StaticCheck("versions", lambda c: _versions(c.raw.proto, c.walk), "unusual IR versions and opsets"),
    StaticCheck("allocations", lambda c: _allocations(c.walk, c.memory_limit), "operators that allocate from constant or input-controlled sizes; long loops",
                can_refuse=True),
    StaticCheck("tensors", lambda c: _tensors(c.walk, c.memory_limit), "giant initialisers, tensors whose data does not match their shape"),
    StaticCheck("strings", lambda c: _strings(c.raw.proto, c.walk), "control characters, terminal escapes and markup in metadata, doc strings and names"),
    StaticCheck("structure", lambda c: _structure(c.raw.proto, c.walk, int(c.options.get("max_subgraph_depth", MAX_SUBGRAPH_DEPTH))),
                "control-flow subgraphs nested beyond a sane depth", options={"max_subgraph_depth": MAX_SUBGRAPH_DEPTH}),
)


def inspect_model(
    raw: RawModel, model_path: Path | str | None = None, *, memory_limit: int = DEFAULT_MEMORY_LIMIT,
    checks: Mapping[str, Any] | None = None,
) -> list[StaticFinding]:
    """Static findings for a model read by :func:`onnxguard.safeload.read_model`; most severe first.

    ``checks`` is the policy's ``[static.checks]`` table: per check id, ``enabled`` and its options
    (every registered check runs by default; checks that can refuse a model always run)."""
    w = walk(raw.proto)
    out: list[StaticFinding] = []
    for check in STATIC_CHECKS.values():
        cfg = (checks or {}).get(check.id)
        if cfg is not None and not getattr(cfg, "enabled", True) and not check.can_refuse:
            continue
        opts = {**check.options, **(getattr(cfg, "options", None) or {})}
        out += check.fn(StaticContext(raw, w, memory_limit, opts))
    out.sort(key=lambda f: -SEVERITIES.index(f.severity))
    return out


def refusals(findings: Iterable[StaticFinding]) -> list[StaticFinding]:
    """Findings that mean the model must not be run at all."""
    return [f for f in findings if f.id in REFUSE_IDS and f.severity == "critical"]


# -- external data ----------------------------------------------------------------


def _external(raw: RawModel) -> list[StaticFinding]:
    out = []
    bad = [e for e in raw.external_refs if e.problem]
    for e in bad[:20]:
        out.append(_f(
            "external-data-refused", "critical", "unsafe external-data reference refused",
            f"tensor '{e.tensor}' ({e.where}) points to '{esc(e.location, 200)}': {e.problem}. "
            "onnxguard did not read it; onnxruntime never sees the path.",
            esc(e.location, 200),
        ))
    if len(bad) > 20:
        out.append(_f("external-data-refused", "critical", "more unsafe external-data references", f"{len(bad) - 20} more references were refused"))
    uses = Counter(e.location for e in raw.external_refs if not e.problem)
    for loc, sha, size in raw.external_files:
        out.append(_f(
            "external-data", "low", "tensors stored in an external data file",
            f"'{esc(loc, 200)}' ({size} bytes, sha256 {sha}) holds {uses.get(loc, 0)} tensor(s); it sits inside the model's "
            "folder, was read by onnxguard and handed to onnxruntime in memory. Ship and pin it with the model.",
            esc(loc, 200),
        ))
    return out


# -- operator domains and versions -------------------------------------------------


def _domains(proto: Any, w: ModelWalk) -> list[StaticFinding]:
    import onnx.defs

    out = []
    imported = {as_str(d.domain): d.version for d in proto.opset_import}
    local_funcs = {(as_str(f.domain), as_str(f.name)) for f in proto.functions}
    for f in proto.functions:
        for d in f.opset_import:
            imported.setdefault(as_str(d.domain), d.version)
    used: dict[str, Counter] = {}
    for ref in w.nodes:
        n = ref.node
        used.setdefault(as_str(n.domain), Counter())[as_str(n.op_type)] += 1
    custom = sorted(d for d in set(used) | set(imported) if d not in STANDARD_DOMAINS and d not in RUNTIME_DOMAINS
                    and not any(d == fd for fd, _ in local_funcs))
    for d in custom:
        ops = used.get(d, Counter())
        ops_s = ", ".join(f"{esc(op, 40)} x{c}" for op, c in ops.most_common(8)) or "no node uses it"
        out.append(_f(
            "custom-domain", "high", f"custom operator domain '{esc(d, 60)}'",
            f"operators: {ops_s}. A custom domain needs a custom-operator library (native code); onnxguard never loads one, "
            "so such a model cannot be run by the scanner and its behaviour is unknown.",
            esc(d, 60),
        ))
    for d in sorted(set(used) & set(RUNTIME_DOMAINS)):
        ops = ", ".join(f"{esc(op, 40)} x{c}" for op, c in used[d].most_common(8))
        out.append(_f("runtime-domain", "low", f"runtime-specific operators ('{d}')",
                      f"{RUNTIME_DOMAINS[d]}: {ops}; other runtimes may not run the model", d))
    for d in sorted(set(used) - set(imported)):
        if (d, "") in local_funcs or any(d == fd for fd, _ in local_funcs):
            continue
        out.append(_f("undeclared-domain", "medium", f"operator domain '{esc(d, 60)}' is used but not imported",
                      "nodes use a domain missing from opset_import: the model is malformed", esc(d, 60)))
    unknown: Counter = Counter()
    for ref in w.nodes:
        n = ref.node
        n_dom, n_op = as_str(n.domain), as_str(n.op_type)
        if n_dom in STANDARD_DOMAINS and (n_dom, n_op) not in local_funcs:
            dom = "" if n_dom == "ai.onnx" else n_dom
            try:
                known = onnx.defs.has(n_op, dom)
            except Exception:
                known = False
            if not known:
                unknown[(dom or "ai.onnx", n_op)] += 1
    if unknown:
        ops = ", ".join(f"{esc(d, 30)}:{esc(op, 40)} x{c}" for (d, op), c in unknown.most_common(10))
        out.append(_f("unknown-operator", "medium", "operators unknown to their ONNX domain",
                      f"{ops}: not defined by the ONNX standard (nor by a model-local function)"))
    return out


def _versions(proto: Any, w: ModelWalk) -> list[StaticFinding]:
    import onnx
    import onnx.helper

    out = []
    ir = int(proto.ir_version)
    if ir > onnx.IR_VERSION:
        out.append(_f("ir-version", "medium", f"IR version {ir} is newer than this onnx ({onnx.IR_VERSION}) knows",
                      "fields this toolchain does not understand are ignored, by onnxguard and possibly by the runtime"))
    elif ir < 3:
        out.append(_f("ir-version", "low", f"very old IR version {ir}", "models older than IR 3 predate opset imports"))
    known: dict[str, int] = {}
    for (dom, v), _ in onnx.helper.OP_SET_ID_VERSION_MAP.items():
        known[dom] = max(known.get(dom, 0), v)
    for d in proto.opset_import:
        dom = esc(d.domain, 60) or "ai.onnx"
        if dom in known and d.version > known[dom]:
            out.append(_f("opset-version", "medium", f"opset {d.version} of '{dom}' is newer than this onnx knows ({known[dom]})",
                          "operators may behave as the scanner does not expect", dom))
        elif dom == "ai.onnx" and 0 < d.version < 7:
            out.append(_f("opset-version", "low", f"very old opset {d.version}", "opsets before 7 lack broadcasting rules most runtimes assume", dom))
        elif d.version <= 0:
            out.append(_f("opset-version", "medium", f"opset version {d.version} for '{esc(dom, 60)}'", "opset versions start at 1: malformed", esc(dom, 60)))
    declared = {as_str(d.domain) for d in proto.opset_import}
    if w.nodes and "" not in declared and "ai.onnx" not in declared:
        if any(as_str(r.node.domain) in ("", "ai.onnx") for r in w.nodes):
            out.append(_f("opset-version", "medium", "no default ONNX opset imported", "nodes of the default domain have no opset version: malformed"))
    return out


# -- allocations sized by values ---------------------------------------------------

# op -> indices of inputs that size its output
_SIZE_INPUTS = {
    "ConstantOfShape": (0,), "Expand": (1,), "Tile": (1,), "Resize": (2, 3), "Upsample": (1,), "Range": (0, 1, 2),
    "Pad": (1,), "OneHot": (1,), "CenterCropPad": (1,), "Col2Im": (1, 2), "MaxUnpool": (2,), "Loop": (0,),
}
_SHAPE_OPS = {"Shape", "Size"}
_FOLD_OPS = {"Identity", "Cast", "Concat", "Unsqueeze", "Squeeze", "Mul", "Add", "Sub", "Reshape", "Abs", "Max", "Min"}


def _small_const(t: Any) -> np.ndarray | None:
    from onnx import numpy_helper

    if t.data_location == 1 or t.data_type not in (1, 6, 7, 10, 11, 12, 13):
        return None
    n = 1
    for d in t.dims:
        n *= max(int(d), 0)
    if n > 4096:
        return None
    try:
        return numpy_helper.to_array(t)
    except Exception:
        return None


def _const_attr(n: Any) -> np.ndarray | None:
    for a in n.attribute:
        if a.name == "value" and a.HasField("t"):
            return _small_const(a.t)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
    return None


def _fold(op: str, vals: list[np.ndarray]) -> np.ndarray | None:
    try:
        with np.errstate(all="ignore"):
            if op in ("Identity", "Cast", "Abs") and vals:
                v = vals[0].astype(object) if vals[0].dtype.kind in "iu" else vals[0]
                return np.abs(v) if op == "Abs" else v
            if op == "Concat":
                return np.concatenate([np.atleast_1d(v).astype(object) for v in vals])
            if op in ("Unsqueeze", "Squeeze", "Reshape") and vals:
                return np.atleast_1d(vals[0]).reshape(-1)
            if op in ("Mul", "Add", "Sub", "Max", "Min") and len(vals) == 2:
                a, b = (v.astype(object) if v.dtype.kind in "iu" else v.astype(np.float64) for v in vals)
                return {"Mul": lambda: a * b, "Add": lambda: a + b, "Sub": lambda: a - b,
                        "Max": lambda: np.maximum(a, b), "Min": lambda: np.minimum(a, b)}[op]()
    except Exception:
        return None
    return None


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        return math.inf
    return x if math.isfinite(x) else math.inf


def _elements(shape: np.ndarray) -> float:
    n = 1.0
    for d in np.atleast_1d(shape).reshape(-1):
        n *= max(_num(d), 0.0)
    return n


def _allocations(w: ModelWalk, memory_limit: int) -> list[StaticFinding]:
    consts: dict[str, np.ndarray] = {}
    tainted: set[str] = set()
    for g in w.graphs:
        inits = {t.name for t in g.graph.initializer}
        for t in g.graph.initializer:
            v = _small_const(t)
            if v is not None:
                consts[t.name] = v
        for i in g.graph.input:
            if i.name not in inits:
                tainted.add(i.name)
    out: list[StaticFinding] = []
    data_driven: Counter = Counter()
    loop_trips: dict[int, float] = {}
    # nodes in file order: ONNX graphs are topologically sorted; subgraph nodes see outer names
    for ref in sorted(w.nodes, key=lambda r: r.depth):
        n = ref.node
        ins = list(n.input)
        if n.op_type == "Constant":
            v = _const_attr(n)
            if v is not None and n.output:
                consts[n.output[0]] = v
            continue
        if n.op_type in _FOLD_OPS and ins and all(i in consts for i in ins if i):
            v = _fold(n.op_type, [consts[i] for i in ins if i])
            if v is not None and n.output:
                consts[n.output[0]] = v
        if n.op_type not in _SHAPE_OPS and any(i in tainted for i in ins):
            tainted.update(o for o in n.output if o)
        if n.op_type in _SHAPE_OPS:
            continue
        idx = _SIZE_INPUTS.get(n.op_type)
        if n.domain not in ("", "ai.onnx") or idx is None:
            if n.op_type in ("RandomNormal", "RandomUniform") and n.domain in ("", "ai.onnx"):
                for a in n.attribute:
                    if a.name == "shape":
                        out += _alloc_finding(ref, _elements(np.array(list(a.ints), dtype=object)) * 4, memory_limit, "attribute shape")
            continue
        sizes = [ins[i] for i in idx if i < len(ins) and ins[i]]
        label = f"{esc(n.op_type, 40)} '{esc(n.name, 60)}'" if n.name else esc(n.op_type, 40)
        if n.op_type == "Loop":
            if sizes and sizes[0] in consts:
                trips = _num(np.atleast_1d(consts[sizes[0]]).reshape(-1)[0]) if np.size(consts[sizes[0]]) else 0.0
                loop_trips[id(n)] = trips
                # iterations of the innermost body per model run: times every enclosing Loop's constant trip count
                outer = [loop_trips[id(o)] for o in ref.owners if o.op_type == "Loop" and id(o) in loop_trips]
                total = trips
                for t in outer:
                    total *= max(t, 1.0)
                nested = f" inside {len(outer)} enclosing Loop(s), {total:.3g} iterations per run in all" if outer else ""
                if total >= REFUSE_LOOP:
                    out.append(_f("long-loop", "critical", f"Loop with a constant trip count of {trips:.3g}{nested}",
                                  f"node {label} in {ref.where} iterates {total:.3g} times per model run{nested and ' (its own ' + format(trips, '.3g') + ' trips times its ' + str(len(outer)) + ' enclosing Loop(s))'}, over the "
                                  f"{REFUSE_LOOP:.0e} onnxguard runs: the model would run for hours or days. It is refused before it runs.",
                                  f"{ref.where}/{label}"))
                elif total >= LONG_LOOP:
                    out.append(_f("long-loop", "high", f"Loop with a constant trip count of {trips:.3g}{nested}",
                                  f"node {label} in {ref.where} iterates {total:.3g} times per model run: the model may run for a long time. "
                                  "Scanning it relies on the per-run watchdog (limits.inference_timeout_s) and the sandbox's time limits.",
                                  f"{ref.where}/{label}"))
            elif sizes and sizes[0] in tainted:
                data_driven["Loop"] += 1
            continue
        if sizes and all(s in consts for s in sizes):
            est = _estimate(n.op_type, [consts[s] for s in sizes], [consts.get(i) for i in ins])
            if est is not None:
                out += _alloc_finding(ref, est, memory_limit, "constant sizes")
        elif any(s in tainted for s in sizes):
            data_driven[n.op_type] += 1
    if data_driven:
        ops = ", ".join(f"{op} x{c}" for op, c in data_driven.most_common())
        out.append(_f("data-driven-allocation", "medium", "output sizes chosen by input values",
                      f"{ops}: these nodes size their outputs from values computed from the model's input data (not just its shape); "
                      "a crafted input can make them allocate or loop without bound. The sandbox's memory and time limits contain them."))
    return out


def _estimate(op: str, sizes: list[np.ndarray], ins: list[np.ndarray | None]) -> float | None:
    """Bytes the node's output needs, at least (4 bytes per element when the type is unknown)."""
    if op in ("ConstantOfShape", "Expand", "CenterCropPad", "MaxUnpool"):
        return _elements(sizes[0]) * 4
    if op == "Tile":
        base = _elements(np.array(ins[0].shape)) if ins and ins[0] is not None else 1.0
        return _elements(sizes[0]) * base * 4
    if op == "Range" and len(sizes) == 3:
        start, limit, delta = (_num(np.atleast_1d(v).reshape(-1)[0]) if np.size(v) else 0.0 for v in sizes)
        if delta == 0 or math.isinf(delta) or math.isinf(start) or math.isinf(limit):
            return math.inf if delta == 0 else None
        return max(math.ceil((limit - start) / delta), 0) * 8
    if op == "Resize":
        v = sizes[-1]
        if np.size(v) and np.asarray(v).dtype.kind in "iuO":
            return _elements(v) * 4
        return None  # scales: depends on the input's size
    if op == "OneHot":
        return _num(np.atleast_1d(sizes[0]).reshape(-1)[0]) * 4
    if op == "Pad":
        return sum(max(_num(p), 0.0) for p in np.atleast_1d(sizes[0]).reshape(-1)) * 4
    return None


def _alloc_finding(ref: Any, nbytes: float, memory_limit: int, how: str) -> list[StaticFinding]:
    n = ref.node
    label = f"{esc(n.op_type, 40)} '{esc(n.name, 60)}'" if n.name else esc(n.op_type, 40)
    where = f"{ref.where}/{label}"
    size = "an unbounded amount" if math.isinf(nbytes) else f"at least {_gib(nbytes)}"
    if nbytes >= memory_limit:
        return [_f("alloc-bomb", "critical", f"{n.op_type} would allocate {size} from {how}",
                   f"node {label} in {ref.where} allocates {size}, over the {_gib(memory_limit)} memory limit: a memory bomb. "
                   "The model is refused before it runs.", where)]
    if nbytes >= LARGE_ALLOCATION:
        return [_f("large-allocation", "medium", f"{n.op_type} allocates {size} from {how}",
                   f"node {label} in {ref.where} allocates {size} at run time", where)]
    return []


# -- tensors ------------------------------------------------------------------------


def _tensors(w: ModelWalk, memory_limit: int) -> list[StaticFinding]:
    out = []
    total = 0
    malformed = []
    for ref in w.tensors:
        t = ref.tensor
        bits = _BITS.get(int(t.data_type))
        if any(d < 0 for d in t.dims):
            malformed.append(f"{ref.where}: negative dimension in {list(t.dims)[:8]}")
            continue
        n = 1
        for d in t.dims:
            n *= int(d)
        if bits is None:
            continue
        need = (n * bits + 7) // 8
        total += need
        if t.data_location != 1 and t.HasField("raw_data") and len(t.raw_data) != need:
            malformed.append(f"{ref.where}: declares {need} bytes (dims {list(t.dims)[:8]}) but holds {len(t.raw_data)}")
        if need >= memory_limit:
            out.append(_f("giant-initializer", "high", f"tensor of {_gib(need)}",
                          f"{ref.where} declares {_gib(need)}, over the {_gib(memory_limit)} memory limit", ref.where))
        elif need >= GIANT_INITIALIZER:
            out.append(_f("giant-initializer", "medium", f"tensor of {_gib(need)}", f"{ref.where} holds {_gib(need)}", ref.where))
    if malformed:
        out.append(_f("malformed-tensor", "high", f"{len(malformed)} tensor(s) whose data does not match their shape",
                      "; ".join(malformed[:5]) + (f"; and {len(malformed) - 5} more" if len(malformed) > 5 else "")))
    if total >= memory_limit:
        out.append(_f("giant-initializer", "high", f"tensors total {_gib(total)}", f"over the {_gib(memory_limit)} memory limit"))
    return out


# -- strings: metadata, doc strings, names -------------------------------------------


def _model_strings(proto: Any, w: ModelWalk) -> Iterable[tuple[str, str]]:
    yield "producer_name", proto.producer_name
    yield "producer_version", proto.producer_version
    yield "domain", proto.domain
    yield "doc_string", proto.doc_string
    for p in proto.metadata_props:
        yield f"metadata key '{esc(p.key, 40)}'", p.key
        yield f"metadata '{esc(p.key, 40)}'", p.value
    for g in w.graphs:
        yield f"{g.where} name", g.graph.name
        yield f"{g.where} doc_string", g.graph.doc_string
        for v in list(g.graph.input) + list(g.graph.output) + list(g.graph.value_info):
            yield f"{g.where} value '{esc(v.name, 40)}'", v.name
            yield f"{g.where} value '{esc(v.name, 40)}' doc_string", v.doc_string
    for f in proto.functions:
        yield f"function '{esc(f.name, 40)}' doc_string", f.doc_string
    for ref in w.nodes:
        n = ref.node
        label = esc(n.name or n.op_type, 40)
        yield f"node '{label}' name in {ref.where}", n.name
        yield f"node '{label}' doc_string in {ref.where}", n.doc_string
        yield f"node '{label}' op_type in {ref.where}", n.op_type
        for a in n.attribute:
            if a.type == 3 and a.s:  # STRING attribute
                yield f"node '{label}' attribute '{esc(a.name, 30)}'", a.s.decode("utf-8", "replace")


def _strings(proto: Any, w: ModelWalk) -> list[StaticFinding]:
    control, markup, tags = [], [], []
    total = 0
    for where, text in _model_strings(proto, w):
        if not text:
            continue
        text = as_str(text)
        total += len(text)
        if has_control(text):
            control.append(f"{where}: '{esc(text, 80)}'")
        if _MARKUP.search(text):
            markup.append(f"{where}: '{esc(text, 80)}'")
        elif _TAG.search(text):
            tags.append(f"{where}: '{esc(text, 80)}'")
    out = []

    def listing(items: list[str]) -> str:
        return "; ".join(items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")

    if control:
        out.append(_f("metadata-control-chars", "medium", f"control characters or terminal escapes in {len(control)} model string(s)",
                      f"{listing(control)}. Escape sequences can rewrite a terminal or log viewer; onnxguard strips them before printing "
                      "and shows them escaped here."))
    if markup:
        out.append(_f("metadata-markup", "medium", f"active markup (HTML/script) in {len(markup)} model string(s)",
                      f"{listing(markup)}. A registry page rendering this metadata unescaped would run it."))
    if tags:
        out.append(_f("metadata-markup", "low", f"markup tags in {len(tags)} model string(s)", listing(tags)))
    if total > 1024**2:
        out.append(_f("metadata-size", "low", f"{total / 1024**2:.1f} MiB of strings in metadata, names and doc strings",
                      "unusually large metadata: may hide payloads or slow down viewers"))
    return out


# -- structure ----------------------------------------------------------------------


def _structure(proto: Any, w: ModelWalk, max_depth: int = MAX_SUBGRAPH_DEPTH) -> list[StaticFinding]:
    out = []
    if w.max_depth > max_depth:
        sev = "high" if w.max_depth > 4 * max_depth else "medium"
        deepest = max(w.graphs, key=lambda g: g.depth)
        out.append(_f("deep-subgraphs", sev, f"subgraphs nested {w.max_depth} levels deep",
                      f"control-flow subgraphs nest beyond {max_depth} levels (deepest: {esc(deepest.where, 300)}); "
                      "deep nesting is used to exhaust recursive parsers and optimisers", esc(deepest.where, 300)))
    if len(w.nodes) > 1_000_000:
        out.append(_f("node-count", "low", f"{len(w.nodes)} nodes", "an unusually large graph"))
    if proto.functions:
        names = ", ".join(esc(f.name, 40) for f in list(proto.functions)[:8])
        out.append(_f("local-functions", "info", f"{len(proto.functions)} model-local function(s)", f"{names}: expanded by the runtime"))
    if len(proto.training_info):
        out.append(_f("training-info", "low", "training information embedded", "the model carries training graphs, ignored at inference"))
    g = proto.graph
    inits = {t.name for t in g.initializer}
    if not [i for i in g.input if i.name not in inits]:
        out.append(_f("no-inputs", "info", "the graph declares no inputs", "its outputs do not depend on any input: nothing to attack"))
    return out


# -- model description without onnxruntime --------------------------------------------


def type_str(tp: Any) -> str:
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        return f"tensor({_ELEM.get(tp.tensor_type.elem_type, '?')})"
    if which == "sequence_type":
        return f"seq({type_str(tp.sequence_type.elem_type)})"
    if which == "map_type":
        return f"map({_ELEM.get(tp.map_type.key_type, '?')},{type_str(tp.map_type.value_type)})"
    return which or "?"


def tensor_shape(tp: Any) -> list[int | str | None] | None:
    if tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for d in tp.tensor_type.shape.dim[:32]:
        which = d.WhichOneof("value")
        dims.append(int(d.dim_value) if which == "dim_value" else esc(d.dim_param, 40) if which == "dim_param" else None)
    return dims
