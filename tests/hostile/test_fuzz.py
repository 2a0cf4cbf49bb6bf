"""Fuzzing: mutated versions of a valid small model never raise anything but a clean OnnxGuardError.

Byte-level mutations (flips, truncations, insertions, deletions) and structural ones (dims,
data types, operator names, shapes, external-data keys) of the corpus's tiny classifier go
through the static checks and a full (tiny) scan in this process; a few go through the
sandbox. Each must end in a report or a typed, user-facing error: never another exception.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxguard.errors import OnnxGuardError
from onnxguard.policy import parse_policy
from onnxguard.report import Report
from onnxguard.scan import ScanOptions, run_scan
from onnxguard.assemble import static_report
from tests.hostile.build_corpus import tiny_classifier

POLICY = parse_policy(
    b'[policy]\nname = "fuzz"\nversion = "1"\n[[checks]]\nattack = "square"\nnorm = "linf"\nepsilon = 0.1\n'
    b'samples = 2\nbudget = 8\n[backdoor]\nenabled = false\n[limits]\nmax_memory_mb = 1024\ntimeout_s = 20\n',
    "fuzz.toml",
)
VALID = tiny_classifier().SerializeToString()
N = len(VALID)

_W = tiny_classifier().graph.initializer[0].raw_data
W_START = VALID.find(_W)  # the weights' bytes: flips there keep the protobuf valid and reach onnxruntime
_NAMES = [VALID.find(b"Gemm"), VALID.find(b"logits")]

byte_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, N - 1), st.integers(1, 255)),
    st.tuples(st.just("flip"), st.integers(W_START, W_START + len(_W) - 1), st.integers(1, 255)),
    st.tuples(st.just("flip"), st.sampled_from(_NAMES).flatmap(lambda p: st.integers(p, p + 3)), st.integers(1, 255)),
    st.tuples(st.just("flip"), st.integers(0, 24), st.sampled_from([0x80, 0x7F, 0x01, 0x40])),
    st.tuples(st.just("truncate"), st.integers(0, N - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, N), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, N - 1), st.integers(1, 16)),
)


def mutate_bytes(data: bytes, ops: list) -> bytes:
    b = bytearray(data)
    for kind, pos, arg in ops:
        pos = min(pos, max(len(b) - 1, 0))
        if kind == "flip" and b:
            b[pos] ^= arg
        elif kind == "truncate":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = arg
        elif kind == "delete":
            del b[pos : pos + arg]
    return bytes(b)


big_int = st.one_of(st.integers(-3, 8), st.integers(0, 2**40), st.just(2**63 - 1))
structural = st.one_of(
    st.tuples(st.just("dims"), st.lists(big_int, max_size=4)),
    st.tuples(st.just("data_type"), st.integers(0, 40)),
    st.tuples(st.just("op_type"), st.sampled_from(["Gemm", "", "Loop", "If", "ConstantOfShape", "MatMul", "Relu\x1b[2J", "Custom"])),
    st.tuples(st.just("domain"), st.sampled_from(["", "ai.onnx.ml", "com.microsoft", "evil", "\x00"])),
    st.tuples(st.just("input_dim"), big_int),
    st.tuples(st.just("external"), st.sampled_from(["../x", "/etc/passwd", "w.bin", "", "*/_ORT_MEM_ADDR_/*"])),
    st.tuples(st.just("opset"), st.integers(-1, 200)),
    st.tuples(st.just("ir"), st.integers(-1, 200)),
)


def mutate_proto(ops: list) -> bytes:
    m = tiny_classifier()
    w = m.graph.initializer[0]
    for kind, v in ops:
        if kind == "dims":
            del w.dims[:]
            w.dims.extend(v)
        elif kind == "data_type":
            w.data_type = v
        elif kind == "op_type":
            m.graph.node[0].op_type = v
        elif kind == "domain":
            m.graph.node[0].domain = v
        elif kind == "input_dim":
            m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = max(v, 0)
        elif kind == "external":
            w.data_location = onnx.TensorProto.EXTERNAL
            e = w.external_data.add()
            e.key, e.value = "location", v
        elif kind == "opset":
            m.opset_import[0].version = v
        elif kind == "ir":
            m.ir_version = v
    return m.SerializeToString()


def scan_or_clean_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.onnx"
        path.write_bytes(data)
        for run in (lambda: static_report(path, POLICY), lambda: run_scan(ScanOptions(model_path=path, policy=POLICY))):
            try:
                rep = run()
            except OnnxGuardError as exc:
                msg = str(exc)
                assert msg and len(msg) < 3000
                continue
            assert isinstance(rep, Report)
            rep.to_json()


FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.lists(byte_mutation, min_size=1, max_size=4))
def test_byte_mutations_give_report_or_clean_error(ops):
    scan_or_clean_error(mutate_bytes(VALID, ops))


@settings(FUZZ, max_examples=40)
@given(st.lists(structural, min_size=1, max_size=3))
def test_structural_mutations_give_report_or_clean_error(ops):
    scan_or_clean_error(mutate_proto(ops))


@pytest.mark.parametrize("seed", range(4))
def test_sandboxed_mutations_give_report_or_clean_error(seed, tmp_path):
    """A few mutations through the sandbox: the parent gets a report (possibly a crash report) or a typed error."""
    import random

    from onnxguard.sandbox import SandboxLimits, run_isolated

    rnd = random.Random(seed)
    ops = []
    for _ in range(3):
        kind, pos = rnd.choice(["flip", "insert", "delete"]), rnd.randrange(N)
        arg = {"flip": rnd.randrange(1, 256), "insert": bytes([rnd.randrange(256)]), "delete": rnd.randrange(1, 17)}[kind]
        ops.append((kind, pos, arg))
    path = tmp_path / "model.onnx"
    path.write_bytes(mutate_bytes(VALID, ops))
    try:
        res = run_isolated(ScanOptions(model_path=path, policy=POLICY), SandboxLimits(1024, 20))
    except OnnxGuardError as exc:
        assert str(exc)
        return
    assert isinstance(res.report, Report)


def test_static_checks_are_a_registry_switchable_per_check(tmp_path):
    """Each static check has its own switch and options in the policy; checks that can refuse a model cannot be switched off."""
    from onnxguard.errors import PolicyError
    from onnxguard.policy import parse_policy
    from onnxguard.static import STATIC_CHECKS

    base = b'[policy]\nname = "p"\nversion = "1"\n'
    assert {"external-data", "allocations", "structure"} <= set(STATIC_CHECKS)
    lp = parse_policy(base + b'[static.checks.strings]\nenabled = false\n[static.checks.structure]\noptions = { max_subgraph_depth = 2 }\n', "t")
    assert not lp.policy.static.checks["strings"].enabled
    for bad, what in [(b'[static.checks.allocations]\nenabled = false\n', "cannot be switched off"),
                      (b'[static.checks.nope]\n', "unknown static check"),
                      (b'[static.checks.structure]\noptions = { depth = 2 }\n', "has no option depth")]:
        with pytest.raises(PolicyError, match=what):
            parse_policy(base + bad, "t")
    # the switch takes effect: a doc string with a terminal escape is a finding only while "strings" runs
    import onnx.helper as oh

    from onnxguard.safeload import read_model
    from onnxguard.static import inspect_model

    g = oh.make_graph([oh.make_node("Identity", ["x"], ["y"])], "g", [oh.make_tensor_value_info("x", 1, [1, 2])],
                      [oh.make_tensor_value_info("y", 1, [1, 2])])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)], doc_string="\x1b[31mred")
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    raw = read_model(path, max_bytes=1 << 20)
    assert any(f.id.startswith("control") or "escape" in f.title.lower() or f.id == "terminal-escape" for f in inspect_model(raw)), inspect_model(raw)
    ids_on = {f.id for f in inspect_model(raw)}
    ids_off = {f.id for f in inspect_model(raw, checks=lp.policy.static.checks)}
    assert ids_on - ids_off and not ids_off - ids_on
