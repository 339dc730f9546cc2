"""One class per operator: its interval (IBP) and its backward linear map (CROWN).

Every operator sees per-sample tensors with a leading batch dimension. Bounds travel as
``(lower, upper)`` pairs of shape ``(N, *shape)``. A linear bound on some quantity q is held as
``q ≥ Σ A·z + b`` with ``A`` of shape ``(N, S, *shape)`` (S rows of the specification) and
``b`` of shape ``(N, S)``; :meth:`BoundOp.backward` maps the rows on an operator's output to rows
on its inputs (Zhang et al. 2018, "Efficient Neural Network Robustness Certification with General
Activation Functions"). Only lower bounds are propagated: an upper bound of q is −(lower bound of −q).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Interval = tuple[Tensor, Tensor]


class BoundOp:
    """An operator on ``len(inputs)`` bounded tensors. Subclasses give its interval and backward map."""

    #: whether the relaxation needs interval bounds on its inputs (nonlinear operators)
    needs_input_bounds = False
    #: whether CROWN may skip inputs that are stable (ReLU-like operators only)
    only_unstable = False

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        raise NotImplementedError

    def backward(self, a: Tensor, bounds: Sequence[Interval]) -> tuple[list[Tensor], Tensor]:
        """Rows ``a`` (N, S, *out) → rows on each input and the constant term (N, S)."""
        raise NotImplementedError


def _rows_flat(a: Tensor) -> Tensor:
    return a.flatten(2)


# ---------------------------------------------------------------- affine operators
class Affine(BoundOp):
    """z = L(x₁, …, x_k) + c. Subclasses give :meth:`apply` (the full map) and :meth:`apply_abs`
    (|L| applied to radii, no constant); the backward map is Lᵀ (by default a vector–Jacobian
    product, exact because the map is affine)."""

    def __init__(self, in_shapes: Sequence[tuple[int, ...]]):
        self.in_shapes = [tuple(s) for s in in_shapes]
        self._offset: Tensor | None = None

    def apply(self, xs: Sequence[Tensor]) -> Tensor:
        raise NotImplementedError

    def apply_abs(self, rs: Sequence[Tensor]) -> Tensor:
        raise NotImplementedError

    def offset(self, like: Tensor) -> Tensor:
        """c = L(0) + c, shape (1, *out)."""
        if self._offset is None:
            zeros = [torch.zeros((1, *s), dtype=like.dtype, device=like.device) for s in self.in_shapes]
            # not detached: on a graph of live weights (training) the constant term carries the bias's
            # gradient; under no_grad (certification) there is no graph to keep anyway
            self._offset = self.apply(zeros)
        return self._offset

    def interval(self, bounds: Sequence[Interval]) -> Interval:
        centers = [(lo + hi) / 2 for lo, hi in bounds]
        radii = [(hi - lo) / 2 for lo, hi in bounds]
        c = self.apply(centers)
        r = self.apply_abs(radii)
        return c - r, c + r

    def transpose(self, a: Tensor) -> list[Tensor]:
        """Lᵀ a for rows a (N, S, *out) → one (N, S, *in_i) per input."""
        n, s = a.shape[:2]
        zeros = [torch.zeros((n * s, *sh), dtype=a.dtype, device=a.device) for sh in self.in_shapes]
        _, vjp = torch.func.vjp(lambda *xs: self.apply(xs), *zeros)
        grads = vjp(a.reshape(n * s, *a.shape[2:]))
        return [g.reshape(n, s, *sh) for g, sh in zip(grads, self.in_shapes, strict=True)]

    def backward(self, a: Tensor, bounds: Sequence[Interval]) -> tuple[list[Tensor], Tensor]:
        bias = _rows_flat(a) @ self.offset(a).flatten()
        return self.transpose(a), bias

    def jacobian(self, out_shape: tuple[int, ...], like: Tensor) -> tuple[list[Tensor], Tensor]:
        """The whole map once, for every output neuron: Lᵀ of the identity rows, one
        (out_numel, *in_i) per input, and the constant (out_numel,). The same for every sample."""
        cached = getattr(self, "_jacobian", None)
        if cached is None:
            m = torch.Size(out_shape).numel()
            eye = torch.eye(m, dtype=like.dtype, device=like.device).reshape(1, m, *out_shape)
            cached = ([t[0] for t in self.transpose(eye)], self.offset(like).flatten())
            self._jacobian = cached
        return cached


class Linear(Affine):
    """z = x Wᵀ + b on the last dimension (linear, addmm, mm, matmul with a constant weight)."""

    def __init__(self, in_shape, weight: Tensor, bias: Tensor | None):
        super().__init__([in_shape])
        self.weight, self.bias = weight, bias

    def apply(self, xs):
        return F.linear(xs[0], self.weight, self.bias)

    def apply_abs(self, rs):
        return F.linear(rs[0], self.weight.abs())

    def transpose(self, a):
        return [a @ self.weight]


class Conv2d(Affine):
    """2-D convolution with a constant kernel (stride, padding, dilation, groups)."""

    def __init__(self, in_shape, out_shape, weight, bias, stride, padding, dilation, groups):
        super().__init__([in_shape])
        self.out_shape = tuple(out_shape)
        self.weight, self.bias = weight, bias
        self.kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def apply(self, xs):
        return F.conv2d(xs[0], self.weight, self.bias, **self.kw)

    def apply_abs(self, rs):
        return F.conv2d(rs[0], self.weight.abs(), None, **self.kw)

    #: below this many kernel-matrix entries, Lᵀ may be one matrix product with the dense matrix
    DENSE_LIMIT = 2**22
    #: ... when each output reads fewer inputs than this (C_in/groups·kh·kw): a transposed
    #: convolution with thin kernels runs far below the speed of a matrix product (measured on
    #: one CPU thread: 1→16 channels, 3×3 on 8×8: the matrix 3× faster; 16→32: the convolution 2×)
    DENSE_READS = 64

    def transpose(self, a):
        n, s = a.shape[:2]
        m_in, m_out = torch.Size(self.in_shapes[0]).numel(), torch.Size(self.out_shape).numel()
        thin = self.weight[0].numel() < self.DENSE_READS
        if m_in * m_out <= self.DENSE_LIMIT and n * s > m_out and thin:
            dense = getattr(self, "_dense", None)
            if dense is None:
                eye = torch.eye(m_out, dtype=a.dtype, device=a.device).reshape(1, m_out, *self.out_shape)
                dense = self._dense = self._conv_transpose(eye)[0].reshape(m_out, m_in)
            return [(a.reshape(n, s, m_out) @ dense).reshape(n, s, *self.in_shapes[0])]
        return self._conv_transpose(a)

    def _conv_transpose(self, a):
        n, s = a.shape[:2]
        c, h, w = self.in_shapes[0]
        k = self.kw
        dil = _pair(k["dilation"])
        st, pad = _pair(k["stride"]), _pair(k["padding"])
        kh, kw = self.weight.shape[-2:]
        ho, wo = self.out_shape[-2:]
        # output_padding recovers the rows and columns that the strided forward never reached
        op_h = h - ((ho - 1) * st[0] - 2 * pad[0] + dil[0] * (kh - 1) + 1)
        op_w = w - ((wo - 1) * st[1] - 2 * pad[1] + dil[1] * (kw - 1) + 1)
        if not (0 <= op_h < max(st[0], dil[0]) and 0 <= op_w < max(st[1], dil[1])):
            return Affine.transpose(self, a)
        out = F.conv_transpose2d(
            a.reshape(n * s, *a.shape[2:]), self.weight, None, st, pad, (op_h, op_w), k["groups"], dil
        )
        return [out.reshape(n, s, c, h, w)]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = list(v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


class Scale(Affine):
    """z = x·scale + shift with constant tensors that broadcast against one sample
    (eval-mode batch norm, normalisation, add/sub/mul/div by a constant)."""

    def __init__(self, in_shape, scale: Tensor | float, shift: Tensor | float):
        super().__init__([in_shape])
        self.scale, self.shift = scale, shift

    def apply(self, xs):
        return xs[0] * self.scale + self.shift

    def apply_abs(self, rs):
        return rs[0] * (self.scale.abs() if isinstance(self.scale, Tensor) else abs(self.scale))

    def transpose(self, a):
        scale = self.scale
        if isinstance(scale, Tensor):
            out = torch.broadcast_shapes(scale.shape, (1, *self.in_shapes[0]))
            return [(a * scale.expand(out)).reshape(a.shape)]
        return [a * scale]


class Sum(Affine):
    """z = Σ sign_i·x_i (residual addition and subtraction of two bounded tensors)."""

    def __init__(self, in_shapes, signs: Sequence[float], out_shape):
        super().__init__(in_shapes)
        self.signs = list(signs)
        self.out_shape = tuple(out_shape)

    def apply(self, xs):
        return sum(s * x for s, x in zip(self.signs, xs, strict=True))

    def apply_abs(self, rs):
        return sum(abs(s) * r for s, r in zip(self.signs, rs, strict=True))

    def transpose(self, a):
        n, s = a.shape[:2]
        outs = []
        for sign, shape in zip(self.signs, self.in_shapes, strict=True):
            g = a * sign
            # undo broadcasting: sum over the dimensions where the input had size 1
            pad = len(self.out_shape) - len(shape)
            full = (1,) * pad + shape
            dims = [i + 2 for i, (d, o) in enumerate(zip(full, self.out_shape, strict=True)) if d == 1 and o != 1]
            if dims:
                g = g.sum(dim=dims, keepdim=True)
            outs.append(g.reshape(n, s, *shape))
        return outs


class NonNegativeLinear(Affine):
    """A linear map with non-negative weights and no constant, given as a function of one batch
    (average pooling, adaptive average pooling, mean, reshape, concatenation, identity): |L| = L."""

    def __init__(self, in_shapes, fn: Callable[[Sequence[Tensor]], Tensor]):
        super().__init__(in_shapes)
        self.fn = fn

    def apply(self, xs):
        return self.fn(xs)

    def apply_abs(self, rs):
        return self.fn(rs)

    def backward(self, a, bounds):
        return self.transpose(a), a.new_zeros(a.shape[:2])


class Reshape(NonNegativeLinear):
    """view / reshape / flatten: the per-sample shape changes, values do not."""

    def __init__(self, in_shape, out_shape):
        self.out_shape = tuple(out_shape)
        super().__init__([in_shape], lambda xs: xs[0].reshape(xs[0].shape[0], *self.out_shape))

    def transpose(self, a):
        return [a.reshape(*a.shape[:2], *self.in_shapes[0])]


class Identity(Reshape):
    """dropout in eval mode, clone, detach, alias, contiguous, a cast to the same dtype."""

    def __init__(self, in_shape):
        super().__init__(in_shape, in_shape)


class StridedPick(NonNegativeLinear):
    """One element of every pooling window: z[c, i, j] = x[c, p + i·sh, q + j·sw] (a max-pool's
    element (p, q), for :mod:`advgrad.bounds.rewrite`)."""

    def __init__(self, in_shape, out_shape, offset: tuple[int, int], stride: tuple[int, int]):
        self.out_shape = tuple(out_shape)
        self.offset, self.stride = offset, stride
        super().__init__([in_shape], lambda xs: xs[0][(..., *self._where())])

    def _where(self) -> tuple[slice, slice]:
        (p, q), (sh, sw), (ho, wo) = self.offset, self.stride, self.out_shape[-2:]
        return slice(p, p + sh * (ho - 1) + 1, sh), slice(q, q + sw * (wo - 1) + 1, sw)

    def transpose(self, a):
        out = a.new_zeros(*a.shape[:2], *self.in_shapes[0])
        out[(..., *self._where())] = a
        return [out]


class Cat(NonNegativeLinear):
    """Concatenation of bounded tensors along a non-batch dimension."""

    def __init__(self, in_shapes, dim: int):
        self.dim = dim
        super().__init__(in_shapes, lambda xs: torch.cat(list(xs), dim=dim))

    def transpose(self, a):
        sizes = [s[self.dim - 1] for s in self.in_shapes]
        return list(torch.split(a, sizes, dim=self.dim + 1))


# ---------------------------------------------------------------- elementwise nonlinearities
class Elementwise(BoundOp):
    """A monotone non-decreasing scalar function σ. :meth:`relax` gives lines
    a_l·x + b_l ≤ σ(x) ≤ a_u·x + b_u on [l, u], elementwise."""

    needs_input_bounds = True

    def f(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def relax(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def interval(self, bounds):
        lo, hi = bounds[0]
        return self.f(lo), self.f(hi)

    def backward(self, a, bounds):
        lo, hi = bounds[0]
        al, bl, au, bu = (t.flatten(1) for t in self.relax(lo, hi))
        af = a.flatten(2)
        pos = af.clamp(min=0)
        # rows ≥ 0 take the lower line, rows < 0 the upper one: a·au + a⁺·(al − au)
        a_in = af * au.unsqueeze(1)
        a_in.addcmul_(pos, (al - au).unsqueeze(1))
        bias = torch.bmm(af, bu.unsqueeze(2)).squeeze(2) + torch.bmm(pos, (bl - bu).unsqueeze(2)).squeeze(2)
        return [a_in.reshape(a.shape)], bias


class LeakyReLU(Elementwise):
    """max(x, s·x) for 0 ≤ s ≤ 1 (s = 0: ReLU); min(x, s·x) for s > 1.

    Convex case: the upper line is the chord; the lower line is the adaptive choice of CROWN:
    slope 1 when u ≥ −l, else s (both lie below the function everywhere)."""

    only_unstable = True

    def __init__(self, slope: float = 0.0):
        self.slope = float(slope)

    def f(self, x):
        return F.leaky_relu(x, self.slope) if self.slope != 0 else x.clamp(min=0)

    def relax(self, lo, hi):
        s = self.slope
        if s > 1:
            return _concave_leaky(lo, hi, s)
        neg_side = hi <= 0
        pos_side = lo >= 0
        chord = (hi - s * lo) / (hi - lo).clamp(min=1e-12)
        # stable: slope 1 (active) or s (inactive) and no intercept; unstable: the chord above, and
        # below slope 1 when u ≥ −l, else s
        stable_slope = torch.where(pos_side, 1.0, s)
        unstable = ~(pos_side | neg_side)
        al = torch.where(unstable, torch.where(hi >= -lo, 1.0, s), stable_slope)
        au = torch.where(unstable, chord, stable_slope)
        bu = torch.where(unstable, hi - chord * hi, 0.0)
        return al, torch.zeros_like(lo), au, bu

    def slope_range(self) -> tuple[float, float] | None:
        """The slopes a lower line α·x through 0 may take and stay below the function on every
        interval (α-CROWN's free parameter): [s, 1] in the convex case; None when concave."""
        return (self.slope, 1.0) if self.slope <= 1 else None

    def backward_with_slope(self, a: Tensor, bounds: Sequence[Interval], slope: Tensor) -> tuple[list[Tensor], Tensor]:
        """:meth:`backward` with the lower line α·x on the unstable neurons, α = ``slope`` (N, S or 1,
        *shape) clamped into :meth:`slope_range`: any such line lies below max(x, s·x), so the bound
        is valid whatever α the optimiser chose (Xu et al. 2021, α-CROWN)."""
        lo, hi = bounds[0]
        al, bl, au, bu = self.relax(lo, hi)
        al = self.with_slope(lo.unsqueeze(1), hi.unsqueeze(1), al.unsqueeze(1), slope)
        return lines_backward(a, al, bl.unsqueeze(1), au.unsqueeze(1), bu.unsqueeze(1))

    def with_slope(self, lo: Tensor, hi: Tensor, al: Tensor, slope: Tensor) -> Tensor:
        """The lower slopes ``al`` with ``slope`` on the unstable neurons, clamped into
        :meth:`slope_range` in value while the gradient passes as it is (torch's clamp has none on
        the range's ends, where CROWN's own slopes 0 and 1 sit)."""
        low, high = self.slope_range()
        alpha = slope - (slope - slope.clamp(low, high)).detach()
        return torch.where((lo < 0) & (hi > 0), alpha, al)


def lines_backward(a: Tensor, al: Tensor, bl: Tensor, au: Tensor, bu: Tensor) -> tuple[list[Tensor], Tensor]:
    """Rows a (N, S, *shape) through elementwise lines al·x + bl ≤ f(x) ≤ au·x + bu given per row
    (each (N, S or 1, *shape)): rows ≥ 0 take the lower line, rows < 0 the upper one."""
    pos = a.clamp(min=0)
    a_in = a * au + pos * (al - au)
    bias = (a * bu + pos * (bl - bu)).flatten(2).sum(-1)
    return [a_in], bias


def _concave_leaky(lo, hi, s):
    """min(x, s·x) for s > 1 on [l, u]: the lower line is the chord, the upper one x or s·x."""
    neg_side, pos_side = hi <= 0, lo >= 0
    f = lambda t: torch.minimum(t, s * t)  # noqa: E731
    width = (hi - lo).clamp(min=1e-12)
    chord = (f(hi) - f(lo)) / width
    chord_b = f(hi) - chord * hi
    adaptive = torch.where(hi >= -lo, torch.ones_like(lo), torch.full_like(lo, s))
    one, ss = torch.ones_like(lo), torch.full_like(lo, s)
    au = torch.where(pos_side, one, torch.where(neg_side, ss, adaptive))
    al = torch.where(pos_side, one, torch.where(neg_side, ss, chord))
    bl = torch.where(pos_side | neg_side, torch.zeros_like(lo), chord_b)
    return al, bl, au, torch.zeros_like(lo)


class Clamp(Elementwise):
    """clamp(x, a, b) (Hardtanh, ReLU6, clamp with constant limits; a or b may be infinite).

    Inside one linear piece the lines are exact. Crossing only a, the function is convex there:
    the chord above, and below the line through (a, a) of slope 1 or 0, as for ReLU. Crossing
    only b it is concave: the mirror image. Crossing both: the constants a and b."""

    only_unstable = False

    def __init__(self, low: float, high: float):
        self.low, self.high = float(low), float(high)

    def f(self, x):
        return x.clamp(min=None if math.isinf(self.low) else self.low, max=None if math.isinf(self.high) else self.high)

    def relax(self, lo, hi):
        a = max(self.low, -1e30)
        b = min(self.high, 1e30)
        one, zero = torch.ones_like(lo), torch.zeros_like(lo)
        width = (hi - lo).clamp(min=1e-12)
        below, above = hi <= a, lo >= b
        middle = (lo >= a) & (hi <= b)
        cross_a = (lo < a) & (hi > a) & (hi <= b)
        cross_b = (lo >= a) & (lo < b) & (hi > b)
        # exact pieces: (slope, intercept)
        slope = torch.where(middle, one, zero)
        icpt = torch.where(below, torch.full_like(lo, a), torch.where(above, torch.full_like(lo, b), zero))
        al, bl, au, bu = slope, icpt, slope.clone(), icpt.clone()
        # crossing a only (convex)
        chord = (hi - a) / width
        low_slope = torch.where(hi - a >= a - lo, one, zero)
        al = torch.where(cross_a, low_slope, al)
        bl = torch.where(cross_a, a - low_slope * a, bl)
        au = torch.where(cross_a, chord, au)
        bu = torch.where(cross_a, a - chord * lo, bu)
        # crossing b only (concave)
        chord = (b - lo) / width
        up_slope = torch.where(b - lo >= hi - b, one, zero)
        al = torch.where(cross_b, chord, al)
        bl = torch.where(cross_b, lo - chord * lo, bl)
        au = torch.where(cross_b, up_slope, au)
        bu = torch.where(cross_b, b - up_slope * b, bu)
        # crossing both: the constants
        both = (lo < a) & (hi > b)
        al = torch.where(both, zero, al)
        au = torch.where(both, zero, au)
        bl = torch.where(both, torch.full_like(lo, a), bl)
        bu = torch.where(both, torch.full_like(lo, b), bu)
        return al, bl, au, bu


class SShaped(Elementwise):
    """σ increasing, convex on x ≤ 0 and concave on x ≥ 0, with σ' largest at 0 (sigmoid, tanh).

    On a one-sided interval: the chord on the side where it is valid, and the tangent at the
    midpoint on the other. Across 0: with k = min(σ'(l), σ'(u)) ≤ σ' on [l, u], σ(x) − k·x is
    non-decreasing, so σ(l) + k(x − l) ≤ σ(x) ≤ σ(u) + k(x − u)."""

    def __init__(self, f: Callable[[Tensor], Tensor], df: Callable[[Tensor], Tensor]):
        self._f, self._df = f, df

    def f(self, x):
        return self._f(x)

    def relax(self, lo, hi):
        flo, fhi = self._f(lo), self._f(hi)
        width = hi - lo
        tiny = width < 1e-6
        chord = torch.where(tiny, self._df(lo), (fhi - flo) / width.clamp(min=1e-6))
        mid = (lo + hi) / 2
        tan = self._df(mid)
        tan_b = self._f(mid) - tan * mid
        k = torch.minimum(self._df(lo), self._df(hi))
        al = torch.where(hi <= 0, tan, torch.where(lo >= 0, chord, k))
        bl = torch.where(hi <= 0, tan_b, torch.where(lo >= 0, flo - chord * lo, flo - k * lo))
        au = torch.where(hi <= 0, chord, torch.where(lo >= 0, tan, k))
        bu = torch.where(hi <= 0, flo - chord * lo, torch.where(lo >= 0, tan_b, fhi - k * hi))
        # the chord and tangent lines are exact only up to rounding: widen by a few ulps
        slack = 1e-6 * (1 + flo.abs() + fhi.abs())
        return al, bl - slack, au, bu + slack


def sigmoid_op() -> SShaped:
    return SShaped(torch.sigmoid, lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x)))


