"""When monitoring calls for retraining: breaches of a model's monitoring rules.

A breach is judged on the days the CURRENT champion scored after its training data ended (a new
champion starts afresh, and days it was trained on are not news):

* ``drift`` — the share of drifted features reached ``drift_share_threshold`` on
  ``drift_days`` consecutive days;
* ``estimated_performance`` — the PR-AUC expected before labels (confidence-based estimate),
  averaged over the newest ``drift_days`` estimated days, fell below the floor;
* ``performance`` — the realized PR-AUC of the newest ``drift_days`` days whose labels are final,
  averaged, fell below the floor.

The floor is relative: ``(1 - pr_auc_drop)`` times the champion's own PR-AUC on held-out data
(its validation figure), so one rule fits models of different base rates.

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
    pr_auc_drop: float  # a breach below (1 - drop) x the champion's held-out PR-AUC
    cooldown_days: int

    def __post_init__(self) -> None:
        if self.drift_days < 1:
            raise ValueError(f"drift_days must be at least 1, got {self.drift_days}")
        if self.cooldown_days < 0:
            raise ValueError(f"cooldown_days must be >= 0, got {self.cooldown_days}")
        if not 0.0 < self.pr_auc_drop < 1.0:
            raise ValueError(f"pr_auc_drop must be in (0, 1), got {self.pr_auc_drop}")

    def floor(self, reference_pr_auc: float) -> float:
        return (1.0 - self.pr_auc_drop) * reference_pr_auc


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
    champion_version: int, reference_pr_auc: float, rules: BreachRules,
    reference_name: str = "validation PR-AUC",
) -> Breach | None:  # fmt: skip
    """The champion's newest ``drift_days`` values of ``value``, averaged, below the floor
    (``1 - pr_auc_drop`` x ``reference_pr_auc``, the like-for-like figure of the champion on
    data it was not fitted on)."""
    usable = rows.filter(
        (pl.col("model_version") == champion_version) & pl.col(value).is_not_null()
    ).sort(day_column)
    newest = usable.tail(rules.drift_days)
    if newest.height < rules.drift_days:
        return None
    mean = float(newest[value].mean())
    floor = rules.floor(reference_pr_auc)
    if mean >= floor:
        return None
    first, last = newest[day_column][0], newest[day_column][-1]
    return Breach(
        model, kind, last, last, champion_version,
        f"{value} {mean:.3f} over {first}..{last} < floor {floor:.3f} ({1 - rules.pr_auc_drop:.0%}"
        f" of the champion's {reference_name} {reference_pr_auc:.3f})",
    )  # fmt: skip


def in_cooldown(
    breach: Breach, last_request_day: date | None, rules: BreachRules, today: date | None = None
) -> bool:
    """Whether a retraining was requested less than ``cooldown_days`` (data days) before
    ``today``, the newest monitored day (by default the day the breach was detected).

    A breach found during the cooldown is not forgotten: while it still holds, it asks once the
    cooldown is over (its detection day stays that of its streak, so the cooldown is judged on
    the newest day, not on that one)."""
    if last_request_day is None:
        return False
    day = max(breach.day, today) if today is not None else breach.day
    return day < last_request_day + timedelta(days=rules.cooldown_days)


def find_breach(
    *,
    model: str,
    champion_version: int,
    reference_pr_auc: float,
    since: date,
    drift: pl.DataFrame,
    estimates: pl.DataFrame,
    performance: pl.DataFrame,
    rules: BreachRules,
    test_pr_auc: float | None = None,
    test_expected_pr_auc: float | None = None,
) -> Breach | None:
    """The first breach found, in the order drift, estimated performance, final performance,
    on the days from ``since`` (the first day after the champion's training data).

    Each performance rule compares like with like when it can: realized PR-AUC against the
    champion's realized PR-AUC on its test split (``test_pr_auc``), the estimate against the
    same estimator run on the champion's test-split scores (``test_expected_pr_auc``). The
    validation PR-AUC (``reference_pr_auc``) is the fallback: it is optimistic, early stopping
    chose the model on that split."""
    estimated_reference, estimated_name = (
        (test_expected_pr_auc, "estimated test PR-AUC")
        if test_expected_pr_auc is not None
        else (reference_pr_auc, "validation PR-AUC")
    )
    realized_reference, realized_name = (
        (test_pr_auc, "test PR-AUC")
        if test_pr_auc is not None
        else (reference_pr_auc, "validation PR-AUC")
    )
    return (
        drift_breach(drift.filter(pl.col("day") >= since), model, champion_version, rules)
        or performance_breach(
            estimates.filter(pl.col("day") >= since), "estimated_performance",
            "expected_pr_auc", "day", model, champion_version, estimated_reference, rules,
            estimated_name,
        )
        or performance_breach(
            performance.filter(pl.col("final") & (pl.col("scored_day") >= since)),
            "performance", "pr_auc", "scored_day", model, champion_version, realized_reference,
            rules, realized_name,
        )
    )  # fmt: skip
