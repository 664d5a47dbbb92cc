"""`fti scenario drift`: the loop, end to end, on a world whose data drifts from a given day.

Days are released into the landing zone one at a time; after each, the platform's own sensors
and automation conditions run against a persistent Dagster instance (``dagster_home/`` in the
scenario's data folder: open it with ``dagster dev`` afterwards to browse every run), exactly as
the daemon would tick them (the landing sensor, the ``fti_automation`` conditions, the retraining
sensor of the model the scenario follows), each requested run executed before the next tick.
Nothing is called by hand: ingest, dbt, features, scoring, monitoring, the retraining run, its
gates and the promotion all happen because a sensor or a condition asked for them. A timeline
row per day records what monitoring saw and what the loop did.

The definitions are imported after the scenario's environment is set (their daily partitions
come from the world), so run it in a process of its own: the CLI does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from fti_assets.lib.core.settings import Settings
from fti_assets.lib.store.offline import connection, read_frame, table_exists
from fti_assets.lib.synthetic.generator import GeneratorConfig, generate
from fti_assets.lib.synthetic.world import advance
from fti_assets.specs.models import MODELS

log = logging.getLogger(__name__)

MODEL = "fraud_model"
MAX_TICKS = 12
# The landing sensor has one ingest run in flight at a time: the daemon ticks it again and again
# until everything that landed is in (reference files first, then the days).
MAX_LANDING_TICKS = 8
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class ScenarioConfig:
    seed: int = 7
    cards: int = 500
    merchants: int = 200
    days: int = 88
    drift_from: int = 57
    drift_kind: str = "both"
    start: date = date(2026, 7, 1)
    # Days released before the loop starts watching (a platform that already has history): the
    # first model is trained once 51 days landed (30 warm-up + 14 label maturity + 7 of examples).
    initial_days: int = 52
    fraud_rate: float = 0.02
    # The models whose retraining sensors run (as if the others were stopped in the UI): a model
    # nobody follows is never trained, so its scoring and monitoring never run either.
    models: tuple[str, ...] = (MODEL,)


@dataclass
class DayRow:
    day: str
    day_index: int
    rows: int = 0
    drift_share: float | None = None
    drifted_columns: list[str] = field(default_factory=list)
    estimated_pr_auc: float | None = None
    realized_pr_auc: float | None = None
    label_coverage: float | None = None
    skew_mismatch_rate: float | None = None
    breach: bool = False
    breach_kind: str | None = None  # drift, estimated_performance, performance, no_champion
    breach_detail: str | None = None  # the retraining sensor's reason (figures, days, floor)
    retrain_run_id: str | None = None
    champion_version: int | None = None
    challenger_version: int | None = None
    promoted: bool = False
    runs: int = 0  # runs the sensors and conditions launched for this day
    seconds: float = 0.0  # wall time of the day (release, every tick, every run)


class SimulatedDaemon:
    """The daemon's sensors and automation, ticked in-process against one instance."""

    def __init__(self, instance: dg.DagsterInstance, models: tuple[str, ...] = (MODEL,)) -> None:
        from fti_assets.definitions import defs

        self.defs = defs
        self.instance = instance
        self.resources = dict(defs.resources)
        sensors = {s.name: s for s in defs.sensors}
        unknown = [m for m in models if f"{m}_retraining_sensor" not in sensors]
        if unknown:
            raise ValueError(f"models {unknown}: no retraining sensor of that name in the defs")
        self.sensors = sensors
        self.retraining_sensors = [sensors[f"{m}_retraining_sensor"] for m in models]
        self.sensor_cursors: dict[str, str | None] = {}
        self.automation_cursor = None
        self.runs: list[dict[str, Any]] = []

    def sensor_tick(self, name: str) -> list[dg.RunRequest]:
        sensor = self.sensors[name]
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.sensor_cursors.get(name),
            resources=self.resources,
        ) as context:
            result = sensor(context)
        if isinstance(result, dg.SensorResult):
            if result.cursor is not None:
                self.sensor_cursors[name] = result.cursor
            return list(result.run_requests or [])
        return []

    def execute(
        self, request: dg.RunRequest, job_name: str | None = None
    ) -> dg.ExecuteInProcessResult:
        tags = {**request.tags, **({"dagster/run_key": request.run_key} if request.run_key else {})}
        if job_name is not None:
            job = self.defs.resolve_job_def(job_name)
            result = job.execute_in_process(
                instance=self.instance, tags=tags, resources=self.resources,
                run_config=QUIET, raise_on_error=False,
            )  # fmt: skip
        else:
            result = dg.materialize(
                [*self.defs.assets, *(self.defs.asset_checks or [])],
                selection=list(request.asset_selection),
                partition_key=request.partition_key,
                tags=tags,
                instance=self.instance,
                resources=self.resources,
                run_config=QUIET,
                raise_on_error=False,
            )
        self.runs.append({"run_id": result.run_id, "job": job_name, "success": result.success,
                          "tags": tags})  # fmt: skip
        return result

    def automation_tick(self) -> dict[dg.AssetKey, set[str | None]]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.automation_cursor
        )
        self.automation_cursor = result.cursor
        return {
            key: result.get_requested_partitions(key)
            for key in self.defs.resolve_asset_graph().get_all_asset_keys()
            if result.get_num_requested(key)
        }

    def settle_automation(self) -> None:
        """Tick the conditions until they request nothing, running each request (one run per
        partition window, as the daemon's runs and single-run backfills do)."""
        for _ in range(MAX_TICKS):
            requested = self.automation_tick()
            if not requested:
                return
            by_window: dict[tuple[str, str] | None, list[dg.AssetKey]] = {}
            for key, partitions in requested.items():
                window = None if partitions == {None} else (min(partitions), max(partitions))
                by_window.setdefault(window, []).append(key)
            for window, keys in sorted(by_window.items(), key=lambda kv: kv[0] is not None):
                tags = {}
                if window is not None:
                    tags = {
                        ASSET_PARTITION_RANGE_START_TAG: window[0],
                        ASSET_PARTITION_RANGE_END_TAG: window[1],
                    }
                self.execute(dg.RunRequest(asset_selection=keys, tags=tags))
        raise RuntimeError(f"automation still requesting after {MAX_TICKS} ticks")

    def tick(self) -> list[tuple[dg.RunRequest, dg.ExecuteInProcessResult]]:
        """One round: ingest everything that landed (landing-sensor ticks until it requests
        nothing, automation settling after each run), then the retraining sensors (their runs
        are followed by automation again). Returns the retraining runs."""
        for _ in range(MAX_LANDING_TICKS):
            requests = self.sensor_tick("landing_sensor")
            if not requests:
                break
            for request in requests:
                self.execute(request)
            self.settle_automation()
        else:
            raise RuntimeError(f"landing sensor still requesting after {MAX_LANDING_TICKS} ticks")
        retrained = []
        for sensor in self.retraining_sensors:
            for request in self.sensor_tick(sensor.name):
                retrained.append((request, self.execute(request, sensor.job_name)))
        if retrained:
            self.settle_automation()
        return retrained


