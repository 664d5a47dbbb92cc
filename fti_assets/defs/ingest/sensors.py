"""The landing sensor: a day that lands becomes a run of the ingest assets for that day.

It watches ``FTI_DATA_DIR/landing`` (where ``fti generate`` and ``fti simulate advance`` put
files). Its cursor remembers each file's size, modification time and content hash; a new or
changed file — by content — is a request, and its ``run_key`` is derived from the day and the
content, so a restarted daemon (or a lost cursor) never launches the same ingestion twice. A file
it has never seen whose asset partition was materialized after the file was written (`fti demo`
ingested it, or a backfill) is adopted into the cursor, not ingested again.

Order matters to ingestion: transactions need the reference data, and a day's labels name
transactions of the 30 days before. So the sensor has at most one ingest run in flight: changed
reference files first (``raw_cards`` + ``raw_merchants``), then the earliest consecutive days
that are new or changed, as one run over that range (one day after ``fti simulate advance``;
the whole world at once when a fresh landing zone is seen).
"""

from __future__ import annotations

from datetime import date

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from fti_assets.defs.ingest.assets import (
    raw_cards,
    raw_fraud_labels,
    raw_merchants,
    raw_transactions,
)
from fti_assets.lib.ingest.domain import (
    CARDS_FILE,
    FRAUD_LABELS_DIR,
    MERCHANTS_FILE,
    TRANSACTIONS_DIR,
)
from fti_assets.lib.ingest.landing import (
    REFERENCE_FILES,
    FileState,
    LandingChanges,
    consecutive_runs,
    content_key,
    day_of,
    landing_changes,
    scan,
    states_from_json,
    states_to_json,
)
from fti_assets.partitions import daily_partitions
from fti_assets.resources import DataDirResource

SENSOR_NAME = "landing_sensor"
TRIGGER_TAG = "fti/trigger"
DAYS_TAG = "fti/landing_days"
FILES_TAG = "fti/landing_files"
_MAX_FILES_IN_TAG = 4
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
REFERENCE_ASSETS = [raw_cards.key, raw_merchants.key]
DAY_ASSETS = [raw_transactions.key, raw_fraud_labels.key]
# The asset each landing file is ingested into (day files: into the partition of their day).
_FILE_ASSET = {
    CARDS_FILE: raw_cards.key,
    MERCHANTS_FILE: raw_merchants.key,
    TRANSACTIONS_DIR: raw_transactions.key,
    FRAUD_LABELS_DIR: raw_fraud_labels.key,
}


def _in_flight_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={TRIGGER_TAG: SENSOR_NAME}, statuses=_IN_FLIGHT), limit=1
    )
    return runs[0] if runs else None


def _ingested_since_written(instance: dg.DagsterInstance, name: str, state: FileState) -> bool:
    """Whether the file's asset (partition) was materialized after the file was last written."""
    day = day_of(name)
    key = _FILE_ASSET[name.partition("/")[0]]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day.isoformat()] if day else None),
        limit=1,
    ).records
    return bool(records) and records[0].timestamp * 1e9 > state.mtime_ns


def _already_ingested(
    instance: dg.DagsterInstance,
    current: dict[str, FileState],
    previous: dict[str, FileState],
) -> dict[str, FileState]:
    """Files this sensor has never seen that were ingested after they were last written (by
    `fti demo`, a backfill or a run from the UI, before the sensor was on or with its cursor
    reset): they are adopted into the cursor instead of being ingested again."""
    unseen = [name for name in current if name not in previous]
    return {n: current[n] for n in unseen if _ingested_since_written(instance, n, current[n])}


def _files_tag(names: list[str]) -> str:
    if len(names) <= _MAX_FILES_IN_TAG:
        return ",".join(names)
    return f"{len(names)} files: {names[0]} … {names[-1]}"


def _reference_request(changes: LandingChanges, current: dict[str, FileState]) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"reference-{content_key(current[n] for n in REFERENCE_FILES)}",
        asset_selection=REFERENCE_ASSETS,
        tags={TRIGGER_TAG: SENSOR_NAME, FILES_TAG: _files_tag(list(changes.reference))},
    )


