"""Options shared by several commands, named and documented once."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from advgrad.cli.output_options import OUTPUT_PANEL, JsonOpt  # noqa: F401 - torch-free, shared with `attacks`
from advgrad.io.inputs import InputOptions
from advgrad.io.model.normalize import parse_channels

IO_PANEL = "Model and data"
RUNTIME_PANEL = "Speed and scale"
ATTACK_PANEL = "Attack"

ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        help=(
            "Model to attack: an ExportedProgram (.pt2, torch.export.save), package.module:callable with --weights "
            "(imports and runs that module, your own code), torchvision:NAME (e.g. torchvision:resnet18), an ONNX "
            "file (needs advgrad[onnx]), timm:NAME with --weights (needs advgrad[timm]), hf:DIR, a Hugging Face "
            "save_pretrained folder (needs advgrad[hf]), or a TorchScript file (deprecated by torch); a whole pickled "
            "model only with --unsafe-pickle. Nothing is downloaded. Default: the embedded digits CNN."
        ),
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--weights",
        "-w",
        help=(
            "Weights for torchvision:NAME, timm:NAME or package.module:callable: a state-dict file (.pt/.pth read with "
            "weights_only, or .safetensors), or DEFAULT (torchvision's pretrained weights, from the local cache only)."
        ),
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
ModelArgOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--model-arg",
        help=(
            "KEY=VALUE passed to the model's callable, torchvision builder or timm.create_model; repeat for more "
            "(e.g. --model-arg num_classes=10). Values read as int, float, true/false, else string."
        ),
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
BpdaOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--bpda",
        help=(
            "BPDA for a model built in code: NAME runs the submodule NAME (as named by named_modules()) forward "
            "but differentiates it as the identity; NAME=package.module:callable differentiates it as that "
            "callable instead. For quantising, JPEG-like or filtering layers that block gradients. Repeat, or "
            "separate with commas (Athalye, Carlini & Wagner 2018)."
        ),
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
UnsafePickleOpt = Annotated[
    bool,
    typer.Option(
        "--unsafe-pickle",
        help=(
            "DANGEROUS, runs arbitrary code from the file: allows unpickling (a whole model saved with "
            "torch.save(model)) and model graphs that call operators outside advgrad's allow-list "
            "(`advgrad docs loading`). Only for files you trust."
        ),
        rich_help_panel=IO_PANEL,
    ),
]
MeanOpt = Annotated[
    Optional[str],
    typer.Option(
        "--mean",
        help=(
            "Per-channel mean the model was trained with, comma-separated (e.g. 0.485,0.456,0.406). With --std it "
            "puts (x - mean) / std inside the model, so attacks work on [0,1] pixels and ε is in pixel units."
        ),
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
StdOpt = Annotated[
    Optional[str],
    typer.Option(
        "--std",
        help="Per-channel standard deviation, comma-separated (e.g. 0.229,0.224,0.225); see --mean.",
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
DataOpt = Annotated[
    Optional[str],
    typer.Option(
        "--data",
        "-d",
        help=(
            "Data: a .pt, .npz or .safetensors file holding x (N×C×H×W floats in [0,1] or uint8) and y (N labels); "
            "a table (a .csv file with a header row, or such a file whose x is N×D: see --bounds); an image folder (one sub-folder per class); or mnist, fashion-mnist, cifar10, cifar100, svhn "
            "(torchvision, from --data-root). Default: the embedded digits."
        ),
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split",
        help="Split of a named dataset or the embedded digits: test or train (svhn: extra too).",
        rich_help_panel=IO_PANEL,
    ),
]
DataRootOpt = Annotated[
    Optional[str],
    typer.Option(
        "--data-root",
        help="Folder of named datasets. Default: ~/.cache/advgrad/datasets (or $XDG_CACHE_HOME/advgrad/datasets).",
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
DownloadOpt = Annotated[
    bool,
    typer.Option(
        "--download", help="Download a named dataset into --data-root if it is not there.", rich_help_panel=IO_PANEL
    ),
]
ImageSizeOpt = Annotated[
    Optional[int],
    typer.Option(
        "--image-size",
        help="Image folders: resize the shorter side to N and centre-crop N×N.",
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
BoundsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--bounds",
        help=(
            'Tables: a .csv (columns feature,lower,upper) or .json file ({"name": [lower, upper]}) with each '
            "feature's valid range. Attacks stay inside it and ε is a fraction of each range. Default: the data's "
            "min/max."
        ),
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
EpsScaleOpt = Annotated[
    Optional[str],
    typer.Option(
        "--eps-scale",
        help=(
            'Tables: a .csv (columns feature,scale) or .json file ({"name": weight}) of per-feature ε weights: '
            "relative to the smallest positive one, which gets ε; 0 makes a feature immutable."
        ),
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
LabelColumnOpt = Annotated[
    Optional[str],
    typer.Option(
        "--label-column",
        help="CSV tables: the column holding the labels (default: the column named label, else the last one).",
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
LimitOpt = Annotated[
    Optional[int],
    typer.Option(
        "--limit",
        "-n",
        help="Use only the first N samples (of the shuffled order with --shuffle).",
        rich_help_panel=IO_PANEL,
        show_default=False,
    ),
]
ShuffleOpt = Annotated[
    bool,
    typer.Option(
        "--shuffle",
        help="Take the samples in a random order fixed by --seed (with --limit: a random subset).",
        rich_help_panel=IO_PANEL,
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Samples per batch.", rich_help_panel=IO_PANEL)]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--num-workers", help="Processes decoding images ahead of the run (image folders).", rich_help_panel=IO_PANEL
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Seed for random starts, targets and --shuffle; same seed, same result.",
        rich_help_panel=IO_PANEL,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto, cpu, cuda or cuda:N (under torchrun: each process takes cuda:LOCAL_RANK).",
        rich_help_panel=RUNTIME_PANEL,
    ),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help=(
            "fp32, bf16 or fp16: run the model under autocast in that precision; inputs, gradients, perturbations and "
            "their projection stay fp32 (`advgrad docs scale` shows what it does to attack strength)."
        ),
        rich_help_panel=RUNTIME_PANEL,
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="Run the model through torch.compile (needs a C++ compiler on CPU, Triton on CUDA).",
        rich_help_panel=RUNTIME_PANEL,
    ),
]
DeterministicOpt = Annotated[
    bool,
    typer.Option(
        "--deterministic",
        help="Reproducible GPU kernels: torch.use_deterministic_algorithms and CUBLAS_WORKSPACE_CONFIG, so that two "
        "runs on one GPU give byte-identical reports (slower on some models; CPU runs are deterministic already: "
        "`advgrad docs records`).",
        rich_help_panel=RUNTIME_PANEL,
    ),
]
ChannelsLastOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--channels-last/--no-channels-last",
        help="Channels-last memory format for the model and its inputs "
        "(default: on for convolutional models on CUDA, off otherwise).",
        rich_help_panel=RUNTIME_PANEL,
        show_default=False,
    ),
]
ThreadsOpt = Annotated[
    str,
    typer.Option(
        "--threads",
        help=(
            "CPU threads for torch: a number, or auto (the CPUs this process may use — affinity, cgroup quota, "
            "split among torchrun's ranks — less those other processes keep busy, and one for small models, which "
            "run fastest so; `advgrad docs scale`)."
        ),
        rich_help_panel=RUNTIME_PANEL,
    ),
]
DistTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--dist-timeout",
        metavar="SECONDS",
        help=(
            "Under torchrun: how long each process waits for all of them to join before it stops with an error "
            "(an unreachable MASTER_ADDR:MASTER_PORT, a rank that never starts); `advgrad docs scale`."
        ),
        rich_help_panel=RUNTIME_PANEL,
    ),
]

NormOpt = Annotated[
    str,
    typer.Option(
        "--norm",
        help="Threat model: inf, 2, or 1 (PGD); `advgrad attacks` lists each attack's norms.",
        rich_help_panel=ATTACK_PANEL,
    ),
]
PredictionsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--predictions",
        help=(
            "For a randomized model: forward passes behind each prediction that decides a number; a sample counts "
            "as correct only when all of them are correct, and as fooled when any is wrong (default: the attacks' "
            "--eot, so 1 for a deterministic run)."
        ),
        rich_help_panel=ATTACK_PANEL,
        show_default=False,
    ),
]
TargetOpt = Annotated[
    Optional[str],
    typer.Option(
        "--target",
        help="Targeted attack: a class index, random or least-likely. Default: untargeted.",
        rich_help_panel=ATTACK_PANEL,
        show_default=False,
    ),
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="One line on stderr per finished attack × ε (and batch), also when stderr is "
        "not a terminal (CI logs); without it progress shows only on a terminal. Also shows the warnings of "
        "other libraries (torch, onnx2torch…), which are hidden otherwise.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
ImagesOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--images",
        help="Write the pictures as PNG into this folder, or as this one file where the name ends with .png, .pdf, "
        ".svg, .eps or .jpg (for a table: bars per feature).",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
    ),
]


@dataclass(frozen=True)
class _Input:
    """A model and data option: its Typer declaration, the :class:`InputOptions` field it sets
    (when not of the same name) and how its value becomes that field's."""

    option: Any
    field: str | None = None
    convert: Callable[[Any], Any] | None = None


