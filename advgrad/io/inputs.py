"""Opening a run's inputs: device, data and model, checked against each other by a probe."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor

from advgrad.core.errors import UsageError
from advgrad.core.numeric import check_number
from advgrad.execution.device import resolve_device
from advgrad.execution.runtime import RuntimeOptions, parse_precision, prepare_model
from advgrad.execution.threads import ThreadChoice, apply_threads, auto_threads, parse_threads
from advgrad.io.data.load_data import DataOptions, DataSource, data_format, load_data
from advgrad.io.data.sources import check_at_least
from advgrad.io.data.tables import FeatureSpace
from advgrad.io.model.factories import parse_model_args
from advgrad.io.model.features import FeatureScaled
from advgrad.io.model.guard import GuardedModel
from advgrad.io.model.load_model import LoadedModel, ModelOptions, load_model, preferred_image_size
from advgrad.io.model.logits import LogitsOf
from advgrad.io.probe import ProbeResult, check_label_range, normalisation_hint, probe

PROBE_SIZE = 64


@dataclass(frozen=True)
class InputOptions:
    """Where a run's model and data come from, how they are read and how the data is batched.

        Model: ``model``, ``weights``, ``model_args`` (``KEY=VALUE`` strings), ``unsafe_pickle``,
        ``mean``/``std``. Data: ``data``, ``split``, ``data_root``, ``download``, ``image_size``; for
    tables ``bounds``, ``eps_scale`` and ``label_column`` (:mod:`advgrad.io.data.tables`).
        Selection and batching: ``limit``, ``shuffle`` (seeded by ``seed``), ``batch_size``,
        ``num_workers``. How the model runs: ``device``, ``precision`` (fp32, bf16 or fp16 autocast),
        ``compile`` (torch.compile), ``channels_last`` (None: on for CUDA conv nets), ``deterministic``
        (reproducible GPU kernels); see
        :mod:`advgrad.execution.runtime`; ``threads`` (``auto`` or a number: :mod:`advgrad.execution.threads`). See
        docs/loading.md for every accepted form.
    """

    model: str | None = None
    data: str | None = None
    split: str = "test"
    limit: int | None = None
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    weights: str | None = None
    model_args: tuple[str, ...] = ()
    unsafe_pickle: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None
    num_workers: int = 0
    shuffle: bool = False
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool | None = None
    threads: str = "auto"
    deterministic: bool = False
    bpda: tuple[str, ...] = ()
    bounds: str | None = None
    eps_scale: str | None = None
    label_column: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("model_args", "mean", "std", "bpda"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    def data_options(self) -> DataOptions:
        return DataOptions(
            split=self.split,
            root=self.data_root,
            download=self.download,
            image_size=self.image_size,
            bounds=self.bounds,
            eps_scale=self.eps_scale,
            label_column=self.label_column,
        )

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(
            precision=self.precision,
            compile=self.compile,
            channels_last=self.channels_last,
            deterministic=self.deterministic,
        )

    def model_options(self, device: torch.device) -> ModelOptions:
        return ModelOptions(
            device=device,
            weights=self.weights,
            model_args=parse_model_args(self.model_args),
            unsafe_pickle=self.unsafe_pickle,
            mean=self.mean,
            std=self.std,
            bpda=self.bpda,
        )


@dataclass
class RunInputs:
    """A loaded model and data source that fit each other, on one device."""

    model: LoadedModel
    data: DataSource
    device: torch.device
    probe: ProbeResult
    options: InputOptions
    warnings: list[str] = field(default_factory=list)
    runtime: list[str] = field(default_factory=list)  # how the model runs: "bf16 autocast", "compiled"…
    threads: ThreadChoice | None = None  # the CPU threads torch was given for the run

    @property
    def space(self) -> FeatureSpace | None:
        """The features of a table (bounds, ε weights, names); None for images."""
        return getattr(self.data, "space", None)

    @property
    def fixed(self) -> tuple[int, ...]:
        """Input coordinates the threat model holds fixed: a table's features of ε weight 0."""
        return () if self.space is None else self.space.fixed

    @property
    def n_samples(self) -> int:
        return len(self.selection())

    @property
    def class_names(self) -> list[str] | None:
        """Names of the classes by index: the model's own (a Hugging Face id2label) when it has
        them, since predictions are its outputs; else the data's (image folders, named datasets).
        None unless there is one name per output."""
        names = self.model.class_names or self.data.classes
        return list(names) if names and len(names) == self.probe.num_classes else None

    def selection(self) -> Tensor:
        o = self.options
        return self.data.select(limit=o.limit, shuffle=o.shuffle, seed=o.seed)

    def to_dict(self) -> dict:
        """What was loaded, for ``advgrad info`` and reports."""
        classes = self.data.classes
        return {
            "model": {**self.model.to_dict(), "output": self.probe.output.describe()},
            "data": {
                "source": self.data.name,
                "description": self.data.description,
                "samples": self.n_samples,
                "total_samples": len(self.data),
                "class_names": None if classes is None else list(classes[:50]),
            },
            "input_shape": list(self.probe.input_shape),
            **({} if self.space is None else {"table": self.space.to_dict()}),
            "num_classes": self.probe.num_classes,
            "device": str(self.device),
            "runtime": list(self.runtime),
            "threads": None if self.threads is None else self.threads.threads,
            "probe": {
                "samples": self.probe.batch_size,
                "correct": self.probe.correct,
                "clean_accuracy": self.probe.accuracy,
            },
            "warnings": list(self.warnings),
            "options": self.options.to_dict(),
        }

    def batches(self, rank: int = 0, world_size: int = 1) -> Iterator[tuple[Tensor, Tensor]]:
        """The run's batches; with ``world_size`` > 1 only those of ``rank``: batches ``rank``,
        ``rank + world_size``, … of the whole run (the same samples as there)."""
        o = self.options
        if world_size == 1:
            return self.data.batches(
                o.batch_size, limit=o.limit, shuffle=o.shuffle, seed=o.seed, num_workers=o.num_workers
            )
        chunks = self.selection().split(o.batch_size)[rank::world_size]
        mine = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)
        # every chunk but the run's last is full, so cutting ``mine`` again gives the same batches
        return self.data.stream(mine, o.batch_size, o.num_workers)


