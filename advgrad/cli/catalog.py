"""The command line as plain data, read without torch.

Every command module imports torch (through the attacks, the models, the data), and torch takes
seconds to import. ``advgrad --help``, ``--version``, ``docs``, ``config``, ``attacks`` and every
TAB press need none of it: they read ``catalog.json`` instead — each command's help and options
(what the root help lists and what shell completion completes) and the registries' names (attacks,
norms, losses, certification and training methods, corruptions) with the attack listing.

:data:`COMMANDS` says where each command lives; :mod:`advgrad.cli.group` imports a command's module
only to run it or show its own ``--help``. ``catalog.json`` is written from the real commands and
registries by ``python scripts/write_cli_catalog.py``; ``tests/test_cli_catalog.py`` compares the two and
fails, naming that command, when they differ. Shipped configs and docs topics are listed live
(:mod:`advgrad.io.shipped` is torch-free), and so are the attacks when the registry is already
loaded (an attack registered in-process, a plugin, completes too).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class Entry:
    """Where a command is: the module and the attribute (a function, or a Typer app for a group)."""

    module: str
    attr: str


COMMANDS: dict[str, Entry] = {  # in the order `advgrad --help` lists them
    "attack": Entry("advgrad.cli.commands.attack", "attack"),
    "attacks": Entry("advgrad.cli.commands.attacks", "attacks"),
    "eval": Entry("advgrad.cli.commands.evaluate", "eval_command"),
    "grad": Entry("advgrad.cli.commands.grad", "grad"),
    "info": Entry("advgrad.cli.commands.info", "info_command"),
    "compare": Entry("advgrad.cli.commands.compare", "compare_command"),
    "certify": Entry("advgrad.cli.commands.certify", "certify_command"),
    "train": Entry("advgrad.cli.commands.train", "train_command"),
    "rescore": Entry("advgrad.cli.commands.rescore", "rescore_command"),
    "config": Entry("advgrad.cli.commands.config", "config_app"),
    "docs": Entry("advgrad.cli.commands.docs", "docs_command"),
}

# What a parameter's value completes to, by parameter name, and where one command means another list.
COMPLETES = {
    "attack": "attacks",
    "norm": "norms",
    "config_file": "configs",
    "corruptions": "corruptions",
    "certify": "certify_methods",
    "topic": "docs",
    "loss": "losses",
}
COMPLETES_IN = {
    ("attack", "method"): "attack",
    ("certify", "method"): "certify_methods",
    ("train", "method"): "train_methods",
    ("config show", "name"): "configs",
}
LISTS = ("attacks", "corruptions")  # comma-separated values: `fgsm,p<TAB>` completes the last one
ALL = {"corruptions": "all"}  # a word that stands for every name


@functools.cache
def catalog() -> dict[str, Any]:
    """The parsed ``catalog.json``."""
    return json.loads(CATALOG_FILE.read_text(encoding="utf-8"))


def command_data(path: str) -> dict[str, Any]:
    """A command's entry, by its path under ``advgrad`` (``eval``, ``config show``)."""
    first, *rest = path.split()
    data = catalog()["commands"][first]
    for name in rest:
        data = data["commands"][name]
    return data


def choices(kind: str) -> list[str]:
    """The values of a kind: shipped configs and docs topics listed live; attacks from the registry
    when it is loaded (so in-process registrations count), else from the catalog."""
    if kind in ("configs", "docs"):
        from advgrad.io.shipped import list_configs, list_docs

        return [f.name for f in (list_configs() if kind == "configs" else list_docs())]
    if kind in ("attacks", "attack") and "advgrad.attacks.registry" in sys.modules:
        from advgrad.attacks import list_attacks

        return [spec.name for spec in list_attacks()]
    return list(catalog()["choices"]["attacks" if kind == "attack" else kind])


def complete(kind: str, incomplete: str) -> list[str]:
    """The completions of ``incomplete`` as a value of ``kind``; for a list (``fgsm,p``) those of its
    last item, each given with the items before it (``fgsm,pgd``), and no item twice."""
    names = choices(kind) + ([ALL[kind]] if kind in ALL else [])
    if kind not in LISTS:
        return [n for n in names if n.startswith(incomplete)]
    head, _, last = incomplete.rpartition(",")
    given = set(head.split(",")) if head else set()
    prefix = f"{head}," if head else ""
    return [prefix + n for n in names if n.startswith(last) and n not in given]


# ------------------------------------------------------------------------------------------------
# Writing the catalog from the real commands (imports them all, torch included)


def _param(param: Any, path: str) -> dict[str, Any]:
    kind = COMPLETES_IN.get((path, param.name)) or COMPLETES.get(param.name)
    if param.param_type_name == "argument":
        return {"argument": param.name, "complete": kind}
    return {
        "opts": list(param.opts),
        "secondary": list(getattr(param, "secondary_opts", [])),
        "flag": bool(getattr(param, "is_flag", False)),
        "multiple": bool(getattr(param, "multiple", False)),
        "hidden": bool(getattr(param, "hidden", False)),
        "complete": kind,
    }


def _describe(command: Any, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "help": command.help,
        "short_help": command.short_help,
        "params": [_param(p, path) for p in command.params if p.name],
    }
    subcommands = getattr(command, "commands", None)
    if subcommands:
        data["commands"] = {name: _describe(sub, f"{path} {name}") for name, sub in subcommands.items()}
    return data


def build_catalog() -> dict[str, Any]:
    """The catalog as the real commands and registries give it now."""
    import typer.main

    from advgrad.attacks import list_attacks
    from advgrad.cli import app
    from advgrad.cli.commands.attacks import describe_attack
    from advgrad.core.geometry import GEOMETRIES
    from advgrad.core.losses import LOSSES
    from advgrad.corruptions import list_corruptions
    from advgrad.evaluation.eval_config import CERTIFY_METHODS
    from advgrad.train.train_config import METHODS as TRAIN_METHODS

    specs = list_attacks()
    group = typer.main.get_command(app)
    return {
        "commands": {name: _describe(group.commands[name], name) for name in COMMANDS},
        "choices": {
            "attacks": [spec.name for spec in specs],
            "norms": list(GEOMETRIES),
            "losses": list(LOSSES),
            "certify_methods": list(CERTIFY_METHODS),
            "train_methods": list(TRAIN_METHODS),
            "corruptions": list(list_corruptions()),
        },
        "norm_labels": {name: geometry.label for name, geometry in GEOMETRIES.items()},
        "attack_listing": [describe_attack(spec) for spec in specs],
    }


def write_catalog() -> Path:
    """Write ``catalog.json`` from :func:`build_catalog`."""
    CATALOG_FILE.write_text(json.dumps(build_catalog(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return CATALOG_FILE
