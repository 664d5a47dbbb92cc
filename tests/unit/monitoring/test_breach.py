"""Breach rules: drift streaks, performance floors, the champion's days only, cooldown."""

from datetime import date, timedelta

import polars as pl

from fti_assets.lib.monitoring.breach import (
    BreachRules,
    drift_breach,
    find_breach,
    in_cooldown,
    performance_breach,
)

RULES = BreachRules(drift_share_threshold=0.5, drift_days=2, pr_auc_drop=0.25, cooldown_days=5)
REFERENCE = 0.4  # the champion's held-out PR-AUC: the floor is 0.3
D0 = date(2026, 9, 1)


def _drift(shares: list[float | None], version: int = 1, start: date = D0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "day": [start + timedelta(days=i) for i in range(len(shares))],
            "model_version": [version] * len(shares),
            "status": ["tested" if s is not None else "no_rows" for s in shares],
            "drift_share": shares,
        }
    )


def test_two_consecutive_drift_days_make_one_breach_named_by_its_first_day() -> None:
    breach = drift_breach(_drift([0.1, 0.6, 0.2, 0.7, 0.8, 0.9]), "m", 1, RULES)
    assert breach is not None
    assert (breach.first_day, breach.day) == (D0 + timedelta(days=3), D0 + timedelta(days=4))
    assert breach.key == f"m:drift:{D0 + timedelta(days=3)}:v1"
    longer = drift_breach(_drift([0.1, 0.6, 0.2, 0.7, 0.8, 0.9, 0.9]), "m", 1, RULES)
    assert longer.key == breach.key  # a streak that goes on is the same breach


def test_isolated_drift_days_and_gaps_are_not_a_breach() -> None:
    assert drift_breach(_drift([0.6, 0.1, 0.6, 0.1]), "m", 1, RULES) is None
    assert drift_breach(_drift([0.6, None, 0.6]), "m", 1, RULES) is None  # a day without rows
    gap = pl.concat([_drift([0.6]), _drift([0.6], start=D0 + timedelta(days=2))])
    assert drift_breach(gap, "m", 1, RULES) is None  # not consecutive days


def test_only_the_champions_days_count() -> None:
    old = _drift([0.9, 0.9, 0.9], version=1)
    assert drift_breach(old, "m", 2, RULES) is None
    assert drift_breach(old, "m", 1, RULES) is not None


def _perf(values: list[float]) -> pl.DataFrame:
    days = [D0 + timedelta(days=i) for i in range(len(values))]
    return pl.DataFrame({"day": days, "model_version": [1] * len(values), "v": values})


def test_performance_below_the_relative_floor_on_average_is_a_breach() -> None:
    def breach(values: list[float]):
        return performance_breach(
            _perf(values), "estimated_performance", "v", "day", "m", 1, REFERENCE, RULES
        )

    assert breach([0.2, 0.5]) is None  # one bad day: the 2-day mean 0.35 is above 0.3
    assert breach([0.5, 0.2]) is None
    assert breach([0.2]) is None  # not enough days to judge
    found = breach([0.5, 0.25, 0.3])
    assert found is not None and found.day == D0 + timedelta(days=2)
    assert "floor 0.300" in found.detail


def test_find_breach_uses_final_performance_only() -> None:
    performance = pl.DataFrame(
        {
            "scored_day": [D0, D0 + timedelta(days=1)],
            "model_version": [1, 1],
            "final": [True, False],
            "pr_auc": [0.2, 0.1],  # the second is provisional: one final day is not enough
        }
    )
    empty_estimates = pl.DataFrame(
        schema={"day": pl.Date, "model_version": pl.Int64, "expected_pr_auc": pl.Float64}
    )
    args = {"model": "m", "champion_version": 1, "drift": _drift([0.1]), "rules": RULES,
            "estimates": empty_estimates, "reference_pr_auc": REFERENCE, "since": D0}  # fmt: skip
    assert find_breach(performance=performance, **args) is None
    final_low = performance.with_columns(pl.lit(True).alias("final"))
    breach = find_breach(performance=final_low, **args)
    assert breach is not None and breach.kind == "performance"
    # Days before the champion's training data ended do not count.
    later = {**args, "since": D0 + timedelta(days=1)}
    assert find_breach(performance=final_low, **later) is None


def test_cooldown_counts_data_days_from_the_last_request() -> None:
    breach = drift_breach(_drift([0.6, 0.6]), "m", 1, RULES)
    assert not in_cooldown(breach, None, RULES)
    assert in_cooldown(breach, breach.day - timedelta(days=4), RULES)
    assert not in_cooldown(breach, breach.day - timedelta(days=5), RULES)
    # Judged on the newest monitored day: a breach detected inside the cooldown that still
    # holds later is out of it then.
    requested = breach.day - timedelta(days=1)
    assert in_cooldown(breach, requested, RULES, today=breach.day + timedelta(days=3))
    assert not in_cooldown(breach, requested, RULES, today=breach.day + timedelta(days=4))


def test_each_rule_compares_with_the_champions_like_for_like_test_figure() -> None:
    """The estimate is judged against the same estimator on the champion's test scores, the
    realized figure against its realized test PR-AUC; the (optimistic) validation PR-AUC only
    when those are missing."""
    estimates = pl.DataFrame(
        {"day": [D0, D0 + timedelta(days=1)], "model_version": [1, 1],
         "expected_pr_auc": [0.25, 0.25]}
    )  # fmt: skip
    no_performance = pl.DataFrame(
        schema={"scored_day": pl.Date, "model_version": pl.Int64, "final": pl.Boolean,
                "pr_auc": pl.Float64}
    )  # fmt: skip
    args = {"model": "m", "champion_version": 1, "drift": _drift([0.1]), "rules": RULES,
            "estimates": estimates, "performance": no_performance, "since": D0}  # fmt: skip
    # Against a validation PR-AUC of 0.6 (floor 0.45) an estimate of 0.25 looks like a breach...
    fallback = find_breach(reference_pr_auc=0.6, **args)
    assert fallback is not None and "validation PR-AUC 0.600" in fallback.detail
    # ...but the same estimator gave 0.3 on the champion's own test scores (floor 0.225).
    assert find_breach(reference_pr_auc=0.6, test_expected_pr_auc=0.3, **args) is None
    lower = find_breach(reference_pr_auc=0.6, test_expected_pr_auc=0.4, **args)
    assert lower is not None and "estimated test PR-AUC 0.400" in lower.detail
