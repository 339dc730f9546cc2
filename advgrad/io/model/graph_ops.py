"""Which operators a model graph from a file may call: an allow-list of pure tensor computations.

An exported graph (``torch.export``) or a TorchScript graph names the operators it calls. Most
are arithmetic on tensors, but some touch the world outside them: ``aten.from_file(path,
shared=True)`` maps a file into a tensor, and an in-place fill then writes to that file;
``prim::Print`` writes to stdout. So advgrad runs a graph from a file only when every operator
it calls is on the list below — operators known to compute on tensors (and on the sizes and
scalars around them) and nothing else. Anything else is refused, named, unless the user passes
``--unsafe-pickle``. The list is an allow-list on purpose: an operator torch adds tomorrow is
refused until someone has looked at it.

An in-place variant (``relu_``) and a copying variant of a view (``view_copy``) are allowed
when the operator they vary is; a name on the list says nothing about namespaces other than
``aten`` (ExportedProgram) and ``aten``/``prim`` (TorchScript).
"""

from __future__ import annotations

import math
import operator
from pathlib import Path

import torch

from advgrad.core.text import some_names

# ATen operators (overload packet names), by what they do. Keep each group sorted.
_ARITHMETIC = """
    abs absolute acos acosh add addcdiv addcmul asin asinh atan atan2 atanh bitwise_and bitwise_left_shift
    bitwise_not bitwise_or bitwise_right_shift bitwise_xor ceil clamp clamp_max clamp_min clip copysign cos
    cosh deg2rad digamma div divide eq erf erfc erfinv exp exp2 expm1 float_power floor floor_divide fmax
    fmin fmod frac ge gt heaviside hypot isfinite isinf isnan isneginf isposinf le lerp lgamma log log10
    log1p log2 logaddexp logaddexp2 logical_and logical_not logical_or logical_xor logit lt maximum minimum
    mul multiply nan_to_num ne neg negative pow rad2deg reciprocal remainder round rsqrt rsub sgn sign
    signbit sin sinc sinh sqrt square sub subtract tan tanh true_divide trunc where xlogy
"""
_ACTIVATIONS = """
    celu elu gelu glu hardshrink hardsigmoid hardswish hardtanh leaky_relu log_sigmoid log_sigmoid_forward
    mish prelu _prelu_kernel relu relu6 rrelu selu sigmoid silu softplus softshrink tanhshrink threshold
"""
_SOFTMAX = "_log_softmax _safe_softmax _softmax log_softmax softmax"
_LINEAR_ALGEBRA = """
    addbmm addmm addmv baddbmm bmm dot einsum inner linear matmul mm mv outer t tensordot vdot
"""
_CONVOLUTION = """
    _convolution conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d convolution
"""
_POOLING = """
    _adaptive_avg_pool2d _adaptive_avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
    adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d avg_pool1d avg_pool2d avg_pool3d
    max_pool1d max_pool1d_with_indices max_pool2d max_pool2d_with_indices max_pool3d max_pool3d_with_indices
"""
_NORMALISATION = """
    _batch_norm_with_update _batch_norm_no_update _native_batch_norm_legit _native_batch_norm_legit_functional
    _native_batch_norm_legit_no_training batch_norm group_norm instance_norm layer_norm linalg_vector_norm
    native_batch_norm native_group_norm native_layer_norm norm rms_norm _fused_rms_norm
"""
_REDUCTIONS = """
    all amax amin aminmax any argmax argmin argsort count_nonzero cummax cummin cumprod cumsum kthvalue
    logcumsumexp logsumexp max mean median min nanmean nansum prod sort std std_mean sum topk var var_mean
"""
_SHAPES = """
    _reshape_alias _unsafe_view alias as_strided broadcast_tensors broadcast_to channel_shuffle chunk
    clone col2im constant_pad_nd contiguous detach diag_embed diagonal expand expand_as flatten flip
    im2col movedim narrow native_channel_shuffle pad permute pixel_shuffle pixel_unshuffle
    reflection_pad1d reflection_pad2d reflection_pad3d repeat repeat_interleave replication_pad1d
    replication_pad2d replication_pad3d reshape roll select slice split split_with_sizes squeeze swapaxes
    swapdims tensor_split tile transpose tril triu unbind unflatten unfold unsafe_chunk unsafe_split
    unsqueeze view view_as
"""
_RESAMPLING = """
    _upsample_bicubic2d_aa _upsample_bilinear2d_aa _upsample_nearest_exact1d _upsample_nearest_exact2d
    _upsample_nearest_exact3d affine_grid_generator grid_sampler grid_sampler_2d grid_sampler_3d
    upsample_bicubic2d upsample_bilinear2d upsample_linear1d upsample_nearest1d upsample_nearest2d
    upsample_nearest3d upsample_trilinear3d
"""
_INDEXING = """
    embedding gather index index_add index_copy index_fill index_put index_select masked_fill
    masked_scatter masked_select nonzero one_hot scatter scatter_add scatter_reduce take take_along_dim
"""
_JOINING = "cat concat concatenate hstack stack vstack"
_CREATION = """
    arange empty empty_like empty_strided eye fill full full_like lift_fresh lift_fresh_copy linspace
    new_empty new_empty_strided new_full new_ones new_zeros ones ones_like scalar_tensor zero zeros
    zeros_like
"""
_CONVERSION = "_to_copy copy to type_as"
# Random numbers: they change only torch's generator state (the probe warns of noisy outputs).
_RANDOM = """
    alpha_dropout bernoulli dropout feature_alpha_dropout feature_dropout native_dropout normal rand
    rand_like randint randint_like randn randn_like uniform
"""
_ATTENTION = """
    _native_multi_head_attention _scaled_dot_product_attention_math _scaled_dot_product_efficient_attention
    _scaled_dot_product_flash_attention _scaled_dot_product_flash_attention_for_cpu
    _transform_bias_rescale_qkv scaled_dot_product_attention
"""
# Sizes, scalars and the checks torch.export inserts.
_SYMBOLIC = """
    _assert_async _assert_scalar _assert_tensor_metadata _local_scalar_dense item sym_constrain_range
    sym_constrain_range_for_size sym_is_contiguous sym_numel sym_size sym_storage_offset sym_stride
"""
ATEN_OPS: frozenset[str] = frozenset(
    " ".join(
        (
            _ARITHMETIC,
            _ACTIVATIONS,
            _SOFTMAX,
            _LINEAR_ALGEBRA,
            _CONVOLUTION,
            _POOLING,
            _NORMALISATION,
            _REDUCTIONS,
            _SHAPES,
            _RESAMPLING,
            _INDEXING,
            _JOINING,
            _CREATION,
            _CONVERSION,
            _RANDOM,
            _ATTENTION,
            _SYMBOLIC,
        )
    ).split()
)