def _check_options(options: InputOptions) -> None:
    check_at_least(batch_size=(options.batch_size, 1), limit=(options.limit, 1), num_workers=(options.num_workers, 0))
    options.data_options()  # checks image_size
    check_number(options.seed, "seed", integer=True, minimum=0, maximum=2**63 - 1)
    parse_precision(options.precision)
    parse_threads(options.threads)


def _class_warnings(data: DataSource, classes: int, names: list[str] | None = None) -> list[str]:
    """Warnings when the data's classes cannot be the model's outputs (``names``: the model's own class names)."""
    if data.classes is None:
        return []
    if len(data.classes) != classes:
        return [
            f"the data has {len(data.classes)} classes but the model outputs {classes}: labels are the data's class "
            f"indices 0..{len(data.classes) - 1}; make sure they mean the same classes as the model's outputs"
        ]
    differ = [i for i, (a, b) in enumerate(zip(data.classes, names or data.classes, strict=False)) if a != b]
    if not differ:
        return []
    i = differ[0]
    return [
        f"the data's class {i} is {data.classes[i]!r} but the model's class {i} is {names[i]!r} ({len(differ)} of "
        f"{classes} names differ): labels are the data's class indices; make sure they mean the model's classes"
    ]


def open_inputs(options: InputOptions, device: torch.device | None = None) -> RunInputs:
    """Resolve the device (unless given: a distributed run gives each process its own), load data
    and model, set up how the model runs (precision, compile, channels-last) and probe them with
    the first batch.

    ``options.threads`` sets torch's CPU thread count for the process (:mod:`advgrad.execution.threads`).
    Beyond the probe batch, every label the data knows cheaply is checked against the model's
    number of classes, so that a label out of range fails before the run, not in its middle.
    """
    _check_options(options)
    device = resolve_device(options.device) if device is None else device
    model_options = options.model_options(device)  # bad --model-arg fails before data is read
    data_options = options.data_options()
    if data_options.image_size is None and data_format(options.data) == "image-folder":
        data_options = replace(data_options, image_size=preferred_image_size(options.model))  # the model's own
    data = load_data(options.data, data_options)
    model = load_model(options.model, model_options)
    _scale_features(model, data, device)
    selection = data.select(limit=options.limit, shuffle=options.shuffle, seed=options.seed)
    x, y = data.fetch(selection[: min(len(selection), options.batch_size, PROBE_SIZE)])
    x, y = x.to(device), y.to(device)
    # counting FLOPs runs the model once: guarded, so that even sys.exit there is the model's failure
    threads = _set_threads(options, GuardedModel(model.module, model.source), x, len(selection), device)
    model.module, runtime = prepare_model(model.module, options.runtime_options(), device, x)
    model.module = GuardedModel(model.module, model.source)  # the model's failures name the model: exit 2
    result = probe(model.module, x, y)
    if result.output.kind != "tensor":
        model.module = LogitsOf(model.module, result.output)
    if model.verify is not None:  # e.g. an ONNX model converted to torch, against onnxruntime
        model.verify(x)
    labels = data.labels()
    if labels is not None and labels.numel():
        check_label_range(int(labels[selection].max()), result.num_classes)
    warnings = [*data.warnings, *model.warnings, *result.warnings]
    warnings += _class_warnings(data, result.num_classes, model.class_names)
    if model.normalization is None and not any("mean" in getattr(w, "params", ()) for w in warnings):
        hint = normalisation_hint(model.module, x, y, result.num_classes)
        warnings += [hint] if hint else []
    if threads.warning:
        warnings.append(threads.warning)
    return RunInputs(model, data, device, result, options, warnings, runtime, threads)


def _scale_features(model: LoadedModel, data: DataSource, device: torch.device) -> None:
    """A table's model gets raw feature values from the attacks' unit box (:class:`FeatureScaled`)."""
    space = getattr(data, "space", None)
    if space is None:
        return
    if model.normalization is not None:
        raise UsageError(
            "`mean`/`std` normalise image channels; a table's model receives raw feature values (within each "
            "feature's bounds): put any standardisation of the features inside the model",
            params=("mean", "std"),
        )
    model.module = FeatureScaled(model.module, space).to(device).eval()


def _set_threads(
    options: InputOptions, module: torch.nn.Module, x: Tensor, samples: int, device: torch.device
) -> ThreadChoice:
    """Choose (:func:`advgrad.execution.threads.auto_threads`) and apply torch's CPU threads for the run."""
    choice = auto_threads(parse_threads(options.threads), module, x, samples, options.batch_size, device)
    apply_threads(choice.threads)
    return choice
