"""Every dependency in pyproject.toml earns its place: the project's Python code imports it, or
it is in :data:`USED_WITHOUT_IMPORT` with the reason nothing imports it."""

from __future__ import annotations

import ast
import functools
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fti_assets.lib.core.settings import PROJECT_ROOT

# The project's Python code (dbt macros and SQL do not import Python packages).
SCANNED = ("fti_assets", "tests", "benchmarks", "scripts")

# Used, but by a program or a library rather than through an import of ours.
USED_WITHOUT_IMPORT = {
    "dagster-webserver": "the Dagster UI: `dagster dev` (make dev) runs it",
    "dagster-dg-cli": "the `dg` command (`dg list defs`, `dg check defs`)",
    "dagster-postgres": "named in dagster-postgres.yaml (the instance's run storage on Postgres)",
    "dbt-core": "the `dbt` command dagster-dbt runs (`dbt.cli(['build'])`); pinned to the dbt "
    "version the models in dbt_project/ are written for",
    "dbt-duckdb": "dbt's DuckDB adapter, loaded by dbt from dbt_project/profiles.yml",
    "duckdb-ext-ducklake": "the DuckLake extension binary, loaded by DuckDB from its folder",
    "duckdb-ext-sqlite": "DuckDB's SQLite extension (the lake's SQLite catalog), from its folder",
    "duckdb-ext-postgres": "DuckDB's Postgres extension (a Postgres lake catalog), from its folder",
    "hiredis": "redis-py's reply parser, picked by redis-py when installed (pyproject cites the "
    "measurement)",
    "pytest-xdist": "the `-n` option of pytest (make test)",
    "ruff": "the linter and formatter (make lint)",
}


def _requirements() -> dict[str, Requirement]:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    specs = list(pyproject["project"]["dependencies"])
    for group in pyproject.get("dependency-groups", {}).values():
        specs += [s for s in group if isinstance(s, str)]
    return {canonicalize_name(Requirement(s).name): Requirement(s) for s in specs}


@functools.cache
def _imported_top_levels() -> frozenset[str]:
    names: set[str] = set()
    for folder in SCANNED:
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            if ".venv" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return frozenset(names)


@functools.cache
def _distributions_imported() -> frozenset[str]:
    by_module = packages_distributions()
    imported = _imported_top_levels()
    return {canonicalize_name(dist) for module in imported for dist in by_module.get(module, [])}


def test_every_dependency_is_imported_or_explained() -> None:
    declared = _requirements()
    assert "dagster" in declared and "pytest" in declared  # both tables were read
    imported = _distributions_imported()
    unused = sorted(set(declared) - imported - set(USED_WITHOUT_IMPORT))
    assert unused == [], (
        f"dependencies nothing imports: {unused}; remove them from pyproject.toml (then "
        "`uv lock`) or add each to USED_WITHOUT_IMPORT with the reason"
    )


def test_the_allow_list_is_not_stale() -> None:
    declared = _requirements()
    imported = _distributions_imported()
    stale = sorted(canonicalize_name(n) for n in USED_WITHOUT_IMPORT if n not in declared)
    assert stale == [], f"USED_WITHOUT_IMPORT names dependencies pyproject lacks: {stale}"
    needless = sorted(n for n in USED_WITHOUT_IMPORT if n in imported)
    assert needless == [], f"imported after all, drop them from USED_WITHOUT_IMPORT: {needless}"


def test_the_scan_sees_imports() -> None:
    imported = _imported_top_levels()
    assert {"dagster", "polars", "fastapi", "lightgbm", "pytest"} <= imported
