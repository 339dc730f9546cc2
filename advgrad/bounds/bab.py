"""Branch and bound: a verdict per sample, verified, falsified or unknown.

For each sample the property is "z_y(x) > z_j(x) for every x in the ε-ball ∩ box and every
class j ≠ y". It is decided margin row by margin row (a *property* is a pair (sample, j)):

1. CROWN, then α-CROWN (:mod:`advgrad.bounds.alpha`) on the rows CROWN leaves open;
2. an attack (projected gradient descent on z_y − z_j, several random starts) on those rows:
   a point of the ball ∩ box that a plain forward pass classifies wrongly falsifies the sample;
3. branch and bound on the rows still open. A *domain* is the ball ∩ box cut by split
   constraints: an unstable ReLU-like neuron z is split into z ≥ 0 and z ≤ 0 (or, for inputs
   with few movable coordinates, a coordinate's interval into halves). Each domain is bounded by
   α-CROWN with β-CROWN's multipliers for its splits, warm-started from its parent's slopes;
   the bounds of the refined pre-activations are recomputed by CROWN on the domain and
   intersected with the parent's. A domain whose bound exceeds the certification slack is
   closed; the others are split again, the worst first, many domains per batched bound
   computation. Every child's minimiser of its final linear bound is a point of the ball ∩ box:
   one forward pass each checks it as a counterexample.

Soundness. A split of z partitions the domain D into D⁺ = D ∩ {z ≥ 0} and D⁻ = D ∩ {z ≤ 0}, so
the children cover the parent. On D⁺ every bound valid on D is valid, and so is z ≥ 0: the
interval of z is clamped to [max(l, 0), u], and the ReLU's relaxation on that interval is valid
on D⁺; every later bound is computed from relaxations valid on D⁺, then minimised over the
whole ball ∩ box ⊇ D⁺, which can only lower it. β-CROWN adds −β·s·z (β ≥ 0, s = ±1 the split's
sign) to the bounded function; on D⁺ (s = 1) that term is ≤ 0, so the bound stays a bound of the
margin. So a row is verified when every leaf of its tree is closed, whatever the optimiser did.
A counterexample is reported only after a plain forward pass of the model confirms it and the
threat model confirms it lies in the ball ∩ box.

Completeness. Splitting ReLU-like neurons until none is unstable leaves a network that is linear
on the domain, but the bound, minimised over the whole ball, is exact only when β is optimal;
max-pooling, clamp, sigmoid and tanh are relaxed, never split. A domain that can be split no
further and stays open leaves its sample *unknown* (as does running out of time or domains).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from advgrad.bounds.alpha import (
    AlphaParams,
    Optimised,
    known_and_split,
    optimise,
    property_chunk,
    sloped_nodes,
    split_estimates,
    take,
    take_bounds,
)
from advgrad.bounds.graph import BoundGraph
from advgrad.bounds.leaf import leaves_are_linear, solve_leaves
from advgrad.bounds.propagate import InputSet, Interval, interval_bounds, margin_lower, margin_rows, refined_nodes
from advgrad.core.numeric import check_number
from advgrad.core.threat import ThreatModel

VERIFIED, UNKNOWN, FALSIFIED = 1, 0, -1

#: inputs with at most this many movable coordinates are split on the input, not on neurons
INPUT_SPLIT_FEATURES = 16
#: networks with at most this many ReLU-like neurons recompute each domain's intermediate bounds
RECOMPUTE_NEURONS = 1024
#: bytes the open domains may hold; beyond, the properties with the most domains are given up (unknown)
DOMAIN_BUDGET = 2 * 2**30


@dataclass
class BabParams:
    """Limits and effort of branch and bound.

    ``timeout``: seconds per sample (its share of the batched computations; None: no limit);
    ``budget``: seconds for the whole call; ``max_domains``: domains bounded per sample, a limit
    that does not depend on the machine's speed (tests use it; None: no limit). The rest is
    effort: ``batch`` domains per batched bound computation, ``iterations`` α/β steps per
    domain, ``candidates`` neurons whose splits are tried before one is chosen, ``root`` the
    α-CROWN run before branching, ``attack_steps``/``attack_restarts`` the projected gradient
    descent before branching, ``recompute`` whether each domain's refined pre-activations are
    bounded again by CROWN (tighter, several times slower per domain on a large network) or
    inherited from its parent (None: recompute for networks of at most :data:`RECOMPUTE_NEURONS`
    ReLU-like neurons)."""

    timeout: float | None = None
    budget: float | None = None
    max_domains: int | None = 100_000
    batch: int = 256
    iterations: int = 8
    candidates: int = 8
    root: AlphaParams = field(default_factory=lambda: AlphaParams(iterations=20))
    attack_steps: int = 40
    attack_restarts: int = 4
    recompute: bool | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "budget"):
            if getattr(self, name) is not None:
                check_number(getattr(self, name), name, minimum=0)
        if self.max_domains is not None:
            check_number(self.max_domains, "max_domains", integer=True, minimum=0)
        for name in ("batch", "candidates"):
            check_number(getattr(self, name), name, integer=True, minimum=1)

    def to_dict(self) -> dict[str, float | int | None]:
        """The limits, as a report records them (they decide which samples end unknown)."""
        return {"timeout": self.timeout, "budget": self.budget, "max_domains": self.max_domains}


@dataclass
class Verdicts:
    """Per sample: ``status`` (int8: 1 verified, −1 falsified, 0 unknown), ``counterexample``
    (N, *input), NaN where there is none, ``domains`` bounded and ``seconds`` spent."""

    status: Tensor
    counterexample: Tensor
    domains: Tensor
    seconds: Tensor

    @classmethod
    def start(cls, x: Tensor) -> Verdicts:
        n = x.shape[0]
        return cls(
            torch.zeros(n, dtype=torch.int8),
            torch.full_like(x, math.nan).cpu(),
            torch.zeros(n, dtype=torch.int64),
            torch.zeros(n, dtype=torch.float64),
        )


@dataclass
class _Domains:
    """Open sub-domains, one row each: the property, the split of every split pre-activation
    (int8: 1 ≥ 0, −1 ≤ 0, 0 unsplit), the known intervals of the refined pre-activations, the
    optimiser's slopes and multipliers, the bound, the rows that reached each ReLU-like node and
    the input (the branching scores) and, when splitting inputs, the domain's box."""

    prop: Tensor
    splits: dict[str, Tensor]
    known: dict[str, Interval]
    slopes: dict[str, Tensor]
    betas: dict[str, Tensor]
    lower: Tensor
    relu_rows: dict[str, Tensor]
    input_rows: Tensor
    box: Interval | None = None

    def __len__(self) -> int:
        return self.prop.shape[0]

    def nbytes(self) -> int:
        """Memory the domains hold."""
        tensors = [self.prop, self.lower, self.input_rows, *self.splits.values(), *self.slopes.values()]
        tensors += [*self.betas.values(), *self.relu_rows.values(), *(t for pair in self.known.values() for t in pair)]
        tensors += list(self.box or ())
        return sum(t.numel() * t.element_size() for t in tensors)

    def select(self, index: Tensor) -> _Domains:
        pick = lambda d: {k: v[index] for k, v in d.items()}  # noqa: E731
        return _Domains(
            self.prop[index],
            pick(self.splits),
            {k: (lo[index], hi[index]) for k, (lo, hi) in self.known.items()},
            pick(self.slopes),
            pick(self.betas),
            self.lower[index],
            pick(self.relu_rows),
            self.input_rows[index],
            None if self.box is None else (self.box[0][index], self.box[1][index]),
        )

    @staticmethod
    def cat(parts: list[_Domains]) -> _Domains:
        first = parts[0]
        join = lambda key: {k: torch.cat([getattr(p, key)[k] for p in parts]) for k in getattr(first, key)}  # noqa: E731
        return _Domains(
            torch.cat([p.prop for p in parts]),
            join("splits"),
            {
                k: (torch.cat([p.known[k][0] for p in parts]), torch.cat([p.known[k][1] for p in parts]))
                for k in first.known
            },
            join("slopes"),
            join("betas"),
            torch.cat([p.lower for p in parts]),
            join("relu_rows"),
            torch.cat([p.input_rows for p in parts]),
            None if first.box is None else (torch.cat([p.box[0] for p in parts]), torch.cat([p.box[1] for p in parts])),
        )


