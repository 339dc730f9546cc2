"""Tables as data: N samples × D numeric features, a label each, and a box per feature.

A table comes from a ``.csv`` file (a header row naming the columns, one of them the label) or a
tensor file whose ``x`` is two-dimensional (N×D). Each feature ``i`` has bounds ``[lo_i, hi_i]``:
from ``--bounds FILE``, else the minimum and maximum of the data.

The attacks keep working in the unit box [0, 1]: a source of a table yields each feature scaled
by its range, ``u_i = (x_i − lo_i) / (hi_i − lo_i)``, and the model is wrapped
(:class:`advgrad.io.model.features.FeatureScaled`) so that it receives ``lo + (hi − lo)·u``. An ε
is then a fraction of each feature's range (L∞: feature ``i`` moves by at most ε·(hi_i − lo_i)).

``--eps-scale FILE`` gives each feature a weight ``w_i ≥ 0``. Weights are relative: with
``r_i = w_i / min{w_j > 0}`` (so ``r_i ≥ 1``) the threat becomes ``‖(δu_i / r_i)_i‖_p ≤ ε`` over the
features with ``w_i > 0``, and a feature of weight 0 never moves. The positive weights are exact
for every norm by a change of coordinates: the attack sees ``z_i = u_i / r_i``, which lies in
[0, 1/r_i] ⊂ [0, 1], and the model receives ``u_i = min(r_i·z_i, 1)``. Every point of the unit
ε-ball in ``z`` gives a ``u`` inside the weighted ball and the feature box (clipping at 1 only
shortens a move), and every such ``u`` is reached from ``z = u / r``. Features of weight 0 are
held by the threat model itself (:attr:`advgrad.core.threat.ThreatModel.fixed`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from advgrad.core.errors import DataError, UsageError, first_line
from advgrad.core.numeric import FLOAT32_MAX
from advgrad.core.text import short, some_names
from advgrad.io.data.sources import DataOptions, TensorSource, label_vector
from advgrad.io.paths import open_regular

EXPECTED_CSV = "a .csv file with a header row and a label column"
LABEL_COLUMN = "label"  # the label column of a CSV file unless --label-column names another
# Largest ratio of two positive ε weights: beyond it, at an ε where the most weighted feature can
# move at all, the least weighted one moves by less than a millionth of its range, a few roundings
# of float32 near 1 (a weight of 0 says "immutable" exactly).
MAX_WEIGHT_RATIO = 1e6
TABLE_OPTIONS = ("bounds", "eps_scale", "label_column")


@dataclass(frozen=True)
class FeatureSpace:
    """The features of a table: names, per-feature bounds and ε weights, and the maps between raw
    feature values and what the attacks see (see the module docstring for the math).

    ``weights`` are the ``--eps-scale`` weights as given (``None``: every feature weighs 1);
    ``bounds_source`` says where the bounds came from (a file, or the data's min/max)."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    bounds_source: str = "the data's min/max"
    weights: tuple[float, ...] | None = None
    weights_source: str | None = None

    def __post_init__(self) -> None:
        d = len(self.names)
        if len(self.lower) != d or len(self.upper) != d or (self.weights is not None and len(self.weights) != d):
            raise UsageError("a table needs one name, lower bound, upper bound (and ε weight) per feature")
        for j, (lo, hi) in enumerate(zip(self.lower, self.upper, strict=True)):
            self._check_range(j, lo, hi)
        if self.weights is not None:
            self._check_weights(self.weights)

    def _feature(self, j: int) -> str:
        return f"feature {j + 1} of {self.features} ('{short(self.names[j])}')"

    def _check_range(self, j: int, lo: float, hi: float) -> None:
        """Bounds the float32 maps can use: finite, lower ≤ upper, and both bounds and the width
        ``hi − lo`` within float32's range (beyond it the width is infinite and every value NaN)."""
        where = f"bounds of {self._feature(j)} from {self.bounds_source}"
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise UsageError(f"{where} must be finite with lower ≤ upper, got [{lo:g}, {hi:g}]", params="bounds")
        if max(abs(lo), abs(hi), hi - lo) > FLOAT32_MAX:
            raise UsageError(
                f"{where}, [{lo:g}, {hi:g}], are beyond float32, in which advgrad computes: the bounds and their "
                f"difference must stay within ±{FLOAT32_MAX:.3g}; rescale the feature",
                params="bounds",
            )

    def _check_weights(self, weights: tuple[float, ...]) -> None:
        """ε weights: finite, ≥ 0, one at least positive, and the positive ones within
        :data:`MAX_WEIGHT_RATIO` of each other (see docs/loading.md, "Per-feature ε weights")."""
        where = "ε weights" + (f" from {self.weights_source}" if self.weights_source else "")
        for j, w in enumerate(weights):
            if not (math.isfinite(w) and w >= 0):
                raise UsageError(
                    f"{where}: {self._feature(j)} has a negative or non-finite weight ({w:g}); weights are ≥ 0",
                    params="eps_scale",
                )
        positive = [j for j, w in enumerate(weights) if w > 0]
        if not positive:
            raise UsageError(f"{where}: every weight is 0, so no feature may move", params="eps_scale")
        least, most = min(positive, key=weights.__getitem__), max(positive, key=weights.__getitem__)
        if weights[most] / weights[least] > MAX_WEIGHT_RATIO:
            raise UsageError(
                f"{where}: {self._feature(most)} weighs {weights[most]:g}, more than {MAX_WEIGHT_RATIO:g} times "
                f"{self._feature(least)} ({weights[least]:g}), beyond what float32 resolves; raise the smaller weight "
                "or make it 0 (immutable)",
                params="eps_scale",
            )

    @property
    def features(self) -> int:
        return len(self.names)

    @property
    def stretch(self) -> tuple[float, ...]:
        """``r_i = w_i / min{w_j > 0}`` (≥ 1); 0 for a feature of weight 0; all 1 without weights."""
        if self.weights is None:
            return (1.0,) * self.features
        least = min(w for w in self.weights if w > 0)
        return tuple(w / least for w in self.weights)

    @property
    def fixed(self) -> tuple[int, ...]:
        """Indices of the features of ε weight 0: they never move."""
        return tuple(i for i, r in enumerate(self.stretch) if r == 0)

    @property
    def stretched(self) -> bool:
        """Whether some feature has a weight above the smallest (the model then clips at 1)."""
        return any(r > 1 for r in self.stretch)

    def tensors(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """(lower, upper, r̃) as float32 rows of length D, with r̃ = r but 1 where r = 0."""
        lo = torch.tensor(self.lower, dtype=torch.float32, device=device)
        hi = torch.tensor(self.upper, dtype=torch.float32, device=device)
        r = torch.tensor([r if r > 0 else 1.0 for r in self.stretch], dtype=torch.float32, device=device)
        return lo, hi, r

    def to_attack(self, raw: Tensor) -> Tensor:
        """Raw features (N×D) → what the attacks see: ``z = (x − lo) / (hi − lo) / r̃`` in [0, 1]
        (a constant feature, lo = hi, maps to 0)."""
        lo, hi, r = self.tensors(raw.device)
        span = hi - lo
        u = torch.where(span > 0, (raw.float() - lo) / torch.where(span > 0, span, 1.0), 0.0)
        return (u / r).clamp(0.0, 1.0)

    def to_unit(self, z: Tensor) -> Tensor:
        """What the attacks see → each feature as a fraction of its range: ``u = min(r̃·z, 1)``."""
        _, _, r = self.tensors(z.device)
        return (z.float() * r).clamp(0.0, 1.0)

    def to_raw(self, z: Tensor) -> Tensor:
        """What the attacks see → raw feature values ``lo·(1 − u) + hi·u``, within [lo, hi]."""
        lo, hi, _ = self.tensors(z.device)
        u = self.to_unit(z)
        return torch.minimum(torch.maximum(lo * (1 - u) + hi * u, lo), hi)

    def describe(self) -> str:
        scale = ""
        if self.weights is not None:
            fixed = len(self.fixed)
            scale = f", ε weights from {self.weights_source}" + (f" ({fixed} immutable)" if fixed else "")
        return f"{self.features} features, bounds from {self.bounds_source}{scale}"

    def to_dict(self) -> dict:
        return {
            "features": list(self.names),
            "lower": list(self.lower),
            "upper": list(self.upper),
            "bounds": self.bounds_source,
            "eps_scale": None if self.weights is None else list(self.weights),
            "stretch": list(self.stretch),
        }


class TableSource(TensorSource):
    """A table held in memory: features already mapped to what the attacks see (``x``), labels,
    and the :class:`FeatureSpace` that maps them back (``space``)."""

    def __init__(self, x: Tensor, y: Tensor, space: FeatureSpace, *, name: str, description: str, classes=None):
        super().__init__(x, y, name=name, description=description, classes=classes)
        self.space = space


# ---------------------------------------------------------------------------------------------
# Reading per-feature values (bounds, ε weights) from a CSV or JSON file


def _number(text, what: str, path: Path) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {what} must be a number, got '{short(text)}'") from None
    if not math.isfinite(value):
        raise DataError(f"{path}: {what} must be finite, got '{short(text)}'")
    return value


def _read_rows(path: Path, columns: tuple[str, ...], option: str) -> list:
    """A per-feature file as a list of value tuples (one per feature, in feature order) or a dict
    name → tuple. CSV: a header with ``feature`` and ``columns`` (names given), or ``columns`` only
    (one row per feature in order). JSON: ``{name: value(s)}``, ``{column: [one per feature]}``."""
    what = f"a .csv or .json file with {', '.join(columns)} per feature"
    try:
        with open_regular(path, what, UsageError, param=option) as fh:
            text = fh.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"`{option}` {path}: cannot read it ({first_line(exc)})", params=option) from None
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"`{option}` {path}: not valid JSON ({first_line(exc)})", params=option) from None
        if isinstance(obj, dict) and set(columns) <= set(obj) and all(isinstance(obj[c], list) for c in columns):
            lengths = {len(obj[c]) for c in columns}
            if len(lengths) != 1:
                raise UsageError(f"`{option}` {path}: {' and '.join(columns)} differ in length", params=option)
            return [tuple(_number(obj[c][i], c, path) for c in columns) for i in range(lengths.pop())]
        if isinstance(obj, dict):
            out = {}
            for name, value in obj.items():
                values = value if isinstance(value, list) else [value]
                if len(values) != len(columns):
                    raise UsageError(
                        f"`{option}` {path}: feature '{short(name)}' needs {len(columns)} value(s) ({', '.join(columns)})",
                        params=option,
                    )
                out[str(name)] = tuple(
                    _number(v, f"{c} of '{short(name)}'", path) for c, v in zip(columns, values, strict=True)
                )
            return out  # type: ignore[return-value]
        raise UsageError(f"`{option}` {path}: expected a JSON object ({what})", params=option)
    rows = list(csv.reader(text.splitlines()))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise UsageError(f"`{option}` {path}: the file is empty (expected {what})", params=option)
    header = [c.strip() for c in rows[0]]
    missing = [c for c in columns if c not in header]
    if missing:
        raise UsageError(
            f"`{option}` {path}: the header row must name the columns {', '.join(columns)} (and feature); "
            f"missing {', '.join(missing)}",
            params=option,
        )
    named = "feature" in header
    picked = []
    keyed = {}
    for k, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(
                f"`{option}` {path}: line {k} has {len(row)} cells, the header {len(header)}", params=option
            )
        values = tuple(_number(row[header.index(c)].strip(), f"{c} on line {k}", path) for c in columns)
        if named:
            keyed[row[header.index("feature")].strip()] = values
        else:
            picked.append(values)
    return keyed if named else picked  # type: ignore[return-value]


