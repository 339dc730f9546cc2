"""``advgrad grad``: the input gradient ∇ₓJ, its norms, saliency maps and a finite-difference check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from advgrad.cli import shared_options as o
from advgrad.cli.common import emit_json, open_and_describe
from advgrad.cli.console import handle_errors, info, out
from advgrad.core.errors import ExitCode
from advgrad.core.gradient import finite_difference_check
from advgrad.core.losses import get_loss
from advgrad.core.numeric import check_number
from advgrad.evaluation.input_gradients import gradients, sample_rows
from advgrad.io.files import write_tensors
from advgrad.io.inputs import InputOptions
from advgrad.io.output_paths import check_output_paths, images_file, images_folder, input_paths
from advgrad.report.feature_bars import gradient_bars
from advgrad.report.images import saliency_grid
from advgrad.report.table import gradient_table

IMAGES_FILE = "saliency.png"  # what --images FOLDER holds (for a table: bars per feature)


def _gradient_bars(result, space, path: Path, loss: str) -> Path:
    """A table's gradient as bars per feature: the gradient with respect to each feature as a
    share of its range (the attacks see z = u / r, so ∂J/∂u = ∂J/∂z / r; a fixed feature has r = 1 here)."""
    _, _, r = space.tensors()
    return gradient_bars(
        space.names,
        result.grad.reshape(result.grad.shape[0], -1).float() / r,
        space.lower,
        space.upper,
        path,
        fixed=space.fixed,
        title=f"Input gradient of the {loss} loss, mean over {result.grad.shape[0]} samples",
    )


@handle_errors
@o.with_inputs
def grad(
    out_file: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Write x, y, grad, loss and pred to this .pt file.",
            rich_help_panel=o.OUTPUT_PANEL,
            show_default=False,
        ),
    ] = None,
    images: o.ImagesOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Compare autograd with central finite differences on sampled coordinates.")
    ] = False,
    coordinates: Annotated[
        int, typer.Option("--coordinates", help="Coordinates per sample that --check compares.")
    ] = 16,
    tolerance: Annotated[
        Optional[float],
        typer.Option(
            "--tolerance",
            help="Largest relative error --check accepts (a finite number ≥ 0); above it the exit code is 1. (default: 1e-4 in float64, 1e-2 in float32)",
            show_default=False,
        ),
    ] = None,
    loss: Annotated[str, typer.Option("--loss", help="J: ce, margin or dlr.")] = "ce",
    show: Annotated[
        int, typer.Option("--show", help="Samples listed in the table and drawn in saliency.png (0: none).")
    ] = 10,
    signed: Annotated[
        bool,
        typer.Option(
            "--signed",
            help="Saliency maps of the signed gradient (red: a brighter pixel raises the loss, blue: lowers it) instead of |∇ₓJ|.",
            rich_help_panel=o.OUTPUT_PANEL,
        ),
    ] = False,
    json_out: o.JsonOpt = None,
    io_options: InputOptions = InputOptions(),
) -> None:
    """Compute ∇ₓJ, the gradient of the loss with respect to the input, for every sample.

    Example: advgrad grad --limit 16 --out grad.pt --images saliency/ --check
    """
    picture = images_file(images, IMAGES_FILE)
    check_output_paths(
        {"--out": out_file, "--json": json_out, "--images": picture},
        input_paths(io_options),
        {"--images": images_folder(images)},
    )
    get_loss(loss)
    check_number(coordinates, "--coordinates", integer=True, minimum=1)
    check_number(show, "--show", integer=True, minimum=0)
    if tolerance is not None:  # NaN would always pass the check and a negative value always fail it
        check_number(tolerance, "--tolerance", minimum=0)
    inputs = open_and_describe(io_options)
    result = gradients(inputs.model.module, inputs.batches(), loss=loss, device=inputs.device)
    rows = sample_rows(result)
    if out_file is not None:
        write_tensors(out_file, {**result.to_dict(), "loss_name": loss})
        info(f"wrote {out_file}")
    if images is not None and inputs.space is not None:
        path = _gradient_bars(result, inputs.space, picture, loss)
        info(f"wrote {path}")
    elif images is not None:
        title = f"Input gradient ∇ₓJ of the {loss} loss · {inputs.model.description}"
        path = saliency_grid(
            result.x,
            result.grad,
            result.y,
            result.pred,
            picture,
            count=show,
            signed=signed,
            title=title,
        )
        info(f"wrote {path}")
    report: dict = {"loss": loss, "n_samples": len(rows), "samples": rows}
    failed = False
    if check:
        x, y = inputs.data.fetch(inputs.selection()[: min(io_options.batch_size, 32)])
        result_check = finite_difference_check(
            inputs.model.module, x.to(inputs.device), y.to(inputs.device), loss=loss, coordinates=coordinates
        )
        tolerance = result_check.default_tolerance if tolerance is None else tolerance
        failed = result_check.max_relative_error > tolerance
        report["check"] = {**result_check.to_dict(), "tolerance": tolerance, "passed": not failed}
    if not emit_json(json_out, report):
        out.print(gradient_table(rows, limit=show, saved_to=None if out_file is None else str(out_file)))
        if check:
            c = report["check"]
            verdict = "FAILED" if failed else "ok"
            out.print(
                Text(
                    f"finite-difference check ({c['n_coordinates']} coordinates, {c['dtype']}, h={c['step']:g}): "
                    f"largest relative error {c['max_relative_error']:.2e}, largest absolute error "
                    f"{c['max_absolute_error']:.2e} — {verdict} (tolerance {tolerance:g})"
                ),
                soft_wrap=True,
            )
    if failed:
        raise typer.Exit(int(ExitCode.GATE_FAILED))
