"""dbt: staging → intermediate → marts over the raw tables, run through Dagster.

Marts are feature groups (see fti_assets/lib/features/groups.py); dbt tests become asset checks.
Models tagged ``daily`` are incremental and partitioned by day: Dagster passes the partition
window (FTI_WINDOW_START/END) and each model replaces those days (delete+insert in one
transaction).
"""

import importlib.metadata
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from packaging import version

from fti_assets.dbt_env import write_env_file
from fti_assets.defs.automation import daily_condition, reference_condition
from fti_assets.defs.metadata import FEATURE_FRESHNESS, OWNERS, feature_group_metadata
from fti_assets.lib.core.settings import PROJECT_ROOT
from fti_assets.lib.store.offline import current_snapshot, lake_environment
from fti_assets.partitions import DAILY_TAG, daily_partitions, single_run
from fti_assets.resources import OfflineStoreResource
from fti_assets.specs.feature_groups import FEATURE_GROUPS

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

# The dbt next to this interpreter: the venv's, even when the venv is not activated.
DBT_EXECUTABLE = Path(sys.executable).parent / "dbt"
DBT_WRAPPER = Path(sys.executable).parent / "fti-dbt"
if DBT_EXECUTABLE.exists() and shutil.which("dbt") != str(DBT_EXECUTABLE):
    # dagster-dbt's manifest preparer runs `dbt` from PATH: make it find the venv's one.
    os.environ["PATH"] = f"{DBT_EXECUTABLE.parent}{os.pathsep}{os.environ.get('PATH', '')}"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _manifest_is_stale() -> bool:
    """No manifest yet, or a dbt source file changed after it was written."""
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    sources = [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    for folder in ("models", "macros", "tests"):
        sources.extend((DBT_PROJECT_DIR / folder).rglob("*.*"))
    built = manifest.stat().st_mtime
    return any(path.stat().st_mtime > built for path in sources)


dbt_project.prepare_if_dev()
if _manifest_is_stale():
    # Outside `dagster dev` (tests, `fti demo`, a fresh clone, after editing a model) parse to
    # get a current manifest (the preparer holds a file lock: parallel workers parse it once).
    dbt_project.preparer.prepare(dbt_project)


# The daily marts' longest trailing window (rows between 29 preceding and the day itself).
MART_LOOKBACK_DAYS = 30


class FtiDbtTranslator(DagsterDbtTranslator):
    """Groups dbt models by stage, attaches the feature-group contract to marts and gives each
    model its automation condition: daily models (dbt tag ``daily``) follow their day, the
    others (staging views, profiles) their reference data."""

    def get_partition_mapping(
        self, dbt_resource_props: Mapping[str, Any], dbt_parent_resource_props: Mapping[str, Any]
    ) -> dg.PartitionMapping | None:
        """A daily mart over a daily model reads that model's trailing 30 days (its ``w30``
        windows): re-materializing one upstream day makes the 30 mart days that read it stale."""
        both_daily = all(
            DAILY_TAG in props.get("tags", [])
            for props in (dbt_resource_props, dbt_parent_resource_props)
        )
        if both_daily and dbt_resource_props["name"] in FEATURE_GROUPS:
            return dg.TimeWindowPartitionMapping(
                start_offset=-(MART_LOOKBACK_DAYS - 1),
                end_offset=0,
                allow_nonexistent_upstream_partitions=True,
            )
        return super().get_partition_mapping(dbt_resource_props, dbt_parent_resource_props)

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        if dbt_resource_props["resource_type"] != "model":
            return None
        if DAILY_TAG in dbt_resource_props.get("tags", []):
            return daily_condition()
        return reference_condition()

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] != "model":
            return super().get_group_name(dbt_resource_props)
        return "features" if dbt_resource_props["name"] in FEATURE_GROUPS else "transform"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return OWNERS

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.key.to_user_string() in FEATURE_GROUPS:
            spec = spec.replace_attributes(freshness_policy=FEATURE_FRESHNESS)
        return spec

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        metadata = dict(super().get_metadata(dbt_resource_props))
        spec = FEATURE_GROUPS.get(dbt_resource_props["name"])
        if spec is not None and spec.source == "dbt":
            metadata.update(feature_group_metadata(spec))
        return metadata


translator = FtiDbtTranslator()


def _dbt_build(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    offline_store: OfflineStoreResource,
    window: tuple[str, str] | None = None,
) -> Iterator[Any]:
    # dbt's profile attaches the lake named by FTI_LAKE_*, and the partition window travels in
    # FTI_WINDOW_* (not --vars: new --vars make dbt re-parse the whole project on every daily
    # run; see macros/partition_window.sql; unset = all days). They go to the dbt process only,
    # through the invocation's own target folder (see fti_assets/dbt_env.py): this process's
    # environment is left alone.
    variables = lake_environment(offline_store.lake)
    if window is not None:
        variables["FTI_WINDOW_START"], variables["FTI_WINDOW_END"] = window
    project_target = dbt_project.project_dir / dbt_project.target_path
    target = project_target / f"{context.op_def.name}-{context.run_id[:7]}-{uuid.uuid4().hex[:7]}"
    write_env_file(target, variables)
    invocation = dbt.cli(["build"], context=context, raise_on_error=False, target_path=target)
    with offline_store.connection(read_only=True) as lake:
        for event in invocation.stream():
            if isinstance(event, dg.Output | dg.AssetMaterialization):
                # The lake snapshot in which this model's new rows are visible.
                event = event.with_metadata(
                    {**event.metadata, "lake_snapshot": current_snapshot(lake)}
                )
            yield event
    _keep_partial_parse(Path(invocation.target_path), project_target)
    _prune_run_folders(project_target)
    error = invocation.get_error()
    if error is not None:
        if _RETRYABLE_DBT_ERROR.search(str(error)):
            # A concurrent run committed to the same lake table first (dbt's transaction is not
            # ours to re-run): every model here is idempotent, so the step is simply retried.
            raise dg.RetryRequested(max_retries=DBT_CONFLICT_RETRIES, seconds_to_wait=2) from error
        raise error


