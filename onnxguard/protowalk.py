"""Walking every graph, node and tensor of an ONNX ModelProto, iteratively.

Tensors hide in many places: graph initialisers, sparse initialisers, node
attributes (``Constant``'s ``value``, ``tensors``, sparse tensors), subgraphs of
``If``/``Loop``/``Scan`` nested to any depth, model-local functions and
training-info graphs. Safe loading must see all of them, so it walks here.
The walk uses an explicit stack: a deeply nested model cannot exhaust
Python's recursion limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class NodeRef:
    node: Any
    where: str  # "graph", "graph/Loop 'loop0'.body", "function 'f'"
    depth: int  # 0 for the main graph
    owners: tuple[Any, ...] = ()  # the nodes whose subgraphs enclose this node, outermost first


@dataclass
class TensorRef:
    tensor: Any
    where: str  # "initializer 'W'", "attribute 'value' of node 'c0' in graph"
    top_initializer: bool = False  # an initializer of the main graph (not of a subgraph, not an attribute)


@dataclass
class GraphRef:
    graph: Any
    where: str
    depth: int


@dataclass
class ModelWalk:
    graphs: list[GraphRef] = field(default_factory=list)
    nodes: list[NodeRef] = field(default_factory=list)
    tensors: list[TensorRef] = field(default_factory=list)
    max_depth: int = 0


def _short(name: str, limit: int = 60) -> str:
    text = ascii(name)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def walk(proto: Any) -> ModelWalk:
    """Every graph, node and tensor of ``proto`` (a ModelProto)."""
    out = ModelWalk()
    # stack of (kind, message, where, depth, owners); kind is "graph" or "function"
    stack: list[tuple[str, Any, str, int, tuple[Any, ...]]] = []
    if proto.HasField("graph"):
        stack.append(("graph", proto.graph, "graph", 0, ()))
    for i, ti in enumerate(proto.training_info):
        if ti.HasField("initialization"):
            stack.append(("graph", ti.initialization, f"training_info[{i}].initialization", 0, ()))
        if ti.HasField("algorithm"):
            stack.append(("graph", ti.algorithm, f"training_info[{i}].algorithm", 0, ()))
    for f in proto.functions:
        stack.append(("function", f, f"function '{_short(f.name)}'", 0, ()))

    while stack:
        kind, msg, where, depth, owners = stack.pop()
        out.max_depth = max(out.max_depth, depth)
        if kind == "graph":
            out.graphs.append(GraphRef(msg, where, depth))
            for t in msg.initializer:
                out.tensors.append(TensorRef(t, f"initializer '{_short(t.name)}' in {where}", top_initializer=msg is proto.graph))
            for st in msg.sparse_initializer:
                name = _short(st.values.name)
                out.tensors.append(TensorRef(st.values, f"sparse initializer '{name}' (values) in {where}"))
                out.tensors.append(TensorRef(st.indices, f"sparse initializer '{name}' (indices) in {where}"))
        for node in msg.node:
            out.nodes.append(NodeRef(node, where, depth, owners))
            label = f"{_short(node.op_type)} '{_short(node.name)}'" if node.name else _short(node.op_type)
            for a in node.attribute:
                at = f"attribute '{_short(a.name)}' of node {label} in {where}"
                if a.HasField("t"):
                    out.tensors.append(TensorRef(a.t, at))
                for t in a.tensors:
                    out.tensors.append(TensorRef(t, at))
                if a.HasField("sparse_tensor"):
                    out.tensors.append(TensorRef(a.sparse_tensor.values, at))
                    out.tensors.append(TensorRef(a.sparse_tensor.indices, at))
                for st in a.sparse_tensors:
                    out.tensors.append(TensorRef(st.values, at))
                    out.tensors.append(TensorRef(st.indices, at))
                if a.HasField("g"):
                    stack.append(("graph", a.g, f"{where}/{label}.{_short(a.name)}", depth + 1, owners + (node,)))
                for k, g in enumerate(a.graphs):
                    stack.append(("graph", g, f"{where}/{label}.{_short(a.name)}[{k}]", depth + 1, owners + (node,)))
    return out