# The options every command that loads a model and data accepts, in help order. The default of
# each is its InputOptions field's; a config file key is the option's long name.
INPUT_OPTIONS: dict[str, _Input] = {
    "model": _Input(ModelOpt),
    "weights": _Input(WeightsOpt),
    "model_arg": _Input(ModelArgOpt, "model_args", lambda v: tuple(v or ())),
    "unsafe_pickle": _Input(UnsafePickleOpt),
    "bpda": _Input(BpdaOpt, convert=lambda v: tuple(v or ())),
    "mean": _Input(MeanOpt, convert=lambda v: parse_channels(v, "mean")),
    "std": _Input(StdOpt, convert=lambda v: parse_channels(v, "std")),
    "data": _Input(DataOpt),
    "split": _Input(SplitOpt),
    "data_root": _Input(DataRootOpt),
    "download": _Input(DownloadOpt),
    "image_size": _Input(ImageSizeOpt),
    "bounds": _Input(BoundsOpt),
    "eps_scale": _Input(EpsScaleOpt),
    "label_column": _Input(LabelColumnOpt),
    "limit": _Input(LimitOpt),
    "shuffle": _Input(ShuffleOpt),
    "batch_size": _Input(BatchOpt),
    "num_workers": _Input(WorkersOpt),
    "seed": _Input(SeedOpt),
    "device": _Input(DeviceOpt),
    "precision": _Input(PrecisionOpt),
    "compile": _Input(CompileOpt),
    "channels_last": _Input(ChannelsLastOpt),
    "threads": _Input(ThreadsOpt, convert=str),
    "deterministic": _Input(DeterministicOpt),
}
_INPUT_DEFAULTS = {f.name: f.default for f in fields(InputOptions)}


