"""Attacks and their registry.

Every built-in attack is registered here, in one explicit list; a new attack is one module
that defines a ``SPEC`` plus one line below.
"""

from advgrad.attacks import apgd as _apgd
from advgrad.attacks import autoattack as _autoattack
from advgrad.attacks import autoattack_rand as _autoattack_rand
from advgrad.attacks import bim as _bim
from advgrad.attacks import cw as _cw
from advgrad.attacks import deepfool as _deepfool
from advgrad.attacks import fab as _fab
from advgrad.attacks import fgsm as _fgsm
from advgrad.attacks import mifgsm as _mifgsm
from advgrad.attacks import pgd as _pgd
from advgrad.attacks import square as _square
from advgrad.attacks import strong as _strong
from advgrad.attacks.apgd import APGDDLRParams, APGDParams, APGDTParams, apgd, apgd_targeted
from advgrad.attacks.autoattack import AutoAttackParams, autoattack
from advgrad.attacks.base import AttackParams, AttackSpec, run_attack
from advgrad.attacks.bim import BIMParams, bim
from advgrad.attacks.cw import CWParams, cw
from advgrad.attacks.deepfool import DeepFoolParams, deepfool
from advgrad.attacks.fab import FABParams, FABTParams, fab, fab_targeted
from advgrad.attacks.fgsm import FGSMParams, fgsm
from advgrad.attacks.iterative import LoopConfig, gradient_attack
from advgrad.attacks.mifgsm import MIFGSMParams, mifgsm
from advgrad.attacks.minimal import MinimalResult, find_minimal
from advgrad.attacks.pgd import PGDParams, pgd
from advgrad.attacks.registry import get_attack, list_attacks, register_attack
from advgrad.attacks.square import SquareParams, square
from advgrad.attacks.strong import StrongParams, strong

for _spec in (
    _fgsm.SPEC,
    _bim.SPEC,
    _mifgsm.SPEC,
    _pgd.SPEC,
    _apgd.SPEC_CE,
    _apgd.SPEC_DLR,
    _apgd.SPEC_T,
    _deepfool.SPEC,
    _cw.SPEC,
    _fab.SPEC,
    _fab.SPEC_T,
    _square.SPEC,
    _strong.SPEC,
    _autoattack_rand.SPEC,
    _autoattack.SPEC,
):
    register_attack(_spec)

__all__ = [
    "APGDDLRParams",
    "APGDParams",
    "APGDTParams",
    "AttackParams",
    "AttackSpec",
    "AutoAttackParams",
    "BIMParams",
    "CWParams",
    "DeepFoolParams",
    "FABParams",
    "FABTParams",
    "FGSMParams",
    "LoopConfig",
    "MIFGSMParams",
    "MinimalResult",
    "PGDParams",
    "SquareParams",
    "StrongParams",
    "apgd",
    "apgd_targeted",
    "autoattack",
    "bim",
    "cw",
    "deepfool",
    "fab",
    "fab_targeted",
    "fgsm",
    "find_minimal",
    "get_attack",
    "gradient_attack",
    "list_attacks",
    "mifgsm",
    "pgd",
    "register_attack",
    "run_attack",
    "square",
    "strong",
]
