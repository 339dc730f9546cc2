"""``hf:DIR``: a Hugging Face image classifier saved with ``save_pretrained`` (``advgrad[hf]``).

The folder holds ``config.json`` and ``model.safetensors`` (``preprocessor_config.json`` too,
usually). transformers builds the architecture named by the config from its own code and loads
the weights:

- nothing is fetched: the folder must exist, ``local_files_only=True`` and huggingface_hub's
  offline switches are set while loading (:func:`advgrad.io.model.extras.offline`);
- no code comes from the folder: ``trust_remote_code=False``, so a config's ``auto_map`` naming
  Python files is never followed;
- weights are read from safetensors only; ``pytorch_model.bin`` is a pickle and needs
  ``--unsafe-pickle``;
- the weights must fit the model exactly: keys transformers reports missing (it would initialise
  them at random) or unexpected are refused, and so are floating-point weights stored as integers
  or booleans (it would cast them silently); there is no option to accept a new, random head.

The image processor's ``image_mean``/``image_std`` become the normalisation in front of the model
and its size the ``--image-size`` of an image folder, unless the user gives them; values no
processor could mean (NaN, strings, a side above :data:`MAX_IMAGE_SIZE`) are refused. The model
returns its ``.logits``; ``config.id2label`` names the classes in reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError, Notice, first_line
from advgrad.core.numeric import check_number
from advgrad.io.data.sources import MAX_IMAGE_SIZE
from advgrad.io.model.extras import offline, require
from advgrad.io.model.model_types import LoadedModel, ModelOptions
from advgrad.io.model.normalize import Normalization
from advgrad.io.model.weights import key_mismatch
from advgrad.io.paths import read_capped, require_file

PREFIX = "hf:"
EXTRA = "hf"
PROCESSOR = "preprocessor_config.json"
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_JSON_LIMIT = 1 << 20  # a preprocessor config is a few hundred bytes
_INDEX_LIMIT = 16 << 20  # a shard index names every tensor once
_F32 = torch.finfo(torch.float32)
SWITCHES = ("do_normalize", "do_resize", "do_center_crop", "do_rescale")
SIZE_KEYS = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")


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
    if not os.path.lexists(folder / "config.json"):  # one that is not a regular file: load_hf names it
        raise ModelError(f"{spec}: {folder} holds no config.json (expected a folder written by save_pretrained)")
    return folder


def _read_json(path: Path, what: str, limit: int = _JSON_LIMIT) -> object:
    """A small JSON file (``what`` names the kind of file), read as JSON, never as code: a regular
    file of at most ``limit`` bytes (:func:`read_capped`; a device or a FIFO would be read without end)."""
    try:
        return json.loads(read_capped(path, limit, what, ModelError))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: [[[[…]]]]
        raise ModelError(f"{path}: not readable JSON ({first_line(exc)})") from None


def read_processor(folder: Path) -> dict:
    """``preprocessor_config.json`` as a dict ({} when absent), its values checked
    (:func:`check_processor`)."""
    path = folder / PROCESSOR
    if not (path.exists() or path.is_symlink()):
        return {}
    config = _read_json(path, "an image processor config")
    if not isinstance(config, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(config).__name__}")
    check_processor(path, config)
    return config


def check_processor(path: Path, processor: dict) -> None:
    """Refuse the values advgrad uses (the ``do_*`` switches, ``image_mean``/``image_std``, ``size``,
    ``crop_size``, ``rescale_factor``) when no image processor could mean them: NaN, ±∞, booleans or
    strings for numbers, a side below 1 or above :data:`MAX_IMAGE_SIZE`. Values that are switched
    off (``do_resize: false``) are not used and not checked."""
    for switch in SWITCHES:
        if not isinstance(processor.get(switch, False), bool | None):
            raise ModelError(f"{path}: {switch} must be true or false, got {repr(processor[switch])[:60]}")
    if processor.get("do_normalize") is not False:
        for key in ("image_mean", "image_std"):
            _check_channels(path, key, processor.get(key))
    for key, on in (("size", processor.get("do_resize") is not False), ("crop_size", processor.get("do_center_crop"))):
        for label, side in _sizes(key, processor.get(key)) if on else ():
            check_number(side, f"{path}: {label}", integer=True, minimum=1, maximum=MAX_IMAGE_SIZE)
    factor = processor.get("rescale_factor")
    if processor.get("do_rescale") is not False and factor is not None:
        check_number(factor, f"{path}: rescale_factor", above=0, maximum=sys.float_info.max)


def _check_channels(path: Path, key: str, value: object) -> None:
    """``image_mean``/``image_std``: a number or a list of them, finite as float32 (the model's
    precision), a std above 0 and not so small that float32 holds it as 0."""
    if value is None:
        return
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ModelError(f"{path}: {key} is an empty list; expected one number per channel")
    for v in values:
        check_number(v, f"{path}: {key}", above=0 if key == "image_std" else None)
        low = _F32.tiny if key == "image_std" else -_F32.max
        check_number(v, f"{path}: {key}", minimum=low, maximum=_F32.max)


def _sizes(key: str, size: object) -> list[tuple[str, object]]:
    """The sides a ``size``/``crop_size`` entry gives, each with its name: an int, a list, or a dict
    of ``height``, ``width``, ``shortest_edge``… (none when absent)."""
    if size is None:
        return []
    if isinstance(size, dict):
        return [(f"{key}.{k}", v) for k, v in size.items() if k in SIZE_KEYS and v is not None]
    if isinstance(size, list):
        return [(f"{key}[{i}]", v) for i, v in enumerate(size)]
    return [(key, size)]


def processor_normalization(folder: Path, processor: dict) -> Normalization | None:
    """The processor's ``image_mean``/``image_std`` (none when ``do_normalize`` is false), as
    :func:`check_processor` checked them."""
    if not processor or processor.get("do_normalize", True) is False:
        return None
    mean, std = processor.get("image_mean"), processor.get("image_std")
    if mean is None or std is None:
        return None
    mean, std = (tuple(float(v) for v in (x if isinstance(x, list) else [x])) for x in (mean, std))
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise ModelError(
            f"{folder / PROCESSOR}: image_mean has {len(mean)} values but image_std has {len(std)}; "
            "not a usable normalisation"
        )
    return Normalization.from_options(mean, std, f"{folder.name}/{PROCESSOR}")


def _side(size: object) -> int | None:
    """The square side of a checked ``size``/``crop_size`` entry, or None when it gives none."""
    if isinstance(size, int):
        return size
    if isinstance(size, dict):
        height, width = size.get("height"), size.get("width")
        return height if height is not None and height == width else size.get("shortest_edge")
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


def _from_pretrained(spec: str, folder: Path, safetensors: bool) -> tuple:
    """transformers' config and classifier from ``folder`` (offline, no remote code), and its report
    of the keys it could not load."""
    with offline():
        transformers = require("transformers", EXTRA, f"`model` {spec}")
        try:
            with _quiet(transformers):
                config = transformers.AutoConfig.from_pretrained(
                    str(folder), local_files_only=True, trust_remote_code=False
                )
                return config, *transformers.AutoModelForImageClassification.from_pretrained(
                    str(folder),
                    config=config,
                    local_files_only=True,
                    trust_remote_code=False,
                    use_safetensors=safetensors,
                    dtype=torch.float32,
                    output_loading_info=True,
                )
        except Exception as exc:
            raise ModelError(
                f"{spec}: transformers cannot load an image classifier from {folder} ({type(exc).__name__}: "
                f"{first_line(exc)})"
            ) from None


def _safetensors_files(folder: Path) -> list[Path]:
    """``model.safetensors`` and the shards its index names, each a plain file inside ``folder``."""
    files = [folder / SAFE_WEIGHTS[0]] if (folder / SAFE_WEIGHTS[0]).is_file() else []
    index = folder / SAFE_WEIGHTS[1]
    if index.is_file():
        contents = _read_json(index, "a safetensors index", _INDEX_LIMIT)
        weight_map = contents.get("weight_map") if isinstance(contents, dict) else None
        if not isinstance(weight_map, dict):
            raise ModelError(f"{index}: expected a JSON object with a weight_map")
        for name in sorted({str(v) for v in weight_map.values()}):
            if Path(name).name != name or name in ("", ".", "..") or not (folder / name).is_file():
                raise ModelError(f"{index} names the shard {name[:80]!r}, which is not a file in {folder}")
            files.append(folder / name)
    return files


def _stored_dtypes(files: list[Path], spec: str) -> dict[str, str]:
    """Each stored tensor's safetensors dtype (``F32``, ``I64``…), read from the headers only."""
    from safetensors import safe_open

    dtypes: dict[str, str] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                dtypes.update({k: f.get_slice(k).get_dtype() for k in f.keys()})
        except Exception as exc:  # SafetensorError, OSError on damaged files
            raise ModelError(f"{spec}: {path} is not a readable .safetensors file ({first_line(exc)})") from None
    return dtypes


