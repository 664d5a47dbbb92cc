"""The one entry point: everything under ``fti_assets/defs/``, plus the shared resources and the
executor.

The stage packages are not listed here: every module under ``fti_assets/defs/`` (the
``defs_module`` of ``[tool.dg.project]`` in pyproject.toml) is loaded the way
``dg.load_from_defs_folder`` loads it. A module holding a ``Definitions`` object contributes that
object (``defs/models/per_spec.py``: one ``model_definitions(spec)`` per model spec); any other
module contributes its module-level assets, asset specs, asset checks, sensors, schedules and
jobs, alone or in lists. Adding an asset, a sensor or a stage is writing it at module level in a
module under ``defs/``; adding a model is adding its spec to ``fti_assets.specs.models.MODELS``.
``tests/test_definitions.py`` fails when a module there holds an object that is not loaded, or
when two objects have one key.

The folder is built by the component tree that ``dg.load_from_defs_folder`` builds, without the
one step that function adds at the root: a catalog of every installed plugin component type (the
``plugin_component_types_json`` metadata: ~800 distributions' entry points scanned, 8 JSON schemas
built), which this project, with no YAML components, has no use for. It costs ~0.4 s of CPU on
each import of this module; the walk itself ~0.03 s. A test checks that
``dg.load_from_defs_folder`` finds the same objects.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import dagster as dg

from fti_assets.defs.transform.assets import dbt_resource
from fti_assets.resources import default_resources

T = TypeVar("T")


def _once(objects: Iterable[T] | None) -> Sequence[T]:
    """Each object once, in order: an object imported into a second module is found there too,
    and the module loader lists an ``AssetSpec`` both as an asset and as a source asset. Dagster
    dedupes them when it resolves; ``defs.assets`` is also iterated as is (``fti demo``, the
    scenario)."""
    seen: dict[int, T] = {}
    for obj in objects or ():
        seen.setdefault(id(obj), obj)
    return list(seen.values())


def load_defs_folder() -> dg.Definitions:
    """Every Dagster object of the modules under ``fti_assets/defs/``, each once."""
    tree = dg.ComponentTree.for_project(Path(__file__).parent)
    folder = tree.build_defs(tree.defs_module_path)
    return dg.Definitions(
        assets=_once(folder.assets),
        asset_checks=_once(folder.asset_checks),
        schedules=_once(folder.schedules),
        sensors=_once(folder.sensors),
        jobs=_once(folder.jobs),
        resources=folder.resources,
        loggers=folder.loggers,
        executor=folder.executor,
        metadata=folder.metadata,
        component_tree=tree,
    )


defs = dg.Definitions.merge(
    load_defs_folder(),
    dg.Definitions(
        resources={**default_resources(), "dbt": dbt_resource()},
        # Runs launched from the UI or a schedule execute each step in its own process. Forking
        # those from a server that imported these definitions once per run (forkserver), instead
        # of spawning a fresh interpreter per step, saves the ~4 s import for every step.
        executor=dg.multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["fti_assets.definitions"]}}}
        ),
    ),
)
