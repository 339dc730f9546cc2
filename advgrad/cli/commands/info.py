"""``advgrad info``: what model and data were loaded, and whether they fit."""

from __future__ import annotations

from advgrad.cli import shared_options as o
from advgrad.cli.common import emit_json, open_and_describe
from advgrad.cli.console import handle_errors, out
from advgrad.io.inputs import InputOptions
from advgrad.io.output_paths import check_output_paths, input_paths
from advgrad.report.input_summary import inputs_table


@handle_errors
@o.with_inputs
def info_command(
    json_out: o.JsonOpt = None,
    io_options: InputOptions = InputOptions(),
) -> None:
    """Load a model and data, probe them with one batch, and say what was loaded.

    Prints the kind of model, its parameter count, the input shape, the number of classes,
    the normalisation put in front of the model, how the logits are taken from its output,
    the device, and the clean accuracy on the probe batch. Use it to check a setup before a
    long run; with --download it fetches a named dataset.

    Example: advgrad info --model torchvision:resnet18 --weights DEFAULT --data ./images --image-size 224
    """
    check_output_paths({"--json": json_out}, input_paths(io_options))
    inputs = open_and_describe(io_options)
    summary = inputs.to_dict()
    if not emit_json(json_out, summary):
        out.print(inputs_table(summary))
