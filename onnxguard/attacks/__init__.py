"""Evasion attacks, one module per family. ``ATTACKS`` maps a name to its spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import AttackResult
from .fd_pgd import fd_pgd, fgsm
from .hopskipjump import hopskipjump
from .one_pixel import one_pixel
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
}

__all__ = ["ATTACKS", "AttackResult", "AttackSpec"]