# TorchScript's own operators on Python values (ints, lists, strings) and its control flow.
TORCHSCRIPT_ATEN_EXTRA: frozenset[str] = frozenset(
    """
    Bool Complex ComplexImplicit Float FloatImplicit Int IntImplicit ScalarImplicit __and__ __contains__
    __derive_index __getitem__ __interpolate __is__ __isnot__ __lshift__ __not__ __or__ __range_length
    __round_to_zero_floordiv __rshift__ __upsample __upsample_bilinear __xor__ _set_item append dim
    extend format get insert is_floating_point items keys len list numel pop size str values warn
    dict device floordiv layout
    is_autocast_cpu_enabled is_autocast_enabled is_grad_enabled is_inference_mode_enabled
""".split()
)
TORCHSCRIPT_PRIM: frozenset[str] = frozenset(
    """
    AutogradZero BroadcastSizes ConstantChunk Constant CreateObject DictConstruct EnumName EnumValue
    GetAttr If ListConstruct ListUnpack Loop NumToTensor RaiseException SetAttr TupleConstruct TupleIndex
    TupleUnpack Uninitialized abs data device dtype grad is_cpu is_cuda is_meta is_mkldnn is_mps is_nested
    is_quantized is_sparse is_sparse_csr is_xpu isinstance layout max min requires_grad shape type
    unchecked_cast unchecked_unwrap_optional
""".split()
)