@contextmanager
def scenario_environment(data_dir: Path) -> Iterator[None]:
    """The scenario's data folder for this process (before the definitions are imported)."""
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ["FTI_DATA_DIR"] = str(data_dir)
    for name in _ENV[1:]:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_ENV = ("FTI_DATA_DIR", "FTI_LAKE_CATALOG", "FTI_LAKE_DATA_PATH", "FTI_ONLINE_PATH",
        "FTI_ONLINE_URL", "FTI_REGISTRY_PATH", "FTI_START_DATE", "FTI_END_DATE")  # fmt: skip


def run_drift_scenario(
    config: ScenarioConfig, data_dir: Path, on_day=None
) -> list[DayRow]:  # fmt: skip
    """Generate the world, then release and process it day by day; the timeline."""
    fresh_folder(data_dir, config)
    world = GeneratorConfig(
        cards=config.cards, merchants=config.merchants, days=config.days, start=config.start,
        seed=config.seed, fraud_rate=config.fraud_rate, drift_from=config.drift_from,
        drift_kind=config.drift_kind,
    )  # fmt: skip
    generate(world, data_dir, hold_back=config.days - config.initial_days)
    settings = Settings.from_env()
    rows: list[DayRow] = []
    home = data_dir / DAGSTER_HOME
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        daemon = SimulatedDaemon(instance, config.models)
        daemon.tick()  # the history that landed before the loop watched
        previous = _champion(settings)
        for index in range(config.initial_days, config.days):
            started, runs_before = time.monotonic(), len(daemon.runs)
            day = config.start + timedelta(days=index)
            advance(settings.layout.data_dir / "world", settings.layout.landing_dir, 1)
            retrained = daemon.tick()
            row = _day_row(settings, day, index, retrained)
            row.promoted = row.champion_version not in (None, previous)
            previous = row.champion_version
            row.runs = len(daemon.runs) - runs_before
            row.seconds = round(time.monotonic() - started, 1)
            rows.append(row)
            if on_day is not None:
                on_day(row)
    _fill_realized(settings, rows)
    return rows


