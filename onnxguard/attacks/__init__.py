"""Evasion attacks, one module per family. ``ATTACKS`` maps a name to its spec.

Specs name their function by dotted path and import it on first use (as modelscan registers its
scanners), so reading the registry (policy validation, the CLI's choices, report pages) loads no
attack code and no numpy."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:  # pragma: no cover
    from .base import AttackResult


Kind = Literal["fixed-epsilon", "minimisation"]
Access = Literal["scores", "labels"]


@dataclass(frozen=True)
class AttackSpec:
    """One attack family, as the scan, the policy and the report see it (Foolbox's two kinds).

    * ``kind``: a ``fixed-epsilon`` attack looks for an adversarial inside the epsilon ball it is given;
      a ``minimisation`` attack returns the smallest perturbation it found, so one run answers every
      epsilon and it needs no epsilon at all;
    * ``access``: what it needs from the model, ``scores`` or only ``labels``;
    * ``spaces``: the input spaces it works on (``onnxguard.inputs``: ``box``, a float tensor normalised to
      [0, 1] per feature; ``text``, characters and words; ``tokens``, token ids);
    * ``tasks``: the models it applies to (``classifier``, with scores or labels; ``regressor``;
      ``text-classifier``);
    * ``options``: extra inputs the scan supplies (``starts``: other samples with their labels, as
      starting points of a decision-based search)."""

    name: str
    entry: "str | Callable[..., AttackResult]"  # "module:function" in onnxguard.attacks, "onnxguard.x.y:function", or the function
    norms: tuple[str, ...]
    kind: Kind
    access: Access
    title: str
    description: str
    spaces: tuple[str, ...] = ("box",)
    options: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ("classifier",)

    @property
    def fn(self) -> Callable[..., "AttackResult"]:
        """The box attack function (oracle, z, y, ...) -> AttackResult; for text attacks, the edit-proposal
        factory that ``onnxguard.nlp.attacks.greedy_edit`` searches with."""
        if callable(self.entry):
            return self.entry
        module, func = self.entry.split(":")
        return getattr(importlib.import_module(module if module.startswith("onnxguard.") else f"{__name__}.{module}"), func)

    @property
    def needs_scores(self) -> bool:
        return self.access == "scores"

    @property
    def minimisation(self) -> bool:
        return self.kind == "minimisation"


def _register(*specs: AttackSpec) -> dict[str, AttackSpec]:
    return {s.name: s for s in specs}


ATTACKS: dict[str, AttackSpec] = _register(
    AttackSpec("square", "square:square_attack", ("linf", "l2"), "fixed-epsilon", "scores", "Square Attack (score-based random search)",
               "Square Attack: score-based random search (Andriushchenko et al. 2020)"),
    AttackSpec("fd-pgd", "fd_pgd:fd_pgd", ("linf", "l2"), "fixed-epsilon", "scores", "PGD on finite-difference gradient estimates",
               "PGD on finite-difference (NES / coordinate) gradient estimates"),
    AttackSpec("fgsm", "fd_pgd:fgsm", ("linf", "l2"), "fixed-epsilon", "scores", "FGSM on finite-difference gradient estimates",
               "one-step FGSM on a finite-difference gradient estimate"),
    AttackSpec("hopskipjump", "hopskipjump:hopskipjump", ("l2", "linf"), "minimisation", "labels", "HopSkipJump (decision-based, labels only)",
               "HopSkipJump: decision-based, labels only, minimises the perturbation (Chen et al. 2020)", options=("starts",)),
    AttackSpec("sparse-rs", "sparse_rs:sparse_rs", ("l0",), "fixed-epsilon", "scores", "Sparse-RS (few-pixel random search)",
               "Sparse-RS: score-based random search over k pixels/features (Croce et al. 2022)"),
    AttackSpec("one-pixel", "one_pixel:one_pixel", ("l0",), "fixed-epsilon", "scores", "One-pixel attack (differential evolution)",
               "differential evolution over k pixels/features (Su et al. 2019); for very small k"),
    AttackSpec("reg-square", "regression:reg_square", ("linf", "l2"), "fixed-epsilon", "scores", "Square-style random search on a regressor's output",
               "regressors: Square-style random search maximising |f(x+d) - f(x)|", tasks=("regressor",)),
    AttackSpec("reg-fd-pgd", "regression:reg_fd_pgd", ("linf", "l2"), "fixed-epsilon", "scores", "Finite-difference ascent on a regressor's output",
               "regressors: ascent on finite-difference estimates of |f(x+d) - f(x)|", tasks=("regressor",)),
    AttackSpec("char-edit", "onnxguard.nlp.attacks:char_edits", ("chars",), "fixed-epsilon", "scores", "Character edits on the most important words (DeepWordBug-style)",
               "DeepWordBug-style character edits (swap, substitute, delete, insert) on the most important words",
               spaces=("text",), tasks=("text-classifier",)),
    AttackSpec("homoglyph", "onnxguard.nlp.attacks:homoglyphs", ("chars",), "fixed-epsilon", "scores", "Look-alike characters from other scripts (homoglyphs)",
               "look-alike characters from other scripts on the most important words", spaces=("text",), tasks=("text-classifier",)),
    AttackSpec("zero-width", "onnxguard.nlp.attacks:zero_width", ("chars",), "fixed-epsilon", "scores", "Invisible zero-width characters",
               "invisible (zero-width) characters inserted into the most important words", spaces=("text",), tasks=("text-classifier",)),
    AttackSpec("word-swap", "onnxguard.nlp.attacks:word_substitutes", ("words",), "fixed-epsilon", "scores", "Word substitution",
               "word substitution from a synonym source (shipped list, or the model's own embeddings)",
               spaces=("text",), tasks=("text-classifier",)),
    AttackSpec("token-swap", "onnxguard.nlp.attacks:token_substitutes", ("tokens",), "fixed-epsilon", "scores", "Token substitution in id space",
               "token substitution in id space (models without a tokenizer)", spaces=("tokens",), tasks=("text-classifier",)),
)


def labels_only_attack(norm: str) -> AttackSpec | None:
    """The attack that stands in for a score-based one when only labels are available, for ``norm``."""
    for spec in ATTACKS.values():
        if spec.access == "labels" and norm in spec.norms and "box" in spec.spaces:
            return spec
    return None


__all__ = ["ATTACKS", "AttackSpec", "labels_only_attack"]
