"""lib/ is layered: a sub-package imports only from its own layer and the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import fti_assets.lib

LIB = Path(fti_assets.lib.__file__).parent
PREFIX = "fti_assets.lib"

# Lowest first. core: settings, backend URLs, provenance · store: the feature store (offline lake,
# online store) and the spec of what it stores · registry: model registry + the artifact format ·
# ingest: the landing files' domain and contracts · features: groups, windows, views, PIT,
# pipelines · streaming: the streaming feature pipeline · training · inference · monitoring ·
# synthetic: the generated world, which nothing in lib may depend on.
LAYERS = (
    "core",
    "store",
    "registry",
    "ingest",
    "features",
    "streaming",
    "training",
    "inference",
    "monitoring",
    "synthetic",
)
# Concrete declarations and Dagster code sit above lib; lib never imports them.
ABOVE_LIB = ("fti_assets.defs", "fti_assets.specs", "fti_assets.cli", "fti_assets.service")


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PREFIX, *parts))


def _imports(source: str, name: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module the module ``name`` imports, at any depth (function-level imports too),
    with relative imports resolved."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join([*base, node.module or ""]) if node.level else node.module or ""
            module = module.rstrip(".")
            found.append((node.lineno, module))
            if len(module.split(".")) <= 3:  # from fti_assets.lib[.<layer>] import <module>
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and ".".join(parts[:2]) == PREFIX else None


def _upward(source: str, name: str, is_package: bool = False) -> list[str]:
    own = _layer(name)
    found = []
    for line, imported in _imports(source, name, is_package):
        layer = _layer(imported)
        if own in LAYERS and layer in LAYERS and LAYERS.index(layer) > LAYERS.index(own):
            found.append(f"{name}:{line} -> {imported} ({own} is below {layer})")
    return found


def _lib_modules() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_lib_module_sits_in_a_declared_layer() -> None:
    stray = [
        str(p.relative_to(LIB))
        for p in _lib_modules()
        if (p.parent == LIB and p.name != "__init__.py")
        or (p.parent != LIB and p.relative_to(LIB).parts[0] not in LAYERS)
    ]
    assert stray == [], f"modules outside the layers {LAYERS} (place them in one): {stray}"
    packages = sorted(p.name for p in LIB.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(LAYERS)


def test_no_lib_module_imports_a_higher_layer() -> None:
    upward = [
        violation
        for path in _lib_modules()
        for violation in _upward(
            path.read_text(), _module_name(path), is_package=path.name == "__init__.py"
        )
    ]
    assert upward == [], "lower layers import higher ones:\n" + "\n".join(upward)


def test_lib_imports_nothing_above_it() -> None:
    above = [
        f"{_module_name(path)}:{line} -> {imported}"
        for path in _lib_modules()
        for line, imported in _imports(
            path.read_text(), _module_name(path), path.name == "__init__.py"
        )
        if imported.startswith(ABOVE_LIB) or imported.split(".")[0] == "dagster"
    ]
    assert above == [], "lib imports Dagster or code above it:\n" + "\n".join(above)


def test_upward_imports_are_found_in_functions_and_relative_imports() -> None:
    source = (
        "from fti_assets.lib.core.settings import LakeConfig\n"
        "from ..registry import predictor\n"
        "def f():\n"
        "    from fti_assets.lib.training.datasets import load_dataset\n"
        "    from fti_assets.lib import inference\n"
    )
    assert _upward(source, f"{PREFIX}.store.offline") == [
        f"{PREFIX}.store.offline:2 -> {PREFIX}.registry (store is below registry)",
        f"{PREFIX}.store.offline:2 -> {PREFIX}.registry.predictor (store is below registry)",
        f"{PREFIX}.store.offline:4 -> {PREFIX}.training.datasets (store is below training)",
        f"{PREFIX}.store.offline:5 -> {PREFIX}.inference (store is below inference)",
    ]


# The fraud domain lives in the generator (synthetic/), the landing files' domain and their
# ingest (ingest/: the fraud-label files are one of its sources) and the specs above lib.
DOMAIN_MODULES = ("synthetic", "ingest")


def _code_names(source: str) -> list[tuple[int, str]]:
    """Identifiers and string values of a module's code (docstrings and comments are prose,
    left out)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append((node.lineno, node.name))
        elif isinstance(node, ast.arg):
            found.append((node.lineno, node.arg))
        elif isinstance(node, ast.keyword) and node.arg:
            found.append((node.value.lineno, node.arg))
        elif isinstance(node, ast.alias):
            found.append((node.lineno, node.asname or node.name))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            found.append((node.lineno, node.value))
    return found


def test_lib_outside_the_domain_modules_has_no_fraud_specific_names() -> None:
    found = [
        f"{path.relative_to(LIB)}:{line}: {name!r}"
        for path in sorted(LIB.rglob("*.py"))
        if path.relative_to(LIB).parts[0] not in DOMAIN_MODULES
        for line, name in _code_names(path.read_text())
        if "fraud" in name.lower()
    ]
    assert not found, "\n".join(found)


def test_the_fraud_name_scan_sees_code_not_prose() -> None:
    source = '"""A fraud model."""\n# fraud\nfraud_rate = {"fraud_probability": 1}\n'
    assert [n for _, n in _code_names(source) if "fraud" in n] == [
        "fraud_rate",
        "fraud_probability",
    ]