def _check_weights(spec: str, folder: Path, model: nn.Module, info: dict, safetensors: bool) -> None:
    """Refuse weights that leave part of the model as transformers initialised it (missing keys:
    random weights), name tensors the model lacks, or store a floating-point weight as integers or
    booleans (which transformers would cast without a word). Integer tensors are stored as such
    only where the model's tensor of that name is one too (BatchNorm's ``num_batches_tracked``)."""
    what = f"{spec}: the weights in {folder} do not fit {type(model).__name__}"
    mismatch = key_mismatch(list(info.get("missing_keys", ())), list(info.get("unexpected_keys", ())))
    if mismatch:
        raise ModelError(
            f"{what}: {mismatch} (transformers would give missing weights a random initialisation and drop "
            "unexpected ones); save the trained model with save_pretrained"
        )
    if not safetensors:
        return
    integral = {k.rsplit(".", 1)[-1] for k, v in model.state_dict().items() if not v.is_floating_point()}
    stored = _stored_dtypes(_safetensors_files(folder), spec)
    bad = sorted(k for k, d in stored.items() if not d.startswith(("F", "BF")) and k.rsplit(".", 1)[-1] not in integral)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ModelError(
            f"{what}: {bad[0]} is stored as {stored[bad[0]]}{more}, not as floating point; transformers would cast "
            "it to float silently, so these are not trained weights: save the trained model with save_pretrained"
        )


