"""Which input space each model input belongs to (box, text, tokens, fixed)."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import _FLOAT_TYPES, TensorSpec, is_token_input

SPACE_KINDS = ("box", "text", "tokens", "fixed")
MASK_NAMES = ("attention_mask", "mask", "input_mask")
TYPE_ID_NAMES = ("token_type_ids", "segment_ids", "type_ids")


@dataclass(frozen=True)
class InputRole:
    """One model input and the space it is attacked in (or ``fixed`` with how it is held)."""

    name: str
    type: str
    shape: tuple[int | str | None, ...] | None
    kind: str  # box | text | tokens | fixed
    detail: str

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "shape": list(self.shape) if self.shape is not None else None,
                "space": self.kind, "detail": self.detail}


def _is(name: str, names: tuple[str, ...]) -> bool:
    n = name.lower()
    return n in names or any(n.endswith(k) for k in names)


def plan_inputs(inputs: list[TensorSpec], *, tokenizer: bool = False) -> list[InputRole]:
    """The role of every input. String inputs are text; an integer input named like token ids is text
    through the tokenizer (or id space without one); masks and type ids are derived from the text when a
    tokenizer is present, else held at their data values; other integer inputs are held fixed."""
    roles = []
    has_text = any(i.type == "tensor(string)" for i in inputs) or any(is_token_input(i) for i in inputs)
    for t in inputs:
        if t.type in _FLOAT_TYPES:
            roles.append(InputRole(t.name, t.type, t.shape, "box", "continuous box in the valid range (attacked jointly with the other float inputs)"))
        elif t.type == "tensor(string)":
            roles.append(InputRole(t.name, t.type, t.shape, "text", "raw text, edited as characters or words"))
        elif is_token_input(t):
            if tokenizer:
                roles.append(InputRole(t.name, t.type, t.shape, "text", "token ids through the tokenizer: text edited as characters or words"))
            else:
                roles.append(InputRole(t.name, t.type, t.shape, "tokens", "token ids edited in id space (no tokenizer)"))
        elif has_text and tokenizer and (_is(t.name, MASK_NAMES) or _is(t.name, TYPE_ID_NAMES)):
            roles.append(InputRole(t.name, t.type, t.shape, "fixed", "derived from the text by the tokenizer"))
        elif _is(t.name, MASK_NAMES):
            roles.append(InputRole(t.name, t.type, t.shape, "fixed", "mask, held at its data values (ones without data)"))
        else:
            roles.append(InputRole(t.name, t.type, t.shape, "fixed", "held at its data values (zeros without data)"))
    return roles


def spaces_of(roles: list[InputRole]) -> set[str]:
    return {r.kind for r in roles if r.kind != "fixed"}
