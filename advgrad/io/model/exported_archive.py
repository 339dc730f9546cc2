"""What ``torch.export.load`` would deserialize from a ``.pt2`` archive, judged before it does.

torch's loader reads the archive through its own zip reader (``torch._C.PyTorchFileReader``),
which finds a member by name *without regard to case*: a config naming ``opaque_obj_0`` reads a
member spelled ``Opaque_obj_0`` or ``data/CONSTANTS/opaque_obj_0``. What it then does with each
entry is decided by the archive's config JSON, not by member names:

- ``data/weights/<model>_weights_config.json`` and ``data/constants/<model>_constants_config.json``
  list every weight and constant. An entry with ``use_pickle: false`` and tensor metadata is raw
  tensor bytes; a pickled one goes through ``torch.load``; a constant stored as ``custom_obj_*``
  goes through TorchScript's unpickler and one stored as ``opaque_obj_*`` through plain
  ``pickle.loads`` — code from the file runs.
- ``models/<model>.json`` is the graph. Its symbolic sizes (``expr_str``) are parsed with
  ``sympy.sympify``, which evaluates Python expressions. (Its ``guards_code`` is Python source
  that ``ExportedProgram.module()`` would execute; advgrad unlifts the graph without guards.)
- ``data/aotinductor/`` holds compiled code that torch loads as a shared library.

So advgrad reads the same configs through the same reader and denies by default: every entry
must be known tensor data, every symbolic expression must be made of size symbols, numbers and
sympy's arithmetic, and there must be no compiled code. Anything else is a
reason to refuse the archive (unless ``--unsafe-pickle``).
"""

from __future__ import annotations

import builtins
import json
import re
import zipfile
from pathlib import Path

import sympy
import torch

from advgrad.core.errors import first_line

MODELS_DIR = "models/"
MODEL_SUFFIX = ".json"
WEIGHTS_CONFIG = "data/weights/{}_weights_config.json"
CONSTANTS_CONFIG = "data/constants/{}_constants_config.json"
LEGACY_WEIGHTS = "data/weights/{}.pt"  # one torch.save pickle, read with torch.load (forced weights_only)
LEGACY_CONSTANTS = "data/constants/{}.pt"
TENSOR_CONSTANT_PREFIX = "tensor_"
COMPILED_DIR = "data/aotinductor/"

