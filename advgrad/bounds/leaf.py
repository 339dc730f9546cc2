"""The leaves of branch and bound: sub-domains where every ReLU-like neuron is decided.

On such a domain D (an L∞ box cut by the split constraints) the network is linear: each split
pre-activation z_k(x) = a_k·x + b_k and the margin m(x) = c·x + d exactly, as CROWN's backward
pass computes them when no relaxation is loose. So min_D m is a linear program,

    min c·x + d   subject to   s_k·(a_k·x + b_k) ≥ −τ_k,   lo ≤ x ≤ hi,

solved exactly by HiGHS (scipy's ``linprog``). The tolerance τ_k (a few float32 roundings of the
row) only enlarges the feasible set, so the program's minimum is ≤ the margin's minimum over D:
a value above the certification slack closes D. A value below it comes with the minimiser x*,
a point of the ball ∩ box that the caller checks as a counterexample by a forward pass. An
infeasible program means D is empty (closed).

Only for networks whose every nonlinear operator is ReLU-like (max-pools read as ReLUs), L∞
balls, and when scipy is installed; otherwise a leaf that stays open leaves its sample unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advgrad.bounds import ops
from advgrad.bounds.graph import BoundGraph
from advgrad.bounds.propagate import InputSet, Interval, backward_rows

#: relative tolerance of a split constraint, against float32 rounding of its row
TOLERANCE = 1e-6


def leaves_are_linear(graph: BoundGraph, inputs: InputSet) -> bool:
    """Whether a domain with every ReLU-like neuron decided is a linear program (see the module)."""
    if not inputs.geometry.ball_is_box:
        return False
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:
        return False
    for node in graph.nodes:
        if node.op.needs_input_bounds and not (
            isinstance(node.op, ops.LeakyReLU) and node.op.slope_range() is not None
        ):
            return False
    return True


@dataclass
class LeafResult:
    """Per leaf: ``closed`` (its minimum clears the target, or it is empty) and ``point`` (N, *input),
    the program's minimiser where it does not (NaN elsewhere)."""

    closed: Tensor
    point: Tensor


def _linear(graph: BoundGraph, start: str, rows: Tensor, bounds: dict[str, Interval]) -> tuple[Tensor, Tensor]:
    """Rows (1, S, *shape) on ``start`` as exact linear functions of the input: (S, D) and (S,)."""
    a_x, bias = backward_rows(graph, {start: rows}, rows.new_zeros(rows.shape[:2]), bounds)
    return a_x.flatten(2)[0].double(), bias[0].double()


def solve_leaves(
    graph: BoundGraph,
    inputs: InputSet,
    rows: Tensor,
    bounds: dict[str, Interval],
    splits: dict[str, Tensor],
    target: Tensor,
) -> LeafResult:
    """The linear program of each leaf (one per row of ``inputs``): ``rows`` (N, 1, classes) the
    margin, ``bounds`` the intervals of every node on each leaf (split constraints applied),
    ``splits`` the split signs per pre-activation, ``target`` (N,) the value to clear."""
    from scipy.optimize import linprog

    n = inputs.x0.shape[0]
    lo, hi = (t.flatten(1).double() for t in inputs.box())
    closed = torch.zeros(n, dtype=torch.bool)
    point = torch.full((n, lo.shape[1]), float("nan"), dtype=torch.float64)
    for i in range(n):
        mine = {k: (a[i : i + 1], b[i : i + 1]) for k, (a, b) in bounds.items()}
        c, d = _linear(graph, graph.output, rows[i : i + 1], mine)
        a_ub, b_ub = [], []
        for pre, split in splits.items():
            flat = split[i].flatten()
            where = flat.nonzero().flatten()
            if where.numel() == 0:
                continue
            eye = torch.zeros(1, len(where), flat.numel(), dtype=rows.dtype, device=rows.device)
            eye[0, torch.arange(len(where)), where] = 1.0
            a, b = _linear(graph, pre, eye.reshape(1, len(where), *split.shape[1:]), mine)
            s = flat[where].double().cpu().unsqueeze(1)
            tol = TOLERANCE * (1 + b.abs().cpu() + a.abs().sum(1).cpu())
            a_ub.append(-(s * a.cpu()))
            b_ub.append(s[:, 0] * b.cpu() + tol)
        result = linprog(
            c[0].cpu().numpy(),
            A_ub=torch.cat(a_ub).numpy() if a_ub else None,
            b_ub=torch.cat(b_ub).numpy() if b_ub else None,
            bounds=list(zip(lo[i].cpu().tolist(), hi[i].cpu().tolist(), strict=True)),
            method="highs",
        )
        if result.status == 2:  # infeasible: the domain is empty
            closed[i] = True
        elif result.status == 0:
            value = float(result.fun) + float(d[0])
            closed[i] = value > float(target[i])
            if not closed[i]:
                point[i] = torch.from_numpy(result.x)
    return LeafResult(closed, point.reshape(n, *inputs.x0.shape[1:]).to(inputs.x0))
