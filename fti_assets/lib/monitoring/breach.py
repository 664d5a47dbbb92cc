"""When monitoring calls for retraining: breaches of a model's monitoring rules.

A breach is judged on the days the CURRENT champion scored (a new champion starts afresh):

* ``drift`` — the share of drifted features reached ``drift_share_threshold`` on
  ``drift_days`` consecutive days;
* ``estimated_performance`` — the PR-AUC expected before labels (confidence-based estimate)
  fell below ``pr_auc_floor`` on the newest estimated day;
* ``performance`` — the realized PR-AUC of the newest day whose labels are final fell below
  ``pr_auc_floor``.

Each breach has a key (model, kind, first day, champion version): the retraining sensor turns
one key into exactly one run (Dagster's run keys), and a cooldown in data days keeps a breach
that persists from asking again and again while the retrained model is not in yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

KINDS = ("drift", "estimated_performance", "performance")


@dataclass(frozen=True)
class BreachRules:
    drift_share_threshold: float
    drift_days: int
    pr_auc_floor: float
    cooldown_days: int

    def __post_init__(self) -> None:
        if self.drift_days < 1:
            raise ValueError(f"drift_days must be at least 1, got {self.drift_days}")
        if self.cooldown_days < 0:
            raise ValueError(f"cooldown_days must be >= 0, got {self.cooldown_days}")


@dataclass(frozen=True)
class Breach:
    model: str
    kind: str
    first_day: date  # the day the breach started (the drift streak's first day)
    day: date  # the day it was detected on
    champion_version: int
    detail: str

    @property
    def key(self) -> str:
        return f"{self.model}:{self.kind}:{self.first_day.isoformat()}:v{self.champion_version}"


def drift_breach(
    drift: pl.DataFrame, model: str, champion_version: int, rules: BreachRules
) -> Breach | None:
    """The newest streak of ``drift_days`` consecutive drift days, from ``drift`` rows
    (day, model_version, status, drift_share)."""
    days = (
        drift.filter((pl.col("model_version") == champion_version) & (pl.col("status") == "tested"))
        .sort("day")
        .select("day", (pl.col("drift_share") >= rules.drift_share_threshold).alias("drifted"))
    )
    streak: list[date] = []
    found: list[date] | None = None
    for day, drifted in days.iter_rows():
        if drifted and streak and day == streak[-1] + timedelta(days=1):
            streak.append(day)
        elif drifted:
            streak = [day]
        else:
            streak = []
        if len(streak) >= rules.drift_days:
            found = streak[:]
    if found is None:
        return None
    # The streak's first day names it: one breach however long the drift lasts; it was
    # detected on its drift_days-th day.
    return Breach(
        model,
        "drift",
        found[0],
        found[rules.drift_days - 1],
        champion_version,
        f"drift share >= {rules.drift_share_threshold:.0%} of features on {len(found)} "
        f"consecutive days from {found[0]}",
    )


def performance_breach(
    rows: pl.DataFrame, kind: str, value: str, day_column: str, model: str,
    champion_version: int, rules: BreachRules,
) -> Breach | None:  # fmt: skip
    """The newest row (of the champion) whose ``value`` is below the PR-AUC floor."""
    usable = rows.filter(
        (pl.col("model_version") == champion_version) & pl.col(value).is_not_null()
    ).sort(day_column)
    if usable.is_empty():
        return None
    newest = usable.row(-1, named=True)
    if newest[value] >= rules.pr_auc_floor:
        return None
    day = newest[day_column]
    return Breach(
        model, kind, day, day, champion_version,
        f"{value} {newest[value]:.3f} on {day} < floor {rules.pr_auc_floor}",
    )  # fmt: skip


def in_cooldown(breach: Breach, last_request_day: date | None, rules: BreachRules) -> bool:
    """Whether a retraining was requested less than ``cooldown_days`` (data days) before."""
    if last_request_day is None:
        return False
    return breach.day < last_request_day + timedelta(days=rules.cooldown_days)


def find_breach(
    *,
    model: str,
    champion_version: int,
    drift: pl.DataFrame,
    estimates: pl.DataFrame,
    performance: pl.DataFrame,
    rules: BreachRules,
) -> Breach | None:
    """The first breach found, in the order drift, estimated performance, final performance."""
    return (
        drift_breach(drift, model, champion_version, rules)
        or performance_breach(
            estimates, "estimated_performance", "expected_pr_auc", "day", model,
            champion_version, rules,
        )
        or performance_breach(
            performance.filter(pl.col("final")), "performance", "pr_auc", "scored_day", model,
            champion_version, rules,
        )
    )  # fmt: skip