def tanh_op() -> SShaped:
    return SShaped(torch.tanh, lambda x: 1 - torch.tanh(x) ** 2)


# ---------------------------------------------------------------- max pooling
class MaxPool2d(BoundOp):
    """Max over windows (kernel, stride, padding, dilation; no ceil mode).

    IBP is exact (max is monotone). CROWN: max ≥ x_k for the element k with the largest lower
    bound in the window; max ≤ x_k when that element's lower bound is ≥ every other upper bound
    (the window is decided), else max ≤ the largest upper bound (a constant)."""

    needs_input_bounds = True

    def __init__(self, in_shape, out_shape, kernel, stride, padding, dilation):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.kernel, self.stride = _pair(kernel), _pair(stride or kernel)
        self.padding, self.dilation = _pair(padding), _pair(dilation)

    def _pool(self, x):
        return F.max_pool2d(x, self.kernel, self.stride, self.padding, self.dilation)

    def interval(self, bounds):
        lo, hi = bounds[0]
        return self._pool(lo), self._pool(hi)

    def _windows(self, t: Tensor, fill: float) -> Tensor:
        """(N, C, H, W) → (N, C, K, L): the K elements of each of the L windows."""
        n, c = t.shape[:2]
        ph, pw = self.padding
        t = F.pad(t, (pw, pw, ph, ph), value=fill)
        cols = F.unfold(t, self.kernel, dilation=self.dilation, stride=self.stride)
        return cols.reshape(n, c, -1, cols.shape[-1])

    def undecided(self, bounds) -> Tensor:
        """bool (N, C, H, W): the inputs that lie in a window whose maximum is not decided by these
        bounds (no element's lower bound reaches every other's upper bound). Only their bounds shape
        the relaxation: on a decided window it is exact (max = x_k) whatever the bounds are."""
        lo, hi = bounds[0]
        n = lo.shape[0]
        c, h, w = self.in_shape
        lw = self._windows(lo, -math.inf)
        uw = self._windows(hi, -math.inf)
        top2 = uw.topk(min(2, uw.shape[2]), dim=2).values
        first = top2[:, :, 0:1]
        second = top2[:, :, 1:2] if top2.shape[2] > 1 else torch.full_like(first, -math.inf)
        others_hi = torch.where(uw >= first, second, first)
        decided = (lw >= others_hi).any(dim=2)  # (N, C, L)
        index = torch.arange(h * w, dtype=lo.dtype, device=lo.device).reshape(1, 1, h, w)
        iw = self._windows(index.expand(1, c, h, w), -1.0)[0].long()  # (C, K, L); −1: padding
        open_ = (~decided).unsqueeze(2).expand(n, c, iw.shape[1], iw.shape[2])
        mask = torch.zeros(n, c, h * w + 1, dtype=torch.bool, device=lo.device)
        spot = torch.where(iw >= 0, iw, torch.full_like(iw, h * w)).unsqueeze(0).expand(n, -1, -1, -1)
        mask.scatter_reduce_(2, spot.flatten(2), open_.flatten(2), reduce="amax")
        return mask[:, :, : h * w].reshape(n, c, h, w)

    def relaxation(self, bounds) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The lines, per sample and pooled output (each (N, C, L) over the L windows): the input
        position (flat index in H·W) of the lower line x_k, that of the upper line, whether the
        upper bound is that line plus ``gap`` (else the constant ``top``), ``gap`` and ``top``."""
        lo, hi = bounds[0]
        n = lo.shape[0]
        c, h, w = self.in_shape
        lw = self._windows(lo, -math.inf)
        uw = self._windows(hi, -math.inf)
        index = torch.arange(h * w, dtype=lo.dtype, device=lo.device).reshape(1, 1, h, w)
        iw = self._windows(index.expand(1, c, h, w), -1.0)[0].long()  # (C, K, L)
        mid = ((lw + uw) / 2).nan_to_num(-math.inf)  # padding: −inf, never chosen
        # any element k gives a sound lower line x_k; the one with the largest midpoint is tightest
        # on average
        k_lo = mid.argmax(dim=2)  # (N, C, L)
        # upper line x_k + g_k for the k with the smallest average, g_k = max(0, max_{i≠k} u_i − l_k)
        top2 = uw.topk(min(2, uw.shape[2]), dim=2).values
        first = top2[:, :, 0:1]
        second = top2[:, :, 1:2] if top2.shape[2] > 1 else torch.full_like(first, -math.inf)
        others_hi = torch.where(uw >= first, second, first)  # max of the other elements
        gaps = (others_hi - lw).clamp(min=0)
        score = torch.where(torch.isfinite(lw), mid + gaps, torch.full_like(mid, math.inf))
        line_score, k_up = score.min(dim=2)
        gap = gaps.gather(2, k_up.unsqueeze(2)).squeeze(2)
        top_hi = first.squeeze(2)
        # the line, or the constant max u where that is lower on average (always the line when
        # g = 0: then max = x_k exactly)
        use_line = (line_score < top_hi) | (gap == 0)
        windows = iw.unsqueeze(0).expand(n, -1, -1, -1)
        chosen_lo = windows.gather(2, k_lo.unsqueeze(2)).squeeze(2)  # (N, C, L): input positions
        chosen_up = windows.gather(2, k_up.unsqueeze(2)).squeeze(2)
        return chosen_lo, chosen_up, use_line, gap, top_hi

    def backward(self, a, bounds):
        n, s = a.shape[:2]
        c, h, w = self.in_shape
        chosen_lo, chosen_up, use_line, gap, top_hi = self.relaxation(bounds)
        af = a.reshape(n, s, c, -1)
        pos, neg = af.clamp(min=0), af.clamp(max=0)
        neg_lin = neg * use_line.unsqueeze(1)
        a_in = af.new_zeros(n, s, c, h * w)
        a_in.scatter_add_(3, chosen_lo.unsqueeze(1).expand(n, s, c, -1), pos)
        a_in.scatter_add_(3, chosen_up.unsqueeze(1).expand(n, s, c, -1), neg_lin)
        bias = ((neg_lin * gap.unsqueeze(1)) + (neg - neg_lin) * top_hi.unsqueeze(1)).flatten(2).sum(-1)
        return [a_in.reshape(n, s, c, h, w)], bias
