"""How the model runs: numeric precision, torch.compile and memory format.

None of this changes what an attack does. The model is wrapped (:class:`RuntimeModel`) so that
the attacks, which only call ``model(x)`` and differentiate with respect to ``x``, need no change:

* ``--precision bf16|fp16`` runs the model's forward pass under :func:`torch.autocast` on the
  input's device type. Autocast computes matrix products and convolutions in the lower precision
  and keeps precision-sensitive operations (softmax, reductions, normalisation statistics) in
  float32; the wrapper returns float32 logits. The input stays float32, so the gradient
  ∇ₓJ that autograd hands back, the perturbation an attack builds from it and its projection
  onto the ε-ball and the box are all float32: lower precision changes the model's numbers
  (and so how sharp its gradients are: docs/scale.md), never the budget.
* ``--channels-last`` stores 4-D activations and convolution weights as N×H×W×C, the layout
  tensor cores and cuDNN prefer for convolutions; by default it is on for models with 2-D
  convolutions on CUDA and off elsewhere. The input is converted inside the wrapper, so the
  attack's tensors keep their layout.
* ``--compile`` hands the (wrapped) model to :func:`torch.compile` with a dynamic batch
  dimension (batches shrink as samples are fooled) and its parameters frozen for good (advgrad
  never needs weight gradients), so a run compiles a handful of graphs and not one per shape.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.core.errors import UsageError, first_line

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_ALIASES = {"float32": "fp32", "32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "16": "fp16"}


@dataclass(frozen=True)
class RuntimeOptions:
    """``precision`` fp32|bf16|fp16; ``compile``; ``channels_last`` (None: on for CUDA conv nets);
    ``deterministic``: deterministic kernels (:func:`use_deterministic_kernels`)."""

    precision: str = "fp32"
    compile: bool = False
    channels_last: bool | None = None
    deterministic: bool = False

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for full float32."""
        return PRECISIONS[parse_precision(self.precision)]


