"""Evasion attacks, one module per family. ``ATTACKS`` maps a name to its spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import AttackResult
from .fd_pgd import fd_pgd, fgsm
from .hopskipjump import hopskipjump
from .one_pixel import one_pixel
from .regression import reg_fd_pgd, reg_square
from .sparse_rs import sparse_rs
from .square import square_attack


@dataclass(frozen=True)
class AttackSpec:
    name: str
    fn: Callable[..., AttackResult]
    norms: tuple[str, ...]
    needs_scores: bool
    description: str
    minimisation: bool = False  # returns the smallest perturbation it found (one run answers every epsilon)
    spaces: tuple[str, ...] = ("box",)  # input spaces it works on (onnxguard.inputs): box, text, tokens
    tasks: tuple[str, ...] = ("classifier",)  # classifier (scores or labels), regressor, text-classifier


def _text_attack(*_a: object, **_k: object) -> AttackResult:  # text attacks run through onnxguard.nlp.check
    raise NotImplementedError("text attacks run through onnxguard.nlp.check.run_text_check")


ATTACKS: dict[str, AttackSpec] = {
    "square": AttackSpec("square", square_attack, ("linf", "l2"), True, "Square Attack: score-based random search (Andriushchenko et al. 2020)"),
    "fd-pgd": AttackSpec("fd-pgd", fd_pgd, ("linf", "l2"), True, "PGD on finite-difference (NES / coordinate) gradient estimates"),
    "fgsm": AttackSpec("fgsm", fgsm, ("linf", "l2"), True, "one-step FGSM on a finite-difference gradient estimate"),
    "hopskipjump": AttackSpec(
        "hopskipjump", hopskipjump, ("l2", "linf"), False,
        "HopSkipJump: decision-based, labels only, minimises the perturbation (Chen et al. 2020)", minimisation=True,
    ),
    "sparse-rs": AttackSpec("sparse-rs", sparse_rs, ("l0",), True, "Sparse-RS: score-based random search over k pixels/features (Croce et al. 2022)"),
    "one-pixel": AttackSpec("one-pixel", one_pixel, ("l0",), True, "differential evolution over k pixels/features (Su et al. 2019); for very small k"),
    "reg-square": AttackSpec("reg-square", reg_square, ("linf", "l2"), True,
                             "regressors: Square-style random search maximising |f(x+d) - f(x)|", tasks=("regressor",)),
    "reg-fd-pgd": AttackSpec("reg-fd-pgd", reg_fd_pgd, ("linf", "l2"), True,
                             "regressors: ascent on finite-difference estimates of |f(x+d) - f(x)|", tasks=("regressor",)),
    "char-edit": AttackSpec("char-edit", _text_attack, ("chars",), True,
                            "DeepWordBug-style character edits (swap, substitute, delete, insert) on the most important words",
                            spaces=("text",), tasks=("text-classifier",)),
    "homoglyph": AttackSpec("homoglyph", _text_attack, ("chars",), True,
                            "look-alike characters from other scripts on the most important words", spaces=("text",), tasks=("text-classifier",)),
    "zero-width": AttackSpec("zero-width", _text_attack, ("chars",), True,
                             "invisible (zero-width) characters inserted into the most important words", spaces=("text",), tasks=("text-classifier",)),
    "word-swap": AttackSpec("word-swap", _text_attack, ("words",), True,
                            "word substitution from a synonym source (shipped list, or the model's own embeddings)",
                            spaces=("text",), tasks=("text-classifier",)),
    "token-swap": AttackSpec("token-swap", _text_attack, ("tokens",), True,
                             "token substitution in id space (models without a tokenizer)", spaces=("tokens",), tasks=("text-classifier",)),
}

__all__ = ["ATTACKS", "AttackResult", "AttackSpec"]
