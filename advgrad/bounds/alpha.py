"""α-CROWN: CROWN with its free relaxation parameters optimised (Xu et al. 2021, "Fast and Complete:
Enabling Complete Neural Network Verification with Rapid and Massively Parallel Incomplete
Verifiers"), and β-CROWN's split multipliers (Wang et al. 2021, "Beta-CROWN").

A ReLU (or LeakyReLU with slope s ≤ 1) neuron that is unstable on [l, u] may take any lower line
α·x with α ∈ [s, 1]: every such line lies below max(x, s·x). CROWN picks α by a rule; α-CROWN
makes α a tensor, one entry per neuron, per row of the specification and per property, and
maximises the bound by projected gradient ascent (Adam, then a clamp into [s, 1]). Soundness
never depends on the optimiser: the bound is computed with slopes in range at every iterate, and
each iterate's bound is valid, so the best one is kept.

Which bounds are optimised:

- the rows of the specification (the margins z_y − z_j): always;
- the pre-activation bounds that CROWN computes with dense rows (fully connected layers, and any
  layer outside a chain of convolutions), one α per neuron of every earlier ReLU and per row of
  the refined neuron, with ``intermediate=True``; these feed the relaxations of later layers and
  the gradient of the final bound reaches their slopes through them;
- the pre-activations that CROWN bounds in patches (convolutions reached from the input by
  convolutions) keep CROWN's bounds: optimising every neuron of a convolution per row would take
  a slope tensor per output neuron, far more memory than it pays on the models tried.

With split constraints (branch and bound, :mod:`advgrad.bounds.bab`), ``splits[node]`` holds +1
where the sub-domain requires the pre-activation ≥ 0, −1 where ≤ 0, 0 elsewhere. The bounds used
are those known for the sub-domain, clamped by the splits; and β ≥ 0 adds −β·s·z to each row
(β-CROWN's Lagrangian term): on the sub-domain s·z ≥ 0, so the margin is ≥ margin − β·s·z
there, and a bound of the latter over the whole input set is a bound of the former over the
sub-domain, for every β ≥ 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from advgrad.bounds import ops, patches
from advgrad.bounds.graph import BoundGraph
from advgrad.bounds.propagate import (
    Hook,
    InputSet,
    Interval,
    backward_rows,
    interval_bounds,
    refined_nodes,
    wanted_neurons,
)

#: numbers the bound computations of one chunk of properties may hold while optimising
GRAPH_BUDGET = 128 * 2**20


@dataclass
class AlphaParams:
    """The optimiser of α-CROWN: ``iterations`` Adam steps of learning rate ``lr`` (times ``decay``
    per step) on the slopes, ``beta_lr`` on β; ``intermediate``: optimise the dense
    pre-activation bounds too (see the module's docstring)."""

    iterations: int = 20
    lr: float = 0.5
    beta_lr: float = 0.1
    decay: float = 0.95
    intermediate: bool = True


def sloped_nodes(graph: BoundGraph) -> dict[str, ops.LeakyReLU]:
    """The ReLU-like nodes whose lower slope is free (ReLU, LeakyReLU with slope ≤ 1)."""
    return {n.name: n.op for n in graph.nodes if isinstance(n.op, ops.LeakyReLU) and n.op.slope_range() is not None}


def initial_slopes(graph: BoundGraph, bounds: Mapping[str, Interval], rows: int) -> dict[str, Tensor]:
    """CROWN's own lower slopes (1 where u ≥ −l, else s), one per row: (P, rows, *shape) per node."""
    out = {}
    nodes = {n.name: n for n in graph.nodes}
    for name, op in sloped_nodes(graph).items():
        lo, hi = bounds[nodes[name].inputs[0]]
        al = op.relax(lo, hi)[0]
        out[name] = al.unsqueeze(1).expand(al.shape[0], rows, *al.shape[1:]).clone()
    return out


def _hooks(
    graph: BoundGraph,
    slopes: Mapping[str, Tensor],
    seen: dict[str, Tensor] | None = None,
    lines: Mapping[str, tuple[Tensor, ...]] | None = None,
) -> dict[str, Hook]:
    """Backward maps with the slopes ``slopes``; ``seen`` collects the rows reaching each node.
    ``lines``: each node's relaxation (:func:`_lines`), when the intervals stay the same over many
    bound computations."""
    sloped = sloped_nodes(graph)
    hooks: dict[str, Hook] = {}
    for name, alpha in slopes.items():

        def hook(a, in_bounds, op=sloped[name], alpha=alpha, name=name):
            if seen is not None:
                seen[name] = a
            if lines is None:
                return op.backward_with_slope(a, in_bounds, alpha)
            lo, hi, al, bl, au, bu = lines[name]
            return ops.lines_backward(a, op.with_slope(lo, hi, al, alpha), bl, au, bu)

        hooks[name] = hook
    return hooks


def _lines(graph: BoundGraph, bounds: Mapping[str, Interval]) -> dict[str, tuple[Tensor, ...]]:
    """Per ReLU-like node: its input's interval and CROWN's lines on it, each (P, 1, *shape)."""
    nodes = {n.name: n for n in graph.nodes}
    out = {}
    for name, op in sloped_nodes(graph).items():
        lo, hi = bounds[nodes[name].inputs[0]]
        out[name] = tuple(t.unsqueeze(1) for t in (lo, hi, *op.relax(lo, hi)))
    return out


def split_terms(graph: BoundGraph, splits: Mapping[str, Tensor], betas: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """β-CROWN's rows −β·s on the split pre-activations (node → (P, S, *shape))."""
    nodes = {n.name: n for n in graph.nodes}
    out = {}
    for name, beta in betas.items():
        pre = nodes[name].inputs[0]
        # β ≥ 0 in value; the gradient passes as it is (torch's clamp has none at 0, where β starts)
        positive = beta - (beta - beta.clamp(min=0)).detach()
        out[pre] = -positive * splits[pre].unsqueeze(1).to(beta.dtype)
    return out


def clamp_splits(name: str, interval: Interval, splits: Mapping[str, Tensor] | None) -> Interval:
    """The interval of a pre-activation on a sub-domain: ≥ 0 where split active, ≤ 0 where inactive."""
    lo, hi = interval
    s = None if splits is None else splits.get(name)
    if s is None:
        return lo, hi
    lo = torch.where(s > 0, lo.clamp(min=0), lo)
    hi = torch.where(s < 0, hi.clamp(max=0), hi)
    return lo, torch.maximum(hi, lo)


def known_and_split(
    known: Mapping[str, Interval] | None, splits: Mapping[str, Tensor] | None
) -> Callable[[str, Interval], Interval]:
    """The ``constrain`` of :func:`advgrad.bounds.propagate.interval_bounds` on a sub-domain: each
    interval intersected with the one already known for it (itself valid there), then clamped by
    the splits."""

    def constrain(name: str, interval: Interval) -> Interval:
        lo, hi = interval
        if known is not None and name in known:
            k_lo, k_hi = known[name]
            lo, hi = torch.maximum(lo, k_lo), torch.minimum(hi, k_hi)
            hi = torch.maximum(hi, lo)
        return clamp_splits(name, (lo, hi), splits)

    return constrain


@dataclass
class _Refined:
    """One α-optimised pre-activation: its neurons ``order`` (P, k) bounded by dense rows, or None
    for all of them in patches (``chain``); the slopes of the ReLU-like nodes before it, one per
    neuron and direction (P, 2, *shape): the first for the rows of its lower bounds, the second
    for those of its upper bounds."""

    order: Tensor | None
    chain: list | None
    slopes: dict[str, Tensor]


def _plan_intermediate(graph: BoundGraph, inputs: InputSet, bounds: Mapping[str, Interval]) -> dict[str, _Refined]:
    """The refined pre-activations, each with CROWN's slopes as the start."""
    plan: dict[str, _Refined] = {}
    sloped = sloped_nodes(graph)
    nodes = {n.name: n for n in graph.nodes}
    order_of = {n.name: i for i, n in enumerate(graph.nodes)}
    start = initial_slopes(graph, bounds, 2)
    for name, which in refined_nodes(graph).items():
        before = {r: start[r].clone() for r in sloped if order_of[r] < order_of[name]}
        if (inputs.geometry.ball_is_box and nodes[name].inputs == [graph.input]) or not before:
            continue  # one affine layer on an L∞ box is exact; without a slope before it, CROWN's bound stays
        chain = None if inputs.fixed else patches.conv_chain(graph, name)
        wanted = wanted_neurons(graph, name, dict(bounds), which)
        k = int(wanted.sum(1).max()) if wanted.numel() else 0
        # patches bound every neuron, dense rows only the wanted ones: the cheaper, as CROWN chooses
        if chain is not None and wanted.shape[1] * patches.window_cost(chain, graph) < k * patches.dense_cost(
            chain, graph
        ):
            plan[name] = _Refined(None, chain, before)
        elif k:
            order = torch.sort(wanted.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :k]
            plan[name] = _Refined(order, None, before)
    return plan


def _refiner(plan: Mapping[str, _Refined]):
    """A refiner for :func:`interval_bounds`: the planned nodes by α-CROWN; the others keep what
    ``constrain`` gave them (CROWN's bounds, known beforehand)."""

    def refine(graph: BoundGraph, inputs: InputSet, name: str, bounds: dict[str, Interval], which: str) -> None:
        item = plan.get(name)
        if item is None:
            return
        lo, hi = bounds[name]
        if item.chain is not None:
            low, high = patches.conv_chain_bounds(
                item.chain, graph, bounds, inputs, slice(None), slice(None), slopes=item.slopes
            )
            new_lo = torch.maximum(lo, low.reshape(lo.shape))
            bounds[name] = (new_lo, torch.maximum(torch.minimum(hi, high.reshape(hi.shape)), new_lo))
            return
        n, k = item.order.shape
        lo_f, hi_f = lo.flatten(1), hi.flatten(1)
        eye = torch.zeros(n, k, lo_f.shape[1], dtype=lo.dtype, device=lo.device)
        eye.scatter_(2, item.order.unsqueeze(2), 1.0)
        rows = torch.cat([eye, -eye], dim=1).reshape(n, 2 * k, *lo.shape[1:])
        per_row = {r: t.repeat_interleave(k, dim=1) for r, t in item.slopes.items()}
        a_x, bias = backward_rows(graph, {name: rows}, rows.new_zeros(n, 2 * k), bounds, _hooks(graph, per_row))
        low = bias if a_x is None else bias + inputs.minimise(a_x)
        new_lo = lo_f.scatter(1, item.order, torch.maximum(lo_f.gather(1, item.order), low[:, :k]))
        new_hi = hi_f.scatter(1, item.order, torch.minimum(hi_f.gather(1, item.order), -low[:, k:]))
        bounds[name] = (new_lo.reshape(lo.shape), torch.maximum(new_hi, new_lo).reshape(hi.shape))

    return refine


def minimiser(inputs: InputSet, a: Tensor) -> Tensor:
    """A point of the input set where Σ a·x is smallest (L∞: exactly; L2: the ball's minimiser
    x0 − ε·a/‖a‖ clamped into the box, which stays in the ball), per row: (N, S, *input)."""
    lo, hi = (t.unsqueeze(1) for t in inputs.box())
    if inputs.geometry.ball_is_box:
        return torch.where(a > 0, lo, hi)
    held = inputs.held()
    free = a if held is None else a.flatten(2).masked_fill(held, 0.0).reshape(a.shape)
    norm = free.flatten(2).norm(dim=-1).clamp(min=1e-30).reshape(*a.shape[:2], *([1] * (a.dim() - 2)))
    return (inputs.x0.unsqueeze(1) - inputs.eps * free / norm).clamp(lo, hi)


@dataclass
class Optimised:
    """α-CROWN on P properties: ``lower`` (P, S) the best bounds found; ``slopes``/``betas`` those
    of the best iterate of each property; ``bounds`` the pre-activation bounds of the last
    evaluation (valid on each property's domain); ``relu_rows`` the rows reaching each ReLU-like
    node and ``input_rows`` those reaching the input (the branching scores read them); ``point``
    the input minimising the final linear bound, a candidate counterexample."""

    lower: Tensor
    slopes: dict[str, Tensor]
    betas: dict[str, Tensor]
    bounds: dict[str, Interval]
    relu_rows: dict[str, Tensor] = field(default_factory=dict)
    input_rows: Tensor | None = None
    point: Tensor | None = None


def _evaluate(graph, inputs, rows, known, splits, plan, slopes, betas, seen=None, fixed=None):
    """One bound computation with the given parameters: (lower (P, S), rows on the input, bounds).
    ``fixed``: the intervals of every node and the relaxations on them (:func:`_lines`), when no
    intermediate bound is optimised (computed once)."""
    if fixed is None:
        bounds = interval_bounds(
            graph, inputs, refine=bool(plan), constrain=known_and_split(known, splits), refiner=_refiner(plan)
        )
        lines = None
    else:
        bounds, lines = fixed
    pending = {graph.output: rows}
    if splits and betas:
        pending.update(split_terms(graph, splits, betas))
    hooks = _hooks(graph, slopes, seen, lines)
    a_x, bias = backward_rows(graph, pending, rows.new_zeros(rows.shape[:2]), bounds, hooks)
    low = bias if a_x is None else bias + inputs.minimise(a_x)
    return low, a_x, bounds


def optimise(
    graph: BoundGraph,
    inputs: InputSet,
    rows: Tensor,
    known: Mapping[str, Interval],
    params: AlphaParams,
    *,
    target: Tensor | float = 0.0,
    splits: Mapping[str, Tensor] | None = None,
    slopes: Mapping[str, Tensor] | None = None,
    betas: Mapping[str, Tensor] | None = None,
) -> Optimised:
    """Maximise the lower bounds of Σ rows·z_output (rows (P, S, classes)) over the slopes (and the
    β of the splits), from ``slopes``/``betas`` (CROWN's slopes and β = 0 when not given); a row
    stops counting in the objective once its bound exceeds ``target``. ``known``: valid bounds
    of every refined node on each property's domain (CROWN's, or a parent domain's)."""
    n_rows = rows.shape[1]
    plan = _plan_intermediate(graph, inputs, known) if params.intermediate else {}
    slopes = {k: v.detach().clone() for k, v in (slopes or initial_slopes(graph, known, n_rows)).items()}
    betas = {k: v.detach().clone() for k, v in (betas or {}).items()}
    if splits:
        for name in sloped_nodes(graph):
            pre = next(n for n in graph.nodes if n.name == name).inputs[0]
            if pre in splits and name not in betas:
                betas[name] = rows.new_zeros(rows.shape[0], n_rows, *graph.shapes[pre])
    tensors = list(slopes.values()) + [t for item in plan.values() for t in item.slopes.values()]
    groups = [{"params": tensors, "lr": params.lr}]
    if betas:
        groups.append({"params": list(betas.values()), "lr": params.beta_lr})
    for t in tensors + list(betas.values()):
        t.requires_grad_(True)
    best = rows.new_full(rows.shape[:2], -math.inf)
    best_slopes = {k: v.detach().clone() for k, v in slopes.items()}
    best_betas = {k: v.detach().clone() for k, v in betas.items()}
    target = torch.as_tensor(target, dtype=rows.dtype, device=rows.device)
    fixed = None
    if not plan:  # the intervals do not depend on the parameters: computed once
        with torch.no_grad():
            bounds = interval_bounds(graph, inputs, refine=False, constrain=known_and_split(known, splits))
            fixed = (bounds, _lines(graph, bounds))
    if params.iterations > 0:
        adam = torch.optim.Adam(groups)
        schedule = torch.optim.lr_scheduler.ExponentialLR(adam, params.decay)
        with torch.enable_grad():
            for _ in range(params.iterations):
                low = _evaluate(graph, inputs, rows, known, splits, plan, slopes, betas, fixed=fixed)[0]
                improved = low.detach() > best
                _keep(best_slopes, slopes, improved)
                _keep(best_betas, betas, improved)
                best = torch.maximum(best, low.detach())
                open_ = best <= target
                if not bool(open_.any()) or not low.requires_grad:  # done, or nothing to optimise
                    break
                adam.zero_grad(set_to_none=True)
                (-(low * open_).sum()).backward()
                adam.step()
                schedule.step()
                _project(graph, slopes, plan, betas)
    with torch.no_grad():
        seen: dict[str, Tensor] = {}
        low, a_x, bounds = _evaluate(graph, inputs, rows, known, splits, plan, best_slopes, best_betas, seen, fixed)
        best = torch.maximum(best, low)
    return Optimised(
        lower=best,
        slopes=best_slopes,
        betas=best_betas,
        bounds={k: (lo.detach(), hi.detach()) for k, (lo, hi) in bounds.items()},
        relu_rows=seen,
        input_rows=a_x,
        point=None if a_x is None else minimiser(inputs, a_x),
    )


def _keep(best: dict[str, Tensor], current: Mapping[str, Tensor], improved: Tensor) -> None:
    """Copy the parameters of the properties and rows whose bound improved (``improved`` (P, S))."""
    for name, value in current.items():
        mask = improved.reshape(*improved.shape, *([1] * (value.dim() - 2)))
        best[name] = torch.where(mask, value.detach(), best[name])


def _project(graph: BoundGraph, slopes, plan, betas) -> None:
    """Back into range after a step: slopes into [s, 1], β ≥ 0."""
    sloped = sloped_nodes(graph)
    with torch.no_grad():
        for store in [slopes, *(item.slopes for item in plan.values())]:
            for name, alpha in store.items():
                low, high = sloped[name].slope_range()
                alpha.clamp_(low, high)
        for beta in betas.values():
            beta.clamp_(min=0)


def take(inputs: InputSet, index: Tensor) -> InputSet:
    """The input set of the samples ``index`` (a box given per sample is taken along)."""

    def pick(v):
        return v[index] if isinstance(v, Tensor) else v

    return InputSet(inputs.x0[index], inputs.eps, inputs.norm, pick(inputs.lower), pick(inputs.upper), inputs.fixed)


def take_bounds(bounds: Mapping[str, Interval], index: Tensor) -> dict[str, Interval]:
    return {k: (lo[index], hi[index]) for k, (lo, hi) in bounds.items()}


def margin_lower_alpha(
    graph: BoundGraph, inputs: InputSet, y: Tensor, target: Tensor, params: AlphaParams, floor: Tensor | None = None
) -> Tensor:
    """(N, classes) lower bounds of z_y − z_j by α-CROWN; column y is +inf. Rows that CROWN (or
    ``floor``, bounds known otherwise) already puts above ``target`` (N,) keep that bound; the
    others are optimised, one property per sample holding its open rows (so the sample's
    intermediate bounds and their slopes are optimised once for all its rows, as auto_LiRPA
    shares them), in chunks within :data:`GRAPH_BUDGET`."""
    from advgrad.bounds.propagate import margin_lower, margin_rows

    bounds = interval_bounds(graph, inputs, refine=True)
    low = margin_lower(graph, inputs, y, "crown", bounds=bounds)
    if floor is not None:
        low = torch.maximum(low, floor)
    open_rows = low <= target[:, None]
    samples = open_rows.any(dim=1).nonzero().squeeze(1)
    if samples.numel() == 0:
        return low
    classes = low.shape[1]
    # each sample's open classes first (stable order), padded with closed rows that stop counting at once
    order = torch.sort(open_rows[samples].to(torch.int8), dim=1, descending=True, stable=True).indices
    width = int(open_rows[samples].sum(dim=1).max())
    cls = order[:, :width]
    rows = margin_rows(y[samples], classes, inputs.x0.dtype).gather(
        1, cls[:, :, None].expand(-1, -1, classes)
    )  # (P, width, classes)
    wanted = open_rows[samples].gather(1, cls)
    row_target = target[samples, None].expand(cls.shape).masked_fill(~wanted, -math.inf)
    step = property_chunk(graph, bounds, len(samples), bool(inputs.fixed), rows=width)
    found = []
    for s in range(0, len(samples), step):
        part = slice(s, s + step)
        idx = samples[part]
        result = optimise(
            graph, take(inputs, idx), rows[part], take_bounds(bounds, idx), params, target=row_target[part]
        )
        found.append(result.lower)
    before = low[samples].gather(1, cls)
    better = torch.where(wanted, torch.maximum(before, torch.cat(found)), before)
    return low.index_put((samples[:, None].expand_as(cls), cls), better)


def property_chunk(
    graph: BoundGraph, bounds: Mapping[str, Interval], properties: int, fixed: bool = False, rows: int = 1
) -> int:
    """How many properties one optimisation may carry within :data:`GRAPH_BUDGET`: the numbers its
    rows hold on every layer they cross (each neuron of a convolution in patches on its windows;
    the neurons a dense refinement needs, as many as the most any sample has, over whole layers;
    the final ``rows``), three times for what autograd keeps."""
    layers = sum(math.prod(shape) for shape in graph.shapes.values())
    per_property = rows * layers
    for name, which in refined_nodes(graph).items():
        chain = None if fixed else patches.conv_chain(graph, name)
        if chain is not None:
            per_property += 2 * math.prod(graph.shapes[name]) * patches.window_cost(chain, graph)
        else:
            wanted = wanted_neurons(graph, name, dict(bounds), which)
            per_property += 2 * (int(wanted.sum(1).max()) if wanted.numel() else 0) * layers
    return max(1, min(properties, GRAPH_BUDGET // max(3 * per_property, 1)))


def split_estimates(
    graph: BoundGraph,
    inputs: InputSet,
    rows: Tensor,
    known: Mapping[str, Interval],
    splits: Mapping[str, Tensor],
    slopes: Mapping[str, Tensor],
    betas: Mapping[str, Tensor],
    where: Tensor,
) -> Tensor:
    """The bounds of the children of each domain if it were split on each candidate neuron
    ``where`` (P, k: indices into the ReLU-like nodes' neurons, concatenated in graph order), with
    the domain's slopes, multipliers and intervals: (P, 2, k), the z ≥ 0 children first. One
    backward pass with 2k rows per domain, each row with its candidate's relaxation made exact;
    the intervals of later layers are not tightened (an estimate for choosing, never a bound
    that closes a domain)."""
    n, k = where.shape
    with torch.no_grad():
        bounds = interval_bounds(graph, inputs, refine=False, constrain=known_and_split(known, splits))
        lines = {}
        offset = 0
        sign = torch.cat([torch.ones(k), -torch.ones(k)]).to(rows)  # (2k,)
        both = torch.cat([where, where], dim=1)  # (P, 2k)
        for name, (lo, hi, al, bl, au, bu) in _lines(graph, bounds).items():
            size = lo[0, 0].numel()
            mine = (both >= offset) & (both < offset + size)
            index = (both - offset).clamp(0, size - 1).unsqueeze(2)
            per_row = []
            for t, active, inactive in (
                (lo, 0.0, None),
                (hi, None, 0.0),
                (al, 1.0, 0.0),
                (au, 1.0, 0.0),
                (bu, 0.0, 0.0),
            ):
                t = t.expand(n, 2 * k, *t.shape[2:]).flatten(2).clone()
                value = t.gather(2, index)[..., 0]
                if active is not None:
                    value = torch.where(sign > 0, torch.full_like(value, active), value)
                if inactive is not None:
                    value = torch.where(sign < 0, torch.full_like(value, inactive), value)
                t.scatter_(2, index, torch.where(mine, value, t.gather(2, index)[..., 0]).unsqueeze(2))
                per_row.append(t.reshape(n, 2 * k, *lo.shape[2:]))
            lo_r, hi_r, al_r, au_r, bu_r = per_row
            lines[name] = (lo_r, hi_r, al_r, bl, au_r, bu_r)
            offset += size
        wide = rows.expand(n, 2 * k, rows.shape[-1])
        pending = {graph.output: wide}
        if splits and betas:
            pending.update(split_terms(graph, splits, betas))
        a_x, bias = backward_rows(graph, pending, wide.new_zeros(n, 2 * k), bounds, _hooks(graph, slopes, None, lines))
        low = bias if a_x is None else bias + inputs.minimise(a_x)
    return low.reshape(n, 2, k)