def _check_files(folder: Path) -> None:
    """Every file of the folder that transformers may open (configs, weights and their shards) is a
    regular file: a named pipe would block the loading, a device flood it."""
    for entry in sorted(folder.iterdir()):
        if entry.suffix in (".json", ".safetensors", ".bin"):
            require_file(entry, "a file written by save_pretrained", ModelError)


def load_hf(spec: str, options: ModelOptions) -> LoadedModel:
    """The image classifier saved in the folder ``hf:DIR`` names (see the module docstring)."""
    folder = folder_of(spec)
    _check_files(folder)
    safetensors = _weights_kind(folder, spec, options.unsafe_pickle)
    processor = read_processor(folder)
    config, model, info = _from_pretrained(spec, folder, safetensors)
    _check_weights(spec, folder, model, info, safetensors)
    model.config.return_dict = True  # a config saying otherwise makes inner modules return tuples
    extra = {
        "hf_class": type(model).__name__,
        "weights": "model.safetensors" if safetensors else "pickled (--unsafe-pickle)",
    }
    loaded = LoadedModel(
        HFClassifier(model.eval()).to(options.device),
        "hf",
        spec,
        f"Hugging Face {type(model).__name__} from {folder}",
        extra,
        processor_normalization(folder, processor),
        class_names=class_names(config),
    )
    notice = _rescale_notice(folder, processor)
    if notice:
        loaded.warnings.append(notice)
    return loaded


def _rescale_notice(folder: Path, processor: dict) -> Notice | None:
    factor = processor.get("rescale_factor", 1 / 255) if processor.get("do_rescale", True) is not False else 1.0
    if factor is None or abs(float(factor) - 1 / 255) <= 1e-9:
        return None
    return Notice(
        f"{folder / PROCESSOR} rescales pixels by {float(factor):g}, not 1/255: advgrad feeds the model pixels in "
        "[0, 1] (0–255 pixels × 1/255), so the model may see inputs on another scale than it was trained on"
    )
