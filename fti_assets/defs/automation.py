"""How the graph moves by itself: the automation conditions of every asset downstream of ingest.

The landing sensor (defs/ingest/sensors.py) ingests each day that lands; from there, these
conditions carry the day through the graph, evaluated by the ``fti_automation`` sensor (on by
default, every 30 s; it targets every asset, so an asset elsewhere in the graph only needs a
condition). Each asset gets one of three conditions, after what it is:

* :func:`daily_condition` — a **daily partition** runs when **its own day's** upstream updated
  (any day: a replayed world's days are in the past, so there is no "latest window only" as in
  ``AutomationCondition.eager()``). A reference (unpartitioned) dependency that changes does not
  re-run the past days: it must only exist and be settled.
* :func:`reference_condition` — an **unpartitioned asset over reference data** (dbt staging
  views, card and merchant profiles) runs when it is missing, when its code changed, or when a
  reference dependency updated; a new day of a daily dependency does not re-run it (a view over
  ``raw_transactions`` does not change when a day is added to the table).
* :func:`latest_condition` — an **unpartitioned snapshot of the latest rows** (the online store)
  runs when any dependency updated, including a new day.

All three wait until their upstream is there (a daily asset: its day's partitions; an
unpartitioned one: every upstream has data), nothing upstream or here is in progress, and every
upstream **blocking check passed** (a failed feature-group contract stops the graph there). An
asset also waits while a dependency with another partitioning is requested on the same tick: that
dependency runs in a run of its own, and the asset follows on a tick after it finished.

No stampede. A day is triggered by its own day's updates only and stays triggered until it runs
(``since`` its last request or update). Nothing daily is triggered on the first evaluation
(``since_last_handled`` resets then), so turning automation on over a graph with history
requests no past day; an unpartitioned asset missing then runs once. A catch-up over many days
is one request per asset, launched as one backfill honouring the single-run policy.

Daily assets are told from reference ones by the ``daily`` tag (``partitions.DAILY_TAGS``), which
dbt models tagged ``daily`` carry already and every other daily asset must set (a test checks it).
"""

from __future__ import annotations

import dagster as dg

from fti_assets.partitions import DAILY_TAG

AC = dg.AutomationCondition

DAILY_ASSETS = dg.AssetSelection.tag(DAILY_TAG, "")


def _handled() -> dg.AutomationCondition:
    return (AC.newly_requested() | AC.newly_updated()).with_label("requested or updated")


def _settled(other_partitioning: dg.AutomationCondition) -> dg.AutomationCondition:
    """Nothing upstream or here is running, and the upstream blocking checks passed."""
    return (
        ~AC.any_deps_in_progress()
        & ~other_partitioning
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    )


def daily_condition() -> dg.AutomationCondition:
    """For daily-partitioned assets: a day runs when its own day's upstream updated."""
    same_day_updated = (
        AC.any_deps_updated()
        .allow(DAILY_ASSETS)
        .with_label("a daily upstream of the same day updated")
    )
    reference_requested = (
        AC.any_deps_match(AC.will_be_requested())
        .ignore(DAILY_ASSETS)
        .with_label("a reference upstream runs on this tick (wait for it)")
    )
    return (
        same_day_updated.since_last_handled().with_label("its day's upstream updated since it ran")
        & ~AC.any_deps_missing()
        & _settled(reference_requested)
    ).with_label("daily: runs when its day's upstream updated")


def reference_condition() -> dg.AutomationCondition:
    """For unpartitioned assets over reference data: run when missing, when the code changed or
    when a reference upstream updated; a new day of a daily upstream does not re-run them."""
    trigger = (
        AC.missing().newly_true().with_label("missing")
        | AC.code_version_changed()
        | AC.any_deps_updated().ignore(DAILY_ASSETS).with_label("a reference upstream updated")
    )
    return _unpartitioned(trigger).with_label(
        "reference: runs when missing, changed or its reference upstream updated"
    )


def latest_condition() -> dg.AutomationCondition:
    """For unpartitioned snapshots of the newest rows (the online store): run when missing,
    when the code changed or when any upstream updated (a new day included)."""
    trigger = (
        AC.missing().newly_true().with_label("missing")
        | AC.code_version_changed()
        | AC.any_deps_updated().ignore(DAILY_ASSETS).with_label("a reference upstream updated")
        # A daily upstream runs in a run of its own: only its finished update counts here.
        | AC.any_deps_match(AC.newly_updated())
        .allow(DAILY_ASSETS)
        .with_label("a daily upstream updated (any day)")
    )
    return _unpartitioned(trigger).with_label("latest: runs when any upstream day updated")


def _unpartitioned(trigger: dg.AutomationCondition) -> dg.AutomationCondition:
    # No reset on the first evaluation here (unlike since_last_handled): an unpartitioned asset
    # missing when automation starts runs once, as soon as its upstream has data.
    has_data = AC.all_deps_match(~AC.missing() | AC.will_be_requested()).with_label(
        "every upstream has data (a daily one: at least one day)"
    )
    daily_requested = (
        AC.any_deps_match(AC.will_be_requested())
        .allow(DAILY_ASSETS)
        .with_label("a daily upstream runs on this tick (wait for it)")
    )
    return (
        trigger.since(_handled()).with_label("triggered since it last ran")
        & has_data
        & _settled(daily_requested)
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    "fti_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Carries each landed day through the graph: evaluates every asset's automation "
        "condition (defs/automation.py) every 30 s. Daily partitions run when their own day's "
        "upstream updated; reference assets when missing, changed or their reference data "
        "updated; the online store when any upstream day updated. Always after upstream runs "
        "finished and upstream blocking checks passed."
    ),
)
