"""``hf:DIR``: a Hugging Face image classifier saved with ``save_pretrained`` (``advgrad[hf]``).

The folder holds ``config.json`` and ``model.safetensors`` (``preprocessor_config.json`` too,
usually). transformers builds the architecture named by the config from its own code and loads
the weights:

- nothing is fetched: the folder must exist, ``local_files_only=True`` and huggingface_hub's
  offline switches are set while loading (:func:`advgrad.io.model.extras.offline`);
- no code comes from the folder: ``trust_remote_code=False``, so a config's ``auto_map`` naming
  Python files is never followed;
- weights are read from safetensors only; ``pytorch_model.bin`` is a pickle and needs
  ``--unsafe-pickle``.

The image processor's ``image_mean``/``image_std`` become the normalisation in front of the model
and its size the ``--image-size`` of an image folder, unless the user gives them; the model returns
its ``.logits``; ``config.id2label`` names the classes in reports.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from advgrad.errors import ModelError, Notice, first_line
from advgrad.io.model.extras import offline, require
from advgrad.io.model.model_types import LoadedModel, ModelOptions
from advgrad.io.model.normalize import Normalization

PREFIX = "hf:"
EXTRA = "hf"
PROCESSOR = "preprocessor_config.json"
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_JSON_LIMIT = 1 << 20  # a preprocessor config is a few hundred bytes


class HFClassifier(nn.Module):
    """``model(pixel_values=x).logits``: a transformers classifier as a module returning logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(pixel_values=x, return_dict=True).logits


def folder_of(spec: str) -> Path:
    """The folder an ``hf:DIR`` value names, which must exist and hold config.json."""
    folder = Path(spec[len(PREFIX) :]).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"{spec}: no such folder (expected a folder written by save_pretrained: config.json and "
            "model.safetensors; advgrad never downloads models)"
        )
    if not (folder / "config.json").is_file():
        raise ModelError(f"{spec}: {folder} holds no config.json (expected a folder written by save_pretrained)")
    return folder


def read_processor(folder: Path) -> dict:
    """``preprocessor_config.json`` as a dict ({} when absent); read as JSON, never as code."""
    path = folder / PROCESSOR
    if not path.is_file():
        return {}
    if path.stat().st_size > _JSON_LIMIT:
        raise ModelError(f"{path}: larger than {_JSON_LIMIT >> 10} KiB, not an image processor config")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: not readable JSON ({first_line(exc)})") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(config).__name__}")
    return config


def _numbers(value: object) -> tuple[float, ...] | None:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return tuple(float(v) for v in values) if all(math.isfinite(v) for v in values) else None


def processor_normalization(folder: Path, processor: dict) -> Normalization | None:
    """The processor's ``image_mean``/``image_std`` (none when ``do_normalize`` is false)."""
    if not processor or processor.get("do_normalize", True) is False:
        return None
    mean, std = _numbers(processor.get("image_mean")), _numbers(processor.get("image_std"))
    if mean is None or std is None:
        return None
    if any(s <= 0 for s in std) or (len(mean) != len(std) and 1 not in (len(mean), len(std))):
        raise ModelError(f"{folder / PROCESSOR}: image_mean/image_std are not a usable normalisation")
    return Normalization.from_options(mean, std, f"{folder.name}/{PROCESSOR}")


def _side(size: object) -> int | None:
    if isinstance(size, int) and not isinstance(size, bool):
        return size if size > 0 else None
    if isinstance(size, dict):
        height, width = size.get("height"), size.get("width")
        if isinstance(height, int) and height == width and height > 0:
            return height
        edge = size.get("shortest_edge")
        return edge if isinstance(edge, int) and not isinstance(edge, bool) and edge > 0 else None
    return None


def processor_image_size(spec: str) -> int | None:
    """The square side the image processor feeds the model (its crop when it crops), or None."""
    try:
        processor = read_processor(folder_of(spec))
    except ModelError:
        return None  # loading the model says what is wrong
    if processor.get("do_center_crop") and _side(processor.get("crop_size")):
        return _side(processor.get("crop_size"))
    return _side(processor.get("size")) if processor.get("do_resize", True) is not False else None


