"""The user's model, with its failures named as its own.

A model (above all one built by ``package.module:callable``, whose code runs in our process) can
fail after the probe: raise on some batch, call ``sys.exit``, or change its input tensor in place.
Inside an attack such a failure would look like a bug of advgrad (exit 3) or, for ``sys.exit(0)``,
end the run with exit 0 and no report. :class:`GuardedModel` sits around the loaded model and turns
each of these into a :class:`ModelFailure` that names the model and the exception's first line,
so the run ends with exit 2. KeyboardInterrupt, running out of memory and torch.compile's errors
pass through unchanged: they have their own handling.
"""

from __future__ import annotations

from torch import Tensor, nn

from advgrad.core.errors import AdvgradError, InternalError, ModelError, first_line
from advgrad.execution.runtime import is_compile_error


class ModelFailure(ModelError):
    """The model's own code failed; ``cause`` is what it raised."""

    def __init__(self, message: str, cause: BaseException):
        super().__init__(message)
        self.cause = cause


def _passes_through(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or is_compile_error(exc)


def _version(x: object) -> int | None:
    """The tensor's version counter (bumped by every in-place change); None where there is none."""
    try:
        return x._version if isinstance(x, Tensor) else None  # type: ignore[union-attr]
    except RuntimeError:  # inference-mode tensors have no version counter
        return None


class GuardedModel(nn.Module):
    """Runs ``model`` and names its failures (see the module docstring); ``name`` is how the user
    gave the model (``--model``)."""

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.model = model
        self.name = name

    def forward(self, x: Tensor):
        before = _version(x)
        try:
            out = self.model(x)
        except (AdvgradError, InternalError):  # advgrad's own: not the model's failure
            raise
        except SystemExit as exc:
            raise ModelFailure(
                f"the model {self.name} called sys.exit({exc.code!r}) while running on a batch of "
                f"{_shape(x)}; a model must return logits, not end the process",
                exc,
            ) from exc
        except Exception as exc:
            if _passes_through(exc):
                raise
            if "in-place operation" in str(exc):  # autograd refuses to change an input that needs a gradient
                raise ModelError(self._in_place()) from exc
            raise ModelFailure(
                f"the model {self.name} failed on a batch of {_shape(x)}: {type(exc).__name__}: {first_line(exc)}", exc
            ) from exc
        if before is not None and _version(x) != before:
            raise ModelError(self._in_place())
        return out

    def _in_place(self) -> str:
        return (
            f"the model {self.name} changes its input tensor in place (e.g. x.mul_()); attacks pass the same "
            "tensor on, so the model must leave it as it is: use out-of-place operations or clone the input "
            "first (x = x.clone())"
        )


def _shape(x: object) -> str:
    return "×".join(map(str, x.shape)) + " inputs" if isinstance(x, Tensor) else type(x).__name__