def _days_request(
    names: list[str], days: list[date], current: dict[str, FileState]
) -> dg.RunRequest:
    """One run of the day assets over consecutive ``days`` (a single partition, or a range)."""
    first, last = days[0].isoformat(), days[-1].isoformat()
    tags = {
        TRIGGER_TAG: SENSOR_NAME,
        DAYS_TAG: first if first == last else f"{first}..{last}",
        FILES_TAG: _files_tag(names),
    }
    if first != last:
        tags |= {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    return dg.RunRequest(
        run_key=f"days-{first}-{last}-{content_key(current[n] for n in names)}",
        asset_selection=DAY_ASSETS,
        partition_key=first if first == last else None,
        tags=tags,
    )


def _reference_ingested(instance: dg.DagsterInstance) -> bool:
    return all(instance.get_latest_materialization_event(key) for key in REFERENCE_ASSETS)


def _nothing_to_do(changes: LandingChanges, not_partitions: list[date], watched: int) -> str:
    reasons = [f"no new or changed landing files ({watched} watched)"]
    if changes.incomplete:
        days = ", ".join(d.isoformat() for d in changes.incomplete)
        reasons.append(f"days with one of their two files so far: {days}")
    if not_partitions:
        days = ", ".join(d.isoformat() for d in not_partitions)
        reasons.append(f"days that are not partitions yet (in the future): {days}")
    return "; ".join(reasons)


@dg.sensor(
    name=SENSOR_NAME,
    description=(
        "Watches the landing zone (FTI_DATA_DIR/landing). A new or changed file — by content "
        "hash — starts ONE ingest run: raw_cards + raw_merchants for reference files, "
        "raw_transactions + raw_fraud_labels for a day (its transactions and the labels "
        "reported that day; one run over a range when several days landed at once). One "
        "ingest run at a time, reference data first, days in order; run keys come from day "
        "and content, so nothing is ingested twice. `fti simulate advance` lands the next day."
    ),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    target=[raw_cards, raw_merchants, raw_transactions, raw_fraud_labels],
)
def landing_sensor(
    context: dg.SensorEvaluationContext, data_dir: DataDirResource
) -> dg.SensorResult | dg.SkipReason:
    landing = data_dir.layout.landing_dir
    if not landing.exists():
        return dg.SkipReason(f"no landing zone at {landing} yet: run `fti generate`")
    running = _in_flight_run(context.instance)
    if running is not None:
        return dg.SkipReason(
            f"ingest run {running.run_id} is {running.status.value.lower()}; the next request "
            "waits for it so that reference data and days land in order"
        )
    previous = states_from_json(context.cursor)
    current = scan(landing, previous)
    previous |= _already_ingested(context.instance, current, previous)
    changes = landing_changes(current, previous)
    # A file whose content did not change only refreshes its size and mtime in the cursor; a
    # changed one is recorded when its run is requested.
    cursor = previous | {
        name: state
        for name, state in current.items()
        if name in previous and previous[name].sha256 == state.sha256
    }

    if changes.reference:
        cursor |= {name: current[name] for name in REFERENCE_FILES}
        return dg.SensorResult(
            run_requests=[_reference_request(changes, current)], cursor=states_to_json(cursor)
        )
    ready = [d for d in changes.days if daily_partitions.has_partition_key(d.isoformat())]
    if not ready:
        not_partitions = list(changes.days)
        return dg.SensorResult(
            skip_reason=_nothing_to_do(changes, not_partitions, len(current)),
            cursor=states_to_json(cursor),
        )
    if not _reference_ingested(context.instance):
        return dg.SensorResult(
            skip_reason=(
                f"{len(ready)} day(s) landed but raw_cards/raw_merchants were never "
                "materialized (did the reference ingest run fail?): materialize them first"
            ),
            cursor=states_to_json(cursor),
        )
    days = consecutive_runs(ready)[0]
    names = [name for day in days for name in changes.days[day]]
    request = _days_request(names, days, current)
    cursor |= {name: current[name] for name in names}
    context.log.info(f"requesting ingestion of {request.tags[DAYS_TAG]} ({len(names)} files)")
    return dg.SensorResult(run_requests=[request], cursor=states_to_json(cursor))
