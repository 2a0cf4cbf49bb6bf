"""Evasion attacks, one module per family. ``ATTACKS`` maps a name to its spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import AttackResult
from .fd_pgd import fd_pgd, fgsm
from .square import square_attack


@dataclass(frozen=True)
class AttackSpec:
    name: str
    fn: Callable[..., AttackResult]
    norms: tuple[str, ...]
    needs_scores: bool
    description: str


ATTACKS: dict[str, AttackSpec] = {
    "square": AttackSpec("square", square_attack, ("linf", "l2"), True, "Square Attack: score-based random search (Andriushchenko et al. 2020)"),
    "fd-pgd": AttackSpec("fd-pgd", fd_pgd, ("linf", "l2"), True, "PGD on finite-difference (NES / coordinate) gradient estimates"),
    "fgsm": AttackSpec("fgsm", fgsm, ("linf", "l2"), True, "one-step FGSM on a finite-difference gradient estimate"),
}

__all__ = ["ATTACKS", "AttackResult", "AttackSpec"]
