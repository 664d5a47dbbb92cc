"""Automation conditions of the model assets (shown on the Automation page with their labels)."""

from __future__ import annotations

import dagster as dg


def monitoring_condition() -> dg.AutomationCondition:
    """Monitor a day once its scored rows (or labels, logs) are in: when an upstream partition
    of that day updates, and nothing upstream is still running. Missing upstream days do not
    block it (a label window reaches back to days scored before the first champion)."""
    return (
        (
            dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()
        ).since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("monitor each new day")


def scoring_condition(champion: dg.AssetKey) -> dg.AutomationCondition:
    """Score a day once its feature groups are in and their blocking checks passed: when an
    upstream partition of that day updates (a new day, a backfill), not when the champion moves
    — a promotion does not rescore history by itself (re-run days to rescore them)."""
    return (
        (
            dg.AutomationCondition.newly_missing()
            | dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.assets(champion))
        ).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("score each new day with the champion")
