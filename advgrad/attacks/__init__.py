"""Attacks and their registry.

Every built-in attack is registered here, in one explicit list; a new attack is one module
that defines a ``SPEC`` plus one line below.
"""

from advgrad.attacks import fgsm as _fgsm
from advgrad.attacks import pgd as _pgd
from advgrad.attacks.base import AttackParams, AttackSpec, run_attack
from advgrad.attacks.fgsm import FGSMParams, fgsm
from advgrad.attacks.iterative import LoopConfig, gradient_attack
from advgrad.attacks.pgd import PGDParams, pgd
from advgrad.attacks.registry import get_attack, list_attacks, register_attack

for _spec in (_fgsm.SPEC, _pgd.SPEC):
    register_attack(_spec)

__all__ = [
    "AttackParams",
    "AttackSpec",
    "FGSMParams",
    "LoopConfig",
    "PGDParams",
    "fgsm",
    "get_attack",
    "gradient_attack",
    "list_attacks",
    "pgd",
    "register_attack",
    "run_attack",
]
