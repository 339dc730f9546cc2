"""The model as a graph of bounded operators, read from ``torch.export``.

Nodes whose inputs are all constants (weights, buffers, casts and transposes of them) are
evaluated once; every other node becomes a :class:`BNode` holding one :mod:`advgrad.bounds.ops`
operator. A rule per ATen operator (:data:`RULES`) builds that operator from the node's arguments.
"""

from __future__ import annotations

import contextlib
import math
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from advgrad.bounds import ops
from advgrad.core.errors import ModelError

aten = torch.ops.aten


class UnsupportedOperation(ModelError):
    """The model uses an operator that the bounds have no rule for (one line: the operator and its node)."""


@dataclass(frozen=True)
class Var:
    """A placeholder for a bounded (input-dependent) tensor among a node's arguments."""

    name: str


class _Batch:
    """The batch size (``sym_size(x, 0)``): shapes are taken from the node's metadata instead."""


BATCH = _Batch()


@dataclass
class BNode:
    name: str
    op: ops.BoundOp
    inputs: list[str]
    shape: tuple[int, ...]
    where: str = ""


@dataclass
class BoundGraph:
    input: str
    input_shape: tuple[int, ...]
    nodes: list[BNode]
    output: str
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def consumers(self, name: str) -> list[BNode]:
        return [n for n in self.nodes if name in n.inputs]


@dataclass
class _Ctx:
    node: torch.fx.Node
    args: tuple
    kwargs: dict
    shapes: dict[str, tuple[int, ...]]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return _sample_shape(self.node)

    def vars(self) -> list[Var]:
        found: list[Var] = []
        torch.fx.node.map_aggregate((self.args, self.kwargs), lambda a: found.append(a) if isinstance(a, Var) else a)
        return found

    def in_shape(self, v: Var) -> tuple[int, ...]:
        return self.shapes[v.name]

    def arg(self, i: int, name: str, default=None):
        if len(self.args) > i:
            return self.args[i]
        return self.kwargs.get(name, default)

    def unsupported(self, why: str = "") -> UnsupportedOperation:
        return UnsupportedOperation(
            f"the bounds cannot handle {_op_name(self.node)} at node {self.node.name!r}{_where(self.node)}"
            + (f": {why}" if why else "")
        )


def _op_name(node: torch.fx.Node) -> str:
    t = node.target
    return f"aten.{t.__name__}" if hasattr(t, "_schema") else getattr(t, "__name__", str(t))