def per_feature(
    path: str | Path, names: Sequence[str], columns: tuple[str, ...], option: str, default: tuple | None = None
) -> list[tuple]:
    """The values of ``columns`` for every feature of ``names``, from a bounds or ε-scale file; a
    file that names its features may leave some out when there is a ``default`` for them."""
    path = Path(path).expanduser()
    rows = _read_rows(path, columns, option)
    if isinstance(rows, dict):
        unknown = [n for n in rows if n not in names]
        if unknown:
            raise UsageError(
                f"`{option}` {path} names feature '{short(unknown[0])}', which the data does not have", params=option
            )
        absent = [n for n in names if n not in rows]
        if absent and default is None:
            raise UsageError(f"`{option}` {path} has no entry for feature '{short(absent[0])}'", params=option)
        return [rows.get(n, default) for n in names]
    if len(rows) != len(names):
        raise UsageError(f"`{option}` {path} has {len(rows)} rows; the data has {len(names)} features", params=option)
    return rows


def read_bounds(path: str | Path, names: Sequence[str]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Lower and upper bound per feature from ``--bounds FILE``."""
    rows = per_feature(path, names, ("lower", "upper"), "bounds")
    for name, (lo, hi) in zip(names, rows, strict=True):
        if lo > hi:
            raise UsageError(
                f"`bounds` {path}: feature '{short(name)}' has lower {lo:g} > upper {hi:g}", params="bounds"
            )
    return tuple(r[0] for r in rows), tuple(r[1] for r in rows)


def read_eps_scale(path: str | Path, names: Sequence[str]) -> tuple[float, ...]:
    """One ε weight per feature from ``--eps-scale FILE`` (:class:`FeatureSpace` checks them); a file
    that names features may list only some: the others weigh 1."""
    return tuple(r[0] for r in per_feature(path, names, ("scale",), "eps_scale", default=(1.0,)))


# ---------------------------------------------------------------------------------------------
# Building a table source


def table_source(
    x: np.ndarray | Tensor,
    y,
    *,
    name: str,
    options: DataOptions,
    names: Sequence[str] | None = None,
    classes: list[str] | None = None,
) -> TableSource:
    """A :class:`TableSource` from raw N×D features and labels: bounds from ``options.bounds`` or
    the data's min/max; raw values outside the bounds are refused."""
    raw = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if raw.dim() != 2:
        raise DataError(f"{name}: a table's x must be N×D, got shape {tuple(raw.shape)}")
    if not (raw.is_floating_point() or raw.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise DataError(f"{name}: a table's x must hold numbers, got {raw.dtype}")
    raw = raw.to(torch.float64)
    n, d = raw.shape
    if n == 0 or d == 0:
        raise DataError(f"{name}: the table is empty ({n} samples, {d} features)")
    if not torch.isfinite(raw).all():
        i, j = (~torch.isfinite(raw)).nonzero()[0].tolist()
        raise DataError(f"{name}: sample {i} has a NaN or infinite value in feature {j}")
    names = tuple(str(s) for s in names) if names is not None else tuple(f"x{j}" for j in range(d))
    if len(names) != d:
        raise DataError(f"{name}: {len(names)} feature names for {d} features")
    labels = label_vector(y, n, name)
    if options.bounds is not None:
        lower, upper = read_bounds(options.bounds, names)
        source = Path(options.bounds).name
        lo_t, hi_t = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)
        outside = (raw < lo_t) | (raw > hi_t)
        if bool(outside.any()):
            i, j = outside.nonzero()[0].tolist()
            raise DataError(
                f"{name}: sample {i} has '{short(names[j])}' = {float(raw[i, j]):g}, outside its bounds "
                f"[{lower[j]:g}, {upper[j]:g}] from {source}; widen them in the `bounds` file",
                params="bounds",
            )
    else:
        lower, upper = tuple(raw.amin(0).tolist()), tuple(raw.amax(0).tolist())
        source = "the data's min/max"
    weights = None if options.eps_scale is None else read_eps_scale(options.eps_scale, names)
    space = FeatureSpace(
        names,
        lower,
        upper,
        bounds_source=source,
        weights=weights,
        weights_source=None if options.eps_scale is None else Path(options.eps_scale).name,
    )
    z = space.to_attack(raw)
    return TableSource(
        z,
        labels,
        space,
        name=name,
        description=f"table {name}: {n} samples, {space.describe()}",
        classes=classes,
    )


def load_csv(path: Path, options: DataOptions) -> TableSource:
    """A ``.csv`` table: the first row names the columns; the label column is ``options.label_column``,
    else a column named ``label``, else the last one. Every other column is a numeric feature.
    Labels that are all integers are class indices; other labels are numbered in sorted order."""
    try:
        with open_regular(path, EXPECTED_CSV, DataError, param="data") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            rows = [r for r in csv.reader(text) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read it as CSV ({first_line(exc)})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one row of data")
    header = [c.strip() for c in rows[0]]
    if options.label_column is not None:
        if options.label_column not in header:
            raise UsageError(
                f"`label_column` {options.label_column!r} is not a column of {path} (columns: {some_names(header)})",
                params="label_column",
            )
        label_at = header.index(options.label_column)
    else:
        label_at = header.index(LABEL_COLUMN) if LABEL_COLUMN in header else len(header) - 1
    if len(header) < 2:
        raise DataError(f"{path}: needs a label column and at least one feature column")
    features = [c for j, c in enumerate(header) if j != label_at]
    values = np.empty((len(rows) - 1, len(features)), dtype=np.float64)
    labels = []
    for k, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {k} has {len(row)} cells, the header {len(header)}")
        cells = [c.strip() for c in row]
        labels.append(cells[label_at])
        for j, cell in enumerate(c for i, c in enumerate(cells) if i != label_at):
            try:
                values[k - 2, j] = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: line {k}, column '{short(features[j])}': '{short(cell)}' is not a number (features must be numeric)"
                ) from None
    y, classes = _labels(labels)
    return table_source(values, y, name=path.name, options=options, names=features, classes=classes)


def _labels(cells: list[str]) -> tuple[list[int], list[str] | None]:
    try:
        numbers = [float(c) for c in cells]
        if all(v == int(v) for v in numbers):
            return [int(v) for v in numbers], None
    except (ValueError, OverflowError):
        pass
    classes = sorted(set(cells))
    index = {c: i for i, c in enumerate(classes)}
    return [index[c] for c in cells], classes
