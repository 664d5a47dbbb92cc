"""Two models on the same feature groups: each model's PR-AUC against its oracle, and what the
second model adds to a daily run against materializing its features separately (issue 16).

On the prepared world (benchmarks/world.py):

* **Model quality against the oracle.** One run of each model's retraining job (dataset →
  model → evaluation → gates → champion); from each evaluation report: test rows and positives,
  the test PR-AUC, the oracle's PR-AUC on the same rows (the generator's true probabilities, the
  Bayes limit) and their ratio.
* **Feature reuse in a daily run.** With both champions having scored the world's last
  ``scored_days`` days (so monitoring has history, as in steady state), one in-process run of
  the whole daily graph for the world's last day: the day's ingest, the partitioned feature
  pipelines (dbt daily models, the Polars card windows) with their contracts, the online store
  tables a new day updates, and each model's predictions and monitoring. Its step durations are
  grouped by what they serve. *What the second model (card_risk_score) adds* is its own steps;
  *materializing its features separately* is its steps plus the feature steps its feature view
  reads, done again: measured as a run of only those feature assets for the same day (the card
  dbt models, the Polars card windows, their contracts and online tables), and also apportioned
  from the daily run.

Run alone: ``python -m benchmarks.bench_reuse --scale quick``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from benchmarks.common import Section, cli_main, machine_load
from benchmarks.world import (
    DAILY_FEATURES,
    DAILY_MONITORING,
    MODEL,
    PLANS,
    PREDICTIONS,
    RunTimes,
    World,
    ensure_scored,
    ensure_trained,
    materialize,
    prepared,
)
from fti_assets.specs.models import CARD_RISK_SCORE, FRAUD_MODEL, ModelSpec

RISK = CARD_RISK_SCORE.name
RISK_RETRAINING_JOB = f"{RISK}_retraining"
RISK_PREDICTIONS = CARD_RISK_SCORE.predictions_table
RISK_MONITORING = tuple(m.replace(MODEL, RISK) for m in DAILY_MONITORING)
DAY_INGEST = ("raw_transactions", "raw_fraud_labels")
# The online tables a new day changes (latest_condition: the daily groups; the profiles are
# reference data, rebuilt only when the reference files change).
DAILY_ONLINE = (
    "online_card_transaction_features",
    "online_card_daily_features",
    "online_merchant_daily_features",
)
DAILY_RUN = (
    *DAY_INGEST,
    *DAILY_FEATURES,
    *DAILY_ONLINE,
    PREDICTIONS,
    *DAILY_MONITORING,
    RISK_PREDICTIONS,
    *RISK_MONITORING,
)
# What card_risk_score's view reads of a day, materialized on their own: the card dbt models
# behind card_daily_features, the Polars card windows, and the online tables of both groups
# (card_profile_features is reference data: not in a daily run).
RISK_DAILY_FEATURES = (
    "int_card_daily_activity",
    "card_daily_features",
    "card_transaction_features",
    "online_card_daily_features",
    "online_card_transaction_features",
)
# Step groups of the daily run, in report order (first match wins; an unknown step fails).
GROUPS = (
    ("ingest of the day (raw_transactions, raw_fraud_labels)", lambda s: s.startswith("raw_")),
    ("feature contracts (blocking checks)", lambda s: s.endswith("_contract")),
    ("online store (3 daily groups, with their checks)", lambda s: s.startswith("online_")),
    ("dbt daily models (one dbt step)", lambda s: s.startswith("dbt_")),
    ("Polars card_transaction_features", lambda s: s == "card_transaction_features"),
    ("fraud_model: predictions", lambda s: s == PREDICTIONS),
    ("fraud_model: monitoring (4 assets, with checks)", lambda s: s.startswith(f"{MODEL}_")),
    ("card_risk_score: predictions", lambda s: s == RISK_PREDICTIONS),
    ("card_risk_score: monitoring (4 assets, with checks)", lambda s: s.startswith(f"{RISK}_")),
)
FEATURE_GROUPS_OF_RUN = GROUPS[1:5]
# The feature steps card_risk_score's view reads (apportioned from the daily run): the whole dbt
# step (it builds the merchant models too), the Polars windows, the card groups' contracts and
# online tables.
RISK_READS = ("card_transaction_features", "card_daily_features")

# The quick world (50 days) is too short for card_risk_score's default dataset: 30 warm-up
# days + 14 days of label maturity + the 7-day horizon leave no example. Quick trains it with
# a 10-day warm-up (trailing windows not yet full: a smoke test of the bench, not a figure).
RISK_RUN_CONFIG = {
    "quick": {"ops": {CARD_RISK_SCORE.dataset_name: {"config": {"warmup_days": 10}}}},
    "full": None,
}
ROUNDS = 2  # the machine is shared: the daily run and the separate one, twice, interleaved


@dataclass(frozen=True)
class Evaluation:
    model: str
    version: int
    test_rows: int
    test_positives: int
    pr_auc: float
    oracle_pr_auc: float | None
    ratio: float | None


def _evaluation(world: World, spec: ModelSpec, run: RunTimes) -> Evaluation:
    """The evaluation report the retraining run ``run`` wrote (found by its run id)."""
    folder = world.settings.layout.reports_dir / spec.name
    for path in sorted(folder.glob("v*/evaluation.json")):
        report = json.loads(path.read_text())
        if report.get("run_id") == run.run_id:
            oracle = report.get("oracle") or {}
            return Evaluation(
                model=spec.name,
                version=int(report["model_version"]),
                test_rows=int(report["test_rows"]),
                test_positives=int(report["test_positives"]),
                pr_auc=float(report["metrics"]["pr_auc"]),
                oracle_pr_auc=oracle.get("pr_auc"),
                ratio=oracle.get("model_to_oracle_pr_auc"),
            )
    raise RuntimeError(f"no evaluation report of run {run.run_id} under {folder}")


def _fastest(runs: list[RunTimes]) -> RunTimes:
    """Each step's shortest duration over runs of the same selection, and the shortest wall."""
    steps = {k: min(r.steps[k] for r in runs) for k in runs[0].steps}
    return RunTimes(wall=min(r.wall for r in runs), steps=steps)


