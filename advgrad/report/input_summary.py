"""The table ``advgrad info`` prints: what model and data were loaded and how they fit."""

from __future__ import annotations

from rich.table import Table

from advgrad.core.text import short, some_names
from advgrad.report.fmt import pct
from advgrad.report.table import plain


def _normalization(value: dict | None) -> str:
    if value is None:
        return "none (the model takes pixels in [0, 1] as they are)"
    mean = ",".join(f"{v:g}" for v in value["mean"])
    std = ",".join(f"{v:g}" for v in value["std"])
    return f"mean {mean}, std {std} (from {value['source']})"


def _features(table: dict) -> str:
    """A table's features: each with its bounds (and ε weight), the first 20."""
    weights = table.get("eps_scale")
    parts = []
    for i, name in enumerate(table["features"][:20]):
        weight = "" if weights is None else (", immutable" if weights[i] == 0 else f", ε weight {weights[i]:g}")
        parts.append(f"{short(name)} [{table['lower'][i]:g}, {table['upper'][i]:g}{weight}]")
    more = len(table["features"]) - 20
    scaled = "the model gets raw values; attacks see each feature scaled to [0, 1] by its bounds"
    return "; ".join(parts) + (f"; … {more} more" if more > 0 else "") + f" (bounds from {table['bounds']}; {scaled})"


def inputs_table(summary: dict) -> Table:
    """Rows of a :meth:`advgrad.io.inputs.RunInputs.to_dict` summary."""
    model, data, probe = summary["model"], summary["data"], summary["probe"]
    table = Table(show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    rows = [
        ("model", model["description"]),
        ("kind", model["kind"]),
        ("parameters", f"{model['parameters']:,}"),
    ]
    if model.get("weights") is not None:
        rows.append(("weights", str(model["weights"])))
    if model.get("weights_unwrapped"):
        rows.append(("weights unwrapped", "; ".join(model["weights_unwrapped"])))
    if model.get("model_args"):
        rows.append(("model args", ", ".join(f"{k}={v!r}" for k, v in model["model_args"].items())))
    for key in ("onnx_check",):
        if model.get(key):
            rows.append((key.replace("_", " "), str(model[key])))
    if model.get("class_names"):
        rows.append(("class names (model)", some_names(model["class_names"], 10)))
    table_info = summary.get("table")
    if table_info is None:
        rows.append(("normalisation", _normalization(model.get("normalization"))))
    else:
        rows.append(("features", _features(table_info)))
    rows += [
        ("logits", model["output"]),
        ("data", data["description"]),
        ("samples used", f"{data['samples']:,} of {data['total_samples']:,}"),
        ("input shape", "×".join(map(str, summary["input_shape"]))),
        ("classes", str(summary["num_classes"])),
        (
            "device",
            summary["device"] + ("" if summary.get("threads") is None else f", {summary['threads']} CPU thread(s)"),
        ),
        ("clean accuracy (probe batch)", f"{pct(probe['clean_accuracy'])} ({probe['correct']}/{probe['samples']})"),
    ]
    for what, value in rows:
        table.add_row(what, plain(value))  # descriptions, class and feature names come from files
    return table
