"""Max-pooling written as ReLUs, for α-CROWN and branch and bound.

max(a, b) = b + ReLU(a − b), and the maximum of a window is a balanced tree of such pairwise
maxima over its elements (each element picked by :class:`~advgrad.bounds.ops.StridedPick`). The
function is the same; the relaxation is not: the bounds of each difference a − b are computed
by CROWN from the input, which knows how a and b move together, where the pool's own
relaxation (:class:`~advgrad.bounds.ops.MaxPool2d`) only knows their separate intervals. The
differences' ReLUs then get α-CROWN's free slopes, and branch and bound can split them: once
every difference of a window is split the window's maximum is decided, so a network of ReLUs
and such pools is piecewise linear in neurons that branch and bound splits.

Pools with padding or dilation keep their own relaxation (sound; never split).
"""

from __future__ import annotations

from advgrad.bounds import ops
from advgrad.bounds.graph import BNode, BoundGraph


def max_pools_as_relus(graph: BoundGraph) -> BoundGraph:
    """The same function with every 2-D max-pool without padding or dilation written as a tree of
    pairwise maxima; the graph itself when there is none."""
    nodes: list[BNode] = []
    shapes = dict(graph.shapes)
    changed = False
    for node in graph.nodes:
        op = node.op
        if not isinstance(op, ops.MaxPool2d) or op.padding != (0, 0) or op.dilation != (1, 1):
            nodes.append(node)
            continue
        changed = True
        out = op.out_shape
        level = []
        for p in range(op.kernel[0]):
            for q in range(op.kernel[1]):
                name = f"{node.name}.pick{p}_{q}"
                nodes.append(
                    BNode(name, ops.StridedPick(op.in_shape, out, (p, q), op.stride), node.inputs[:], out, node.where)
                )
                level.append(name)
        count = 0
        while len(level) > 1:
            merged = []
            for a, b in zip(level[::2], level[1::2], strict=False):
                last = len(level) == 2
                count += 1
                diff, relu = f"{node.name}.diff{count}", f"{node.name}.relu{count}"
                top = node.name if last else f"{node.name}.max{count}"
                nodes.append(BNode(diff, ops.Sum([out, out], [1.0, -1.0], out), [a, b], out, node.where))
                nodes.append(BNode(relu, ops.LeakyReLU(0.0), [diff], out, node.where))
                nodes.append(BNode(top, ops.Sum([out, out], [1.0, 1.0], out), [b, relu], out, node.where))
                merged.append(top)
            if len(level) % 2:
                merged.append(level[-1])
            level = merged
        for name in [n.name for n in nodes if n.name.startswith(f"{node.name}.")]:
            shapes[name] = out
    if not changed:
        return graph
    return BoundGraph(graph.input, graph.input_shape, nodes, graph.output, shapes)