def _risk_share(daily: RunTimes, alone: RunTimes) -> float:
    groups = _grouped(daily)
    risk = sum(v for k, v in groups.items() if k.startswith(f"{RISK}:"))
    return risk / (risk + sum(alone.steps.values()))


def _group(step: str) -> str:
    for name, matches in GROUPS:
        if matches(step):
            return name
    raise RuntimeError(f"step {step!r} of the daily run belongs to no group")


def _grouped(run: RunTimes) -> dict[str, float]:
    totals = {name: 0.0 for name, _ in GROUPS}
    for step, seconds in run.steps.items():
        totals[_group(step)] += seconds
    return totals


def _require_steps(run: RunTimes, assets: tuple[str, ...], what: str) -> None:
    """Every asset of the selection ran in a successful step (dbt models in the dbt step)."""
    missing = [
        a
        for a in assets
        if not any(s == a or s.startswith(f"{a}_") for s in run.steps)
        and not (a in DAILY_FEATURES and a != "card_transaction_features"
                 and any(s.startswith("dbt_") for s in run.steps))
    ]  # fmt: skip
    if missing:
        raise RuntimeError(f"{what}: no successful step for {missing}; steps: {sorted(run.steps)}")


def run(scale: str) -> list[Section]:
    world = prepared(scale)
    load_before = machine_load()
    fraud_run = ensure_trained(world)
    risk_run = materialize(
        world.env, f"job:{RISK_RETRAINING_JOB}", world.start, world.end, RISK_RUN_CONFIG[scale]
    )
    for run_, spec in ((fraud_run, FRAUD_MODEL), (risk_run, CARD_RISK_SCORE)):
        if f"{spec.name}_champion" not in run_.steps:
            raise RuntimeError(f"{spec.name}'s retraining run made no champion: {run_.steps}")
    evaluations = [
        _evaluation(world, FRAUD_MODEL, fraud_run),
        _evaluation(world, CARD_RISK_SCORE, risk_run),
    ]
    quality = _quality(world, evaluations, fraud_run, risk_run, load_before)

    ensure_scored(world)
    first, last = world.scored_days
    risk_scoring = materialize(world.env, RISK_PREDICTIONS, first, last)
    _require_steps(risk_scoring, (RISK_PREDICTIONS,), "card_risk_score's history scoring")
    return [quality, _reuse(world, risk_scoring.wall)]


def _quality(
    world: World, evaluations: list[Evaluation], fraud_run: RunTimes, risk_run: RunTimes,
    load: str,
) -> Section:  # fmt: skip
    section = Section(
        f"Two models on the same feature groups: PR-AUC against the oracle ({world.size})",
        ["model", "version", "test rows", "test positives", "test PR-AUC", "oracle PR-AUC",
         "model ÷ oracle"],
    )  # fmt: skip
    for e in evaluations:
        section.add(e.model, e.version, f"{e.test_rows:,}", f"{e.test_positives:,}", e.pr_auc,
                    e.oracle_pr_auc if e.oracle_pr_auc is not None else "—",
                    e.ratio if e.ratio is not None else "—")  # fmt: skip
    section.notes += [
        load,
        "Each model's retraining job run once on the world (fresh process, in-process run); "
        "the figures come from the evaluation report of that run "
        "(FTI_DATA_DIR/reports/<model>/v<N>/evaluation.json): PR-AUC on the time-based test "
        "split, and the oracle's PR-AUC on the same rows (the generator's true probability of "
        "each example's label: for card_risk_score 1 - ∏(1 - p) over the card's transactions "
        "in the 7 days after the prediction time).",
        f"Retraining run wall times: {MODEL} {fraud_run.wall:.1f} s "
        f"(dataset {fraud_run.step(FRAUD_MODEL.dataset_name):.1f} s, training "
        f"{fraud_run.step(MODEL):.1f} s); {RISK} {risk_run.wall:.1f} s (dataset "
        f"{risk_run.step(CARD_RISK_SCORE.dataset_name):.1f} s, training "
        f"{risk_run.step(RISK):.1f} s).",
    ]
    if RISK_RUN_CONFIG[world.scale]:
        section.notes.append(
            f"Quick scale: the {world.plan.days}-day world is too short for card_risk_score's "
            "default dataset (30 warm-up days + 14 days of label maturity + the 7-day horizon "
            "leave no example), so it is trained with a 10-day warm-up "
            f"({json.dumps(RISK_RUN_CONFIG[world.scale])}): a smoke test of the bench, not a "
            "figure."
        )
    return section


