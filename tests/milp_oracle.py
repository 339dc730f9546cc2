"""An exact oracle for the robustness of small ReLU networks: a mixed-integer linear program.

For ``nn.Sequential`` models of Linear, Conv2d, ReLU, LeakyReLU, MaxPool2d and Flatten, the
smallest margin z_y(x) − z_j(x) over the L∞ ball ∩ [0, 1] is a MILP (Tjeng, Xiao & Tedrake 2019):
every layer is an affine map of the flattened activations; an unstable ReLU h = max(p, 0) with
p ∈ [l, u] gets a binary d and h ≥ p, h ≥ 0, h ≤ u·d, h ≤ p − l·(1 − d); a max-pool window
m = max(h_1 … h_k) gets binaries d_i with Σ d_i = 1, m ≥ h_i and m ≤ h_i + (U − l_i)(1 − d_i).
The big-M constants come from interval arithmetic written here, independently of advgrad.bounds,
and scipy's ``milp`` (HiGHS) solves the program to optimality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix
from torch import nn


def affine_of(layer: nn.Module, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """W, b and the output shape of a Linear or Conv2d layer on flattened inputs: out = W·in + b."""
    d = int(np.prod(in_shape))
    with torch.no_grad():
        basis = torch.eye(d, dtype=torch.float64).reshape(d, *in_shape)
        zero = torch.zeros(1, *in_shape, dtype=torch.float64)
        layer64 = _float64(layer)
        b = layer64(zero)
        w = (layer64(basis) - b).reshape(d, -1).T
    return w.numpy(), b.reshape(-1).numpy(), tuple(b.shape[1:])


def _float64(layer: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(layer).double()


@dataclass
class _Program:
    """Variables (with bounds and integrality) and sparse rows lb ≤ A·v ≤ ub."""

    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    integer: list[int] = field(default_factory=list)
    rows: list[tuple[dict[int, float], float, float]] = field(default_factory=list)

    def add(self, lo: np.ndarray, hi: np.ndarray, integer: bool = False) -> np.ndarray:
        start = len(self.lo)
        self.lo += list(lo)
        self.hi += list(hi)
        self.integer += [int(integer)] * len(lo)
        return np.arange(start, start + len(lo))

    def row(self, coefs: dict[int, float], lb: float, ub: float) -> None:
        self.rows.append((coefs, lb, ub))

    def solve(self, objective: np.ndarray, constant: float) -> tuple[float, np.ndarray]:
        r, c, v, lbs, ubs = [], [], [], [], []
        for i, (coefs, lb, ub) in enumerate(self.rows):
            for j, a in coefs.items():
                r.append(i)
                c.append(j)
                v.append(a)
            lbs.append(lb)
            ubs.append(ub)
        a = coo_matrix((v, (r, c)), shape=(len(self.rows), len(self.lo))).tocsr()
        res = milp(
            objective,
            constraints=LinearConstraint(a, lbs, ubs),
            integrality=np.array(self.integer),
            bounds=Bounds(np.array(self.lo), np.array(self.hi)),
            options={"mip_rel_gap": 0.0, "time_limit": 120},
        )
        if res.status != 0:
            raise RuntimeError(f"MILP not solved: {res.message}")
        return float(res.fun) + constant, res.x


def _affine_layer(prog: _Program, w: np.ndarray, b: np.ndarray, xs: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """New variables z = W·x + b with their interval bounds."""
    wp, wn = np.clip(w, 0, None), np.clip(w, None, 0)
    z_lo, z_hi = wp @ lo + wn @ hi + b, wp @ hi + wn @ lo + b
    zs = prog.add(z_lo - 1e-9, z_hi + 1e-9)
    for k in range(len(zs)):
        coefs = {int(xs[i]): -float(w[k, i]) for i in np.nonzero(w[k])[0]}
        coefs[int(zs[k])] = 1.0
        prog.row(coefs, float(b[k]), float(b[k]))
    return zs, z_lo, z_hi


def _relu(prog: _Program, ps: np.ndarray, lo: np.ndarray, hi: np.ndarray, slope: float, split: dict | None = None):
    """h = max(p, s·p) for 0 ≤ s < 1, exactly (a binary per unstable neuron); ``split`` maps
    neurons to +1 (p ≥ 0 required) or −1 (p ≤ 0 required)."""
    for k, sign in (split or {}).items():
        prog.row({int(ps[k]): float(sign)}, 0.0, np.inf)
    h_lo, h_hi = np.maximum(lo, slope * lo), np.maximum(hi, slope * hi)
    hs = prog.add(np.minimum(h_lo, 0) - 1e-9, h_hi + 1e-9)
    for k in range(len(ps)):
        p, h, l_, u = int(ps[k]), int(hs[k]), float(lo[k]), float(hi[k])
        if l_ >= 0:
            prog.row({h: 1.0, p: -1.0}, 0.0, 0.0)
        elif u <= 0:
            prog.row({h: 1.0, p: -slope}, 0.0, 0.0)
        else:
            (d,) = prog.add(np.array([0.0]), np.array([1.0]), integer=True)
            prog.row({h: 1.0, p: -1.0}, 0.0, np.inf)  # h ≥ p
            prog.row({h: 1.0, p: -slope}, 0.0, np.inf)  # h ≥ s·p
            # d = 1: h ≤ p; d = 0: h ≤ s·p (the other line, with big-M slack)
            prog.row({h: 1.0, p: -1.0, int(d): (1 - slope) * (-l_)}, -np.inf, (1 - slope) * (-l_))
            prog.row({h: 1.0, p: -slope, int(d): -(1 - slope) * u}, -np.inf, 0.0)
    return hs, h_lo, h_hi


def _maxpool(prog: _Program, layer: nn.MaxPool2d, shape, xs, lo, hi):
    """m = max over each window, exactly (a binary per window element)."""
    index = torch.arange(int(np.prod(shape)), dtype=torch.float64).reshape(1, *shape)
    k, s, p = layer.kernel_size, layer.stride, layer.padding
    windows = torch.nn.functional.unfold(index, k, padding=p, stride=s)  # not for padded pools
    c = shape[0]
    per = windows.reshape(c, -1, windows.shape[-1]).long().numpy()  # (C, K, L)
    out_lo, out_hi, ms = [], [], []
    for ch in range(c):
        for w in range(per.shape[2]):
            idx = per[ch, :, w]
            out_lo.append(lo[idx].max())
            out_hi.append(hi[idx].max())
    ms = prog.add(np.array(out_lo) - 1e-9, np.array(out_hi) + 1e-9)
    j = 0
    for ch in range(c):
        for w in range(per.shape[2]):
            idx = per[ch, :, w]
            m = int(ms[j])
            top = float(hi[idx].max())
            ds = prog.add(np.zeros(len(idx)), np.ones(len(idx)), integer=True)
            prog.row({int(d): 1.0 for d in ds}, 1.0, 1.0)
            for i, d in zip(idx, ds, strict=True):
                prog.row({m: 1.0, int(xs[i]): -1.0}, 0.0, np.inf)
                big = top - float(lo[i])
                prog.row({m: 1.0, int(xs[i]): -1.0, int(d): big}, -np.inf, big)
            j += 1
    side = int(np.sqrt(per.shape[2]))
    return ms, np.array(out_lo), np.array(out_hi), (c, side, side)


def encode(
    model: nn.Sequential, x0: torch.Tensor, eps: float, fixed: tuple[int, ...] = (), splits: dict | None = None
) -> tuple[_Program, np.ndarray, np.ndarray]:
    """The network on the L∞ ball ∩ [0, 1] around ``x0`` (one sample), the coordinates ``fixed`` held
    at x0, the pre-activations of the k-th ReLU-like layer constrained by ``splits[k]`` (neuron →
    ±1): the program, the input's variables and the logits' variables."""
    flat = x0.double().reshape(-1).numpy()
    prog = _Program()
    lo, hi = np.clip(flat - eps, 0, 1), np.clip(flat + eps, 0, 1)
    lo[list(fixed)], hi[list(fixed)] = flat[list(fixed)], flat[list(fixed)]
    xs = prog.add(lo, hi)
    relus = 0
    vs, v_lo, v_hi, cur = xs, lo, hi, tuple(x0.shape)
    for layer in model:
        if isinstance(layer, nn.Linear | nn.Conv2d):
            w, b, cur_out = affine_of(layer, cur)
            vs, v_lo, v_hi = _affine_layer(prog, w, b, vs, v_lo, v_hi)
            cur = cur_out
        elif isinstance(layer, nn.ReLU | nn.LeakyReLU):
            slope = layer.negative_slope if isinstance(layer, nn.LeakyReLU) else 0.0
            vs, v_lo, v_hi = _relu(prog, vs, v_lo, v_hi, slope, (splits or {}).get(relus))
            relus += 1
        elif isinstance(layer, nn.MaxPool2d):
            vs, v_lo, v_hi, cur = _maxpool(prog, layer, cur, vs, v_lo, v_hi)
        elif isinstance(layer, nn.Flatten):
            cur = (int(np.prod(cur)),)
        else:
            raise TypeError(f"the MILP oracle has no encoding for {type(layer).__name__}")
    return prog, xs, vs


def min_margin(
    model: nn.Sequential,
    x0: torch.Tensor,
    y: int,
    eps: float,
    *,
    fixed: tuple[int, ...] = (),
    only: int | None = None,
    splits: dict | None = None,
) -> tuple[float, np.ndarray]:
    """min over the L∞ ball ∩ [0, 1] (``fixed`` coordinates held, ``splits`` as in :func:`encode`) of
    min_{j ≠ y} z_y − z_j (only j = ``only`` when given), and a minimiser (flattened input).
    Raises RuntimeError when the constraints leave no point."""
    prog, xs, outs = encode(model, x0, eps, fixed, splits)
    best, point = np.inf, None
    for j in range(len(outs)):
        if j == y or (only is not None and j != only):
            continue
        objective = np.zeros(len(prog.lo))
        objective[outs[y]], objective[outs[j]] = 1.0, -1.0
        value, sol = prog.solve(objective, 0.0)
        if value < best:
            best, point = value, sol[xs]
    return best, point
