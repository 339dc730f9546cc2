"""timm:NAME and hf:DIR: the same predictions as calling the model directly with its own
normalisation; where that normalisation came from is reported; Hugging Face class names reach the
report; nothing is downloaded, no code from a model folder runs, pickled weights need the opt-in,
and a missing extra is one line naming it. Crafted folders and weights (missing or integer weights,
processor values no processor means, absurd sizes) are refused in one line naming the file."""

from __future__ import annotations

import builtins
import json
import re
import shutil
import sys

import pytest
import torch
from loading_fixtures import assert_bad_input, run_cli, save_tensors, write_image_folder
from safetensors.torch import load_file, save_file
from special_files import null_device

from advgrad.core.errors import UsageError
from advgrad.io.model.hf_models import PROCESSOR
from advgrad.io.model.load_model import preferred_image_size


def _data(tmp_path, logits_of, n=12, shape=(3, 8, 8), seed=0):
    """A tensor file whose labels the model gets right on the first half, wrong on the second."""
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = logits_of(x).argmax(1)
    y[n // 2 :] = (y[n // 2 :] + 1) % 3
    return x, y, save_tensors(tmp_path / "data.pt", x, y)


def _randomise(model: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Seeded random weights everywhere (the libraries' own init gives one class for every input)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def _info(*args):
    result = run_cli("info", "--device", "cpu", "--json", "-", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


# ---------------------------------------------------------------------------------------------
# timm

timm = pytest.importorskip("timm")
TIMM_ARGS = {"img_size": 8, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2, "num_classes": 3}


@pytest.fixture(scope="module")
def timm_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("timm")
    model = _randomise(timm.create_model("vit_tiny_patch16_224", pretrained=False, **TIMM_ARGS))
    torch.save({"state_dict": model.state_dict()}, d / "w.pth")
    cfg = model.pretrained_cfg
    mean, std = torch.tensor(cfg["mean"]).view(1, 3, 1, 1), torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    x, y, data = _data(d, lambda x: model((x - mean) / std))
    return {"dir": d, "model": model, "cfg": cfg, "x": x, "y": y, "data": data, "mean": mean, "std": std}


def _timm_args(setup):
    args = [f"--model-arg={k}={v}" for k, v in TIMM_ARGS.items()]
    return ["--model", "timm:vit_tiny_patch16_224", *args, "--weights", setup["dir"] / "w.pth", "--data", setup["data"]]


def test_timm_same_accuracy_as_the_model_itself(timm_setup):
    s = timm_setup
    with torch.no_grad():
        direct = s["model"]((s["x"] - s["mean"]) / s["std"]).argmax(1)
        unnormalised = s["model"](s["x"]).argmax(1)
    assert not torch.equal(direct, unnormalised)  # the normalisation matters for this model and data
    summary, stderr = _info(*_timm_args(s))
    assert summary["model"]["kind"] == "timm"
    assert summary["probe"]["correct"] == int((direct == s["y"]).sum()) == 6
    normalization = summary["model"]["normalization"]
    assert normalization["mean"] == pytest.approx(list(s["cfg"]["mean"]))
    assert normalization["std"] == pytest.approx(list(s["cfg"]["std"]))
    assert "pretrained_cfg" in normalization["source"]
    line = next(line for line in stderr.splitlines() if line.startswith("model: "))
    assert "timm pretrained_cfg of vit_tiny_patch16_224" in line
    mean = ",".join(f"{v:g}" for v in s["cfg"]["mean"])
    assert any(line.startswith("warning: no --mean/--std given") and mean in line for line in stderr.splitlines())
    assert summary["model"]["weights_unwrapped"] == ["took the 'state_dict' entry"]


def test_timm_mean_std_given_win(timm_setup):
    summary, _ = _info(*_timm_args(timm_setup), "--mean", "0.1", "--std", "0.3")
    assert summary["model"]["normalization"] == {"mean": [0.1], "std": [0.3], "source": "--mean/--std"}


def test_timm_refusals(timm_setup, monkeypatch):
    args = _timm_args(timm_setup)
    message = assert_bad_input(run_cli("info", *args, "--model-arg", "pretrained=true"))
    assert "pretrained=False" in message
    message = assert_bad_input(run_cli("info", *args, "--model-arg", "checkpoint_path=w.pth"))
    assert "checkpoint_path" in message
    message = assert_bad_input(run_cli("info", "--model", "timm:vit_tiny_patch16_22"))
    assert "no architecture named 'vit_tiny_patch16_22'" in message and "vit_tiny_patch16_224" in message
    message = assert_bad_input(run_cli("info", "--model", "timm:hf-hub:someone/model"))
    assert "no architecture" in message
    monkeypatch.setitem(sys.modules, "timm", None)
    message = assert_bad_input(run_cli("info", *args))
    assert "pip install 'advgrad[timm]'" in message


# ---------------------------------------------------------------------------------------------
# Hugging Face

transformers = pytest.importorskip("transformers")
NAMES = ["cat", "dog", "fox"]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def hf_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        id2label=dict(enumerate(NAMES)),
        label2id={n: i for i, n in enumerate(NAMES)},
    )
    model = _randomise(transformers.ViTForImageClassification(config), seed=2, scale=1.0)
    folder = d / "vit"
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 8, "width": 8}, image_mean=MEAN, image_std=STD).save_pretrained(
        folder
    )
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x, y, data = _data(d, lambda x: model(pixel_values=(x - mean) / std).logits)
    return {"dir": d, "folder": folder, "model": model, "x": x, "y": y, "data": data, "mean": mean, "std": std}


def test_hf_same_accuracy_names_and_logits(hf_setup):
    s = hf_setup
    with torch.no_grad():
        direct = s["model"](pixel_values=(s["x"] - s["mean"]) / s["std"]).logits.argmax(1)
        unnormalised = s["model"](pixel_values=s["x"]).logits.argmax(1)
    assert not torch.equal(direct, unnormalised)
    summary, stderr = _info("--model", f"hf:{s['folder']}", "--data", s["data"])
    model = summary["model"]
    assert model["kind"] == "hf" and model["class_names"] == NAMES
    assert model["output"] == "the output tensor"  # advgrad's module returns the logits: .logits unwrapped
    assert model["normalization"]["mean"] == pytest.approx(MEAN)
    assert model["normalization"]["std"] == pytest.approx(STD)
    assert "preprocessor_config.json" in model["normalization"]["source"]
    assert summary["probe"]["correct"] == int((direct == s["y"]).sum()) == 6
    assert [line for line in stderr.splitlines() if line.strip()][0].startswith("model: ")
    assert "Loading weights" not in stderr and "%|" not in stderr  # no progress bars of transformers


def test_hf_class_names_in_the_eval_report(hf_setup, tmp_path):
    report = tmp_path / "report.json"
    result = run_cli(
        "eval", "--model", f"hf:{hf_setup['folder']}", "--data", hf_setup["data"], "--attack", "fgsm",
        "--eps", "0,0.05", "--device", "cpu", "--json", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["model"]["class_names"] == NAMES
    assert data["clean_correct"] == 6


def test_hf_class_names_with_escape_sequences_and_markup_are_shown_as_written(hf_setup, tmp_path):
    """Issue 21, item 13: an id2label entry that clears the screen or sets the terminal's title
    reached the terminal raw, and Rich markup in one ("[/bold]") ended in an internal error."""
    import shutil

    folder = tmp_path / "vit"
    shutil.copytree(hf_setup["folder"], folder)
    names = ["cat\x1b[2J", "[red]dog[/red]\x1b]0;pwned\x07", "fox[/bold]\r\x9b31m\u202e"]
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): n for i, n in enumerate(names)}
    config["label2id"] = {n: i for i, n in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(config))
    result = run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"], "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    shown = result.stdout + result.stderr
    assert not any(c in shown for c in "\x1b\x07\r\x9b\u202e"), repr(shown)
    row = "".join(line for line in result.stdout.splitlines() if "│" in line).replace("│", "").replace(" ", "")
    assert "cat\\x1b[2J,[red]dog[/red]\\x1b]0;pwned\\x07,fox[/bold]\\x0d\\x9b31m\\u202e" in row, result.stdout