DAGSTER_HOME = "dagster_home"
SPLITS = ("train", "valid", "test")
MARKER = "scenario_config.json"


def check_folder(data_dir: Path) -> None:
    """Refuse a folder that is not empty and that no scenario wrote (it may be someone's
    data)."""
    if data_dir.exists() and any(data_dir.iterdir()) and not (data_dir / MARKER).exists():
        raise ValueError(
            f"{data_dir} is not empty and is not a scenario's folder (no {MARKER}): "
            "expected a new or empty folder, or one a previous scenario wrote"
        )


def fresh_folder(data_dir: Path, config: ScenarioConfig) -> None:
    """An empty data folder for the scenario: a previous scenario's folder (it holds the marker)
    is cleared; any other folder that is not empty is refused (it may be someone's data)."""
    check_folder(data_dir)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text(json.dumps(asdict(config), indent=2, default=str))


def _day_row(settings: Settings, day: date, index: int, retrained: list) -> DayRow:
    from fti_assets.defs.models.monitoring import (
        DRIFT_SUMMARY_TABLE,
        ESTIMATE_TABLE,
        SKEW_TABLE,
    )
    from fti_assets.lib.registry.model_registry import ModelRegistry

    row = DayRow(day=day.isoformat(), day_index=index)
    with connection(settings.lake, read_only=True) as con:
        drift = _one(con, DRIFT_SUMMARY_TABLE, "day", day)
        if drift:
            row.rows = int(drift["rows"] or 0)
            row.drift_share = drift["drift_share"]
            row.drifted_columns = [c for c in (drift["drifted_columns"] or "").split(", ") if c]
        estimate = _one(con, ESTIMATE_TABLE, "day", day)
        row.estimated_pr_auc = estimate["expected_pr_auc"] if estimate else None
        skew = _skew_rate(con, SKEW_TABLE, day)
        row.skew_mismatch_rate = skew
    registry = ModelRegistry(settings.registry_path, settings.layout.models_dir)
    challenger = registry.resolve(MODEL, "challenger")
    row.champion_version = _champion(settings)
    row.challenger_version = challenger.version if challenger else None
    for request, result in retrained:
        if request.tags.get("fti/breach_kind") is not None and MODEL in (request.run_key or ""):
            row.breach_kind = request.tags["fti/breach_kind"]
            row.breach_detail = request.tags.get("fti/breach_detail")
            row.breach = row.breach_kind != "no_champion"
            row.retrain_run_id = result.run_id
    return row


def _champion(settings: Settings) -> int | None:
    from fti_assets.lib.registry.model_registry import CHAMPION, ModelRegistry

    champion = ModelRegistry(settings.registry_path, settings.layout.models_dir).resolve(
        MODEL, CHAMPION
    )
    return champion.version if champion else None