def class_names(config) -> list[str] | None:
    """``config.id2label`` as a list by class index; None when absent, incomplete, or transformers'
    placeholders (``LABEL_0``, ``LABEL_1``…)."""
    labels = getattr(config, "id2label", None) or {}
    try:
        names = {int(k): str(v) for k, v in labels.items()}
    except (TypeError, ValueError):
        return None
    if sorted(names) != list(range(len(names))) or not names:
        return None
    ordered = [names[i] for i in range(len(names))]
    return None if ordered == [f"LABEL_{i}" for i in range(len(names))] else ordered


@contextlib.contextmanager
def _quiet(transformers) -> Iterator[None]:
    """No progress bars or info logs from transformers while loading (stderr is advgrad's)."""
    logging = transformers.utils.logging
    bars, level = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _weights_kind(folder: Path, spec: str, unsafe_pickle: bool) -> bool:
    """True for safetensors weights; pickled ones only with ``unsafe_pickle`` (False then)."""
    if any((folder / name).is_file() for name in SAFE_WEIGHTS):
        return True
    pickled = next((name for name in PICKLED_WEIGHTS if (folder / name).is_file()), None)
    if pickled is None:
        raise ModelError(f"{spec}: {folder} holds no model.safetensors (expected the weights save_pretrained writes)")
    if not unsafe_pickle:
        raise ModelError(
            f"{spec}: the weights are {pickled}, a pickle; unpickling can run code from the file, so advgrad reads "
            "Hugging Face weights from model.safetensors only unless you pass `unsafe_pickle` (only for files you "
            "trust); safer: model.save_pretrained(DIR, safe_serialization=True)",
            params="unsafe_pickle",
        )
    return False


def load_hf(spec: str, options: ModelOptions) -> LoadedModel:
    """The image classifier saved in the folder ``hf:DIR`` names (see the module docstring)."""
    folder = folder_of(spec)
    safetensors = _weights_kind(folder, spec, options.unsafe_pickle)
    processor = read_processor(folder)
    with offline():
        transformers = require("transformers", EXTRA, f"`model` {spec}")
        try:
            with _quiet(transformers):
                config = transformers.AutoConfig.from_pretrained(
                    str(folder), local_files_only=True, trust_remote_code=False
                )
                model = transformers.AutoModelForImageClassification.from_pretrained(
                    str(folder),
                    config=config,
                    local_files_only=True,
                    trust_remote_code=False,
                    use_safetensors=safetensors,
                    dtype=torch.float32,
                )
        except Exception as exc:
            raise ModelError(
                f"{spec}: transformers cannot load an image classifier from {folder} ({type(exc).__name__}: "
                f"{first_line(exc)})"
            ) from None
    names = class_names(config)
    model.config.return_dict = True  # a config saying otherwise makes inner modules return tuples
    description = f"Hugging Face {type(model).__name__} from {folder}"
    extra = {
        "hf_class": type(model).__name__,
        "weights": "model.safetensors" if safetensors else "pickled (--unsafe-pickle)",
    }
    loaded = LoadedModel(
        HFClassifier(model.eval()).to(options.device),
        "hf",
        spec,
        description,
        extra,
        processor_normalization(folder, processor),
        class_names=names,
    )
    factor = processor.get("rescale_factor", 1 / 255) if processor.get("do_rescale", True) is not False else 1.0
    if isinstance(factor, (int, float)) and abs(float(factor) - 1 / 255) > 1e-9:
        loaded.warnings.append(
            Notice(
                f"{folder / PROCESSOR} rescales pixels by {factor:g}, not 1/255: advgrad feeds the model pixels in "
                "[0, 1] (0–255 pixels × 1/255), so the model may see inputs on another scale than it was trained on"
            )
        )
    return loaded
