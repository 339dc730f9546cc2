"""CROWN for the pre-activations of a convolution, in patches.

A neuron (c, p, q) of a convolution depends on a window of its input only, and through a chain of
convolutions, activations and pools back to the network's input, on a window of the input that
grows with each layer (its receptive field). Held densely, its linear bound carries a number for
every input of every layer, almost all of them zero; :func:`conv_chain_bounds` holds it as that
window alone (a *patch*, as in Xu et al. 2020, "Automatic Perturbation Analysis for Scalable
Certified Robustness and Beyond"), for every neuron of the layer at once.

Geometry: the rows of the neurons at output positions (p, q) live, at some layer of the chain, on
the K×K window whose top-left corner is (p·S − P, q·S − P) in that layer's coordinates. The
refined convolution's own output has K = 1, S = 1, P = 0; stepping back through a convolution
with kernel k, stride s, padding p and dilation d gives K' = (K − 1)·s + d·(k − 1) + 1,
S' = S·s, P' = P·s + p. Window entries outside a layer's map are that layer's zero padding,
constants that the rows must not weigh: their coefficients are set to 0.

Only chains of single-input operators qualify: convolutions, elementwise activations (ReLU-like,
clamp, sigmoid, tanh), max-pooling, per-channel or scalar affine scaling (eval-mode batch norm,
normalisation) and identities; anything else (average pooling, additions, concatenation, reshapes)
keeps the dense rows of :mod:`advgrad.bounds.propagate`, which also chooses between the two by
cost. The bounds are the same as the dense ones, up to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advgrad.bounds import ops
from advgrad.bounds.graph import BoundGraph

Interval = ops.Interval

#: largest patch-to-patch matrix (entries) that a convolution's backward step uses as one product
MATRIX_LIMIT = 2**22


def conv_chain(graph: BoundGraph, name: str) -> list | None:
    """The nodes from ``name`` (a convolution, or a batch norm or other per-channel scaling of one)
    back to the graph's input, ``name`` first, or None when some operator on the way does not
    qualify for patches."""
    nodes = {n.name: n for n in graph.nodes}
    chain = []
    current = nodes.get(name)
    if current is None or not (isinstance(current.op, ops.Conv2d | ops.Scale) and len(graph.shapes[name]) == 3):
        return None
    if not _qualifies(current.op, graph.shapes[name], graph.shapes[current.inputs[0]]):
        return None
    while True:
        chain.append(current)
        if len(current.inputs) != 1 or len(graph.shapes[current.inputs[0]]) != 3:
            return None
        source = current.inputs[0]
        if source == graph.input:
            return chain if any(isinstance(node.op, ops.Conv2d) for node in chain) else None
        current = nodes.get(source)
        if current is None or not _qualifies(current.op, graph.shapes[source], graph.shapes[current.inputs[0]]):
            return None


def _conv_ok(op) -> bool:
    """A convolution with square windows: the same kernel size, stride, padding and dilation on both axes."""
    if not isinstance(op, ops.Conv2d):
        return False
    same = [ops._pair(op.kw[key]) for key in ("stride", "padding", "dilation")] + [tuple(op.weight.shape[-2:])]
    return all(v[0] == v[1] for v in same)


def _pool_ok(op) -> bool:
    """A max-pool with square windows and no dilation."""
    return (
        isinstance(op, ops.MaxPool2d)
        and all(v[0] == v[1] for v in (op.kernel, op.stride, op.padding))
        and op.dilation == (1, 1)
    )


def _qualifies(op, out_shape, in_shape) -> bool:
    if isinstance(op, ops.Conv2d):
        return _conv_ok(op)
    if isinstance(op, ops.MaxPool2d):
        return _pool_ok(op)
    if isinstance(op, ops.Elementwise):
        return True
    if isinstance(op, ops.Scale):
        return tuple(out_shape) == tuple(in_shape) and _channel_map(op.scale, in_shape) is not None
    return type(op) is ops.Identity


def _channel_map(value, shape) -> Tensor | None:
    """A scale or shift as a (1, C, H, W) map, or None when it does not broadcast to one sample."""
    if not isinstance(value, Tensor):
        return torch.full((1, *shape), float(value))
    try:
        return value.expand(torch.broadcast_shapes(value.shape, (1, *shape))).reshape(1, *shape)
    except RuntimeError:
        return None


def _widths(chain: list, graph: BoundGraph) -> list[int]:
    """The numbers one row holds on each layer of the chain (C·K·K), its output first."""
    k, widths = 1, [graph.shapes[chain[0].name][0]]
    for node in chain:
        if isinstance(node.op, ops.Conv2d):
            k = _conv_geometry(node.op, k, 1, 0)[1]
        elif isinstance(node.op, ops.MaxPool2d):
            k = _pool_geometry(node.op, k, 1, 0)[0]
        widths.append(graph.shapes[node.inputs[0]][0] * k * k)
    return widths


def window_width(chain: list, graph: BoundGraph) -> int:
    """The most numbers one row holds on any layer of the chain, for chunking."""
    return max(_widths(chain, graph))


def window_cost(chain: list, graph: BoundGraph) -> int:
    """Numbers one row of :func:`conv_chain_bounds` holds, summed over the layers it crosses."""
    return sum(_widths(chain, graph)[1:])


def dense_cost(chain: list, graph: BoundGraph) -> int:
    """The same for a dense row over whole layers (:mod:`advgrad.bounds.propagate`)."""
    return sum(torch.Size(graph.shapes[node.inputs[0]]).numel() for node in chain)


def _windows(t: Tensor, k: int, stride: int, pad: int, out_hw: tuple[int, int]) -> Tensor:
    """(B, C, H, W) → (B, L, C, K, K): the K×K window at (p·stride − pad, q·stride − pad) for each
    of the L = Ho·Wo positions, zero where it leaves the map."""
    b, c, h, w = t.shape
    ho, wo = out_hw
    right = max(0, (wo - 1) * stride - pad + k - w)
    bottom = max(0, (ho - 1) * stride - pad + k - h)
    t = F.pad(t, (pad, right, pad, bottom))
    cols = F.unfold(t, k, stride=stride)  # (B, C·K·K, Ho'·Wo')
    hp = (t.shape[2] - k) // stride + 1
    wp = (t.shape[3] - k) // stride + 1
    cols = cols.reshape(b, c, k, k, hp, wp)[..., :ho, :wo]
    return cols.permute(0, 4, 5, 1, 2, 3).reshape(b, ho * wo, c, k, k)


def conv_chain_bounds(
    chain: list,
    graph: BoundGraph,
    bounds: dict[str, Interval],
    inputs,
    samples: slice,
    channels: slice,
    slopes: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """CROWN lower and upper bounds (N', C', Ho·Wo) of the output channels ``channels`` of
    ``chain[0]`` (a convolution or a scaling of one) for the samples ``samples``, over the input set ``inputs``
    (an :class:`~advgrad.bounds.propagate.InputSet`). ``slopes`` (α-CROWN): per ReLU-like node of
    the chain, lower slopes (N, 2, *shape) for the unstable neurons, the first for the rows of the
    lower bounds, the second for those of the upper bounds (shared by all the neurons bounded)."""
    if slopes is None:
        low = _chain_rows(chain, graph, bounds, inputs, samples, channels, (1.0, -1.0), None)
        r = low.shape[1] // 2
        return low[:, :r], -low[:, r:]
    down, up = ({name: t[samples, i] for name, t in slopes.items()} for i in (0, 1))
    low = _chain_rows(chain, graph, bounds, inputs, samples, channels, (1.0,), down)
    return low, -_chain_rows(chain, graph, bounds, inputs, samples, channels, (-1.0,), up)


def _chain_rows(chain, graph, bounds, inputs, samples, channels, signs, slopes) -> Tensor:
    """Lower bounds (N', len(signs)·C', Ho·Wo) of ±z for the output channels ``channels`` of
    ``chain[0]``, one block per sign; ``slopes``: lower slopes (N', *shape) per ReLU-like node."""
    conv = chain[0]
    c_out, ho, wo = graph.shapes[conv.name]
    hw = (ho, wo)
    box_lo, box_hi = (t[samples] for t in inputs.box())
    like = box_lo
    cs = range(c_out)[channels]
    r = len(cs) * len(signs)
    # the rows start as ± the one-hot rows of the chosen channels, on a 1×1 window per position;
    # until the first activation they are the same for every sample (batch dimension 1)
    start = torch.zeros(r, c_out, 1, 1, dtype=like.dtype, device=like.device)
    for block, sign in enumerate(signs):
        for i, c in enumerate(cs):
            start[block * len(cs) + i, c] = sign
    a = start.reshape(1, r, 1, c_out, 1, 1).expand(1, r, ho * wo, c_out, 1, 1)
    bias = like.new_zeros(1, r, ho * wo)
    k, stride, pad = 1, 1, 0
    i = 0
    while i < len(chain):
        node = chain[i]
        op = node.op
        shape = graph.shapes[node.inputs[0]]
        i += 1
        if isinstance(op, ops.Conv2d):
            if op.bias is not None:
                bias = bias + (a.sum(dim=(-2, -1)) * op.bias.reshape(1, 1, 1, -1)).sum(-1)
            a, k, stride, pad = _conv_back(op, a, k, stride, pad)
            a = a * _inside(shape, k, stride, pad, hw, like).unsqueeze(1)
        elif isinstance(op, ops.Elementwise):
            lo, hi = (t[samples] for t in bounds[node.inputs[0]])
            lines = op.relax(lo, hi)
            if slopes is not None and node.name in slopes:
                lines = (op.with_slope(lo, hi, lines[0], slopes[node.name]), *lines[1:])
            al, bl, au, bu = (_windows(t, k, stride, pad, hw) for t in lines)
            pos = a.clamp(min=0)
            if a.shape[0] == 1:
                # shared rows: the constant terms are one batched product per window position
                bias = bias + _shared_dot(a, bu) + _shared_dot(pos, bl - bu)
                # per-channel scalings (batch norm) and then a convolution: one product
                j = i
                while j < len(chain) and isinstance(chain[j].op, ops.Scale):
                    j += 1
                if j < len(chain) and isinstance(chain[j].op, ops.Conv2d) and _fits_matrix(chain[j].op, k):
                    a, bias, k, stride, pad = _through_conv_shared(
                        chain[j], chain[i:j], graph, a, pos, au, al - au, bias, k, stride, pad, hw
                    )
                    i = j + 1
                    continue
                a = a * au.unsqueeze(1) + pos * (al - au).unsqueeze(1)
            else:
                bias = bias + (a * bu.unsqueeze(1) + pos * (bl - bu).unsqueeze(1)).sum(dim=(-3, -2, -1))
                a = a * au.unsqueeze(1) + pos * (al - au).unsqueeze(1)
        elif isinstance(op, ops.MaxPool2d):
            a, bias, k, stride, pad = _through_pool(
                op, bounds[node.inputs[0]], samples, a, bias, k, stride, pad, hw, box_lo.shape[0]
            )
        elif isinstance(op, ops.Scale):
            scale = _windows(_channel_map(op.scale, shape).to(like), k, stride, pad, hw).unsqueeze(1)
            shift = _windows(_channel_map(op.shift, shape).to(like), k, stride, pad, hw).unsqueeze(1)
            bias = bias + (a * shift).sum(dim=(-3, -2, -1))
            a = a * scale
    n = box_lo.shape[0]
    if inputs.geometry.ball_is_box:
        # Σ a⁺·lo + a⁻·hi = a·centre − |a|·radius over each window (zero on the padding)
        mid = _windows((box_hi + box_lo) / 2, k, stride, pad, hw).unsqueeze(1)
        rad = _windows((box_hi - box_lo) / 2, k, stride, pad, hw).unsqueeze(1)
        low = bias + (a * mid).sum(dim=(-3, -2, -1)) - (a.abs() * rad).sum(dim=(-3, -2, -1))
    else:
        # the rows are zero outside their windows (and on the padding): the ball and the box
        # restricted to the window's entries give the same minimum
        rows, positions = a.shape[1:3]
        flat = a.expand(n, -1, -1, -1, -1, -1).reshape(n, rows * positions, -1)

        def win(t):
            w = _windows(t, k, stride, pad, hw).reshape(n, 1, positions, -1)
            return w.expand(n, rows, positions, -1).reshape(n, rows * positions, -1)

        x0 = inputs.x0[samples]
        low = bias + inputs.minimise_l2(flat, win(x0), win(box_lo), win(box_hi)).reshape(n, rows, positions)
    return low.expand(n, -1, -1)


def _inside(shape, k, stride, pad, hw, like) -> Tensor:
    """(1, L, C, K, K): 1 where a window entry lies inside the map, 0 on its zero padding."""
    return _windows(torch.ones(1, *shape, dtype=like.dtype, device=like.device), k, stride, pad, hw)


def _shared_dot(a: Tensor, v: Tensor) -> Tensor:
    """Σ over each window of shared rows a (1, R, L, C, K, K) times per-sample v (N, L, C, K, K)
    → (N, R, L), as one batched matrix product per window position."""
    _, rows, positions = a.shape[:3]
    left = a[0].reshape(rows, positions, -1).transpose(0, 1)  # (L, R, J)
    right = v.reshape(v.shape[0], positions, -1).permute(1, 2, 0)  # (L, J, N)
    return torch.bmm(left, right).permute(2, 1, 0)


def _fits_matrix(op: ops.Conv2d, k: int) -> bool:
    """Whether the window matrix is small, and not much more work than the transposed convolution:
    it holds C_in·K'² numbers per output entry where the convolution reads C_in/groups·kh·kw."""
    c_out, c_in_g = op.weight.shape[:2]
    kh = op.weight.shape[-1]
    k_new = _conv_geometry(op, k, 1, 0)[1]
    size = c_out * k * k * c_in_g * op.kw["groups"] * k_new * k_new
    return size <= MATRIX_LIMIT and k_new * k_new * op.kw["groups"] <= 4 * kh * kh


def _through_conv_shared(node, scales, graph, a, pos, slope, extra, bias, k, stride, pad, hw):
    """Shared rows a (1, R, L, C, K, K) through an activation with per-sample slopes
    (a·slope + a⁺·extra), the per-channel scalings ``scales`` and then the convolution ``node``,
    without building the per-sample rows at the activation: per window position, (a | a⁺) times
    the matrices diag(slope)·T and diag(extra)·T, with T the map of the scalings and the
    convolution's window matrix, and the constant terms they add as a last column."""
    op = node.op
    shape = graph.shapes[node.inputs[0]]
    _, rows, positions = a.shape[:3]
    n = slope.shape[0]
    _, k_new, stride_new, pad_new = _conv_geometry(op, k, stride, pad)
    matrix = _patch_matrix(op, k, k_new, a)  # (J, O)
    inside = _inside(shape, k_new, stride_new, pad_new, hw, a).reshape(positions, 1, -1)  # (L, 1, O)
    t = matrix.unsqueeze(0) * inside  # (L, J, O)
    if op.bias is not None:
        column = op.bias.to(a).repeat_interleave(k * k).reshape(1, -1, 1).expand(positions, -1, 1)
    else:
        column = a.new_zeros(positions, matrix.shape[0], 1)
    t = torch.cat([t, column], dim=2)  # (L, J, O + 1)
    level = graph.shapes[node.name]
    for scaling in reversed(scales):  # z = x·scale + shift before the convolution reads it
        scale = _windows(_channel_map(scaling.op.scale, level).to(a), k, stride, pad, hw).reshape(positions, -1, 1)
        shift = _windows(_channel_map(scaling.op.shift, level).to(a), k, stride, pad, hw).reshape(positions, -1, 1)
        t = t * scale
        t[:, :, -1:] += shift
    out = None
    for rows_a, diag in ((a, slope), (pos, extra)):
        left = rows_a[0].reshape(rows, positions, -1).transpose(0, 1)  # (L, R, J)
        weighted = diag.reshape(n, positions, -1).permute(1, 2, 0).unsqueeze(-1) * t.unsqueeze(2)  # (L, J, N, O+1)
        prod = torch.bmm(left, weighted.reshape(positions, left.shape[2], -1))  # (L, R, N·(O+1))
        out = prod if out is None else out + prod
    out = out.reshape(positions, rows, n, -1).permute(2, 1, 0, 3)  # (N, R, L, O+1)
    bias = bias + out[..., -1]
    c_in = shape[0]
    a = out[..., :-1].reshape(n, rows, positions, c_in, k_new, k_new)
    return a, bias, k_new, stride_new, pad_new


def _pool_geometry(op: ops.MaxPool2d, k: int, stride: int, pad: int):
    """(K', S', P') of the windows on a max-pool's input."""
    s, p = op.stride[0], op.padding[0]
    return (k - 1) * s + op.kernel[0], stride * s, pad * s + p


def _through_pool(op: ops.MaxPool2d, interval, samples, a, bias, k, stride, pad, hw, n):
    """Rows (B, R, L, C, K, K) on a max-pool's output windows → rows on its input windows, by the
    pool's relaxation (:meth:`advgrad.bounds.ops.MaxPool2d.relaxation`): each output's coefficient
    moves to the input its line picks, which lies inside the input window."""
    lo, hi = (t[samples] for t in interval)
    c, h, w = op.in_shape
    ho, wo = op.out_shape[-2:]
    chosen_lo, chosen_up, use_line, gap, top = op.relaxation([(lo, hi)])
    k_new, stride_new, pad_new = _pool_geometry(op, k, stride, pad)
    rows, positions = a.shape[1:3]
    a = a.expand(n, -1, -1, -1, -1, -1)
    like = a

    def windowed(t):  # (N, C, L_pool) → (N, 1, L, C, K·K)
        return _windows(t.reshape(n, c, ho, wo).to(like), k, stride, pad, hw).reshape(n, 1, positions, c, k * k)

    # top-left corner of each position's input window, in input coordinates
    p_idx = torch.arange(hw[0], device=a.device).repeat_interleave(hw[1])
    q_idx = torch.arange(hw[1], device=a.device).repeat(hw[0])
    top_row = (p_idx * stride_new - pad_new).reshape(1, 1, positions, 1, 1)
    top_col = (q_idx * stride_new - pad_new).reshape(1, 1, positions, 1, 1)

    def relative(chosen):  # absolute flat input index → flat index inside the input window
        index = windowed(chosen.to(like)).long()
        row = (index // w - top_row).clamp(0, k_new - 1)  # entries off the map carry coefficient 0
        col = (index % w - top_col).clamp(0, k_new - 1)
        return (row * k_new + col).expand(n, rows, positions, c, k * k)

    flat = a.reshape(n, rows, positions, c, k * k)
    pos, neg = flat.clamp(min=0), flat.clamp(max=0)
    neg_line = neg * windowed(use_line)
    bias = bias + (neg_line * windowed(gap) + (neg - neg_line) * windowed(top)).sum(dim=(-2, -1))
    out = flat.new_zeros(n, rows, positions, c, k_new * k_new)
    out.scatter_add_(4, relative(chosen_lo), pos)
    out.scatter_add_(4, relative(chosen_up), neg_line)
    return out.reshape(n, rows, positions, c, k_new, k_new), bias, k_new, stride_new, pad_new


def _conv_geometry(op: ops.Conv2d, k: int, stride: int, pad: int):
    s = ops._pair(op.kw["stride"])[0]
    p = ops._pair(op.kw["padding"])[0]
    d = ops._pair(op.kw["dilation"])[0]
    kh = op.weight.shape[-1]
    return s, (k - 1) * s + d * (kh - 1) + 1, stride * s, pad * s + p


def _conv_back(op: ops.Conv2d, a: Tensor, k: int, stride: int, pad: int):
    """Rows (B, R, L, C_out, K, K) on a convolution's output windows → rows on its input windows."""
    b, rows, positions, c_out = a.shape[:4]
    s, k_new, stride_new, pad_new = _conv_geometry(op, k, stride, pad)
    flat = a.reshape(b * rows * positions, c_out, k, k)
    if _fits_matrix(op, k):
        out = flat.reshape(flat.shape[0], -1) @ _patch_matrix(op, k, k_new, flat)
    else:
        out = F.conv_transpose2d(flat, op.weight.to(a), None, s, 0, 0, op.kw["groups"], ops._pair(op.kw["dilation"]))
    return out.reshape(b, rows, positions, -1, k_new, k_new), k_new, stride_new, pad_new


def _patch_matrix(op: ops.Conv2d, k: int, k_new: int, like: Tensor) -> Tensor:
    """The transposed convolution from a K×K output window to its input window, as a matrix."""
    cache = op.__dict__.setdefault("_patch_matrices", {})
    key = (k, like.dtype, like.device)
    if key not in cache:
        c_out = op.weight.shape[0]
        eye = torch.eye(c_out * k * k, dtype=like.dtype, device=like.device).reshape(-1, c_out, k, k)
        out = F.conv_transpose2d(
            eye,
            op.weight.to(like),
            None,
            ops._pair(op.kw["stride"]),
            0,
            0,
            op.kw["groups"],
            ops._pair(op.kw["dilation"]),
        )
        cache[key] = out.reshape(c_out * k * k, -1)
    return cache[key]
