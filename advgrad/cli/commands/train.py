"""``advgrad train``: standard, adversarial (PGD, TRADES), noise and certified (IBP, CROWN-IBP) training."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from advgrad.cli import shared_options as o
from advgrad.cli.config_file import META_KEY, load_config
from advgrad.cli.console import err, handle_errors, info, warn
from advgrad.cli.console import out as stdout  # `out` is the --out option here
from advgrad.core.errors import UsageError
from advgrad.execution.distributed import JOIN_TIMEOUT

TRAIN_PANEL = "Training"
ROBUST_PANEL = "Robust and certified training"

MethodOpt = Annotated[
    Optional[str],
    typer.Option(
        "--method",
        help="standard, pgd (Madry et al. 2018), trades (Zhang et al. 2019; --beta), noise (Gaussian augmentation "
        "for randomized smoothing, Cohen et al. 2019; --sigma); single-step fgsm, fgsm-rs (Wong et al. 2020), n-fgsm "
        "(de Jorge et al. 2022; --noise-radius), gradalign (Andriushchenko & Flammarion 2020; --lam), watched for "
        "catastrophic overfitting; certified ibp (Gowal et al. 2018), crown-ibp (Zhang et al. 2020), mtl-ibp (De "
        "Palma et al. 2024; --alpha), sabr (Müller et al. 2023; --lam) or staps (Mao et al. 2023; --lam; the model "
        "must split into features and a classifier). Default: standard, or --recipe's method.",
        rich_help_panel=TRAIN_PANEL,
        show_default=False,
    ),
]
FROM_RECIPE = " Default: the recipe's."


def _parse_eps(text: str):
    """One ε, as an :class:`~advgrad.core.eps.Eps` keeping how it was written (``8/255``)."""
    from advgrad.core.eps import parse_eps_labelled

    values = parse_eps_labelled(text)
    if len(values) != 1:
        raise UsageError(f"--eps takes one value for training, got {text!r}", params="eps")
    return values[0]


def _parse_warmup(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--warmup takes a number of epochs or auto, got {text!r}") from None


@contextmanager
def _progress(epochs: int):
    """A bar per epoch with the running loss and accuracy when stderr is a terminal; silent otherwise
    (the line per finished epoch is always printed)."""
    if not err.is_terminal or err.quiet:
        yield None
        return
    bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), TimeElapsedColumn(), console=err)
    with bar:
        task = bar.add_task("epoch 1", total=None)

        def update(epoch: int, batch: int, batches: int, loss: float, accuracy: float) -> None:
            bar.update(
                task,
                description=f"epoch {epoch + 1}/{epochs} · loss {loss:.4f} · accuracy {100 * accuracy:.1f}%",
                total=batches,
                completed=batch,
            )

        yield update


def _epoch_line(entry, config) -> str:
    """One epoch as people read it; a certified accuracy names the bound that certified it (the
    training's own, e.g. ``ibp``)."""
    epochs, eps_label = config.epochs, config.eps.label
    parts = [
        f"epoch {entry.epoch}/{epochs}",
        f"loss {entry.loss:.4f}",
        f"train accuracy {100 * entry.train_accuracy:.1f}%",
    ]
    if entry.val_accuracy is not None:
        parts.append(f"val clean {100 * entry.val_accuracy:.1f}%")
    if entry.val_robust_accuracy is not None:
        parts.append(f"val pgd-10@{eps_label} {100 * entry.val_robust_accuracy:.1f}%")
    if entry.val_fgsm_accuracy is not None:
        parts.append(f"val fgsm@{eps_label} {100 * entry.val_fgsm_accuracy:.1f}%")
    if entry.val_certified_accuracy is not None:
        parts.append(f"val {config.bound}-certified@{eps_label} {100 * entry.val_certified_accuracy:.1f}%")
    parts.append(f"{entry.seconds:.1f} s")
    return " · ".join(parts)


@handle_errors
def train_command(
    ctx: typer.Context,
    config_file: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            "-c",
            help='Read the run\'s options from a TOML file; keys are the long option names (method = "pgd", '
            'eps = "0.1", epochs = 30); options on the command line override it.',
            is_eager=True,
            callback=load_config,
            rich_help_panel=TRAIN_PANEL,
            show_default=False,
        ),
    ] = None,
    method: MethodOpt = None,
    recipe: Annotated[
        Optional[str],
        typer.Option(
            "--recipe",
            help="The published recipe that sets every training option you leave out (optimiser, schedule, lr, "
            "ε warm-up, steps, step size, epochs scaled to the data): default the method's own (advgrad docs train "
            "lists them); an option you give overrides its field. The recipe in force is printed, logged and kept "
            "in the written model's metadata.",
            rich_help_panel=TRAIN_PANEL,
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            "--model",
            "-m",
            help="What to train: an architecture by name, digits-cnn (the default model's DigitsCNN) or cifar-resnet "
            "(a small CIFAR ResNet), with fresh weights; package.module:callable (imports and runs that module, your "
            "own code) or torchvision:NAME. --weights starts from saved weights (fine-tuning). Default: digits-cnn.",
            rich_help_panel=o.IO_PANEL,
            show_default=False,
        ),
    ] = None,
    weights: o.WeightsOpt = None,
    model_arg: o.ModelArgOpt = None,
    data: o.DataOpt = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="Split of a named dataset or the embedded digits: train or test.",
            rich_help_panel=o.IO_PANEL,
        ),
    ] = "train",
    data_root: o.DataRootOpt = None,
    download: o.DownloadOpt = False,
    image_size: o.ImageSizeOpt = None,
    limit: o.LimitOpt = None,
    val_fraction: Annotated[
        Optional[float],
        typer.Option(
            "--val-fraction",
            help="Share of the training samples held out (seeded) for validation after each epoch and the final "
            "report. Default: the recipe's (0.1; 0 for pgd's madry-digits, which trains on every sample).",
            rich_help_panel=o.IO_PANEL,
        ),
    ] = None,
    epochs: Annotated[
        Optional[int],
        typer.Option(
            "--epochs",
            help="Passes over the training samples." + FROM_RECIPE,
            show_default=False,
            rich_help_panel=TRAIN_PANEL,
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            "--batch-size",
            "-b",
            help="Samples per step (the global batch under torchrun)." + FROM_RECIPE,
            show_default=False,
            rich_help_panel=TRAIN_PANEL,
        ),
    ] = None,
    lr: Annotated[
        Optional[float],
        typer.Option("--lr", help="Learning rate." + FROM_RECIPE, show_default=False, rich_help_panel=TRAIN_PANEL),
    ] = None,
    optimizer: Annotated[
        Optional[str],
        typer.Option(
            "--optimizer",
            help="adam or sgd (with --momentum)." + FROM_RECIPE,
            show_default=False,
            rich_help_panel=TRAIN_PANEL,
        ),
    ] = None,
    momentum: Annotated[
        Optional[float],
        typer.Option("--momentum", help="SGD momentum." + FROM_RECIPE, show_default=False, rich_help_panel=TRAIN_PANEL),
    ] = None,
    weight_decay: Annotated[
        Optional[float],
        typer.Option(
            "--weight-decay", help="L2 weight decay." + FROM_RECIPE, show_default=False, rich_help_panel=TRAIN_PANEL
        ),
    ] = None,
    schedule: Annotated[
        Optional[str],
        typer.Option(
            "--schedule",
            help="Learning-rate schedule: cosine (to 0), step (×0.1 at 50% and 75%), constant, or cyclic (per batch: "
            "linear from 0 up to --lr over the first 40% of the updates, then down to 0; Wong et al. 2020)."
            + FROM_RECIPE,
            show_default=False,
            rich_help_panel=TRAIN_PANEL,
        ),
    ] = None,
    eps: Annotated[
        str,
        typer.Option(
            "--eps",
            "-e",
            help="ε of the threat model trained against (pgd, trades, ibp, crown-ibp), e.g. 0.1 or 8/255; also "
            "the ε of the validation and the final report.",
            rich_help_panel=ROBUST_PANEL,
        ),
    ] = "0",
    norm: Annotated[str, typer.Option("--norm", help="Threat model: inf or 2.", rich_help_panel=ROBUST_PANEL)] = "inf",
    warmup: Annotated[
        Optional[str],
        typer.Option(
            "--warmup",
            help="Epochs over which ε grows linearly from 0 (and κ from 1 to --kappa; crown-ibp moves from CROWN-IBP to "
            "IBP bounds); auto or left out: the recipe's share of the epochs.",
            rich_help_panel=ROBUST_PANEL,
        ),
    ] = None,
    steps: Annotated[
        Optional[int],
        typer.Option(
            "--steps", help="PGD / TRADES inner steps." + FROM_RECIPE, show_default=False, rich_help_panel=ROBUST_PANEL
        ),
    ] = None,
    step_size: Annotated[
        Optional[float],
        typer.Option(
            "--step-size",
            help="Inner step size (default: the recipe's, else 2.5·ε/steps for pgd, trades and ε for fgsm).",
            rich_help_panel=ROBUST_PANEL,
            show_default=False,
        ),
    ] = None,
    beta: Annotated[
        Optional[float],
        typer.Option(
            "--beta",
            help="TRADES weight β of the KL term." + FROM_RECIPE,
            show_default=False,
            rich_help_panel=ROBUST_PANEL,
        ),
    ] = None,
    sigma: Annotated[
        Optional[float],
        typer.Option(
            "--sigma",
            help="Noise standard deviation σ (noise)." + FROM_RECIPE,
            show_default=False,
            rich_help_panel=ROBUST_PANEL,
        ),
    ] = None,
    kappa: Annotated[
        Optional[float],
        typer.Option(
            "--kappa",
            help="Final weight κ of the clean loss in certified training." + FROM_RECIPE,
            show_default=False,
            rich_help_panel=ROBUST_PANEL,
        ),
    ] = None,
    eps_scale: Annotated[
        Optional[float],
        typer.Option(
            "--eps-scale",
            metavar="NUMBER",  # eval's --eps-scale is a file of per-feature scales
            help="Train at this multiple of --eps (validation and the report stay at --eps)." + FROM_RECIPE,
            rich_help_panel=ROBUST_PANEL,
            show_default=False,
        ),
    ] = None,
    alpha: Annotated[
        Optional[float],
        typer.Option(
            "--alpha",
            help="mtl-ibp: weight α of the IBP loss against the adversarial one." + FROM_RECIPE,
            rich_help_panel=ROBUST_PANEL,
            show_default=False,
        ),
    ] = None,
    lam: Annotated[
        Optional[float],
        typer.Option(
            "--lam",
            help="sabr, staps: the small box's radius as a share λ of ε; gradalign: the regulariser's weight λ."
            + FROM_RECIPE,
            rich_help_panel=ROBUST_PANEL,
            show_default=False,
        ),
    ] = None,
    noise_radius: Annotated[
        Optional[float],
        typer.Option(
            "--noise-radius",
            help="n-fgsm: the uniform noise's radius as a multiple of ε." + FROM_RECIPE,
            rich_help_panel=ROBUST_PANEL,
            show_default=False,
        ),
    ] = None,
    ema: Annotated[
        Optional[float],
        typer.Option(
            "--ema",
            help="Decay of the moving average of the weights that is validated and written (0: off)." + FROM_RECIPE,
            rich_help_panel=TRAIN_PANEL,
            show_default=False,
        ),
    ] = None,
    guard: Annotated[
        bool,
        typer.Option(
            "--guard/--no-guard",
            help="Single-step methods: stop at catastrophic overfitting (validation accuracy under PGD-10 more than "
            "20 points below its best, or more than 40 points below that under FGSM) and keep the best epoch's "
            "weights.",
            rich_help_panel=ROBUST_PANEL,
        ),
    ] = True,
    seed: o.SeedOpt = 0,
    device: o.DeviceOpt = "auto",
    precision: o.PrecisionOpt = "fp32",
    threads: o.ThreadsOpt = "auto",
    dist_timeout: o.DistTimeoutOpt = JOIN_TIMEOUT,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Write the trained weights to FILE.safetensors.",
            rich_help_panel=o.OUTPUT_PANEL,
            show_default=False,
        ),
    ] = None,
    export: Annotated[
        Optional[Path],
        typer.Option(
            "--export",
            help="Write the trained model as an ExportedProgram (FILE.pt2) that `advgrad eval --model FILE.pt2` loads.",
            rich_help_panel=o.OUTPUT_PANEL,
            show_default=False,
        ),
    ] = None,
    log: Annotated[
        Optional[Path],
        typer.Option(
            "--log",
            help="Write the per-epoch log as JSON to FILE (rewritten after every epoch).",
            rich_help_panel=o.OUTPUT_PANEL,
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint",
            help="Checkpoint written after every epoch (default: the --out or --export path plus .ckpt).",
            rich_help_panel=o.OUTPUT_PANEL,
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the checkpoint, which must exist and be of this run (same options and files); the "
            "weights equal an uninterrupted run's. Without it a checkpoint of this run is continued too, and one of "
            "another run is refused.",
            rich_help_panel=o.OUTPUT_PANEL,
        ),
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start from the first epoch even when a checkpoint exists, and replace it.",
            rich_help_panel=o.OUTPUT_PANEL,
        ),
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="At the end, print the eval report of the trained model on the validation samples (clean, PGD and, "
            "for ibp/crown-ibp, CROWN-certified accuracy).",
            rich_help_panel=o.OUTPUT_PANEL,
        ),
    ] = True,
) -> None:
    """Train a classifier: standard, adversarial (pgd, trades), Gaussian noise or certified (ibp, crown-ibp).

    One loop serves every method; each supplies its loss from advgrad's attacks and bounds. After
    every epoch a line gives the loss and the training accuracy and, on the held-out validation
    samples, the clean accuracy, the accuracy under PGD-10 at --eps and (certified training) the
    certified accuracy; a checkpoint is written, and running the same command again continues from
    it (--fresh starts over). At the end the
    weights (.safetensors) and the ExportedProgram are written and the eval report is printed.

    Example: advgrad train --method pgd --eps 0.1 --epochs 60 --lr 2e-3 --out robust.safetensors --export robust.pt2

    Example: advgrad train --method crown-ibp --eps 0.1 --epochs 40 --log log.json --export certified.pt2

    Example (a process per GPU): torchrun --standalone --nproc_per_node 4 -m advgrad train --method pgd --eps 8/255
    --data cifar10 --model cifar-resnet --out cifar.safetensors
    """
    from advgrad.cli.outputs import print_terminal
    from advgrad.train.train_config import TrainConfig
    from advgrad.train.train_run import TrainOptions, train_run

    config = TrainConfig(
        method=method,
        recipe=recipe,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule,
        eps=_parse_eps(eps),
        norm=norm,
        warmup=None if warmup is None else _parse_warmup(warmup),
        steps=steps,
        step_size=step_size,
        beta=beta,
        sigma=sigma,
        kappa=kappa,
        eps_scale=eps_scale,
        alpha=alpha,
        lam=lam,
        noise_radius=noise_radius,
        ema=ema,
        guard=guard,
        val_fraction=val_fraction,
        seed=seed,
        precision=precision,
    )
    options = TrainOptions(
        config=config,
        model=model,
        weights=weights,
        model_args=tuple(model_arg or ()),
        data=data,
        split=split,
        data_root=data_root,
        download=download,
        image_size=image_size,
        limit=limit,
        device=device,
        threads=threads,
        dist_timeout=dist_timeout,
        out=out,
        export=export,
        log=log,
        checkpoint=checkpoint,
        resume=resume,
        fresh=fresh,
        report=report,
        config_file=ctx.meta.get(META_KEY),
    )
    result = train_run(options, info=info, warn=warn, progress=_progress, epoch_line=_epoch_line)
    if isinstance(result, str):
        stdout.print(result, markup=False)
    elif result is not None:
        print_terminal(result)