def parse_precision(text: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` (``float32``, ``bfloat16``, ``float16``, ``half`` accepted)."""
    name = str(text).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {text!r}: use fp32, bf16 or fp16")
    return name


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`UsageError` unless the model can run under autocast with ``precision`` on ``device``."""
    dtype = PRECISIONS[parse_precision(precision)]
    if dtype is None:
        return
    name = parse_precision(precision)
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise UsageError(
                f"{torch.cuda.get_device_name(device)} does not support bf16; use `precision` fp16 or fp32",
                params="precision",
            )
        return
    if not torch.amp.is_autocast_available(device.type):
        raise UsageError(
            f"autocast is not available on {device.type} in this torch; use `precision` fp32", params="precision"
        )
    try:
        with torch.autocast(device_type=device.type, dtype=dtype):
            torch.ones(1, 1, device=device) @ torch.ones(1, 1, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise UsageError(
            f"`precision` {name} is not supported on {device.type} by torch {torch.__version__} ({first_line(exc)}); "
            "use `precision` bf16 or fp32",
            params="precision",
        ) from None


def _float32(output: object) -> object:
    """Lower-precision floating tensors in ``output`` (a tensor, tuple, list or mapping) → float32."""
    if isinstance(output, Tensor):
        return output.float() if output.dtype in (torch.float16, torch.bfloat16) else output
    if isinstance(output, (tuple, list)):
        return type(output)(_float32(v) for v in output)
    if isinstance(output, Mapping):
        return {k: _float32(v) for k, v in output.items()}
    return output


class RuntimeModel(nn.Module):
    """A model run under autocast (``dtype``) and/or on channels-last inputs; outputs float32.

    The wrapper never changes ``x`` itself: the input's dtype and layout, and so the gradient
    autograd returns for it, stay those of the caller (float32 pixels)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> object:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is None:
            return self.model(x)
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            out = self.model(x)
        return _float32(out)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, channels_last={self.channels_last}"


def has_conv2d(model: nn.Module) -> bool:
    """Whether the model holds 2-D convolution weights (4-D parameters): the case channels-last helps."""
    return any(p.dim() == 4 for p in model.parameters())


def compile_unavailable(device: torch.device) -> str | None:
    """Why :func:`torch.compile` cannot run here (None when it can): no dynamo for this Python or
    platform, no C++ compiler for CPU code, no Triton for GPU code."""
    try:
        import torch._dynamo as dynamo
    except Exception as exc:  # an import failure is the answer, whatever it is
        return f"torch.compile cannot be imported ({type(exc).__name__}: {exc})"
    if not dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version or platform"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "torch.compile needs Triton for CUDA code, and it is not installed"
        return None
    import os

    if not (os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "c++", "clang++"))):
        return "torch.compile needs a C++ compiler for CPU code (g++ or clang++; or set CXX), and none was found"
    return None


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile's tracer or code generator (not from the model)."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor"))


def compile_failed(exc: BaseException) -> UsageError:
    return UsageError(
        f"torch.compile failed on this model ({type(exc).__name__}: {first_line(exc)}); run again without `compile`",
        params="compile",
    )


CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for reproducible matrix products (CUDA ≥ 10.2)


def use_deterministic_kernels() -> str:
    """Make the process's GPU kernels reproducible: ``torch.use_deterministic_algorithms`` (warning,
    not failing, where an operation has no deterministic kernel, e.g. CUDA's bincount of a few
    integer counts, which are exact anyway), cuDNN without autotuning, and
    ``CUBLAS_WORKSPACE_CONFIG`` (unless set already; cuBLAS reads it when it starts). On a CPU the
    kernels are deterministic already: this changes nothing there. Returns the note for the run."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return "deterministic kernels"


def prepare_model(
    model: nn.Module, options: RuntimeOptions, device: torch.device, sample: Tensor
) -> tuple[nn.Module, list[str]]:
    """The model as ``options`` ask it to run on ``device``, and a note for each choice made.

    ``sample`` (a batch of inputs) warms a compiled model up — one forward pass and one input
    gradient, with frozen parameters as the attacks run it — so that a model torch.compile cannot
    handle fails here, with a message, and not in the middle of the run.
    """
    check_precision(options.precision, device)
    notes: list[str] = [use_deterministic_kernels()] if options.deterministic else []
    dtype = options.dtype
    channels_last = options.channels_last
    if channels_last is None:
        channels_last = device.type == "cuda" and has_conv2d(model)
    if channels_last:
        try:
            model = model.to(memory_format=torch.channels_last)
            notes.append("channels-last")
        except (RuntimeError, TypeError) as exc:  # a loaded module that cannot convert its weights
            if options.channels_last:
                raise UsageError(
                    f"this model cannot be converted to channels-last ({exc}); drop `channels_last`",
                    params="channels_last",
                ) from None
            channels_last = False
    if dtype is not None:
        notes.append(f"{parse_precision(options.precision)} autocast")
    if dtype is not None or channels_last:
        model = RuntimeModel(model, dtype, channels_last)
    if options.compile:
        reason = compile_unavailable(device)
        if reason is not None:
            raise UsageError(f"`compile`: {reason}; run without `compile`", params="compile")
        if device.type == "cpu":  # a warning torch logs on machines without CUDA, not ours to show
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        # Every guard that differs between calls costs a compile, and after 8 torch falls back to
        # eager code. advgrad never needs weight gradients, so the parameters are frozen for good
        # (the probe would otherwise run them unfrozen), and the batch dimension is dynamic from
        # the start: what remains is grad on/off × batch sizes 1, 2–15 and 16+ (conv heuristics).
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model = torch.compile(model, dynamic=True)
        _warm_up(model, sample)
        notes.append("compiled")
    return model, notes


def _warm_up(model: nn.Module, x: Tensor) -> None:
    """One forward pass and one input gradient with the parameters frozen, as the attacks run the
    model (another ``requires_grad`` state would compile another graph)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.no_grad():
            model(x)
        xv = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(xv)
            if isinstance(out, Tensor) and out.requires_grad:
                torch.autograd.grad(out.float().sum(), xv)
    except Exception as exc:
        if is_compile_error(exc):
            raise compile_failed(exc) from None
        # the model's own failure: the probe that follows runs it again and words it
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