def input_options(**given: Any) -> InputOptions:
    """The model and data options given on the command line, parsed into :class:`InputOptions`
    (an option not given keeps the field's default)."""
    values = {}
    for name, value in given.items():
        spec = INPUT_OPTIONS[name]
        values[spec.field or name] = spec.convert(value) if spec.convert else value
    return InputOptions(**values)


def _input_parameters() -> list[inspect.Parameter]:
    return [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=spec.option, default=_INPUT_DEFAULTS[spec.field or name]
        )
        for name, spec in INPUT_OPTIONS.items()
    ]


def attack_parameters() -> list[inspect.Parameter]:
    """One Typer option per parameter of the attacks registered now (:mod:`advgrad.attacks.options`):
    ``--name`` with the field's type (an on/off pair for a bool), ``None`` when not given."""
    from advgrad.attacks.options import collect_options

    params = []
    for option in collect_options():
        value_type = str if option.parse is not None else option.type
        decl = f"{option.flag}/--no-{option.flag[2:]}" if option.type is bool else option.flag
        annotation = Annotated[
            Optional[value_type],
            typer.Option(  # type: ignore[valid-type]
                decl, help=option.help_text(), rich_help_panel=ATTACK_PANEL, show_default=False
            ),
        ]
        params.append(
            inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        )
    return params


def attack_options(**given: Any) -> dict:
    """The attack options given on the command line, as keyword arguments for ``make_params``
    (``None`` means not given; each attack takes the ones it has parameters for). Every value
    given is parsed and checked (finite, in range) even where no chosen attack takes it."""
    from advgrad.attacks.options import read_options

    return read_options(given)


class ExpandedCommand:
    """A command whose parameter ``placeholder`` stands for a list of options that
    ``parameters()`` gives, and which receives them gathered into one value by ``gather``.

    Its signature is computed each time it is read, and Typer reads it each time it builds the
    click command, at every run of the app: options that come from the attack registry are those
    of the attacks registered at that moment, also ones registered after ``advgrad.cli`` was
    imported (a plugin, a test).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        placeholder: str,
        parameters: Callable[[], list[inspect.Parameter]],
        gather: Callable[..., Any],
    ) -> None:
        self._fn, self._placeholder, self._parameters, self._gather = fn, placeholder, parameters, gather
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(self, attr, getattr(fn, attr, None))

    @property
    def __signature__(self) -> inspect.Signature:
        signature = inspect.signature(self._fn, eval_str=True)  # annotations as objects, from fn's module
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p.name == self._placeholder:
                params.extend(self._parameters())
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        return signature.replace(parameters=params)

    @property
    def __annotations__(self) -> dict[str, Any]:  # type: ignore[override]
        return {p.name: p.annotation for p in self.__signature__.parameters.values()}

    def __call__(self, **kwargs: Any) -> Any:
        names = {p.name for p in self._parameters()}
        given = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
        return self._fn(**{self._placeholder: self._gather(**given)}, **kwargs)


def with_inputs(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every model and data option, the same in every command.

    The command declares a parameter ``io_options: InputOptions``; the options appear on its
    command line (panel "Model and data") and reach it parsed, as one :class:`InputOptions`.
    """
    return ExpandedCommand(command, "io_options", _input_parameters, input_options)


def with_attack_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a Typer command every attack option (--steps, --momentum, --queries…) in place of its
    ``attack_opts`` parameter, and call it with them gathered by :func:`attack_options`.

    One definition serves ``attack`` and ``eval``, so the options mean the same in both; they are
    read from the registered attacks' parameters (:func:`attack_parameters`) whenever the app runs.
    """
    return ExpandedCommand(fn, "attack_opts", attack_parameters, attack_options)
