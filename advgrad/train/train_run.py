"""What ``advgrad train`` does once its options are parsed: open data and model, train (under
torchrun, one rank of DistributedDataParallel), write weights, program, log and checkpoint, and
return the eval report of the result (the command prints it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from advgrad.core.errors import Interrupted, UsageError, first_line
from advgrad.core.results import RobustnessReport
from advgrad.execution.distributed import JOIN_TIMEOUT
from advgrad.train.train_config import RECIPE_FIELDS, TrainConfig

LOG_FORMAT = "advgrad.train-log"


@dataclass(frozen=True)
class TrainOptions:
    """Every option of ``advgrad train`` (see its help): the training hyper-parameters (``config``, a
    :class:`TrainConfig`, its ε an :class:`~advgrad.core.eps.Eps` that keeps how it was written) and
    what the run reads, where it runs and what it writes."""

    config: TrainConfig = field(default_factory=TrainConfig)
    model: str | None = None
    weights: str | None = None
    model_args: tuple[str, ...] = ()
    data: str | None = None
    split: str = "train"
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None
    limit: int | None = None
    device: str = "auto"
    threads: str = "auto"
    dist_timeout: float = JOIN_TIMEOUT
    out: Path | None = None
    export: Path | None = None
    log: Path | None = None
    checkpoint: Path | None = None
    resume: bool = False
    fresh: bool = False
    report: bool = True
    config_file: str | None = None

    def identity(self, world_size: int) -> dict:
        """What a checkpoint must share with the run that resumes it, besides the TrainConfig: the
        options that choose model, data and samples, and the size and modification time of the
        data and weights files (a file rewritten at the same path makes another run)."""
        return {
            "model": self.model,
            "model_args": list(self.model_args),
            "weights": self.weights,
            "weights file": _fingerprint(self.weights),
            "data": self.data,
            "data file": _fingerprint(self.data),
            "split": self.split,
            "limit": self.limit,
            "image_size": self.image_size,
            "world_size": world_size,
        }

    def checkpoint_path(self) -> Path | None:
        if self.checkpoint is not None:
            return self.checkpoint
        base = self.out or self.export
        return None if base is None else Path(str(base) + ".ckpt")


def _fingerprint(path: str | None) -> list[int] | None:
    from advgrad.evaluation.run_description import file_fingerprints

    return next(iter(file_fingerprints({"path": path}).values()), None)


def _check_paths(options: TrainOptions) -> Path | None:
    from advgrad.io.output_paths import check_output_paths

    if options.out is not None and Path(options.out).suffix.lower() != ".safetensors":
        raise UsageError(f"--out writes safetensors: give a name ending in .safetensors, not {options.out}")
    ckpt = options.checkpoint_path()
    if options.resume and options.fresh:
        raise UsageError("--resume continues the checkpoint and --fresh replaces it: give one of them")
    if options.resume and ckpt is None:
        raise UsageError(
            "--resume needs a checkpoint: give --checkpoint FILE (or --out/--export, beside which it is kept)"
        )
    check_output_paths(
        {"--out": options.out, "--export": options.export, "--log": options.log, "--checkpoint": ckpt},
        {"--weights": options.weights, "--data": options.data, "--config": options.config_file},
    )
    return ckpt


def _choose_threads(requested: str, module, x, batch_size: int, device) -> int:
    from advgrad.execution.threads import apply_threads, available_cpus, choose_threads, forward_flops, parse_threads

    wanted = parse_threads(requested)
    flops = None
    if wanted is None and device.type != "cuda":
        per_sample = forward_flops(module, x[:1])
        flops = None if per_sample is None else 3 * per_sample * batch_size  # forward + backward
    choice = choose_threads(wanted, cpus=available_cpus(), batch_flops=flops, device_type=device.type)
    apply_threads(choice.threads)
    return choice.threads


def train_run(
    options: TrainOptions,
    *,
    info: Callable[[str], None],
    warn: Callable[[str], None],
    progress: Callable,
    epoch_line: Callable,
) -> RobustnessReport | str | None:
    """Train as ``options`` say, telling ``info``/``warn`` what happens, ``progress(epochs)`` (a context
    giving the per-batch callback) and ``epoch_line(entry, config)`` (one line per epoch).
    Returns what to show of the result (rank 0): the eval report on the validation samples, a line
    with their clean accuracy when there is no ε, or None (no report, or another rank). Ctrl-C
    raises :class:`~advgrad.core.errors.Interrupted` saying where the finished epochs are."""
    from advgrad.core.geometry import get_geometry
    from advgrad.execution.device import resolve_device
    from advgrad.execution.distributed import check_join_timeout, launch_from_env, process_device, process_group
    from advgrad.io.data.load_data import DataOptions, load_data
    from advgrad.io.files import write_json
    from advgrad.io.model.factories import parse_model_args
    from advgrad.io.probe import check_label_range, forward_or_explain
    from advgrad.train.build import build_model, export_program, save_weights
    from advgrad.train.loop import Distributed, Trainer, split_indices

    config = options.config
    check_join_timeout(options.dist_timeout)
    ckpt = _check_paths(options)
    model_args = parse_model_args(options.model_args)
    launch = launch_from_env()
    world = 1 if launch is None else launch.world_size
    identity = options.identity(world)
    device = process_device(options.device, launch) if launch is not None else resolve_device(options.device)
    source = load_data(
        options.data,
        DataOptions(
            split=options.split, root=options.data_root, download=options.download, image_size=options.image_size
        ),
    )
    from advgrad.io.data.sources import check_at_least

    if getattr(source, "space", None) is not None:
        raise UsageError(f"advgrad train takes images; {options.data} is a table, which it does not train on yet")
    for message in source.warnings:
        warn(message)
    check_at_least(limit=(options.limit, 1))
    selection = source.select(limit=options.limit, seed=config.seed)
    train_idx, val_idx = split_indices(selection, config.held_out, config.seed)
    config = config.resolve(len(train_idx))
    resumed = _checkpoint_to_resume(ckpt, options, config, identity, info)
    torch.manual_seed(config.seed)  # the initial weights of a fresh architecture
    module, description = build_model(options.model, model_args, options.weights)
    module = module.to(device)
    x, y = source.fetch(train_idx[: min(len(train_idx), 8)])
    x = x.to(device)
    module.eval()
    logits = forward_or_explain(module, x)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise UsageError(f"the model must return (N, classes) logits to be trained, got {type(logits).__name__}")
    labels = source.labels()
    if labels is not None and len(selection):
        check_label_range(int(labels[selection].max()), logits.shape[1])
    if config.method == "staps":  # refused before the run starts: the model must cut into extractor and head
        from advgrad.train.staps import checked_split

        checked_split(module, x)
    threads = _choose_threads(options.threads, module, x, config.batch_size, device)
    if options.out is None and options.export is None:
        warn("neither --out nor --export is given: the trained weights will not be saved")
    info(
        f"train: {description} · data: {source.description} · {len(train_idx)} training and {len(val_idx)} "
        f"validation samples · method {config.method}"
        + (f", ε = {config.eps.label} ({get_geometry(config.norm).label})" if config.eps > 0 else "")
        + f" · device: {device}"
        + ("" if device.type == "cuda" else f", {threads} thread{'s' if threads > 1 else ''}")
    )
    info(recipe_line(options.config, config))
    with process_group(launch, device, options.dist_timeout, waiting=info) if launch is not None else _nothing():
        if launch is not None:
            info(f"distributed: {world} processes, each a slice of every batch of {config.batch_size}; rank 0 writes")
        trainer = Trainer(
            module,
            source,
            config,
            device=device,
            train_indices=train_idx,
            val_indices=val_idx,
            identity=identity,
            dist_info=Distributed(0 if launch is None else launch.rank, world),
        )
        if resumed is not None:
            _restore(trainer, resumed, ckpt)
            info(f"resumed from {ckpt}: {trainer.epoch} of {config.epochs} epochs done")

        def on_epoch(entry) -> None:
            info(epoch_line(entry, config))
            if options.log is not None:
                write_json(options.log, _log_document(options, trainer))

        try:
            with progress(config.epochs) as on_batch:
                trainer.run(checkpoint=ckpt, on_batch=on_batch, on_epoch=on_epoch)
        except KeyboardInterrupt:
            saved = (
                f"{trainer.epoch} finished epochs are in {ckpt}; run the same command again"
                + (" without --fresh" if options.fresh else "")
                + " to continue"
                if ckpt
                else "nothing was saved"
            )
            raise Interrupted(f"interrupted: {saved}") from None
        if launch is not None and not launch.is_main:
            return None
        module.eval()
        if trainer.collapse is not None:
            warn(trainer.collapse)
        if options.log is not None and trainer.log:
            write_json(options.log, _log_document(options, trainer))
        if options.out is not None:
            save_weights(module, options.out, metadata=_metadata(trainer))
            info(f"wrote {options.out}")
        if options.export is not None:
            export_program(module, x, options.export, metadata=_metadata(trainer))
            info(f"wrote {options.export}")
        if ckpt is not None:
            info(f"checkpoint: {ckpt}")
    return _final_report(module, source, val_idx, config, device, description, info) if options.report else None


def _checkpoint_to_resume(
    ckpt: Path | None, options: TrainOptions, config: TrainConfig, identity: dict, info: Callable[[str], None]
) -> dict | None:
    """Before the model is built: the checkpoint to continue (None: start at the first epoch), or
    a refusal.

    A checkpoint of this same run (:func:`~advgrad.train.loop.checkpoint_differences` finds
    nothing) is continued, with --resume or without; --fresh starts over and replaces it. Any other
    file at the checkpoint's path (another run's checkpoint, a file that is not one) is never
    overwritten unasked: refused, naming --resume and --fresh. --resume insists on a checkpoint."""
    from advgrad.train.loop import checkpoint_differences, differ_text, read_checkpoint

    if ckpt is None or options.fresh:
        if ckpt is not None and ckpt.is_file():
            info(f"--fresh: starting from the first epoch; {ckpt} is replaced after it")
        return None
    if not ckpt.is_file():  # none yet, or a special file (/dev/null, a pipe) written through and never read
        if options.resume:
            raise UsageError(f"--resume: there is no checkpoint at {ckpt} to continue; leave out --resume to start")
        return None
    state = read_checkpoint(ckpt)
    if isinstance(state, str):
        raise UsageError(f"{state}; give --fresh to replace it, or another --checkpoint (--resume cannot continue it)")
    differ = checkpoint_differences(state, identity, config)
    if differ:
        raise UsageError(
            f"the checkpoint {ckpt} is of another run ({differ_text(differ)}): give that run's options to --resume it, "
            "or --fresh to start over and replace it"
        )
    return state


def _restore(trainer, state: dict, ckpt: Path) -> None:
    try:
        trainer.restore(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a model whose code changed, a damaged file
        raise UsageError(
            f"the checkpoint {ckpt} does not fit this run ({type(exc).__name__}: {first_line(exc, 160)}); the model's "
            "code may have changed: give --fresh to start over and replace it"
        ) from None


def _nothing():
    from contextlib import nullcontext

    return nullcontext()


def recipe_line(given: TrainConfig, config: TrainConfig) -> str:
    """``recipe madry-digits (Madry et al. …): adam, lr 0.002, …; given: lr`` — what the run trains
    with, and which of it the user gave."""
    from advgrad.train.recipes import RECIPES

    recipe = RECIPES[config.recipe]
    parts = [
        f"{config.epochs} epochs",
        f"batch {config.batch_size}",
        f"{config.optimizer} lr {config.lr:g}"
        + (f" momentum {config.momentum:g}" if config.optimizer == "sgd" else ""),
        f"{config.schedule} schedule",
    ]
    if config.weight_decay:
        parts.append(f"weight decay {config.weight_decay:g}")
    if config.ema:
        parts.append(f"weights averaged (decay {config.ema:g})")
    if config.warmup_epochs:
        parts.append(f"ε warm-up {config.warmup_epochs} epochs")
    if float(config.eps) > 0:
        if config.eps_scale != 1:
            parts.append(f"trained at ε = {config.train_eps:g} ({config.eps_scale:g}·ε)")
        parts.extend(_method_parts(config))
    given_names = [n for n in ("epochs", "warmup", *RECIPE_FIELDS) if getattr(given, n) is not None]
    return f"recipe {recipe.name} ({recipe.source}): {', '.join(parts)}" + (
        f"; given: {', '.join(dict.fromkeys(given_names))}" if given_names else ""
    )


def _method_parts(config: TrainConfig) -> list[str]:
    method = config.method
    parts = []
    if method in ("pgd", "trades", "mtl-ibp", "sabr", "staps"):
        size = config.step_size if config.step_size is not None else 2.5 * config.train_eps / config.steps
        parts.append(f"{config.steps} step{'s' if config.steps > 1 else ''} of {size:.4g}")
    if method in ("fgsm", "fgsm-rs", "n-fgsm", "gradalign"):
        parts.append(f"step {config.step_size if config.step_size is not None else config.train_eps:.4g}")
    extra = {
        "trades": ("beta", "β"),
        "mtl-ibp": ("alpha", "α"),
        "sabr": ("lam", "λ"),
        "staps": ("lam", "λ"),
        "gradalign": ("lam", "λ"),
    }
    if method in extra:
        name, symbol = extra[method]
        parts.append(f"{symbol} = {getattr(config, name):g}")
    if method == "n-fgsm":
        parts.append(f"noise {config.noise_radius:g}·ε")
    if method in ("ibp", "crown-ibp"):
        parts.append(f"κ 1 → {config.kappa:g}")
    return parts


def _metadata(trainer) -> dict:
    """What the written model keeps of how it was trained: the resolved configuration (recipe included)."""
    import json

    return {"advgrad.train": json.dumps({"config": trainer.config.to_dict(), "run": trainer.identity})}


def _log_document(options: TrainOptions, trainer) -> dict:
    from advgrad.train.recipes import RECIPES

    return {
        "schema": LOG_FORMAT,
        "schema_version": 1,
        "recipe": RECIPES[trainer.config.recipe].to_dict(),
        "collapse": trainer.collapse,
        "config": trainer.config.to_dict(),
        "run": trainer.identity,
        "epochs": [e.to_dict() for e in trainer.log],
    }


def _final_report(
    module, source, val_idx, config: TrainConfig, device, description, info
) -> RobustnessReport | str | None:
    """The eval report of the trained model on the validation samples: clean, PGD-20 at ε and, for
    certified training, CROWN-certified accuracy; without ε, a line with the clean accuracy."""
    from advgrad.attacks import get_attack
    from advgrad.evaluation.eval_config import plan_eval
    from advgrad.evaluation.run import run_sweep
    from advgrad.evaluation.run_description import RunDescription

    if len(val_idx) == 0:
        info(
            f"no validation samples (--val-fraction {config.val_fraction:g}; --val-fraction 0.1 holds some out): "
            "evaluate the result with `advgrad eval`"
        )
        return None
    if config.eps == 0 and not config.certified:
        with torch.no_grad():
            correct = sum(
                int((module(x.to(device)).argmax(1) == y.to(device)).sum())
                for x, y in source.stream(val_idx, config.batch_size, 0)
            )
        return (
            f"clean accuracy {100 * correct / len(val_idx):.1f}% ({correct}/{len(val_idx)}) on the validation samples "
            "(no --eps: no attack)"
        )
    attacks, eval_config = plan_eval(
        [get_attack("pgd")],
        {},
        eps=[0.0, config.eps] if config.eps > 0 else [0.0],
        norm=config.norm,
        seed=config.seed,
        certify="alpha-crown" if config.certified else None,  # the strongest bound advgrad has that needs no time limit
        examples=0,
    )
    report = run_sweep(
        module, source.stream(val_idx, config.batch_size, 0), RunDescription(attacks, eval_config), device=device
    )
    report.model = {"source": "train", "description": description}
    report.data = {"source": source.name, "description": f"{source.description}, validation samples"}
    info(f"report of the trained model on the {len(val_idx)} validation samples:")
    return report