def test_hf_image_size_from_the_processor_and_folder_names(hf_setup, tmp_path):
    folder = write_image_folder(tmp_path / "imgs", {"cat": 2, "dog": 2, "zebra": 2}, size=(12, 10))
    summary, stderr = _info("--model", f"hf:{hf_setup['folder']}", "--data", folder)
    assert summary["input_shape"] == [3, 8, 8]  # resized to the processor's 8×8 (the images are 12×10)
    assert "'zebra' but the model's class 2 is 'fox'" in " ".join(summary["warnings"])
    # a size the user gives wins; this ViT then refuses 9×9 inputs in one line
    result = run_cli("info", "--model", f"hf:{hf_setup['folder']}", "--data", folder, "--image-size", "9")
    assert "doesn't match model (8*8)" in assert_bad_input(result)


def test_hf_pickled_weights_need_the_opt_in(hf_setup, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((hf_setup["folder"] / "config.json").read_text())
    torch.save(hf_setup["model"].state_dict(), folder / "pytorch_model.bin")
    message = assert_bad_input(run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"]))
    assert "pytorch_model.bin, a pickle" in message and "--unsafe-pickle" in message


def test_hf_remote_code_never_runs(hf_setup, tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    config = json.loads((hf_setup["folder"] / "config.json").read_text())
    config.update(
        model_type="evil_vit",
        auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForImageClassification": "evil.EvilModel"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text("import builtins\nbuiltins.ADVGRAD_REMOTE_RAN = 1\n")
    (folder / "model.safetensors").write_bytes((hf_setup["folder"] / "model.safetensors").read_bytes())
    message = assert_bad_input(run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"]))
    assert "transformers cannot load" in message
    assert not hasattr(builtins, "ADVGRAD_REMOTE_RAN")


def test_hf_never_downloads_and_missing_extra(hf_setup, monkeypatch, tmp_path):
    message = assert_bad_input(run_cli("info", "--model", "hf:google/vit-base-patch16-224"))
    assert "no such folder" in message and "never downloads" in message
    message = assert_bad_input(run_cli("info", "--model", f"hf:{hf_setup['folder']}", "--weights", "w.pt"))
    assert "--weights apply to models built in code" in message
    monkeypatch.setitem(sys.modules, "transformers", None)
    message = assert_bad_input(run_cli("info", "--model", f"hf:{hf_setup['folder']}", "--data", hf_setup["data"]))
    assert "pip install 'advgrad[hf]'" in message


# ---------------------------------------------------------------------------------------------
# Crafted folders and weights: what would load silently wrong is refused in one line


def _gray_data(tmp_path):
    return save_tensors(tmp_path / "gray.pt", torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))


def test_timm_channel_mismatch_names_the_pretrained_cfg_not_mean_std(timm_setup, tmp_path):
    args = [*_timm_args(timm_setup)[:-2], "--data", _gray_data(tmp_path)]
    message = assert_bad_input(run_cli("info", *args), "no --mean/--std given", "timm pretrained_cfg of vit_tiny")
    assert "3 channel(s) but the data has 1" in message and not message.startswith("error: --mean/--std give")


def test_timm_integer_weights_are_refused(timm_setup, tmp_path):
    state = {k: v.contiguous() for k, v in timm_setup["model"].state_dict().items()}
    state["head.weight"] = state["head.weight"].round().to(torch.int32)
    save_file(state, tmp_path / "int.safetensors")
    args = [*_timm_args(timm_setup), "--weights", tmp_path / "int.safetensors"]  # the last --weights wins
    assert_bad_input(run_cli("info", *args), "head.weight is stored as integer (torch.int32)", "torch.float32")


def _hf_copy(setup, tmp_path, state=None, processor=None):
    """The fixture's folder copied, with ``state`` as model.safetensors and ``processor``'s entries
    written over preprocessor_config.json's (NaN and ±∞ as JSON's NaN and Infinity)."""
    folder = tmp_path / "copy"
    shutil.copytree(setup["folder"], folder)
    if state is not None:
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors", {"format": "pt"})
    if processor is not None:
        config = json.loads((folder / PROCESSOR).read_text())
        (folder / PROCESSOR).write_text(json.dumps({**config, **processor}))
    return folder


def _hf_state(setup) -> dict:
    return dict(setup["model"].state_dict())


@pytest.mark.parametrize(
    "edit, needles",
    [
        (lambda sd: {k: v for k, v in sd.items() if not k.startswith("classifier.")}, ["2 missing (classifier.bias"]),
        (lambda sd: {"unrelated": torch.zeros(2)}, ["missing (classifier.bias, classifier.weight,", "1 unexpected"]),
        (lambda sd: {**sd, "extra.weight": torch.zeros(1)}, ["state-dict keys 1 unexpected (extra.weight)"]),
    ],
    ids=["head-missing", "unrelated-key-only", "extra-key"],
)
def test_hf_weights_that_do_not_fit_are_refused_not_initialised_at_random(hf_setup, tmp_path, edit, needles):
    folder = _hf_copy(hf_setup, tmp_path, edit(_hf_state(hf_setup)))
    result = run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"])
    assert_bad_input(result, f"hf:{folder}: the weights in", "do not fit ViTForImageClassification", *needles)


def test_hf_unrelated_key_counts_every_missing_weight(hf_setup, tmp_path):
    state = _hf_state(hf_setup)
    folder = _hf_copy(hf_setup, tmp_path, {"unrelated": torch.zeros(2)})
    result = run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"])
    assert_bad_input(result, f"{len(state)} missing (", f"… ({len(state)} in all))", "1 unexpected (unrelated)")


@pytest.mark.parametrize("dtype, stored", [(torch.int64, "I64"), (torch.int8, "I8"), (torch.bool, "BOOL")])
def test_hf_integer_weights_are_refused(hf_setup, tmp_path, dtype, stored):
    state = _hf_state(hf_setup)
    state["classifier.weight"] = state["classifier.weight"].round().to(dtype)
    folder = _hf_copy(hf_setup, tmp_path, state)
    result = run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"])
    assert_bad_input(result, f"classifier.weight is stored as {stored}", "not as floating point")


def test_hf_integer_weights_in_a_shard_are_refused(hf_setup, tmp_path):
    folder = tmp_path / "sharded"
    hf_setup["model"].save_pretrained(folder, max_shard_size="5KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    key, shard = sorted(index["weight_map"].items())[-1]
    tensors = load_file(folder / shard)
    tensors[key] = tensors[key].round().to(torch.int32)
    save_file(tensors, folder / shard, {"format": "pt"})
    result = run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"])
    assert_bad_input(result, f"{key} is stored as I32")


def test_hf_batch_norm_step_counters_stay_integers(tmp_path):
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    model = transformers.ResNetForImageClassification(config).eval()
    model.save_pretrained(tmp_path / "resnet")
    assert any(k.endswith("num_batches_tracked") for k in load_file(tmp_path / "resnet" / "model.safetensors"))
    data = save_tensors(tmp_path / "d.pt", torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
    summary, _ = _info("--model", f"hf:{tmp_path / 'resnet'}", "--data", data)
    assert summary["model"]["hf_class"] == "ResNetForImageClassification"


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"image_mean": [NAN, 0.4, 0.3]}, "image_mean must be a finite number, got nan"),
        ({"image_std": [0.2, INF, 0.3]}, "image_std must be a finite number, got inf"),
        ({"image_mean": NAN}, "image_mean must be a finite number, got nan"),
        ({"image_mean": ["0.5", 0.4, 0.3]}, "image_mean must be a number, got '0.5'"),
        ({"image_std": [True, 0.25, 0.3]}, "image_std must be a number, got true"),
        ({"image_mean": [[0.5], 0.4, 0.3]}, "image_mean must be a number, got [0.5]"),
        ({"image_mean": []}, "image_mean is an empty list"),
        ({"image_mean": [0.5, 0.4]}, "image_mean has 2 values but image_std has 3"),
        ({"image_std": 0}, "image_std must be > 0, got 0"),
        ({"image_std": [1e-300, 0.25, 0.3]}, "image_std must be ≥ 1.17549e-38, got 1e-300"),  # 0 as float32
        ({"image_mean": 1e300}, "image_mean must be ≤ 3.40282e+38, got 1e+300"),  # ∞ as float32
        ({"size": {"height": -8, "width": -8}}, "size.height must be ≥ 1, got -8"),
        ({"size": {"height": True, "width": True}}, "size.height must be a whole number, got true"),
        ({"size": {"height": NAN, "width": 8}}, "size.height must be a whole number, got nan"),
        ({"size": "8"}, "size must be a whole number, got '8'"),
        ({"size": 10**400}, "size must be ≤ 4096, got a number beyond ±1e+300"),
        ({"do_center_crop": True, "crop_size": {"shortest_edge": 0}}, "crop_size.shortest_edge must be ≥ 1, got 0"),
        ({"rescale_factor": NAN}, "rescale_factor must be a finite number, got nan"),
        ({"rescale_factor": -1}, "rescale_factor must be > 0"),
        ({"do_normalize": "false"}, "do_normalize must be true or false, got 'false'"),
    ],
)
def test_hf_processor_values_no_processor_could_mean_are_refused(hf_setup, tmp_path, change, needle):
    folder = _hf_copy(hf_setup, tmp_path, processor=change)
    result = run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"])
    assert_bad_input(result, f"{folder / PROCESSOR}: {needle}")


def test_hf_processor_values_switched_off_are_not_used_nor_checked(hf_setup, tmp_path):
    folder = _hf_copy(hf_setup, tmp_path, processor={"do_normalize": False, "image_mean": [NAN, 0.4, 0.3]})
    summary, _ = _info("--model", f"hf:{folder}", "--data", hf_setup["data"])
    assert summary["model"]["normalization"] is None


def test_hf_processor_config_that_is_a_device_is_refused_not_skipped(hf_setup, tmp_path):
    folder = _hf_copy(hf_setup, tmp_path)
    (folder / PROCESSOR).unlink()
    null_device(folder / PROCESSOR)
    result = run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"])
    assert_bad_input(result, f"{folder / PROCESSOR} is a character device")


def test_hf_processor_json_nested_too_deep_is_one_line(hf_setup, tmp_path):
    folder = _hf_copy(hf_setup, tmp_path)
    (folder / PROCESSOR).write_text('{"image_mean": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result = run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"])
    assert_bad_input(result, f"{folder / PROCESSOR}: not readable JSON")


def test_hf_processor_size_is_bounded_and_blamed_on_the_file(hf_setup, tmp_path):
    folder = _hf_copy(hf_setup, tmp_path, processor={"size": {"height": 100_000, "width": 100_000}})
    needle = f"{folder / PROCESSOR}: size.height must be ≤ 4096, got 100000"
    with pytest.raises(UsageError, match=re.escape(needle)):  # before any image is resized to it
        preferred_image_size(f"hf:{folder}")
    assert_bad_input(run_cli("info", "--model", f"hf:{folder}", "--data", hf_setup["data"]), needle)


def test_hf_channel_mismatch_names_the_processor_not_mean_std(hf_setup, tmp_path):
    result = run_cli("info", "--model", f"hf:{hf_setup['folder']}", "--data", _gray_data(tmp_path))
    assert_bad_input(result, "no --mean/--std given: the normalisation from vit/preprocessor_config.json has 3")
