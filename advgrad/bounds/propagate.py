"""IBP and CROWN over a :class:`~advgrad.bounds.graph.BoundGraph`.

IBP (Gowal et al. 2018) pushes intervals forward. CROWN (Zhang et al. 2018) pushes linear rows
backward from a node to the input and minimises them over the input set; for ``crown`` the
pre-activation bounds that the relaxations need are themselves computed by CROWN (for ReLU-like
activations only for the neurons that the interval bounds leave unstable), for ``crown-ibp`` they
come from IBP. Every interval is the intersection of all sound bounds known for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from advgrad.bounds import ops, patches
from advgrad.bounds.graph import BoundGraph
from advgrad.core.geometry import NormGeometry, get_geometry

Interval = ops.Interval

#: bytes a row-chunk of CROWN's linear bounds may take (rows × samples × largest layer × 4)
ROW_BUDGET = 256 * 2**20


@dataclass
class InputSet:
    """{x : ‖x − x0‖ ≤ ε} ∩ [lower, upper]ⁿ for the L∞ or L2 norm, with the coordinates ``fixed``
    (indices into each flattened sample: a table's immutable features) held at x0."""

    x0: Tensor
    eps: float
    norm: str
    lower: float
    upper: float
    fixed: tuple[int, ...] = ()

    @property
    def geometry(self) -> NormGeometry:
        """The norm's geometry (:mod:`advgrad.core.geometry`), which the bounds ask instead of its name."""
        return get_geometry(self.norm)

    def held(self) -> Tensor | None:
        """A bool row over the flattened coordinates, True at the fixed ones (None: none fixed)."""
        if not self.fixed:
            return None
        mask = torch.zeros(self.x0[0].numel(), dtype=torch.bool)
        mask[list(self.fixed)] = True
        return mask.to(self.x0.device)

    def box(self) -> Interval:
        """The interval hull: exact for L∞, the enclosing box of the ball for L2; [x0, x0] at the
        fixed coordinates."""
        lo, hi = (self.x0 - self.eps).clamp(min=self.lower), (self.x0 + self.eps).clamp(max=self.upper)
        held = self.held()
        if held is None:
            return lo, hi
        x0 = self.x0.flatten(1)
        return (
            torch.where(held, x0, lo.flatten(1)).reshape(lo.shape),
            torch.where(held, x0, hi.flatten(1)).reshape(hi.shape),
        )

    def minimise(self, a: Tensor) -> Tensor:
        """min over the set of Σ a·x for rows a (N, S, *input) → (N, S).

        L∞: each coordinate independently over [max(x0 − ε, lower), min(x0 + ε, upper)] (exact).
        L2: the larger of a·x0 − ε‖a‖₂ (the ball alone) and a dual bound for the ball ∩ box
        (:meth:`_ball_and_box`); both are sound."""
        flat = a.flatten(2)
        if self.geometry.ball_is_box:
            lo, hi = self.box()
            # Σ a⁺·lo + a⁻·hi = a·centre − |a|·radius
            centre, radius = ((hi + lo) / 2).flatten(1).unsqueeze(2), ((hi - lo) / 2).flatten(1).unsqueeze(2)
            return (torch.bmm(flat, centre) - torch.bmm(flat.abs(), radius)).squeeze(2)
        lo, hi = (t.flatten(1).unsqueeze(1) for t in self.box())
        return self.minimise_l2(flat, self.x0.flatten(1).unsqueeze(1), lo, hi, self.held())

    def minimise_l2(self, a: Tensor, x0: Tensor, lo: Tensor, hi: Tensor, held: Tensor | None = None) -> Tensor:
        """The L2 case of :meth:`minimise` for rows a (N, S, D) given with the matching entries of
        x0 and of the box (each (N, 1 or S, D)): a row that is zero outside some entries needs
        only those (the windows of :mod:`advgrad.bounds.patches`). ``held``: True at the fixed
        coordinates (D,)."""
        # the ball lies in the subspace of the free coordinates: ‖a‖ over those alone
        norm = (a if held is None else a.masked_fill(held, 0.0)).norm(dim=-1)
        ball = (a * x0).sum(-1) - self.eps * norm
        if self.eps == 0:
            return ball
        return torch.maximum(ball, self._ball_and_box(a, x0, norm, lo, hi))

    #: bisection steps of :meth:`_ball_and_box` (any step count is sound; more are tighter)
    DUAL_STEPS = 14

    def _ball_and_box(self, a: Tensor, x0: Tensor, norm: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        """A lower bound of min a·x over the L2 ball ∩ box by weak duality: for every t > 0,
        min ≥ g(t) = min_{x ∈ box} a·x + (‖x − x0‖² − ε²)/(2t), attained at
        x(t) = clamp(x0 − t·a, lo, hi). The best t makes ‖x(t) − x0‖ = ε; it is bracketed by
        bisection on log t from t₀ = ε/‖a‖ (where clamping can only shorten the step)."""
        t0 = self.eps / norm.clamp(min=1e-12)
        low_s = torch.zeros_like(norm)
        high_s = torch.full_like(norm, 30.0)

        def step(s: Tensor) -> Tensor:
            return (t0 * torch.exp2(s)).unsqueeze(-1)

        for _ in range(self.DUAL_STEPS):
            mid = (low_s + high_s) / 2
            dist = ((x0 - step(mid) * a).clamp(lo, hi) - x0).norm(dim=-1)
            inside = dist <= self.eps
            low_s = torch.where(inside, mid, low_s)
            high_s = torch.where(inside, high_s, mid)
        best = None
        for s in (low_s, high_s):
            t = step(s)
            x = (x0 - t * a).clamp(lo, hi)
            g = (a * x).sum(-1) + ((x - x0).pow(2).sum(-1) - self.eps**2) / (2 * t.squeeze(-1))
            best = g if best is None else torch.maximum(best, g)
        return best


def backward_lower(
    graph: BoundGraph, inputs: InputSet, start: str, rows: Tensor, bounds: dict[str, Interval]
) -> Tensor:
    """Lower bounds (N, S) of Σ rows·z_start over the input set, by CROWN."""
    return _propagate(graph, inputs, {start: rows}, rows.new_zeros(rows.shape[:2]), bounds)


#: a node's own backward map in place of its operator's: (rows on its output, its input bounds) →
#: (rows on each input, constant term); α-CROWN passes its optimised slopes this way
Hook = Callable[[Tensor, list[Interval]], tuple[list[Tensor], Tensor]]


def backward_rows(
    graph: BoundGraph,
    pending: dict[str, Tensor],
    bias: Tensor,
    bounds: dict[str, Interval],
    hooks: Mapping[str, Hook] | None = None,
) -> tuple[Tensor | None, Tensor]:
    """Push the rows ``pending`` (node → (N, S, *shape)) back to the input: the rows on the input
    (None when none reach it) and the constant term, so that Σ rows·z ≥ a_x·x + bias."""
    for node in reversed(graph.nodes):
        a = pending.pop(node.name, None)
        if a is None:
            continue
        in_bounds = [bounds[i] for i in node.inputs] if node.op.needs_input_bounds else []
        hook = hooks.get(node.name) if hooks else None
        a_ins, b = node.op.backward(a, in_bounds) if hook is None else hook(a, in_bounds)
        bias = bias + b
        for name, a_in in zip(node.inputs, a_ins, strict=True):
            pending[name] = pending[name] + a_in if name in pending else a_in
    return pending.pop(graph.input, None), bias


def _propagate(
    graph: BoundGraph,
    inputs: InputSet,
    pending: dict[str, Tensor],
    bias: Tensor,
    bounds: dict[str, Interval],
    hooks: Mapping[str, Hook] | None = None,
) -> Tensor:
    """Push the rows ``pending`` (node → (N, S, *shape)) back to the input and minimise."""
    a_x, bias = backward_rows(graph, pending, bias, bounds, hooks)
    if a_x is not None:
        bias = bias + inputs.minimise(a_x)
    return bias


#: largest Jacobian (output neurons × input numbers) that :func:`_refine` precomputes
JACOBIAN_LIMIT = 2**24


def _refine(graph: BoundGraph, inputs: InputSet, name: str, bounds: dict[str, Interval], which: str) -> None:
    """Tighten ``bounds[name]`` by CROWN, row chunk by row chunk, for the neurons ``which`` names
    (:data:`UNSTABLE`, :data:`MAYBE_ACTIVE` or :data:`EVERY`, judged by the current bounds)."""
    lo, hi = bounds[name]
    n = lo.shape[0]
    lo_f, hi_f = lo.flatten(1), hi.flatten(1)
    m = lo_f.shape[1]
    wanted = wanted_neurons(graph, name, bounds, which)
    k = int(wanted.sum(1).max())
    if k == 0:
        return
    chain = None if inputs.fixed else patches.conv_chain(graph, name)  # fixed coordinates: tables only
    # patches bound every neuron, each row on its window; dense rows only the wanted ones, each over
    # whole layers: the cheaper of the two (numbers a row holds, summed over the layers it crosses)
    if chain is not None and m * patches.window_cost(chain, graph) < k * patches.dense_cost(chain, graph):
        _refine_in_patches(graph, inputs, chain, bounds)
        return
    # per sample, the wanted neurons first (the tail of short rows repeats stable neurons: harmless)
    order = torch.sort(wanted.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :k]
    chunk = _row_chunk(graph, n, lo.element_size())
    shape = graph.shapes[name]
    node = next(nd for nd in graph.nodes if nd.name == name)
    # the first step back from identity rows is the layer's Jacobian, the same for every sample:
    # gather its rows instead of pushing one-hot rows through the layer
    sizes = [torch.Size(graph.shapes[i]).numel() for i in node.inputs]
    use_jacobian = isinstance(node.op, ops.Affine) and m * sum(sizes) <= JACOBIAN_LIMIT
    new_lo, new_hi = lo_f.clone(), hi_f.clone()
    for start in range(0, k, chunk):
        idx = order[:, start : start + chunk]  # (N, r)
        r = idx.shape[1]
        if use_jacobian:
            jac, const = node.op.jacobian(shape, lo)
            both = torch.cat([idx, idx], dim=1)
            sign = torch.cat([lo.new_ones(r), -lo.new_ones(r)]).reshape(1, 2 * r)
            pending: dict[str, Tensor] = {}
            for i, j in zip(node.inputs, jac, strict=True):
                a = j[both] * sign.reshape(1, 2 * r, *([1] * (j.dim() - 1)))
                pending[i] = pending[i] + a if i in pending else a
            low = _propagate(graph, inputs, pending, const[both] * sign, bounds)
        else:
            eye = torch.zeros(n, r, m, dtype=lo.dtype, device=lo.device)
            eye.scatter_(2, idx.unsqueeze(2), 1.0)
            rows = torch.cat([eye, -eye], dim=1).reshape(n, 2 * r, *shape)
            low = backward_lower(graph, inputs, name, rows, bounds)
        new_lo.scatter_reduce_(1, idx, low[:, :r], reduce="amax")
        new_hi.scatter_reduce_(1, idx, -low[:, r:], reduce="amin")
    bounds[name] = (new_lo.reshape(lo.shape), torch.maximum(new_hi, new_lo).reshape(hi.shape))


def wanted_neurons(graph: BoundGraph, name: str, bounds: dict[str, Interval], which: str) -> Tensor:
    """bool (N, neurons of ``name``): those whose bounds the readers of ``name`` use, as ``which``
    (:data:`UNSTABLE`, :data:`MAYBE_ACTIVE` or :data:`EVERY`) names them, by the current bounds."""
    lo_f, hi_f = (t.flatten(1) for t in bounds[name])
    if which == EVERY:
        return torch.ones_like(lo_f, dtype=torch.bool)
    if which == UNSTABLE:
        return (lo_f < 0) & (hi_f > 0)
    return (hi_f > 0) & ((lo_f < 0) | _read_by_pools(graph, name, bounds).flatten(1))


def _refine_in_patches(graph: BoundGraph, inputs: InputSet, chain: list, bounds: dict[str, Interval]) -> None:
    """Tighten every neuron of the convolution ``chain[0]`` by CROWN in patches
    (:mod:`advgrad.bounds.patches`), in chunks of samples (and of output channels when one sample
    needs more) within :data:`ROW_BUDGET`."""
    name = chain[0].name
    lo, hi = bounds[name]
    n, channels = lo.shape[:2]
    positions = lo[0, 0].numel()
    # a few live copies of the widest rows: 2 rows a channel, one window per position
    per_channel = 2 * positions * patches.window_width(chain, graph) * lo.element_size() * 4
    ch_step = max(1, min(channels, ROW_BUDGET // max(per_channel, 1)))
    n_step = max(1, min(n, ROW_BUDGET // max(per_channel * ch_step, 1)))
    new_lo, new_hi = lo.flatten(2).clone(), hi.flatten(2).clone()
    for s in range(0, n, n_step):
        for c in range(0, channels, ch_step):
            rows, cols = slice(s, s + n_step), slice(c, c + ch_step)
            low, high = patches.conv_chain_bounds(chain, graph, bounds, inputs, rows, cols)
            new_lo[rows, cols] = torch.maximum(new_lo[rows, cols], low)
            new_hi[rows, cols] = torch.minimum(new_hi[rows, cols], high)
    bounds[name] = (new_lo.reshape(lo.shape), torch.maximum(new_hi, new_lo).reshape(hi.shape))


def _row_chunk(graph: BoundGraph, samples: int, element_size: int) -> int:
    """How many specification rows one backward pass may carry within :data:`ROW_BUDGET`."""
    widest = max(torch.Size(s).numel() for s in graph.shapes.values())
    return max(1, ROW_BUDGET // max(samples * widest * element_size * 4, 1))


#: which neurons of a pre-activation :func:`_refine` tightens
UNSTABLE, MAYBE_ACTIVE, EVERY = "unstable", "maybe-active", "every"


def _refinement(graph: BoundGraph, name: str) -> str:
    """Which neurons of ``name`` need CROWN bounds. ``EVERY`` when an operator that reads them
    relaxes with all of them (max-pooling, sigmoid). ``MAYBE_ACTIVE`` when a ReLU-like reader's
    output goes on to such an operator (ReLU → max-pool): the pool's relaxation uses the bounds of
    the stably active neurons too, while a stably inactive one is exactly 0 after the ReLU whatever
    its bounds. ``UNSTABLE`` otherwise: a ReLU's relaxation is exact on a stable neuron."""
    mode = UNSTABLE
    for reader in graph.consumers(name):
        if not reader.op.needs_input_bounds:
            continue
        if not reader.op.only_unstable:
            return EVERY
        if any(c.op.needs_input_bounds and not c.op.only_unstable for c in graph.consumers(reader.name)):
            mode = MAYBE_ACTIVE
    return mode


def _read_by_pools(graph: BoundGraph, name: str, bounds: dict[str, Interval]) -> Tensor:
    """bool, shaped like ``name``'s bounds: the neurons whose bounds, after a ReLU-like reader,
    shape a relaxation further on: those in an undecided max-pool window (an operator without an
    ``undecided`` rule counts every neuron)."""
    lo = bounds[name][0]
    wanted = torch.zeros_like(lo, dtype=torch.bool)
    for reader in graph.consumers(name):
        if not (reader.op.needs_input_bounds and reader.op.only_unstable):
            continue
        after = reader.op.interval([bounds[name]])
        for c in graph.consumers(reader.name):
            if not c.op.needs_input_bounds or c.op.only_unstable:
                continue
            rule = getattr(c.op, "undecided", None)
            if rule is None or len(c.inputs) != 1:
                return torch.ones_like(wanted)
            wanted |= rule([after]).reshape(wanted.shape)
    return wanted


def refined_nodes(graph: BoundGraph) -> dict[str, str]:
    """The nodes whose bounds CROWN tightens (affine outputs that a nonlinear operator reads), each
    with which of its neurons need it (:func:`_refinement`)."""
    kinds = {n.name: n for n in graph.nodes}
    to_refine: dict[str, str] = {}
    for node in graph.nodes:
        if not node.op.needs_input_bounds:
            continue
        for name in node.inputs:
            source = kinds.get(name)
            if source is not None and isinstance(source.op, ops.Affine):
                to_refine[name] = _refinement(graph, name)
    return to_refine


#: tightens ``bounds[name]`` in place, as :func:`_refine` does: (graph, inputs, name, bounds, which)
Refiner = Callable[[BoundGraph, InputSet, str, dict[str, Interval], str], None]


def interval_bounds(
    graph: BoundGraph,
    inputs: InputSet,
    refine: bool,
    constrain: Callable[[str, Interval], Interval] | None = None,
    refiner: Refiner | None = None,
) -> dict[str, Interval]:
    """Intervals for every node, forward in topological order; with ``refine`` the inputs of
    nonlinear operators that are affine outputs are tightened by CROWN first (by ``refiner`` when
    given). ``constrain`` maps each node's interval, as computed, to the one kept (branch and
    bound intersects it with what is already known and with its split constraints)."""
    bounds: dict[str, Interval] = {graph.input: inputs.box()}
    to_refine = refined_nodes(graph) if refine else {}
    for node in graph.nodes:
        interval = node.op.interval([bounds[i] for i in node.inputs])
        bounds[node.name] = interval if constrain is None else constrain(node.name, interval)
        # one affine layer on an L∞ box: the interval is already exact, CROWN cannot tighten it
        exact = inputs.geometry.ball_is_box and node.inputs == [graph.input] and isinstance(node.op, ops.Affine)
        if node.name in to_refine and not exact:
            (refiner or _refine)(graph, inputs, node.name, bounds, to_refine[node.name])
            if constrain is not None:
                bounds[node.name] = constrain(node.name, bounds[node.name])
    return bounds


def margin_rows(y: Tensor, classes: int, dtype: torch.dtype) -> Tensor:
    """C (N, classes, classes) with row j = e_y − e_j (row y is zero)."""
    eye = torch.eye(classes, dtype=dtype, device=y.device)
    return eye[y].unsqueeze(1) - eye.unsqueeze(0)


def margin_lower(
    graph: BoundGraph, inputs: InputSet, y: Tensor, method: str, bounds: dict[str, Interval] | None = None
) -> Tensor:
    """(N, classes) lower bounds of z_y − z_j; column y is +inf. ``bounds``: the intervals of every
    node when already computed (for ``crown``, with the refinement)."""
    classes = graph.shapes[graph.output][0]
    rows = margin_rows(y, classes, inputs.x0.dtype)
    if bounds is None:
        bounds = interval_bounds(graph, inputs, refine=method == "crown")
    if method == "ibp":
        # the specification folded into the last operator when it is affine (elision)
        last = next(n for n in graph.nodes if n.name == graph.output)
        if isinstance(last.op, ops.Affine):
            a_ins, low = last.op.backward(rows, [])
            for name, a in zip(last.inputs, a_ins, strict=True):
                lo, hi = bounds[name]
                flat = a.flatten(2)
                low = low + (flat.clamp(min=0) * lo.flatten(1).unsqueeze(1)).sum(-1)
                low = low + (flat.clamp(max=0) * hi.flatten(1).unsqueeze(1)).sum(-1)
        else:
            lo, hi = bounds[graph.output]
            low = lo.gather(1, y[:, None]) - hi
    else:
        chunk = _row_chunk(graph, len(y), inputs.x0.element_size())
        low = torch.cat(
            [
                backward_lower(graph, inputs, graph.output, rows[:, i : i + chunk], bounds)
                for i in range(0, classes, chunk)
            ],
            dim=1,
        )
    return low.scatter(1, y[:, None], torch.inf)