def model_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every version of the followed model: status, validation PR-AUC, its examples' window
    and positives per split, its data cutoff, and whether the champion alias pointed at it."""
    from fti_assets.lib.registry.model_registry import CHAMPION, ModelRegistry
    from fti_assets.lib.training.datasets import load_dataset
    from fti_assets.specs.models import MODELS

    registry = ModelRegistry(settings.registry_path, settings.layout.models_dir)
    dataset = MODELS[MODEL].dataset_name
    champions = [c.version for c in registry.alias_history(MODEL, CHAMPION)]
    versions = []
    for v in sorted(registry.list(MODEL), key=lambda v: v.version):
        _, manifest = load_dataset(
            settings.layout.datasets_dir, dataset, v.training_dataset_version, verify=False
        )
        versions.append({
            "version": v.version, "status": v.status, "status_reason": v.status_reason,
            "valid_pr_auc": v.metrics.get("valid_pr_auc"),
            "examples": f"{manifest['time_range']['start'][:10]} .. "
                        f"{manifest['time_range']['end'][:10]}",
            "positives": "/".join(str(manifest["positives"][s]) for s in SPLITS),
            "data_cutoff": manifest["label"]["cutoff"][:10], "champion": v.version in champions,
        })  # fmt: skip
    return versions


def _one(con, table: str, day_column: str, day: date, extra: str = "") -> dict | None:
    if not table_exists(con, table):
        return None
    sql = f"select * from {table} where model_name = ? and {day_column} = ?"
    if extra:
        sql += f" and {extra}"
    found = read_frame(con, sql + " limit 1", [MODEL, day])
    return found.row(0, named=True) if found.height else None


def _skew_rate(con, table: str, day: date) -> float | None:
    if not table_exists(con, table):
        return None
    found = read_frame(
        con,
        f"select sum(mismatches) / nullif(sum(compared), 0) as rate from {table} "
        "where model_name = ? and day = ?",
        [MODEL, day],
    )
    return found["rate"][0] if found.height else None


def _fill_realized(settings: Settings, rows: list[DayRow]) -> None:
    """Per day, from the newest performance report of the run: the realized PR-AUC once its
    labels are final (null before) and the share of its rows whose label is known."""
    from fti_assets.defs.models.monitoring import PERFORMANCE_TABLE

    with connection(settings.lake, read_only=True) as con:
        if not table_exists(con, PERFORMANCE_TABLE):
            return
        newest = read_frame(
            con,
            f"select scored_day, final, pr_auc, label_coverage from {PERFORMANCE_TABLE} "
            "where model_name = ? qualify row_number() over "
            "(partition by scored_day order by report_day desc) = 1",
            [MODEL],
        )
    by_day = {d.isoformat(): (final, pr_auc, cov) for d, final, pr_auc, cov in newest.iter_rows()}
    for row in rows:
        final, pr_auc, coverage = by_day.get(row.day, (False, None, None))
        row.realized_pr_auc = pr_auc if final else None
        row.label_coverage = coverage


def write_outputs(
    rows: list[DayRow], config: ScenarioConfig, out_dir: Path,
    versions: list[dict[str, Any]] | None = None, command: str = "",
) -> dict[str, Path]:  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "scenario.json"
    json_path.write_text(json.dumps([asdict(r) for r in rows], indent=2, default=str))
    png = out_dir / "scenario_timeline.png"
    plot_timeline(rows, config, png)
    md = out_dir / "scenario.md"
    md.write_text(summary_markdown(rows, config, versions or [], command))
    return {"json": json_path, "png": png, "md": md}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def summary_markdown(
    rows: list[DayRow], config: ScenarioConfig, versions: list[dict[str, Any]], command: str
) -> str:
    """The run as a Markdown page: what was run, the loop's events, the model versions, PR-AUC
    per champion, seconds per simulated day and the day-by-day timeline."""
    drift_day = config.start + timedelta(days=config.drift_from)
    seconds = sorted(r.seconds for r in rows)
    lines = [
        "# The loop, end to end: a drift scenario",
        "",
        f"Command: `{command or 'fti scenario drift'}`. World: seed {config.seed}, "
        f"{config.cards} cards, {config.merchants} merchants, {config.days} days from "
        f"{config.start}, fraud rate {config.fraud_rate:.0%}, **{config.drift_kind} drift from "
        f"day {config.drift_from} ({drift_day})**; {config.initial_days} days landed before the "
        f"loop watched, then {len(rows)} simulated days, one at a time. Model followed: "
        f"{', '.join(config.models)}.",
        "",
    ]
    if seconds:
        lines += [
            f"Wall time per simulated day: mean {sum(seconds) / len(seconds):.1f} s, median "
            f"{seconds[len(seconds) // 2]:.1f} s, max {seconds[-1]:.1f} s "
            f"({sum(r.runs for r in rows) / len(rows):.1f} runs per day on average).",
            "",
        ]
    lines += ["## What the loop did", ""]
    events = []
    for row in rows:
        if row.retrain_run_id:
            what = "first training" if row.breach_kind == "no_champion" else f"{row.breach_kind}"
            detail = f": {row.breach_detail}" if row.breach_detail else ""
            events.append(
                f"- {row.day} (day {row.day_index}): **{what}** breach{detail} → retraining run "
                f"`{row.retrain_run_id[:8]}` requested by the retraining sensor"
            )
        if row.promoted:
            events.append(
                f"- {row.day} (day {row.day_index}): **v{row.champion_version} promoted**"
            )
    lines += events or ["- nothing: no breach, no retraining"]
    lines += ["", "## Model versions", ""]
    lines += [
        "| version | status | validation PR-AUC | examples (prediction time) | positives "
        "(train/valid/test) | data cutoff | was champion |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in versions:
        lines.append(
            f"| v{v['version']} | {v['status']} | {_cell(v['valid_pr_auc'])} | {v['examples']} "
            f"| {v['positives']} | {v['data_cutoff']} | {_cell(v['champion'])} |"
        )
    lines += ["", "## PR-AUC per champion", ""]
    lines += [
        "Realized: the day's PR-AUC once its labels are final (14 days later; the last 14 days "
        "have none yet). Estimated: the confidence-based estimate made before any label.",
        "",
        "| champion | days | drift days | mean estimated PR-AUC | mean realized PR-AUC |",
        "|---|---|---|---|---|",
    ]
    periods: list[tuple[int | None, list[DayRow]]] = []
    for row in rows:
        if periods and periods[-1][0] == row.champion_version:
            periods[-1][1].append(row)
        else:
            periods.append((row.champion_version, [row]))
    for version, days in periods:
        drifted = sum(1 for d in days if date.fromisoformat(d.day) >= drift_day)
        lines.append(
            f"| v{version} | {days[0].day} .. {days[-1].day} ({len(days)}) | {drifted} | "
            f"{_cell(_mean([d.estimated_pr_auc for d in days]))} | "
            f"{_cell(_mean([d.realized_pr_auc for d in days]))} |"
        )
    lines += ["", "## Timeline", ""]
    columns = ["day", "day_index", "rows", "drift_share", "estimated_pr_auc", "realized_pr_auc",
               "breach_kind", "champion_version", "promoted", "runs", "seconds"]  # fmt: skip
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        record = asdict(row)
        record["seconds"] = f"{row.seconds:.0f}"
        lines.append("| " + " | ".join(_cell(record[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def plot_timeline(rows: list[DayRow], config: ScenarioConfig, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pl.DataFrame([asdict(r) for r in rows]).with_columns(pl.col("day").str.to_date())
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    days = frame["day"].to_list()
    top.plot(days, frame["drift_share"].to_list(), marker=".", label="share of drifted features")
    threshold = MODELS[MODEL].monitoring.drift_share_threshold
    top.axhline(threshold, color="grey", linestyle=":", linewidth=1, label="drift threshold")
    top.set_ylabel("drift share")
    bottom.plot(
        days,
        frame["estimated_pr_auc"].to_list(),
        marker=".",
        label="estimated PR-AUC (before labels)",
    )
    bottom.plot(
        days,
        frame["realized_pr_auc"].to_list(),
        marker="o",
        label="realized PR-AUC (labels matured)",
    )
    bottom.set_ylabel("PR-AUC")
    drift_day = config.start + timedelta(days=config.drift_from)
    for axis in (top, bottom):
        axis.axvline(drift_day, color="tab:red", linestyle="--", linewidth=1)
        for row in rows:
            if row.retrain_run_id:
                axis.axvline(date.fromisoformat(row.day), color="tab:orange", linewidth=1)
            if row.promoted:
                axis.axvline(date.fromisoformat(row.day), color="tab:green", linewidth=2)
        axis.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.legend(loc="lower left", fontsize=8)
    top.set_title(
        f"{config.drift_kind} drift from day {config.drift_from} (red); retraining runs "
        "(orange), promotions (green)"
    )
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