class _Clock:
    """Time charged per sample and the run's deadline."""

    def __init__(self, n: int, params: BabParams, now: Callable[[], float] = time.perf_counter):
        self.now = now
        self.start = now()
        self.params = params
        self.spent = torch.zeros(n, dtype=torch.float64)

    def charge(self, samples: Tensor, seconds: float) -> None:
        """Share ``seconds`` among the samples listed (a sample once per domain it had in the work)."""
        if samples.numel():
            counts = torch.bincount(samples.cpu(), minlength=len(self.spent)).double()
            self.spent += seconds * counts / counts.sum()

    def out_of_time(self) -> Tensor:
        """bool (N,): the samples whose own time is up (all of them once the run's budget is)."""
        p = self.params
        if p.budget is not None and self.now() - self.start >= p.budget:
            return torch.ones_like(self.spent, dtype=torch.bool)
        if p.timeout is None:
            return torch.zeros_like(self.spent, dtype=torch.bool)
        return self.spent >= p.timeout


class Verifier:
    """Branch and bound over one batch of samples (see the module's docstring)."""

    def __init__(
        self,
        graph: BoundGraph,
        forward: Callable[[Tensor], Tensor],
        inputs: InputSet,
        y: Tensor,
        target: Tensor,
        params: BabParams,
        generator: torch.Generator | None = None,
        progress: Callable[[int, int, int], None] | None = None,
    ):
        self.progress = progress
        self.graph, self.forward, self.inputs, self.y = graph, forward, inputs, y
        self.target, self.params, self.generator = target, params, generator
        self.threat = ThreatModel(inputs.norm, inputs.eps, inputs.lower, inputs.upper, inputs.fixed)
        self.classes = graph.shapes[graph.output][0]
        self.verdicts = Verdicts.start(inputs.x0)
        self.clock = _Clock(len(y), params)
        self.sloped = sloped_nodes(graph)
        nodes = {n.name: n for n in graph.nodes}
        self.pre = {name: nodes[name].inputs[0] for name in self.sloped}
        self.refined = list(refined_nodes(graph))
        movable = inputs.x0[0].numel() - len(inputs.fixed)
        self.split_inputs = movable <= INPUT_SPLIT_FEATURES or not self.sloped
        self.linear_leaves = leaves_are_linear(graph, inputs)
        neurons = sum(math.prod(graph.shapes[name]) for name in self.sloped)
        self.recompute = neurons <= RECOMPUTE_NEURONS if params.recompute is None else params.recompute

    # ------------------------------------------------------------------ the whole run
    def run(self) -> Verdicts:
        x, y = self.inputs.x0, self.y
        with torch.no_grad():
            logits = self.forward(x)
        wrong = logits.argmax(dim=1) != y
        self._falsify(torch.nonzero(wrong).squeeze(1), x[wrong])
        bounds = interval_bounds(self.graph, self.inputs, refine=True)
        low = margin_lower(self.graph, self.inputs, y, "crown", bounds=bounds)
        sample, cls = ((low <= self.target[:, None]) & ~wrong[:, None]).nonzero(as_tuple=True)
        self.prop_sample, self.prop_class = sample, cls
        self.unresolved = torch.zeros(len(sample), dtype=torch.bool, device=y.device)
        self._attack(torch.arange(len(sample), device=y.device), None)
        domains = self._branch(self._root(bounds))
        if domains is not None:
            self.unresolved[domains.prop] = True
        status = self.verdicts.status
        doubt = torch.zeros(len(y), dtype=torch.bool)
        doubt[self.prop_sample[self.unresolved].cpu()] = True
        status[(status == UNKNOWN) & ~doubt] = VERIFIED
        self.verdicts.seconds = self.clock.spent
        return self.verdicts

    def _falsify(self, samples: Tensor, points: Tensor) -> None:
        """Record counterexamples, each confirmed by a forward pass and the threat model first."""
        if samples.numel() == 0:
            return
        with torch.no_grad():
            pred = self.forward(points).argmax(dim=1)
        inside = self.threat.contains(points, self.inputs.x0[samples])
        real = (pred != self.y[samples]) & inside
        for i, p in zip(samples[real].tolist(), points[real], strict=True):
            if self.verdicts.status[i] != FALSIFIED:
                self.verdicts.status[i] = FALSIFIED
                self.verdicts.counterexample[i] = p.detach().cpu()

    def _live(self, props: Tensor) -> Tensor:
        """bool over ``props``: worth working on. A property whose sample is falsified is dropped;
        one whose sample is out of time, or out of domains, is dropped as unresolved."""
        sample = self.prop_sample[props].cpu()
        falsified = self.verdicts.status[sample] == FALSIFIED
        spent = self.clock.out_of_time()[sample]
        if self.params.max_domains is not None:
            spent |= self.verdicts.domains[sample] >= self.params.max_domains
        self.unresolved[props[(spent & ~falsified).to(props.device)]] = True
        return (~falsified & ~spent).to(props.device)

    def _prune(self, domains: _Domains) -> _Domains:
        return domains.select(torch.nonzero(self._live(domains.prop)).squeeze(1))

    # ------------------------------------------------------------------ attacks
    def _attack(self, props: Tensor, starts: Tensor | None) -> None:
        """Projected gradient descent on z_y − z_j of each property (from ``starts``, else from
        random points); counterexamples found falsify their samples."""
        props = props[self._live(props)]
        if props.numel() == 0 or self.inputs.eps == 0:
            return
        t0 = self.clock.now()
        sample = self.prop_sample[props]
        x0, y, j = self.inputs.x0[sample], self.y[sample], self.prop_class[props]
        geometry = self.threat.geometry
        restarts = 1 if starts is not None else self.params.attack_restarts
        for r in range(restarts):
            if starts is not None:
                x = starts
            elif r == 0:
                x = x0.clone()
            else:
                noise = geometry.random_point(x0.shape, self.inputs.eps, self._gen(x0), x0.dtype)
                x = self.threat.clip(x0 + noise, x0)
            x = self._descend(x, x0, y, j)
            with torch.no_grad():
                fooled = self.forward(x).argmax(dim=1) != y
            self._falsify(sample[fooled], x[fooled])
        self.clock.charge(sample, self.clock.now() - t0)

    def _gen(self, like: Tensor) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device=like.device).manual_seed(0)
        return self.generator

    def _descend(self, x: Tensor, x0: Tensor, y: Tensor, j: Tensor) -> Tensor:
        """Steps of projected descent on z_y − z_j, keeping each point's best iterate."""
        steps = self.params.attack_steps
        step = 2.5 * self.inputs.eps / max(steps, 1)
        rows = torch.arange(len(y), device=y.device)
        best, best_margin = x, torch.full((len(y),), math.inf, device=x.device)
        geometry = self.threat.geometry
        for _ in range(steps):
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                z = self.forward(x)
                margin = z[rows, y] - z[rows, j]
                (grad,) = torch.autograd.grad(margin.sum(), x)
            with torch.no_grad():
                better = margin.detach() < best_margin
                best = torch.where(better.reshape(-1, *([1] * (x.dim() - 1))), x.detach(), best)
                best_margin = torch.minimum(best_margin, margin.detach())
                x = self.threat.clip(x - step * geometry.ascent_direction(self.threat.hold(grad, 0 * grad)), x0)
        return best.detach()

    # ------------------------------------------------------------------ bounds
    def _props_inputs(self, props: Tensor, box: Interval | None) -> InputSet:
        inputs = take(self.inputs, self.prop_sample[props])
        if box is not None:
            inputs = InputSet(inputs.x0, inputs.eps, inputs.norm, box[0], box[1], inputs.fixed)
        return inputs

    def _rows(self, props: Tensor) -> Tensor:
        sample = self.prop_sample[props]
        rows = margin_rows(self.y[sample], self.classes, self.inputs.x0.dtype)
        return rows[torch.arange(len(props)), self.prop_class[props]].unsqueeze(1)

    def _root(self, bounds: dict[str, Interval]) -> _Domains | None:
        """α-CROWN on the open properties still alive: the root domains of the ones it leaves open."""
        props = torch.arange(len(self.prop_sample), device=self.y.device)
        props = props[self._live(props)]
        if props.numel() == 0:
            return None
        parts = []
        step = property_chunk(self.graph, bounds, len(props), bool(self.inputs.fixed))
        for s in range(0, len(props), step):
            part = props[s : s + step]
            t0 = self.clock.now()
            result = optimise(
                self.graph,
                self._props_inputs(part, None),
                self._rows(part),
                take_bounds(bounds, self.prop_sample[part]),
                self.params.root,
                target=self.target[self.prop_sample[part]],
            )
            self.clock.charge(self.prop_sample[part], self.clock.now() - t0)
            parts.append(self._open(self._domains(part, {}, result, None)))
        return _Domains.cat(parts)

    def _domains(self, props: Tensor, splits: dict[str, Tensor], result: Optimised, box: Interval | None) -> _Domains:
        """Domains from a bound computation (``splits`` empty at the root: none split yet)."""
        n = len(props)
        if not splits:
            splits = {
                pre: torch.zeros(n, *self.graph.shapes[pre], dtype=torch.int8, device=props.device)
                for pre in self.pre.values()
            }
        known = {k: result.bounds[k] for k in self.refined if k in result.bounds}
        betas = result.betas or {
            name: result.lower.new_zeros(n, 1, *self.graph.shapes[self.pre[name]]) for name in self.sloped
        }
        rows = {k: v[:, 0] for k, v in result.relu_rows.items()}
        for name in self.sloped:
            rows.setdefault(name, result.lower.new_zeros(n, *self.graph.shapes[name]))
        a_x = result.input_rows
        a_x = a_x[:, 0] if a_x is not None else self.inputs.x0.new_zeros(n, *self.inputs.x0.shape[1:])
        if box is None and self.split_inputs:
            box = self._props_inputs(props, None).box()
        return _Domains(props, splits, known, result.slopes, betas, result.lower[:, 0], rows, a_x, box)

    def _open(self, domains: _Domains) -> _Domains:
        """The domains whose bound does not clear the slack yet (the others are closed)."""
        closed = domains.lower > self.target[self.prop_sample[domains.prop]]
        return domains.select(torch.nonzero(~closed).squeeze(1))

    # ------------------------------------------------------------------ branching
    def _branch(self, domains: _Domains | None) -> _Domains | None:
        """Split and bound until every domain is closed or dropped; the domains left open (their
        properties unresolved)."""
        while domains is not None and len(domains):
            domains = self._prune(domains)
            if not len(domains):
                break
            pick, rest = self._pick(domains)
            parents = domains.select(pick)
            t0 = self.clock.now()
            children, leaves = self._children(parents)
            self._settle_leaves(parents.select(torch.nonzero(leaves).squeeze(1)))
            kept = [domains.select(rest)]
            if children is not None:
                children = self._bound(children)
                self.verdicts.domains += torch.bincount(self.prop_sample[children.prop].cpu(), minlength=len(self.y))
                kept.append(self._open(children))
            self.clock.charge(self.prop_sample[parents.prop], self.clock.now() - t0)
            domains = self._within_memory(_Domains.cat(kept))
            domains = domains.select(torch.nonzero(~self.unresolved[domains.prop]).squeeze(1))
            self._tell(domains)
        return domains

    def _tell(self, domains: _Domains) -> None:
        """Report the verdicts so far: verified, falsified, and still open or given up."""
        if self.progress is None:
            return
        status = self.verdicts.status
        doubt = torch.zeros(len(self.y), dtype=torch.bool)
        doubt[self.prop_sample[self.unresolved].cpu()] = True
        doubt[self.prop_sample[domains.prop].cpu()] = True
        falsified = status == FALSIFIED
        self.progress(int((~doubt & ~falsified).sum()), int(falsified.sum()), int((doubt & ~falsified).sum()))

    def _within_memory(self, domains: _Domains) -> _Domains:
        """The open domains, less those of the properties with the most of them while together they
        would hold more than :data:`DOMAIN_BUDGET` bytes (those properties end unresolved)."""
        size = domains.nbytes() // max(len(domains), 1)
        while len(domains) * size > DOMAIN_BUDGET:
            counts = torch.bincount(domains.prop, minlength=len(self.unresolved))
            worst = int(counts.argmax())
            self.unresolved[worst] = True
            domains = domains.select(torch.nonzero(domains.prop != worst).squeeze(1))
        return domains

    def _settle_leaves(self, leaves: _Domains) -> None:
        """Domains that can be split no further: each an exact linear program where the network is
        linear on it (:mod:`advgrad.bounds.leaf`), closed or falsified by its minimiser; a leaf that
        stays open leaves its property unresolved."""
        if not len(leaves):
            return
        if self.linear_leaves:
            inputs = self._props_inputs(leaves.prop, leaves.box)
            bounds = interval_bounds(
                self.graph, inputs, refine=False, constrain=known_and_split(leaves.known, leaves.splits)
            )
            target = self.target[self.prop_sample[leaves.prop]]
            result = solve_leaves(self.graph, inputs, self._rows(leaves.prop), bounds, leaves.splits, target)
            found = ~result.closed.to(leaves.prop.device)
            self._falsify(self.prop_sample[leaves.prop[found]], result.point[found])
            leaves = leaves.select(torch.nonzero(found).squeeze(1))
        self.unresolved[leaves.prop] = True

    def _pick(self, domains: _Domains) -> tuple[Tensor, Tensor]:
        """The domains to split now and the others: within each property the lowest bounds first,
        the properties taking turns, as many as make one batch of children."""
        by_bound = torch.argsort(domains.lower, stable=True)
        order = by_bound[torch.argsort(domains.prop[by_bound], stable=True)]  # by property, then bound
        _, counts = torch.unique_consecutive(domains.prop[order], return_counts=True)
        starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        rank = torch.arange(len(order), device=order.device) - starts  # place within its property
        chosen = order[torch.argsort(rank, stable=True)]
        n = max(1, min(len(chosen), self.params.batch // 2))
        return chosen[:n], chosen[n:]

    def _children(self, parents: _Domains) -> tuple[_Domains | None, Tensor]:
        """Two children per parent: an unstable neuron split both ways, or its input box halved
        along its best-scored coordinate. The neuron: of the ``candidates`` best by
        :meth:`_neuron_scores`, the one whose children's worse bound, estimated with the parent's
        slopes and intervals, is highest (filtered smart branching, De Palma et al. 2021).
        Returns the children and the parents that can be split no further."""
        if self.split_inputs:
            return self._split_input(parents), torch.zeros(len(parents), dtype=torch.bool, device=parents.prop.device)
        flat = torch.cat([s.flatten(1) for s in self._neuron_scores(parents).values()], dim=1)
        score, where = flat.topk(min(self.params.candidates, flat.shape[1]), dim=1)
        leaves = score[:, 0] <= 0
        keep = torch.nonzero(~leaves).squeeze(1)
        if keep.numel() == 0:
            return None, leaves
        parents, score, where = parents.select(keep), score[keep], where[keep]
        if where.shape[1] > 1:
            inputs = self._props_inputs(parents.prop, None)
            rows = self._rows(parents.prop)
            estimate = split_estimates(
                self.graph, inputs, rows, parents.known, parents.splits, parents.slopes, parents.betas, where
            )
            low = estimate.min(dim=1).values
            best = torch.where(score > 0, low, torch.full_like(low, -math.inf)).argmax(dim=1)
            where = where.gather(1, best.unsqueeze(1))
        return self._split_at(parents, where[:, 0]), leaves

    def _split_at(self, parents: _Domains, where: Tensor) -> _Domains:
        """Two children per parent (all the z ≥ 0 ones first): the neuron ``where`` (an index into
        the ReLU-like nodes' neurons, concatenated) split."""
        n = len(parents)
        children = parents.select(torch.cat([torch.arange(n, device=where.device)] * 2))
        sign = torch.cat([torch.ones(n), -torch.ones(n)]).to(torch.int8).to(where.device)
        where2 = torch.cat([where, where])
        offset = 0
        for name in self.sloped:
            pre = self.pre[name]
            size = children.splits[pre][0].numel()
            rows = torch.nonzero((where2 >= offset) & (where2 < offset + size)).squeeze(1)
            if rows.numel():
                flat_split = children.splits[pre].flatten(1).clone()
                flat_split[rows, where2[rows] - offset] = sign[rows]
                children.splits[pre] = flat_split.reshape(children.splits[pre].shape)
            offset += size
        return children

    def _neuron_scores(self, parents: _Domains) -> dict[str, Tensor]:
        """BaBSR-like scores (Bunel et al. 2020): for an unstable, unsplit neuron with bounds [l, u]
        whose output the bounded row weighs by c, |c|·u·(−l)/(u − l), the intercept its relaxation
        costs the bound; 0 elsewhere."""
        scores = {}
        for name in self.sloped:
            pre = self.pre[name]
            lo, hi = parents.known.get(pre, (None, None))
            if lo is None:  # bounds not kept: never split (its score 0 keeps the offsets in step)
                scores[name] = parents.splits[pre].new_zeros(parents.splits[pre].shape, dtype=parents.lower.dtype)
                continue
            unstable = (lo < 0) & (hi > 0) & (parents.splits[pre] == 0)
            gap = hi * (-lo) / (hi - lo).clamp(min=1e-12)
            c = parents.relu_rows[name].abs()
            scores[name] = torch.where(unstable, c * gap + 1e-12 * gap, torch.zeros_like(gap))
        return scores

    def _split_input(self, parents: _Domains) -> _Domains:
        """Halve each parent's box along the movable coordinate with the largest |a|·width (a: the
        rows of its bound on the input)."""
        lo, hi = parents.box
        width = (hi - lo).flatten(1)
        score = parents.input_rows.flatten(1).abs() * width + 1e-12 * width
        held = self.inputs.held()
        if held is not None:
            score = score.masked_fill(held, -1.0)
        where = score.argmax(dim=1)
        twice = torch.cat([torch.arange(len(parents), device=lo.device)] * 2)
        children = parents.select(twice)
        c_lo, c_hi = (t.flatten(1).clone() for t in children.box)
        rows = torch.arange(len(twice), device=lo.device)
        col = torch.cat([where, where])
        mid = (c_lo[rows, col] + c_hi[rows, col]) / 2
        half = len(parents)
        c_hi[rows[:half], col[:half]] = mid[:half]
        c_lo[rows[half:], col[half:]] = mid[half:]
        children.box = (c_lo.reshape(children.box[0].shape), c_hi.reshape(children.box[1].shape))
        return children

    def _bound(self, children: _Domains) -> _Domains:
        """Bounds of each child on its domain: CROWN's intervals for the refined pre-activations
        (intersected with the parent's, clamped by the splits), then α/β optimisation of its row."""
        parts = []
        step = max(1, self.params.batch)
        for s in range(0, len(children), step):
            part = children.select(torch.arange(s, min(s + step, len(children)), device=children.prop.device))
            inputs = self._props_inputs(part.prop, part.box)
            splits = part.splits if not self.split_inputs else None
            bounds = interval_bounds(
                self.graph, inputs, refine=self.recompute, constrain=known_and_split(part.known, splits)
            )
            params = AlphaParams(iterations=self.params.iterations, lr=0.1, beta_lr=0.05, intermediate=False)
            result = optimise(
                self.graph,
                inputs,
                self._rows(part.prop),
                bounds,
                params,
                target=self.target[self.prop_sample[part.prop]],
                splits=splits,
                slopes=part.slopes,
                betas=part.betas if splits else None,
            )
            # the parent's bound holds on its whole domain, so on the child's too
            result.lower = torch.maximum(result.lower, part.lower.unsqueeze(1))
            parts.append(self._domains(part.prop, part.splits, result, part.box))
            if result.point is not None:
                self._falsify(self.prop_sample[part.prop], result.point[:, 0])
        return _Domains.cat(parts)


def verify(
    graph: BoundGraph,
    forward: Callable[[Tensor], Tensor],
    inputs: InputSet,
    y: Tensor,
    target: Tensor,
    params: BabParams,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> Verdicts:
    """Branch and bound on every sample of ``inputs`` (see the module's docstring): a verdict per
    sample. ``forward``: the model's plain forward pass (the counterexamples' re-check, the
    attack); ``target`` (N,): the margin a bound must exceed to verify (the certification slack);
    ``progress`` hears (verified, falsified, undecided) counts as the work goes."""
    return Verifier(graph, forward, inputs, y, target, params, generator, progress).run()


__all__ = ["FALSIFIED", "UNKNOWN", "VERIFIED", "BabParams", "Verdicts", "verify"]