def _where(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, kind = list(stack.values())[-1]
    kind_name = kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
    return f" (module {path or '<root>'}, {kind_name})" if path else f" ({kind_name})"


def _sample_shape(node: torch.fx.Node) -> tuple[int, ...]:
    val = node.meta.get("val")
    if not isinstance(val, Tensor):
        raise UnsupportedOperation(f"node {node.name!r}{_where(node)} does not produce one tensor")
    try:
        return tuple(int(d) for d in val.shape[1:])
    except (TypeError, ValueError):
        raise UnsupportedOperation(f"node {node.name!r}{_where(node)} has a non-batch dimension that varies") from None


RULES: dict[object, Callable[[_Ctx], tuple[ops.BoundOp, list[Var]]]] = {}


def rule(*targets):
    def register(fn):
        for t in targets:
            RULES[t] = fn
        return fn

    return register


def _const(ctx: _Ctx, value, what: str) -> Tensor | None:
    if isinstance(value, Var):
        raise ctx.unsupported(f"{what} must be a constant, not computed from the input")
    return value


def _one_var(ctx: _Ctx) -> Var:
    found = ctx.vars()
    if len(found) != 1:
        raise ctx.unsupported("needs exactly one input-dependent argument")
    return found[0]


@rule(aten.linear.default)
def _linear(ctx):
    x = ctx.args[0]
    w = _const(ctx, ctx.arg(1, "weight"), "the weight")
    b = _const(ctx, ctx.arg(2, "bias"), "the bias")
    if not isinstance(x, Var):
        raise ctx.unsupported("the input must be the bounded tensor")
    return ops.Linear(ctx.in_shape(x), w, b), [x]


@rule(aten.addmm.default)
def _addmm(ctx):
    b, x, wt = ctx.args[:3]
    if ctx.kwargs.get("beta", 1) != 1 or ctx.kwargs.get("alpha", 1) != 1 or not isinstance(x, Var):
        raise ctx.unsupported("only bias + input @ constant weight")
    return ops.Linear(ctx.in_shape(x), _const(ctx, wt, "the weight").t(), _const(ctx, b, "the bias")), [x]


@rule(aten.mm.default, aten.matmul.default)
def _mm(ctx):
    x, w = ctx.args[:2]
    w = _const(ctx, w, "the weight")
    if not isinstance(x, Var) or w.dim() != 2:
        raise ctx.unsupported("only input @ a constant matrix")
    return ops.Linear(ctx.in_shape(x), w.t(), None), [x]


@rule(aten.conv2d.default, aten.convolution.default)
def _conv(ctx):
    x = ctx.args[0]
    if not isinstance(x, Var) or len(ctx.in_shape(x)) != 3:
        raise ctx.unsupported("only 2-D convolutions of the bounded tensor")
    w = _const(ctx, ctx.arg(1, "weight"), "the kernel")
    b = _const(ctx, ctx.arg(2, "bias"), "the bias")
    if ctx.node.target is aten.convolution.default:
        stride, padding, dilation, transposed, _, groups = ctx.args[3:9]
        if transposed:
            raise ctx.unsupported("transposed convolution")
    else:
        stride, padding = ctx.arg(3, "stride", 1), ctx.arg(4, "padding", 0)
        dilation, groups = ctx.arg(5, "dilation", 1), ctx.arg(6, "groups", 1)
    if isinstance(padding, str):
        raise ctx.unsupported(f"padding={padding!r}")
    return ops.Conv2d(ctx.in_shape(x), ctx.out_shape, w, b, stride, padding, dilation, groups), [x]


@rule(aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default)
def _batch_norm(ctx):
    x, w, b, mean, var = ctx.args[:5]
    if ctx.node.target is aten.batch_norm.default:
        training, eps = ctx.arg(5, "training"), ctx.arg(7, "eps", 1e-5)
        if training:
            raise ctx.unsupported("batch norm in training mode (put the model in eval mode)")
    else:
        eps = ctx.arg(6, "eps", 1e-5)
    if not isinstance(x, Var) or any(isinstance(v, Var) for v in (w, b, mean, var)):
        raise ctx.unsupported("only batch norm with constant statistics")
    shape = ctx.in_shape(x)
    scale = 1 / torch.sqrt(var + eps)
    if w is not None:
        scale = scale * w
    shift = -mean * scale + (b if b is not None else 0)
    view = (shape[0],) + (1,) * (len(shape) - 1)
    return ops.Scale(shape, scale.reshape(view), shift.reshape(view)), [x]


@rule(aten.relu.default, aten.relu_.default)
def _relu(ctx):
    return ops.LeakyReLU(0.0), [_one_var(ctx)]


@rule(aten.leaky_relu.default, aten.leaky_relu_.default)
def _leaky(ctx):
    slope = ctx.arg(1, "negative_slope", 0.01)
    if slope < 0:
        raise ctx.unsupported("a negative slope makes the activation non-monotone")
    return ops.LeakyReLU(slope), [_one_var(ctx)]


@rule(aten.hardtanh.default, aten.hardtanh_.default, aten.clamp.default)
def _clamp(ctx):
    x = _one_var(ctx)
    if ctx.node.target is aten.clamp.default:
        low, high = ctx.arg(1, "min"), ctx.arg(2, "max")
    else:
        low, high = ctx.arg(1, "min_val", -1.0), ctx.arg(2, "max_val", 1.0)
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        raise ctx.unsupported("only constant numbers as limits")
    low = -math.inf if low is None else float(low)
    high = math.inf if high is None else float(high)
    if not low <= high:
        raise ctx.unsupported("min above max")
    return ops.Clamp(low, high), [x]


@rule(aten.sigmoid.default)
def _sigmoid(ctx):
    return ops.sigmoid_op(), [_one_var(ctx)]


@rule(aten.tanh.default)
def _tanh(ctx):
    return ops.tanh_op(), [_one_var(ctx)]


@rule(
    aten.flatten.using_ints,
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten.unsqueeze.default,
    aten.squeeze.dim,
)
def _reshape(ctx):
    x = _one_var(ctx)
    val_in, val_out = ctx.node.args[0].meta["val"], ctx.node.meta["val"]
    if val_out.dim() == 0 or str(val_in.shape[0]) != str(val_out.shape[0]):
        raise ctx.unsupported("the reshape mixes the batch dimension with others")
    return ops.Reshape(ctx.in_shape(x), ctx.out_shape), [x]


@rule(
    aten.dropout.default,
    aten.clone.default,
    aten.detach.default,
    aten.alias.default,
    aten.contiguous.default,
    aten.to.dtype,
    aten.lift_fresh_copy.default,
)
def _identity(ctx):
    x = _one_var(ctx)
    if ctx.node.target is aten.dropout.default and ctx.arg(2, "train", False):
        raise ctx.unsupported("dropout in training mode (put the model in eval mode)")
    if ctx.out_shape != ctx.in_shape(x) or ctx.node.meta["val"].dtype != ctx.node.args[0].meta["val"].dtype:
        raise ctx.unsupported("changes the shape or dtype")
    return ops.Identity(ctx.in_shape(x)), [x]


def _by_call(ctx: _Ctx) -> Callable:
    """The node's own ATen call, with the bounded argument replaced (for maps linear in it)."""
    target, args, kwargs = ctx.node.target, ctx.args, ctx.kwargs

    def call(xs):
        it = iter(xs)
        a, k = torch.fx.node.map_aggregate((args, kwargs), lambda v: next(it) if isinstance(v, Var) else v)
        return target(*a, **k)

    return call


@rule(aten.avg_pool2d.default, aten.adaptive_avg_pool2d.default, aten._adaptive_avg_pool2d.default)
def _avg_pool(ctx):
    x = _one_var(ctx)
    if ctx.node.target is aten.avg_pool2d.default and ctx.arg(6, "divisor_override") is not None:
        raise ctx.unsupported("divisor_override")
    return ops.NonNegativeLinear([ctx.in_shape(x)], _by_call(ctx)), [x]


@rule(aten.mean.dim)
def _mean(ctx):
    x = _one_var(ctx)
    dims = ctx.arg(1, "dim")
    rank = len(ctx.in_shape(x)) + 1
    if dims is None or any(d % rank == 0 for d in dims):
        raise ctx.unsupported("a mean over the batch dimension")
    return ops.NonNegativeLinear([ctx.in_shape(x)], _by_call(ctx)), [x]


@rule(aten.cat.default)
def _cat(ctx):
    tensors = ctx.arg(0, "tensors")
    dim = ctx.arg(1, "dim", 0)
    rank = len(ctx.out_shape) + 1
    dim = dim % rank
    if dim == 0 or not all(isinstance(t, Var) for t in tensors):
        raise ctx.unsupported("only concatenation of bounded tensors along a non-batch dimension")
    return ops.Cat([ctx.in_shape(t) for t in tensors], dim), list(tensors)


@rule(aten.max_pool2d.default, aten.max_pool2d_with_indices.default)
def _max_pool(ctx):
    x = ctx.args[0]
    if not isinstance(x, Var) or len(ctx.in_shape(x)) != 3:
        raise ctx.unsupported("only 2-D max pooling of the bounded tensor")
    kernel = ctx.arg(1, "kernel_size")
    stride = ctx.arg(2, "stride", []) or kernel
    padding, dilation = ctx.arg(3, "padding", 0), ctx.arg(4, "dilation", 1)
    if ctx.arg(5, "ceil_mode", False):
        raise ctx.unsupported("ceil_mode=True")
    out = ctx.out_shape if ctx.node.target is aten.max_pool2d.default else _tuple_shape(ctx.node)
    return ops.MaxPool2d(ctx.in_shape(x), out, kernel, stride, padding, dilation), [x]


def _tuple_shape(node):
    return tuple(int(d) for d in node.meta["val"][0].shape[1:])


def _affine_two(ctx, sign_b: float):
    """a ± alpha·b with one or both of a, b bounded."""
    a, b = ctx.args[:2]
    alpha = ctx.kwargs.get("alpha", 1)
    if isinstance(a, Var) and isinstance(b, Var):
        return ops.Sum([ctx.in_shape(a), ctx.in_shape(b)], [1.0, sign_b * alpha], ctx.out_shape), [a, b]
    if isinstance(a, Var):
        shape = ctx.in_shape(a)
        op = ops.Scale(shape, 1.0, b * (sign_b * alpha))
        x = a
    else:
        shape = ctx.in_shape(b)
        op = ops.Scale(shape, sign_b * alpha, a)
        x = b
    if ctx.out_shape != shape:
        raise ctx.unsupported("the constant broadcasts the bounded tensor to a larger shape")
    return op, [x]


@rule(aten.add.Tensor, aten.add.Scalar, aten.add_.Tensor)
def _add(ctx):
    return _affine_two(ctx, 1.0)


@rule(aten.sub.Tensor, aten.sub.Scalar, aten.sub_.Tensor)
def _sub(ctx):
    return _affine_two(ctx, -1.0)


@rule(aten.mul.Tensor, aten.mul.Scalar, aten.mul_.Tensor)
def _mul(ctx):
    a, b = ctx.args[:2]
    if isinstance(a, Var) and isinstance(b, Var):
        raise ctx.unsupported("a product of two input-dependent tensors")
    x, c = (a, b) if isinstance(a, Var) else (b, a)
    if ctx.out_shape != ctx.in_shape(x):
        raise ctx.unsupported("the constant broadcasts the bounded tensor to a larger shape")
    return ops.Scale(ctx.in_shape(x), c, 0.0), [x]


@rule(aten.div.Tensor, aten.div.Scalar, aten.div_.Tensor)
def _div(ctx):
    a, b = ctx.args[:2]
    if isinstance(b, Var) or ctx.kwargs.get("rounding_mode") is not None:
        raise ctx.unsupported("only division of the bounded tensor by a constant")
    if ctx.out_shape != ctx.in_shape(a):
        raise ctx.unsupported("the constant broadcasts the bounded tensor to a larger shape")
    return ops.Scale(ctx.in_shape(a), 1 / b, 0.0), [a]


_MULTI_OUTPUT = {aten._native_batch_norm_legit_no_training.default, aten.max_pool2d_with_indices.default}


_IGNORED = {aten._assert_tensor_metadata.default, aten._assert_scalar.default}


def _leaves(tree) -> list:
    out: list = []
    torch.fx.node.map_aggregate(tree, lambda a: out.append(a) or a)
    return out


def export_model(model: nn.Module, example: Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` with a dynamic batch dimension; the model is exported in eval mode and
    every module's mode is restored afterwards. TorchScript (the model itself or any submodule, e.g.
    inside advgrad's normalisation wrapper) is first converted to an exported graph with torch's
    TorchScript converter, where it converts; the model is left as it was."""
    if isinstance(model, torch.export.ExportedProgram):
        return model
    modes = {m: m.training for m in model.modules()}
    one = (
        example[:1]
        if len(example)
        else torch.zeros((1, *example.shape[1:]), dtype=example.dtype, device=example.device)
    )
    batch = one.expand(2, *example.shape[1:]).contiguous()
    try:
        model.eval()
        with _without_torchscript(model, batch) as traceable:
            return torch.export.export(
                traceable, (batch,), dynamic_shapes=({0: torch.export.Dim("batch")},), strict=False
            )
    except UnsupportedOperation:
        raise
    except Exception as exc:  # noqa: BLE001 -- torch.export raises many kinds; one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedOperation(f"the bounds cannot trace the model with torch.export: {first}") from None
    finally:
        for m, training in modes.items():
            m.training = training  # the attribute: an exported graph module refuses train()


class _Recorder(nn.Module):
    """Stands in for a submodule for one call, to learn the inputs it is called with."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.seen: tuple | None = None

    def forward(self, *args):
        self.seen = args
        return self.inner(*args)


def _convert_script(module: nn.Module, args: tuple) -> nn.Module:
    """A TorchScript module as an exported graph module (torch's TorchScript converter)."""
    from torch._export.converter import TS2EPConverter

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the converter's notes on specialised shapes and deprecations
            return TS2EPConverter(module, args).convert().module()
    except Exception as exc:  # noqa: BLE001 -- the converter raises many kinds; one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedOperation(f"the bounds cannot convert the TorchScript model to a graph: {first}") from None


@contextlib.contextmanager
def _without_torchscript(model: nn.Module, batch: Tensor):
    """``model`` with its outermost TorchScript submodules replaced, inside the block, by their
    conversions to exported graphs (found by one forward pass that records their inputs); the model
    itself when it holds no TorchScript. The original submodules are put back afterwards."""
    if isinstance(model, torch.jit.ScriptModule):
        with torch.no_grad():
            yield _convert_script(model, (batch,))
        return
    outer: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in model.modules():
        if isinstance(parent, torch.jit.ScriptModule):
            continue
        for name, child in parent.named_children():
            if isinstance(child, torch.jit.ScriptModule):
                outer.append((parent, name, child))
    if not outer:
        yield model
        return
    try:
        recorders = [_Recorder(child) for _, _, child in outer]
        for (parent, name, _), recorder in zip(outer, recorders, strict=True):
            setattr(parent, name, recorder)
        with torch.no_grad():
            model(batch)
        for (parent, name, child), recorder in zip(outer, recorders, strict=True):
            if recorder.seen is None:
                raise UnsupportedOperation(
                    f"the bounds cannot convert TorchScript submodule {name!r}: it is never called"
                )
            setattr(parent, name, _convert_script(child, recorder.seen))
        yield model
    finally:
        for parent, name, child in outer:
            setattr(parent, name, child)


def build_graph(
    model: nn.Module | torch.export.ExportedProgram, example: Tensor, values: dict[str, Tensor] | None = None
) -> BoundGraph:
    """The bounded-operator graph of ``model`` for inputs shaped like ``example`` (N, ...).

    Weights and buffers are detached copies of the program's own, unless ``values`` maps their
    state-dict names to tensors: then those are used as they are (the live parameters of the
    model being trained), and the constants computed from them keep their autograd graph, so
    bounds computed on the graph are differentiable with respect to the weights. Such a graph is
    valid for one optimisation step; build it again after the weights change (the export, the
    costly part, is done once: pass the :class:`torch.export.ExportedProgram`)."""
    ep = export_model(model, example)
    sig = ep.graph_signature
    lifted = {**sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
    device, dtype = example.device, example.dtype
    consts: dict[str, object] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    alias: dict[str, str] = {}
    nodes: list[BNode] = []
    user_input, output = None, None

    def resolve(a):
        if isinstance(a, torch.fx.Node):
            if a.name in consts:
                return consts[a.name]
            return Var(alias.get(a.name, a.name))
        return a

    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name in lifted:
                target = lifted[node.name]
                if values is not None and target in values:
                    value = values[target].to(device)
                else:
                    value = ep.state_dict[target] if target in ep.state_dict else ep.constants[target]
                    value = value.detach().to(device)
                consts[node.name] = value.to(dtype) if value.is_floating_point() else value
            elif user_input is None:
                user_input = node.name
                shapes[node.name] = _sample_shape(node)
            else:
                raise UnsupportedOperation("the bounds need a model with exactly one input tensor")
        elif node.op == "call_function":
            args, kwargs = torch.fx.node.map_aggregate((node.args, node.kwargs), resolve)
            found = [a for a in _leaves((args, kwargs)) if isinstance(a, Var)]
            if node.target is aten.sym_size.int:
                consts[node.name] = BATCH
            elif node.target is operator.getitem and found:
                source = node.args[0]
                if source.target in _MULTI_OUTPUT and node.args[1] == 0:
                    alias[node.name] = alias.get(source.name, source.name)
                else:
                    raise UnsupportedOperation(
                        f"the bounds cannot use output {node.args[1]} of node {source.name!r}{_where(node)}"
                    )
            elif node.target in _IGNORED:
                consts[node.name] = None
            elif not found:
                if any(a is BATCH for a in _leaves((args, kwargs))):
                    consts[node.name] = BATCH
                else:
                    with torch.set_grad_enabled(values is not None and torch.is_grad_enabled()):
                        consts[node.name] = node.target(*args, **kwargs)
            else:
                build = RULES.get(node.target)
                ctx = _Ctx(node, args, kwargs, shapes)
                if build is None:
                    raise ctx.unsupported("no bound propagation rule for this operator")
                op, inputs = build(ctx)
                shape = _tuple_shape(node) if node.target in _MULTI_OUTPUT else ctx.out_shape
                shapes[node.name] = shape
                nodes.append(BNode(node.name, op, [v.name for v in inputs], shape, _where(node)))
        elif node.op == "output":
            outs = node.args[0]
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            if len(outs) != 1 or not isinstance(outs[0], torch.fx.Node):
                raise UnsupportedOperation("the bounds need a model with exactly one output tensor")
            out = resolve(outs[0])
            if not isinstance(out, Var):
                raise UnsupportedOperation("the model's output does not depend on its input")
            output = out.name
        else:
            raise UnsupportedOperation(f"the bounds cannot handle graph node {node.name!r} of kind {node.op}")
    if user_input is None or output is None:
        raise UnsupportedOperation("the exported model has no input or no output")
    if len(shapes[output]) != 1:
        raise UnsupportedOperation(f"the model's output must be (N, classes) logits, not (N, {shapes[output]})")
    return BoundGraph(user_input, shapes[user_input], nodes, output, shapes)