# Higher-order operators torch.export emits around subgraphs (which are checked in turn).
HIGHER_ORDER_OPS: frozenset[str] = frozenset(
    "cond map_impl scan while_loop wrap_with_autocast wrap_with_set_grad_enabled".split()
)
# Plain Python callables export emits for sizes and tuple outputs.
PYTHON_CALLS: frozenset = frozenset(
    {
        operator.getitem,
        operator.add,
        operator.sub,
        operator.mul,
        operator.truediv,
        operator.floordiv,
        operator.mod,
        operator.pow,
        operator.neg,
        operator.pos,
        operator.abs,
        operator.eq,
        operator.ne,
        operator.lt,
        operator.le,
        operator.gt,
        operator.ge,
        operator.and_,
        operator.or_,
        operator.xor,
        operator.not_,
        operator.invert,
        math.floor,
        math.ceil,
        math.trunc,
        math.sqrt,
        torch.sym_int,
        torch.sym_float,
        torch.sym_max,
        torch.sym_min,
        torch.sym_not,
        torch.sym_ite,
        torch.sym_sum,
        torch._sym_sqrt,
    }
)


def _allowed_name(name: str, allowed: frozenset[str]) -> bool:
    """``name`` or the operator it is an in-place (``relu_``) or copying (``view_copy``) variant of."""
    if name in allowed:
        return True
    if name.endswith("_") and not name.endswith("__") and name[:-1] in allowed:
        return True
    return name.endswith("_copy") and name[: -len("_copy")] in allowed


def fx_target_name(target) -> str:
    """How a graph node's callee is named in messages: ``aten.from_file.default``, ``posix.system``."""
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._opname}.{target._overloadname}"
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order.{target.name()}"
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    return f"{module}.{name}" if module else str(name)


def fx_call_allowed(target) -> bool:
    """Whether a ``call_function`` target is on the allow-list."""
    if isinstance(target, torch._ops.OpOverload):
        return target.namespace == "aten" and _allowed_name(target._opname, ATEN_OPS)
    if isinstance(target, torch._ops.HigherOrderOperator):
        return target.name() in HIGHER_ORDER_OPS
    try:
        return target in PYTHON_CALLS
    except TypeError:  # unhashable
        return False


def fx_disallowed(gm: torch.nn.Module) -> list[str]:
    """Calls in ``gm`` and every graph module under it that are not on the allow-list, by name.

    ``call_function`` nodes must name an allowed operator; ``call_module`` and ``call_method``
    are never allowed (an exported graph unlifted without guards has neither).
    """
    found: list[str] = []
    for module in gm.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            if node.op == "call_function" and not fx_call_allowed(node.target):
                found.append(fx_target_name(node.target))
            elif node.op in ("call_module", "call_method"):
                found.append(f"{node.op.removeprefix('call_')} {node.target}")
    return sorted(set(found))


def torchscript_kind_allowed(kind: str) -> bool:
    """Whether a TorchScript node kind (``aten::relu``, ``prim::If``) is on the allow-list."""
    namespace, _, name = kind.partition("::")
    if namespace == "aten":
        return _allowed_name(name, ATEN_OPS) or name in TORCHSCRIPT_ATEN_EXTRA
    if namespace == "prim":
        return name in TORCHSCRIPT_PRIM
    return False


def torchscript_disallowed(module: torch.nn.Module) -> list[str]:
    """Node kinds not on the allow-list in every method of ``module`` and its submodules.

    Each method's graph is taken with the calls it makes inlined, and nested blocks (``if``,
    loops) are walked, so a call hidden in a helper method or a branch is found.
    """
    found: set[str] = set()

    def walk(block) -> None:
        for node in block.nodes():
            if not torchscript_kind_allowed(node.kind()):
                found.add(node.kind())
            for inner in node.blocks():
                walk(inner)

    for sub in module.modules():
        c = getattr(sub, "_c", None)
        if c is None:
            continue
        for name in c._method_names():
            walk(c._get_method(name).inlined_graph)
    return sorted(found)


def operator_refusal(path: Path | str, what: str, names: list[str]) -> str:
    """The refusal for a graph calling operators that are not on the allow-list (it names the
    ```unsafe_pickle``` parameter: raise it with ``params="unsafe_pickle"``)."""
    return (
        f"{path}: the {what} calls {some_names(names, 4)}, not on advgrad's list of pure tensor operators "
        "(such operators can touch files or the process); advgrad runs it only with `unsafe_pickle` "
        "(only for files you trust)"
    )
