"""Materializing the whole asset graph in-process (used by `fti demo`, tests and benchmarks)."""

import contextlib
import os
import time
from collections.abc import Sequence
from datetime import date

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from rich.console import Console
from rich.table import Table

from fti_assets.lib.core.settings import Settings
from fti_assets.lib.core.store_urls import display_url
from fti_assets.lib.synthetic.world import landed_days
from fti_assets.partitions import daily_partitions


def materialize_graph(
    defs: dg.Definitions,
    *,
    start: date | None = None,
    end: date | None = None,
    selection: dg.AssetSelection | str | Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    resources: dict | None = None,
    run_config: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialize the selected assets (default: all, with their checks) in ONE run.

    Partitioned assets receive the whole window [start, end] (inclusive days; default: every
    day in the landing zone that is a partition) and process it in one go, like a single-run
    backfill.
    """
    if start is None or end is None:
        first, last = landed_window(Settings.from_env())
        start, end = start or first, end or last
    assets = [*defs.assets, *(defs.asset_checks or [])]
    if selection is None:
        selection = dg.AssetSelection.all() - dg.AssetSelection.assets(
            "lake_maintenance", *_other_calendar(defs)
        )
    return dg.materialize(
        assets,
        instance=instance,
        resources=resources if resources is not None else defs.resources,
        selection=selection,
        run_config=run_config,
        raise_on_error=raise_on_error,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
        },
    )


def _other_calendar(defs: dg.Definitions) -> list[dg.AssetKey]:
    """Assets partitioned by the real-time log calendar (the inference log and what reads
    it): one run takes one partition window, so they are materialized on their own."""
    from fti_assets.partitions import log_partitions

    graph = defs.resolve_asset_graph()
    return [
        key for key in graph.get_all_asset_keys() if graph.get(key).partitions_def == log_partitions
    ]


def landed_window(settings: Settings) -> tuple[date, date]:
    """The first and last day in the landing zone that are daily partitions: the window one run
    can ingest (days held back in the world, or not yet partitions, are left out)."""
    landing = settings.layout.landing_dir
    days = [d for d in landed_days(landing) if daily_partitions.has_partition_key(d.isoformat())]
    if not days:
        raise ValueError(
            f"no day in {landing} is a daily partition "
            f"({daily_partitions.get_first_partition_key()} … "
            f"{daily_partitions.get_last_partition_key()}); run `fti generate` or "
            "`fti simulate advance` first"
        )
    return days[0], days[-1]


def _materializations(result: dg.ExecuteInProcessResult) -> list[dict]:
    rows, seen = [], set()
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        # A partitioned asset run over a window emits one event per day with the same metadata.
        if mat.asset_key in seen:
            continue
        seen.add(mat.asset_key)
        meta = mat.metadata
        row_count = meta.get("dagster/row_count") or meta.get("rows")
        rows.append(
            {
                "asset": mat.asset_key.to_user_string(),
                "rows": getattr(row_count, "value", row_count) if row_count is not None else "",
                "quarantined": getattr(meta.get("rows_quarantined"), "value", ""),
            }
        )
    return rows


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == asset:
            meta = event.event_specific_data.materialization.metadata
            return {k: getattr(v, "value", v) for k, v in meta.items()}
    return {}


def run_demo(console: Console) -> dg.ExecuteInProcessResult:
    from fti_assets.definitions import defs

    settings = Settings.from_env()
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    start, end = landed_window(settings)
    log_path = settings.data_dir / "logs" / "demo-run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console.print(
        f"materializing every asset for {start} … {end} in one run "
        f"(dbt output goes to {log_path}) …"
    )
    t0 = time.perf_counter()
    with open(log_path, "w") as log, contextlib.redirect_stdout(log):
        result = materialize_graph(
            defs,
            start=start,
            end=end,
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    elapsed = time.perf_counter() - t0

    table = Table(title="Materialized assets")
    for col in ("asset", "rows", "quarantined"):
        table.add_column(col)
    for row in _materializations(result):
        table.add_row(row["asset"], f"{row['rows']}", f"{row['quarantined']}")
    console.print(table)

    checks = result.get_asset_check_evaluations()
    passed = sum(1 for c in checks if c.passed)
    failed = [c.asset_check_key.to_user_string() for c in checks if not c.passed]
    console.print(
        f"asset checks: {passed}/{len(checks)} passed" + (f"; FAILED: {failed}" if failed else "")
    )
    evaluation = _metadata(result, "fraud_model_evaluation")
    if evaluation:
        console.print(
            f"fraud_model v{evaluation['model_version']}: test PR-AUC "
            f"{evaluation['test_pr_auc']:.3f} vs oracle (Bayes limit) "
            f"{evaluation['oracle_pr_auc']:.3f} → ratio "
            f"{evaluation['model_to_oracle_pr_auc']:.2f}; "
            f"champion: {_metadata(result, 'fraud_model_champion').get('alias_change', '—')}"
        )
        console.print(f"PR curve and calibration plots: {evaluation['pr_curve_path']}")
    console.print(
        f"run {result.run_id} finished in {elapsed:.1f}s: "
        + ("[green]success[/green]" if result.success else "[red]failure[/red]")
    )
    console.print(
        "\nWhere to look:\n"
        "  make dev      → Dagster UI at http://127.0.0.1:3000 (asset graph, partitions, checks, "
        "runs)\n"
        "  make serve    → prediction service at http://127.0.0.1:8000/docs\n"
        "  make stream   → streaming card features: event log → online store, per transaction\n"
        "  fti features list | fti features get card_profile_features card_id=c0000001\n"
        "  fti datasets list | fti models list\n"
        f"  data: {settings.data_dir} (offline store: {settings.lake.describe()}; online store "
        f"{display_url(settings.online_url)}; datasets/, models/, reports/)"
    )
    if not result.success:
        raise SystemExit(1)
    return result
