"""Helpers shared by the tests: small models with known structure and independent checks.

Nothing here calls the code under test to compute an expected value.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

# ---------------------------------------------------------------- models


class Linear(nn.Module):
    """f(x) = W·flatten(x) + b with the given weights (a linear classifier)."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias if bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


def linear_model(weight: Tensor, bias: Tensor | None = None) -> Linear:
    return Linear(weight, bias).eval()


class TinyNet(nn.Module):
    """A small CNN for inputs of any height and width: conv, batch norm, dropout, pooling, linear head.

    Batch norm and dropout make train mode observable: in train mode the output depends on the
    batch and on the global RNG, and the running statistics change.
    """

    def __init__(self, channels: int = 2, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(16, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(self.drop(torch.tanh(self.bn(self.conv(x)))))
        return self.head(h.flatten(1)) * 4.0


def linear_setup(classes: int, seed: int = 0, d: int = 6, n: int = 5):
    """Weights of a linear classifier over d features and a float64 batch of n samples (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, d, generator=gen, dtype=torch.float64)
    b = torch.randn(classes, generator=gen, dtype=torch.float64)
    x = torch.rand(n, 1, 1, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return w, b, x, y


def tiny_net(seed: int = 0, channels: int = 2, classes: int = 3, dtype=torch.float32) -> TinyNet:
    gen = torch.Generator().manual_seed(seed)
    model = TinyNet(channels, classes)
    with torch.no_grad():  # random weights, zero biases: classes balanced, decisions near the data
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 if name.endswith("weight") else torch.zeros(p.shape))
        model.bn.weight.fill_(1.0)
    return model.to(dtype).eval()


def two_class_linear(seed: int, n: int = 6, low: float = 0.35, high: float = 0.65):
    """A random 2-class linear model on 1×4×4 inputs in [low, high], random labels, and for each
    sample u = w_other − w_y: for this model ∇ₓCE = p_other·u, a positive multiple of u."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(2, 16, generator=gen, dtype=torch.float64)
    b = torch.randn(2, generator=gen, dtype=torch.float64)
    x = low + (high - low) * torch.rand(n, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=gen)
    u = (w[1 - y] - w[y]).reshape(x.shape)
    return linear_model(w, b), x, y, u


class Recorder(nn.Module):
    """Passes inputs through to ``model`` and records every batch it is run on."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.rows: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.rows.append(x.detach().clone())
        return self.model(x)

    @property
    def sizes(self) -> list[int]:
        return [r.shape[0] for r in self.rows]

    def visits(self, x: Tensor, radius: float) -> Tensor:
        """How many recorded rows trace back to each sample of ``x``: the nearest sample in L∞,
        which must lie within ``radius`` (the samples have to be further apart than 2·radius)."""
        seen = torch.cat(self.rows).flatten(1)
        dist = (seen[:, None, :] - x.flatten(1)[None]).abs().amax(dim=2)  # rows × samples
        assert bool((dist.min(dim=1).values <= radius).all()), "a row is not near any sample"
        return torch.bincount(dist.argmin(dim=1), minlength=x.shape[0])


def torchscript(model: nn.Module, path: Path | None = None):
    """Script ``model`` (and save it to ``path``), without torch's deprecation notices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        scripted = torch.jit.script(model)
        if path is not None:
            torch.jit.save(scripted, str(path))
    return scripted


# ---------------------------------------------------------------- files that try to run code


class Trap:
    """A pickle payload: unpickling it calls :func:`spring`, which writes ``marker``.
    Loading a file holding one must never create the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (spring, (str(self.marker),))


def spring(marker: str) -> Tensor:  # pragma: no cover - must never run during a load
    Path(marker).write_text("code ran")
    return torch.zeros(1)


# ---------------------------------------------------------------- independent checks


def independent_norm(delta: Tensor, norm: str) -> Tensor:
    """Per-sample norm computed in float64 with NumPy, independently of advgrad.core.threat."""
    flat = delta.detach().double().reshape(delta.shape[0], -1).cpu().numpy()
    if norm == "inf":
        return torch.from_numpy(np.abs(flat).max(axis=1))
    if norm == "2":
        return torch.from_numpy(np.sqrt((flat**2).sum(axis=1)))
    return torch.from_numpy(np.abs(flat).sum(axis=1))


def ulp_slack(x: Tensor, eps: float, norm: str) -> float:
    """Rounding slack for ‖x_adv − x‖ ≤ ε: x_adv = x + δ is rounded to x's precision."""
    unit = float(torch.finfo(x.dtype).eps)
    per_coord = 2 * unit  # |x| ≤ 1: rounding x + δ moves it by at most one ulp of 1
    d = x[0].numel()
    scale = {"inf": 1.0, "2": d**0.5, "1": float(d)}[norm]
    return eps * 4 * unit + per_coord * scale


def assert_inside(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> None:
    """x_adv within ε of x in the given norm (independent computation) and inside [0, 1]."""
    norms = independent_norm(x_adv - x, norm)
    limit = eps + ulp_slack(x, eps, norm)
    assert bool((norms <= limit).all()), f"‖δ‖_{norm} up to {float(norms.max())} > ε={eps}"
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


# ---------------------------------------------------------------- CLI helpers


def invoke(args: list[str]):
    """Run the CLI in-process; stdout and stderr are captured separately."""
    from typer.testing import CliRunner

    from advgrad.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_bad_input(result, message: str | None = None, *, after_loading: bool = False) -> str:
    """Exit code 2, one line on stderr starting with 'error:', no traceback, empty stdout.

    ``after_loading``: the error can only be found once model and data are open (a target class
    the model does not have...), so the one-line description of the inputs may precede it."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if after_loading:
        assert len(lines) == 2 and lines[0].startswith("model: "), result.stderr
        lines = lines[1:]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if message is not None:
        assert message in lines[0], lines[0]
    return lines[0]


def listing(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden temporary files included), relative names."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# Bad --model/--data/... values every command shares: (id, options from the `files` fixture,
# part of the expected message).
INPUT_ERRORS = [
    ("missing-model", lambda f: ["--model", f.folder / "nope.ts"], "no such file"),
    ("model-is-directory", lambda f: ["--model", f.folder], "directory"),
    ("missing-data", lambda f: ["--data", f.folder / "nope.pt"], "no such file"),
    ("data-is-directory", lambda f: ["--data", f.folder], "directory"),
    ("truncated-data", lambda f: ["--data", f.truncated_pt], "not a readable"),
    ("nan-data", lambda f: ["--data", f.nan_pt], "NaN"),
    ("normalised-data", lambda f: ["--data", f.normalised_npz], "normalised"),
    ("model-does-not-fit-labels", lambda f: ["--model", f.three_class_model, "--limit", "20"], "do not fit"),
    ("limit-zero", lambda f: ["--limit", "0"], "--limit"),
    ("batch-size-zero", lambda f: ["--batch-size", "0"], "--batch-size"),
    ("bad-device", lambda f: ["--device", "tpu"], "bad device"),
    ("bad-split", lambda f: ["--split", "valid"], "splits"),
]
if not torch.cuda.is_available():  # --device cuda is bad input only where there is no GPU
    INPUT_ERRORS.append(("cuda-on-cpu", lambda f: ["--device", "cuda"], "no CUDA"))


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- data


def cycled_source(base, n: int):
    """benchmarks/common.py's CycledSource (``base``'s samples repeated to ``n``, fetched batch by batch):
    the benchmarks' own helper, shared with tests/test_memory.py rather than copied."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "common.py"
    spec = importlib.util.spec_from_file_location("advgrad_benchmarks_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CycledSource(base, n)
