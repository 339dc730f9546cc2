"""Models that return more than a tensor of logits: which part advgrad attacks.

The rule, applied to what the model returns on the probe batch:

- a tensor: the logits themselves;
- a tuple or list: its first element that is a tensor (``(logits, features)``, auxiliary heads);
- a mapping: its ``logits`` key, else its only tensor value;
- any other object with a tensor attribute ``logits`` (Hugging Face style outputs): that.

Anything else is explained and refused. The rule found is reported by ``advgrad info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from advgrad.core.errors import ModelError
from advgrad.core.text import some_names


@dataclass(frozen=True)
class OutputRule:
    """How to take the logits from a model's output: ``kind`` tensor|index|key|attribute."""

    kind: str
    key: int | str | None = None

    def take(self, output):
        if self.kind == "tensor":
            return output
        if self.kind == "index":
            return output[self.key]
        if self.kind == "key":
            return output[self.key]
        return getattr(output, str(self.key))

    def describe(self) -> str:
        return {
            "tensor": "the output tensor",
            "index": f"element {self.key} of the returned tuple (its first tensor)",
            "key": f"the {self.key!r} entry of the returned mapping",
            "attribute": f"the .{self.key} attribute of the returned object",
        }[self.kind]


def logits_rule(output: object) -> OutputRule:
    """The rule that finds the logits in ``output`` (see the module docstring)."""
    if isinstance(output, Tensor):
        return OutputRule("tensor")
    if isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            if isinstance(item, Tensor):
                return OutputRule("index", i)
        raise ModelError(f"the model returned a {type(output).__name__} holding no tensor; expected N×classes logits")
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), Tensor):
            return OutputRule("key", "logits")
        tensors = [k for k, v in output.items() if isinstance(v, Tensor)]
        if len(tensors) == 1:
            return OutputRule("key", tensors[0])
        raise ModelError(
            f"the model returned a mapping with keys {some_names(output)} and no 'logits' entry; advgrad takes the 'logits' key "
            "or the only tensor: wrap the model so that it returns the logits"
        )
    if isinstance(getattr(output, "logits", None), Tensor):
        return OutputRule("attribute", "logits")
    raise ModelError(
        f"the model returned {type(output).__name__}; expected N×classes logits (a tensor, a tuple whose first "
        "tensor is the logits, a mapping with 'logits', or an object with .logits)"
    )


class LogitsOf(nn.Module):
    """A model that returns only the logits of another, taken by an :class:`OutputRule`."""

    def __init__(self, model: nn.Module, rule: OutputRule):
        super().__init__()
        self.model = model
        self.rule = rule

    def forward(self, x: Tensor) -> Tensor:
        return self.rule.take(self.model(x))
