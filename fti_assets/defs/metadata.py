"""Metadata helpers shared by the stage folders (formatting only; no stage logic here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import dagster as dg
import polars as pl

from fti_assets.lib.store.group_spec import FeatureGroupSpec

OWNERS = ["team:ml-platform"]

# A feature group is stale when its last update is older than a day plus slack for the nightly
# run: the UI shows it (warn after 26 h, fail after 50 h).
FEATURE_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=50), warn_window=timedelta(hours=26)
)


def markdown_table(rows: Sequence[Mapping[str, Any]], limit: int = 20) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_(none)_")
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows not shown_")
    return dg.MetadataValue.md("\n".join(lines))


def frame_preview(frame: pl.DataFrame, limit: int = 10) -> dg.MetadataValue:
    return markdown_table(frame.head(limit).to_dicts(), limit)


def feature_group_metadata(spec: FeatureGroupSpec) -> dict[str, Any]:
    """The storage contract of a feature group, as definition metadata shown in the UI."""
    return {
        "feature_group": spec.name,
        "feature_group_version": spec.version,
        "entity_keys": ", ".join(spec.entity_keys),
        "event_time_column": spec.event_time,
        "online": spec.online,
        "offline_table": spec.table,
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(k, "string", description="entity key") for k in spec.entity_keys
            ]
            + [dg.TableColumn(spec.event_time, "timestamp_utc", description="event time")]
            + [dg.TableColumn(f.name, f.dtype, description=f.description) for f in spec.features]
        ),
    }