# Names a symbolic size expression may use (sympy.sympify evaluates anything else it is given).
_SYMPY_NAMES = frozenset(
    """
    Add Mul Pow Equality Unequality StrictLessThan StrictGreaterThan LessThan GreaterThan true false
    Abs And CeilDiv CeilToInt CleanDiv Eq False Float FloatPow FloatTrueDiv FloorDiv FloorToInt Ge Gt
    Identity IntTrueDiv Integer IsNonOverlappingAndDenseIndicator LShift Le Lt Max Min Mod ModularIndexing
    Ne Not Or PowByNatural PythonMod RShift Rational RoundDecimal RoundToInt Symbol ToFloat True TruncToFloat
    TruncToInt Where ceiling floor nan oo sqrt zoo
    IntInfinity NegativeIntInfinity Infinity NegativeInfinity NaN
    finite integer negative nonnegative nonpositive nonzero positive precision real
""".split()
)
_SYMBOL = re.compile(r"[a-z]{1,4}[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
_TOKEN = re.compile(
    r"\s+|[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|[A-Za-z][A-Za-z0-9_]*|'[A-Za-z0-9_]+'|'-?[0-9.eE+-]+'"
    r"|\*\*|//|==|!=|<=|>=|[-+*/%(),<>=]"
)


def _is_symbol_name(name: str) -> bool:
    return bool(_SYMBOL.fullmatch(name)) and not hasattr(sympy, name) and not hasattr(builtins, name)


def safe_sympy_expression(text: str) -> bool:
    """Whether ``text`` is a size expression that ``sympy.sympify`` can evaluate without risk.

    Allowed: numbers, size symbols (``s77``, ``u0``; also quoted, as in ``Symbol('s77')``, and quoted
    numbers, as in ``Float('1.5', precision=53)``), the
    sympy and torch size functions above, arithmetic, comparisons, parentheses and keyword flags.
    Attribute access, subscripts, other names and other strings are refused.
    """
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            return False
        token = match.group()
        if token[0].isalpha() and token not in _SYMPY_NAMES and not _is_symbol_name(token):
            return False
        if token[0] == "'" and not (_is_symbol_name(token[1:-1]) or _NUMBER.fullmatch(token[1:-1])):
            return False
        pos = match.end()
    return True


def _strings_under(obj, key: str):
    """Every value stored under ``key`` anywhere in parsed JSON."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if k == key:
                    yield v
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)


def _payload_refusals(entries: dict, where: str, constants: bool) -> list[str]:
    """Entries of a weights/constants config that are not raw tensor bytes."""
    reasons = []
    for name, meta in entries.items():
        if not isinstance(meta, dict):
            reasons.append(f"{where} entry {name!r} is not a table")
            continue
        path_name = meta.get("path_name")
        stored = f"{name!r} (stored as {path_name!r})"
        if not isinstance(path_name, str):
            reasons.append(f"{where} entry {name!r} names no file")
        elif constants and path_name.startswith("opaque_obj_"):
            reasons.append(f"constant {stored} is a pickled Python object that torch unpickles with pickle.loads")
        elif constants and path_name.startswith("custom_obj_"):
            reasons.append(f"constant {stored} is a pickled TorchScript object")
        elif constants and not path_name.startswith(TENSOR_CONSTANT_PREFIX):
            reasons.append(f"constant {stored} is of a kind advgrad does not know")
        elif meta.get("use_pickle") is not False:
            reasons.append(f"{where} entry {stored} is a pickle, not raw tensor data")
        elif not isinstance(meta.get("tensor_meta"), dict):
            reasons.append(f"{where} entry {stored} has no tensor description")
    return reasons


def _read_json(reader, name: str):
    return json.loads(reader.get_record(name).decode("utf-8"))


def _model_refusals(reader, records: set[str], record: str) -> list[str]:
    model = record[len(MODELS_DIR) : -len(MODEL_SUFFIX)]  # as torch slices it
    reasons = []
    graph = _read_json(reader, record)
    bad = [e for e in _strings_under(graph, "expr_str") if not isinstance(e, str) or not safe_sympy_expression(e)]
    if bad:
        reasons.append(f"its graph holds a symbolic size that is Python code to evaluate ({str(bad[0])[:60]!r})")
    for legacy, config, constants in (
        (LEGACY_WEIGHTS, WEIGHTS_CONFIG, False),
        (LEGACY_CONSTANTS, CONSTANTS_CONFIG, True),
    ):
        if legacy.format(model) in records:
            continue  # read with torch.load, forced to weights_only by the caller
        name = config.format(model)
        if name not in records:
            continue  # torch stops with an error before reading anything
        table = _read_json(reader, name)
        entries = table.get("config") if isinstance(table, dict) else None
        if not isinstance(entries, dict):
            reasons.append(f"{name} is not a table of entries")
            continue
        reasons += _payload_refusals(entries, "weight" if not constants else "constant", constants)
    return reasons


def archive_refusals(path: Path) -> list[str]:
    """Why loading ``path`` with ``torch.export.load`` could run code from it (empty: it could not).

    Raises ``ValueError`` when torch's reader cannot read the archive at all.
    """
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        records = set(reader.get_all_records())
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception as exc:
        raise ValueError(first_line(exc)) from None
    reasons = []
    if any("/" not in name for name in names):  # torch falls back to the old layout when its reader fails
        reasons.append("it holds members outside the archive's folder, which torch reads as an old-format archive")
    if any(r.lower().startswith(COMPILED_DIR) for r in records):
        reasons.append(f"it holds compiled code ({COMPILED_DIR}) that torch loads as a shared library")
    for record in sorted(records):
        if record.startswith(MODELS_DIR):
            try:
                reasons += _model_refusals(reader, records, record)
            except (RuntimeError, UnicodeDecodeError, ValueError) as exc:  # a config torch could not read either
                reasons.append(f"{record} or its configs cannot be read ({first_line(exc)})")
    return reasons