def _reuse(world: World, risk_scoring_s: float) -> Section:
    day: date = world.end
    section = Section(
        f"Feature reuse: what the second model adds to a daily run ({world.size}, day {day})",
        ["steps", "seconds", "share of the daily run's steps"],
    )
    section.notes.append(machine_load())
    dailies, alones = [], []
    for _ in range(ROUNDS):  # interleaved rounds; each step's fastest round counts
        dailies.append(materialize(world.env, ",".join(DAILY_RUN), day, day))
        _require_steps(dailies[-1], DAILY_RUN, "the daily run")
        alones.append(materialize(world.env, ",".join(RISK_DAILY_FEATURES), day, day))
        _require_steps(alones[-1], RISK_DAILY_FEATURES, "card_risk_score's features alone")
    section.notes.append("after the runs: " + machine_load())
    daily, alone = _fastest(dailies), _fastest(alones)

    groups = _grouped(daily)
    total = sum(daily.steps.values())
    for name, seconds in groups.items():
        section.add(name, seconds, seconds / total)
    features = sum(groups[name] for name, _ in FEATURE_GROUPS_OF_RUN)
    fraud = sum(v for k, v in groups.items() if k.startswith(f"{MODEL}:"))
    risk = sum(v for k, v in groups.items() if k.startswith(f"{RISK}:"))
    section.add(
        "**all feature steps** (contracts, online, dbt, Polars)", features, features / total
    )
    section.add(f"**{MODEL}'s daily steps**", fraud, fraud / total)
    section.add(f"**{RISK}'s daily steps: what the second model adds**", risk, risk / total)
    section.add("**the daily run: sum of its steps**", total, 1.0)
    section.add("the daily run: whole run (in the child, around the run)", daily.wall, "")

    # card_risk_score's feature steps, apportioned from the daily run: the whole dbt step, the
    # Polars windows and its groups' contracts and online tables.
    apportioned = sum(
        seconds
        for step, seconds in daily.steps.items()
        if step.startswith("dbt_")
        or step == "card_transaction_features"
        or any(step.startswith(f"{g}_") or step.startswith(f"online_{g}") for g in RISK_READS)
    )
    alone_steps = sum(alone.steps.values())
    separately = risk + alone_steps
    section.add(
        f"{RISK}'s features materialized separately for the day: its own run's steps",
        alone_steps,
        alone_steps / total,
    )
    section.add(
        f"**{RISK} separately: its steps + its features again (measured run)**",
        separately,
        separately / total,
    )
    section.add(
        "… with its features apportioned from the daily run instead", risk + apportioned,
        (risk + apportioned) / total,
    )  # fmt: skip
    section.add("**what the second model adds ÷ separately (measured)**", risk / separately, "")
    section.add("… ÷ separately (apportioned)", risk / (risk + apportioned), "")

    first, last = world.scored_days
    section.notes += [
        f"The daily run is one in-process Dagster run (a fresh process, as `fti demo`) of the "
        f"day's partition of {', '.join(DAILY_RUN)} and their checks; the day had already been "
        "through the world's feature run, and both champions had scored it with the days "
        f"before ({first} … {last}; card_risk_score's {world.plan.scored_days} days took "
        f"{risk_scoring_s:.1f} s in one run), so every step re-runs the day as a re-delivered "
        "day would, with monitoring history as in steady state. Left out: the reference models "
        "and profiles (not rebuilt daily), lake maintenance, the streaming and inference-log "
        "assets (the batch world has no online traffic).",
        f"Each run was made {ROUNDS} times, interleaved (daily, separate, daily, separate); a "
        "step's seconds are its fastest round (whole runs: the fastest). Per round, what the "
        "second model adds ÷ separately (measured): "
        + ", ".join(f"{_risk_share(d, a):.2f}" for d, a in zip(dailies, alones, strict=True))
        + "; the daily run's step sums: "
        + ", ".join(f"{sum(d.steps.values()):.1f} s" for d in dailies)
        + ".",
        "Seconds are step durations from the run's STEP_SUCCESS events (every selected asset "
        "checked to have a successful step; a failed run fails the bench). Shares are of the "
        "sum of the daily run's steps.",
        "Separately (measured): a second run for the same day of only "
        f"{', '.join(RISK_DAILY_FEATURES)} and their checks (whole run {alone.wall:.1f} s; steps: "
        + alone.describe_steps()
        + "). Apportioned: the daily run's dbt step (it also builds the merchant models), "
        "card_transaction_features, and the contracts and online tables of "
        f"{' and '.join(RISK_READS)}.",
        "Daily-run steps: " + daily.describe_steps(),
    ]
    return section


if __name__ == "__main__":
    cli_main(run, __doc__, PLANS)