def _keep_partial_parse(run_target: Path, project_target: Path) -> None:
    """Make this run's parse state the one the next dbt invocation starts from.

    dagster-dbt gives each invocation its own target folder seeded with
    ``target/partial_parse.msgpack``; dbt throws that away and parses the whole project when the
    profile differs (the lake catalog is part of it) and the state from ``dbt parse`` was made
    with the path the dbt profile defaults to, not the resource's. Copying the run's state back
    means the next run on the same store parses only what changed (a few seconds per run).
    """
    state = run_target / "partial_parse.msgpack"
    if not state.exists():
        return
    tmp = project_target / f".partial_parse.{os.getpid()}.msgpack"
    shutil.copyfile(state, tmp)
    os.replace(tmp, project_target / "partial_parse.msgpack")  # atomic: readers see old or new


# A dbt failure caused by a concurrent commit to the same lake table (see lib/store/offline).
_RETRYABLE_DBT_ERROR = re.compile(
    r"Failed to commit DuckLake transaction|conflict|database is locked", re.IGNORECASE
)
DBT_CONFLICT_RETRIES = 4

# dagster-dbt's per-invocation target folders: "<op name>-<run id[:7]>-<random[:7]>".
_RUN_FOLDER = re.compile(r"^dbt_\w+-[0-9a-f]{7}-[0-9a-f]{7}$")
KEEP_DBT_RUN_FOLDERS = 20


def _prune_run_folders(
    project_target: Path, keep: int = KEEP_DBT_RUN_FOLDERS, min_age_s: float = 3600.0
) -> list[Path]:
    """Delete all but the newest ``keep`` dbt run folders (about 2 MB each: manifest, compiled
    SQL, dbt.log), so a daily schedule does not fill the disk. Folders younger than
    ``min_age_s`` are never touched: another process may still be running dbt in them."""
    # Steps of other runs prune the same folder at the same time: a folder may vanish between
    # the listing and its stat, which only means someone else removed it.
    modified: dict[Path, float] = {}
    for p in project_target.iterdir():
        if _RUN_FOLDER.match(p.name):
            try:
                if p.is_dir():
                    modified[p] = p.stat().st_mtime
            except FileNotFoundError:
                continue
    folders = sorted(modified, key=modified.__getitem__, reverse=True)
    now = time.time()
    removed = []
    for folder in folders[keep:]:
        if now - modified[folder] >= min_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    exclude="tag:daily",
    dagster_dbt_translator=translator,
    name="dbt_reference_models",
    pool="dbt",
)
def dbt_reference_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, offline_store: OfflineStoreResource
) -> Iterator[Any]:
    """Staging views and reference feature groups (card and merchant profiles)."""
    yield from _dbt_build(context, dbt, offline_store)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    select="tag:daily",
    dagster_dbt_translator=translator,
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    name="dbt_daily_models",
    pool="dbt",
)
def dbt_daily_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, offline_store: OfflineStoreResource
) -> Iterator[Any]:
    """Daily incremental models: activity aggregates and the card/merchant daily feature groups."""
    window = context.partition_time_window
    days = (window.start.date().isoformat(), (window.end - timedelta(days=1)).date().isoformat())
    yield from _dbt_build(context, dbt, offline_store, days)


class FtiDbtCliResource(DbtCliResource):
    """``DbtCliResource`` without two fixed costs per dbt step that this project does not use.

    Before starting dbt, ``DbtCliResource.cli`` runs ``dbt --version`` in a subprocess (~2.4 s)
    and builds a dbt adapter in-process, parsing every dbt macro (~3 s), only so that
    ``fetch_row_counts()`` / ``fetch_column_metadata()`` can query the warehouse; our assets
    call neither. The version comes from the installed dbt-core when the executable is the one
    next to this interpreter (or ``fti-dbt``, which runs it). ``tests/test_dbt_resource.py``
    fails if dagster-dbt renames the two hooks.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) in (DBT_EXECUTABLE, DBT_WRAPPER):
            return version.parse(importlib.metadata.version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None  # no adapter: dagster-dbt then skips the warehouse metadata queries


def dbt_resource() -> DbtCliResource:
    """dbt through ``fti-dbt`` (fti_assets/dbt_env.py), which gives dbt the lake and window
    each step chose, without touching this process's environment."""
    if not DBT_WRAPPER.exists():
        raise RuntimeError(f"{DBT_WRAPPER} is missing: run `make install` (it installs fti-dbt)")
    return FtiDbtCliResource(
        project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=str(DBT_WRAPPER)
    )
