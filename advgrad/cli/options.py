"""Options shared by several commands, named and documented once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from advgrad.io.inputs import InputOptions

IO_PANEL = "Model and data"
ATTACK_PANEL = "Attack"
OUTPUT_PANEL = "Output"

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Model to attack: a TorchScript file (torch.jit.save). Default: the embedded digits CNN.",
                 rich_help_panel=IO_PANEL, show_default=False),
]
DataOpt = Annotated[
    Optional[str],
    typer.Option("--data", "-d", help="Data: a .pt or .npz file holding x (N×C×H×W floats in [0,1] or uint8) and y (N labels). Default: the embedded digits.",
                 rich_help_panel=IO_PANEL, show_default=False),
]
SplitOpt = Annotated[
    str, typer.Option("--split", help="Split of the embedded digits: test or train.", rich_help_panel=IO_PANEL)
]
LimitOpt = Annotated[
    Optional[int],
    typer.Option("--limit", "-n", help="Use only the first N samples.", rich_help_panel=IO_PANEL, show_default=False),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Samples per batch.", rich_help_panel=IO_PANEL)]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seed for random starts and targets; same seed, same result.", rich_help_panel=IO_PANEL)
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=IO_PANEL)]

NormOpt = Annotated[str, typer.Option("--norm", help="Threat model: inf, 2 (or 1 where supported).", rich_help_panel=ATTACK_PANEL)]
StepsOpt = Annotated[
    Optional[int], typer.Option("--steps", help="Gradient steps of iterative attacks [default: 20].", rich_help_panel=ATTACK_PANEL, show_default=False)
]
StepSizeOpt = Annotated[
    Optional[str],
    typer.Option("--step-size", help="Step size α (number or fraction) [default: ε for FGSM, 2.5·ε/steps for PGD].",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
RestartsOpt = Annotated[
    Optional[int], typer.Option("--restarts", help="Random restarts; the best result per sample is kept [default: 1].",
                                rich_help_panel=ATTACK_PANEL, show_default=False)
]
RandomStartOpt = Annotated[
    Optional[bool],
    typer.Option("--random-start/--no-random-start", help="Start from a random point in the ε-ball [default: on for PGD, off for FGSM].",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
LossOpt = Annotated[
    Optional[str], typer.Option("--loss", help="Objective: ce, margin or dlr [default: ce].", rich_help_panel=ATTACK_PANEL, show_default=False)
]
TargetOpt = Annotated[
    Optional[str],
    typer.Option("--target", help="Targeted attack: a class index, random or least-likely. Default: untargeted.",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
JsonOpt = Annotated[
    Optional[Path], typer.Option("--json", help="Write the results as JSON to FILE ('-' for stdout instead of the table).",
                                 rich_help_panel=OUTPUT_PANEL, show_default=False)
]
ImagesOpt = Annotated[
    Optional[Path], typer.Option("--images", help="Write PNG images to this folder.", rich_help_panel=OUTPUT_PANEL, show_default=False)
]


def input_options(model, data, split, limit, batch_size, seed, device) -> InputOptions:
    return InputOptions(model=model, data=data, split=split, limit=limit, batch_size=batch_size, seed=seed, device=device)


def attack_options(steps, step_size, restarts, random_start, loss) -> dict:
    """The attack options given on the command line, as keyword arguments for ``make_params``."""
    from advgrad.threat import parse_eps

    return {
        "steps": steps,
        "step_size": None if step_size is None else parse_eps(step_size, "--step-size"),
        "restarts": restarts,
        "random_start": random_start,
        "loss": loss,
    }
