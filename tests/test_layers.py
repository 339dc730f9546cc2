"""The floor plan: each folder of advgrad/ is one layer, and a module imports only from its own
layer or the layers below it (the README's "Layout" section draws the same list).

Every ``import`` and ``from … import`` in the package counts, those inside functions too: a lazy
import is still a dependency. Within a layer, the sibling packages listed together (attacks,
bounds, corruptions) do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "advgrad"

# top to bottom; a layer may import itself and anything after it
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("api",),
    ("report",),
    ("train",),
    ("evaluation",),
    ("verdicts",),
    ("io",),
    ("execution",),
    ("models",),
    ("attacks", "bounds", "corruptions"),
    ("core",),
]
ROOT_MODULES = {"__init__", "__main__"}  # the package's doors: lazy exports and `python -m advgrad`


def _unit(module: str) -> str:
    """The layer unit of a dotted module name below advgrad: its first component."""
    return module.split(".")[1] if module.count(".") else ""


def _level(unit: str) -> int:
    for level, units in enumerate(LAYERS):
        if unit in units:
            return level
    raise AssertionError(f"advgrad.{unit} belongs to no layer: add it to LAYERS and the README's layout")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("advgrad", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Every advgrad module ``module`` imports (a name imported from a package counts as the package)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "advgrad" or name.startswith("advgrad.")}


MODULES = _modules()


def test_every_module_sits_in_a_layer_folder():
    loose = sorted(
        m for m in MODULES if m.count(".") == 1 and MODULES[m].name != "__init__.py" and _unit(m) not in ROOT_MODULES
    )
    assert loose == ["advgrad.api"], f"modules outside the layer folders: {loose}"
    for module in MODULES:
        if module != "advgrad" and _unit(module) not in ROOT_MODULES:
            _level(_unit(module))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _unit(m) not in ROOT_MODULES and m != "advgrad"))
def test_imports_point_down_only(module):
    unit = _unit(module)
    level = _level(unit)
    for target in _imports(module, MODULES[module]):
        if target == "advgrad":  # `from advgrad import __version__`: the package's own door
            continue
        other = _unit(target)
        assert _level(other) > level or other == unit, (
            f"{module} imports {target}: layer {unit} may import only itself and the layers below it"
        )


def test_no_two_modules_share_a_name():
    seen: dict[str, str] = {}
    for module in sorted(MODULES):
        name = module.rsplit(".", 1)[-1]
        if MODULES[module].name == "__init__.py":
            continue
        assert name not in seen, f"{module} and {seen[name]} share the name {name!r}"
        seen[name] = module


def test_no_package_shadows_an_api_function():
    import advgrad

    for name in ("attack", "evaluate", "certify"):
        assert f"advgrad.{name}" not in MODULES
        assert callable(getattr(advgrad, name))
