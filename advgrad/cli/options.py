"""Options shared by several commands, named and documented once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from advgrad.io.inputs import InputOptions
from advgrad.io.model.normalize import parse_channels

IO_PANEL = "Model and data"
RUNTIME_PANEL = "Speed and scale"
ATTACK_PANEL = "Attack"
OUTPUT_PANEL = "Output"

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help=(
        "Model to attack: an ExportedProgram (.pt2, torch.export.save), package.module:callable with --weights "
        "(imports and runs that module, your own code), torchvision:NAME (e.g. torchvision:resnet18) or a "
        "TorchScript file (deprecated by torch); a whole pickled model only with --unsafe-pickle. "
        "Default: the embedded digits CNN."),
        rich_help_panel=IO_PANEL, show_default=False),
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", "-w", help=(
        "Weights for torchvision:NAME or package.module:callable: a state-dict file (.pt/.pth read with "
        "weights_only, or .safetensors), or DEFAULT (torchvision's pretrained weights, from the local cache only)."),
        rich_help_panel=IO_PANEL, show_default=False),
]
ModelArgOpt = Annotated[
    Optional[list[str]],
    typer.Option("--model-arg", help=(
        "KEY=VALUE passed to the model's callable or torchvision builder; repeat for more "
        "(e.g. --model-arg num_classes=10). Values read as int, float, true/false, else string."),
        rich_help_panel=IO_PANEL, show_default=False),
]
UnsafePickleOpt = Annotated[
    bool,
    typer.Option("--unsafe-pickle", help=(
        "DANGEROUS, runs arbitrary code from the file: allows unpickling (a whole model saved with "
        "torch.save(model)) and model graphs that call operators outside advgrad's allow-list "
        "(`advgrad docs loading`). Only for files you trust."),
        rich_help_panel=IO_PANEL),
]
MeanOpt = Annotated[
    Optional[str],
    typer.Option("--mean", help=(
        "Per-channel mean the model was trained with, comma-separated (e.g. 0.485,0.456,0.406). With --std it "
        "puts (x - mean) / std inside the model, so attacks work on [0,1] pixels and ε is in pixel units."),
        rich_help_panel=IO_PANEL, show_default=False),
]
StdOpt = Annotated[
    Optional[str],
    typer.Option("--std", help="Per-channel standard deviation, comma-separated (e.g. 0.229,0.224,0.225); see --mean.",
                 rich_help_panel=IO_PANEL, show_default=False),
]
DataOpt = Annotated[
    Optional[str],
    typer.Option("--data", "-d", help=(
        "Data: a .pt, .npz or .safetensors file holding x (N×C×H×W floats in [0,1] or uint8) and y (N labels); "
        "an image folder (one sub-folder per class); or mnist, fashion-mnist, cifar10, cifar100, svhn "
        "(torchvision, from --data-root). Default: the embedded digits."),
        rich_help_panel=IO_PANEL, show_default=False),
]
SplitOpt = Annotated[
    str, typer.Option("--split", help="Split of a named dataset or the embedded digits: test or train (svhn: extra too).",
                      rich_help_panel=IO_PANEL)
]
DataRootOpt = Annotated[
    Optional[str],
    typer.Option("--data-root", help="Folder of named datasets. Default: ~/.cache/advgrad/datasets (or $XDG_CACHE_HOME/advgrad/datasets).",
                 rich_help_panel=IO_PANEL, show_default=False),
]
DownloadOpt = Annotated[
    bool, typer.Option("--download", help="Download a named dataset into --data-root if it is not there.",
                       rich_help_panel=IO_PANEL)
]
ImageSizeOpt = Annotated[
    Optional[int],
    typer.Option("--image-size", help="Image folders: resize the shorter side to N and centre-crop N×N.",
                 rich_help_panel=IO_PANEL, show_default=False),
]
LimitOpt = Annotated[
    Optional[int],
    typer.Option("--limit", "-n", help="Use only the first N samples (of the shuffled order with --shuffle).",
                 rich_help_panel=IO_PANEL, show_default=False),
]
ShuffleOpt = Annotated[
    bool, typer.Option("--shuffle", help="Take the samples in a random order fixed by --seed (with --limit: a random subset).",
                       rich_help_panel=IO_PANEL)
]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Samples per batch.", rich_help_panel=IO_PANEL)]
WorkersOpt = Annotated[
    int, typer.Option("--num-workers", help="Processes decoding images ahead of the run (image folders).",
                      rich_help_panel=IO_PANEL)
]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seed for random starts, targets and --shuffle; same seed, same result.",
                      rich_help_panel=IO_PANEL)
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (under torchrun: each process takes cuda:LOCAL_RANK).",
                                        rich_help_panel=RUNTIME_PANEL)]
PrecisionOpt = Annotated[
    str,
    typer.Option("--precision", help=(
        "fp32, bf16 or fp16: run the model under autocast in that precision; inputs, gradients, perturbations and "
        "their projection stay fp32 (`advgrad docs scale` shows what it does to attack strength)."),
        rich_help_panel=RUNTIME_PANEL),
]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="Run the model through torch.compile (needs a C++ compiler on CPU, Triton on CUDA).",
                       rich_help_panel=RUNTIME_PANEL)
]
ChannelsLastOpt = Annotated[
    Optional[bool],
    typer.Option("--channels-last/--no-channels-last", help="Channels-last memory format for the model and its inputs "
                 "(default: on for convolutional models on CUDA, off otherwise).", rich_help_panel=RUNTIME_PANEL,
                 show_default=False),
]
ThreadsOpt = Annotated[
    str,
    typer.Option("--threads", help=(
        "CPU threads for torch: a number, or auto (the CPUs this process may use — affinity, cgroup quota, "
        "split among torchrun's ranks — less those other processes keep busy, and one for small models, which "
        "run fastest so; `advgrad docs scale`)."),
        rich_help_panel=RUNTIME_PANEL),
]

NormOpt = Annotated[str, typer.Option("--norm", help="Threat model: inf, 2, or 1 (PGD); `advgrad attacks` lists each attack's norms.", rich_help_panel=ATTACK_PANEL)]
StepsOpt = Annotated[
    Optional[int],
    typer.Option("--steps", help="Iterations of iterative attacks (default: 20 for PGD, 10 for BIM and MI-FGSM, 100 for APGD and strong, "
                 "50 for DeepFool, 200 Adam steps per constant for CW).", rich_help_panel=ATTACK_PANEL, show_default=False),
]
StepSizeOpt = Annotated[
    Optional[str],
    typer.Option("--step-size", help="Step size α, a number or a fraction (default: ε for FGSM, 2.5·ε/steps for PGD, 1.25·ε/steps for BIM, "
                 "ε/steps for MI-FGSM; for CW Adam's initial learning rate, 0.2).",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
RestartsOpt = Annotated[
    Optional[int], typer.Option("--restarts", help="Random restarts (PGD, APGD, strong); the best result per sample is kept (default: 1).",
                                rich_help_panel=ATTACK_PANEL, show_default=False)
]
RandomStartOpt = Annotated[
    Optional[bool],
    typer.Option("--random-start/--no-random-start", help="Start from a random point in the ε-ball (default: on for PGD and APGD, off for FGSM).",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
LossOpt = Annotated[
    Optional[str], typer.Option("--loss", help="Objective of gradient attacks: ce, margin or dlr (default: ce; dlr for apgd-dlr and apgd-t).",
                                rich_help_panel=ATTACK_PANEL, show_default=False)
]
MomentumOpt = Annotated[
    Optional[float],
    typer.Option("--momentum", help="Momentum: the decay factor μ of MI-FGSM (default: 1.0) or the weight α of APGD's new step (default: 0.75).",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
TargetClassesOpt = Annotated[
    Optional[int],
    typer.Option("--target-classes", help="APGD-T and strong: how many of the most likely wrong classes to target in turn (default: 9).",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
QueriesOpt = Annotated[
    Optional[int],
    typer.Option("--queries", help="Square and strong: model evaluations per sample (default: 5000).", rich_help_panel=ATTACK_PANEL, show_default=False),
]
PInitOpt = Annotated[
    Optional[float],
    typer.Option("--p-init", help="Square: initial fraction of the image a square covers (default: 0.05 for L∞, 0.1 for L2).",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
OvershootOpt = Annotated[
    Optional[float],
    typer.Option("--overshoot", help="DeepFool: the accumulated step is scaled by 1 + overshoot to cross the boundary (default: 0.02).",
                 rich_help_panel=ATTACK_PANEL, show_default=False),
]
ConfidenceOpt = Annotated[
    Optional[float],
    typer.Option("--confidence", help="CW: logit margin κ an adversarial example must reach (default: 0).", rich_help_panel=ATTACK_PANEL, show_default=False),
]
BinaryStepsOpt = Annotated[
    Optional[int],
    typer.Option("--binary-steps", help="CW: binary-search steps over the constant c (default: 9).", rich_help_panel=ATTACK_PANEL, show_default=False),
]
InitialConstOpt = Annotated[
    Optional[float],
    typer.Option("--initial-const", help="CW: first value of the constant c (default: 1.0).", rich_help_panel=ATTACK_PANEL, show_default=False),
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
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="One line on stderr per finished attack × ε (and batch), also when stderr is "
                       "not a terminal (CI logs); without it progress shows only on a terminal.", rich_help_panel=OUTPUT_PANEL)
]
ImagesOpt = Annotated[
    Optional[Path], typer.Option("--images", help="Write PNG images to this folder.", rich_help_panel=OUTPUT_PANEL, show_default=False)
]


# The options every command that loads a model and data accepts, in help order, with defaults.
_INPUT_PARAMS: list[tuple[str, Any, Any]] = [
    ("model", ModelOpt, None), ("weights", WeightsOpt, None), ("model_arg", ModelArgOpt, None),
    ("unsafe_pickle", UnsafePickleOpt, False), ("mean", MeanOpt, None), ("std", StdOpt, None),
    ("data", DataOpt, None), ("split", SplitOpt, "test"), ("data_root", DataRootOpt, None),
    ("download", DownloadOpt, False), ("image_size", ImageSizeOpt, None), ("limit", LimitOpt, None),
    ("shuffle", ShuffleOpt, False), ("batch_size", BatchOpt, 256), ("num_workers", WorkersOpt, 0),
    ("seed", SeedOpt, 0), ("device", DeviceOpt, "auto"), ("precision", PrecisionOpt, "fp32"),
    ("compile", CompileOpt, False), ("channels_last", ChannelsLastOpt, None), ("threads", ThreadsOpt, "auto"),
]


def input_options(**given: Any) -> InputOptions:
    """The model and data options given on the command line, parsed into :class:`InputOptions`."""
    values = {name: default for name, _, default in _INPUT_PARAMS}
    values.update(given)
    return InputOptions(
        model=values["model"], data=values["data"], split=values["split"], limit=values["limit"],
        batch_size=values["batch_size"], seed=values["seed"], device=values["device"],
        weights=values["weights"], model_args=tuple(values["model_arg"] or ()),
        unsafe_pickle=values["unsafe_pickle"], mean=parse_channels(values["mean"], "--mean"),
        std=parse_channels(values["std"], "--std"), data_root=values["data_root"], download=values["download"],
        image_size=values["image_size"], num_workers=values["num_workers"], shuffle=values["shuffle"],
        precision=values["precision"], compile=values["compile"], channels_last=values["channels_last"],
        threads=str(values["threads"]),
    )


def with_inputs(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every model and data option, the same in every command.

    The command declares a parameter ``io_options: InputOptions``; the options appear on its
    command line (panel "Model and data") and reach it parsed, as one :class:`InputOptions`.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "io_options"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
             for name, annotation, default in _INPUT_PARAMS]
    names = {name for name, _, _ in _INPUT_PARAMS}

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        return command(*args, io_options=input_options(**given), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own), *added])
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}  # type: ignore[attr-defined]
    return wrapper


def attack_options(
    *,
    steps=None,
    step_size=None,
    restarts=None,
    random_start=None,
    loss=None,
    momentum=None,
    target_classes=None,
    queries=None,
    p_init=None,
    overshoot=None,
    confidence=None,
    binary_steps=None,
    initial_const=None,
) -> dict:
    """The attack options given on the command line, as keyword arguments for ``make_params``
    (``None`` means not given; each attack takes the ones it has parameters for). Every number
    given is checked (finite, in range) even where no chosen attack takes it."""
    from advgrad.attacks import list_attacks
    from advgrad.numeric import check_number
    from advgrad.threat import parse_eps

    given = {
        "steps": steps,
        "step_size": None if step_size is None else parse_eps(step_size, "--step-size"),
        "restarts": restarts,
        "random_start": random_start,
        "loss": loss,
        "momentum": momentum,
        "target_classes": target_classes,
        "queries": queries,
        "p_init": p_init,
        "overshoot": overshoot,
        "confidence": confidence,
        "binary_steps": binary_steps,
        "initial_const": initial_const,
    }
    if step_size is not None:  # a default step can be 0 (at ε = 0); a step size given as 0 never moves
        check_number(given["step_size"], "--step-size", above=0)
    for name, value in given.items():
        for spec in list_attacks():
            spec.params_type.check_value(name, value)
    return given


# Every attack option, in the order the help lists them. A command that takes them declares one
# parameter ``attack_opts: dict`` and is decorated with :func:`with_attack_options`.
ATTACK_OPTIONS: dict[str, Any] = {
    "steps": StepsOpt,
    "step_size": StepSizeOpt,
    "restarts": RestartsOpt,
    "random_start": RandomStartOpt,
    "loss": LossOpt,
    "momentum": MomentumOpt,
    "target_classes": TargetClassesOpt,
    "queries": QueriesOpt,
    "p_init": PInitOpt,
    "overshoot": OvershootOpt,
    "confidence": ConfidenceOpt,
    "binary_steps": BinaryStepsOpt,
    "initial_const": InitialConstOpt,
}


def with_attack_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a Typer command every attack option (--steps, --momentum, --queries…) in place of its
    ``attack_opts`` parameter, and call it with them gathered by :func:`attack_options`.

    One definition serves ``attack`` and ``eval``, so the options mean the same in both and a new
    option is added in one place.
    """
    signature = inspect.signature(fn, eval_str=True)  # annotations as objects, from fn's module
    params: list[inspect.Parameter] = []
    for p in signature.parameters.values():
        if p.name == "attack_opts":
            params.extend(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
                for name, annotation in ATTACK_OPTIONS.items()
            )
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in ATTACK_OPTIONS}
        return fn(attack_opts=attack_options(**given), **kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__  # Typer must read the new signature, not the wrapped function's
    return command
