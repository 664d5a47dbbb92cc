"""`fti`: the human command line of the platform.

Heavy imports (Dagster, the asset graph) happen inside the commands that need them, so that
`fti --help` and the lookup commands stay quick.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fti_assets.lib.core.settings import DEFAULT_DAYS, Settings, last_complete_day

if TYPE_CHECKING:
    import duckdb

    from fti_assets.lib.streaming.processor import BatchReport, StreamProcessor

app = typer.Typer(
    help="FTI feature platform on Dagster: data, features, models, serving.", no_args_is_help=True
)
# Piped output (CI logs, `| less`) gets a wide console instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)


_MAX_SHOWN_CHARS = 1000


def _shown(value: object) -> str:
    """``value`` as text safe for a terminal: control characters escaped (an ESC could restyle
    or rewrite the user's terminal), and at most ~1,000 characters (a 1 MB key is cut)."""
    text = "".join(
        ch if ch.isprintable() or ch == "\n" else ch.encode("unicode_escape").decode()
        for ch in str(value)
    )
    if len(text) > _MAX_SHOWN_CHARS:
        half = _MAX_SHOWN_CHARS // 2
        text = f"{text[:half]}…({len(text) - 2 * half:,} characters cut)…{text[-half:]}"
    return text


def _failure(message: object, code: int = 2) -> typer.Exit:
    """Print ``message`` in red, verbatim (user input in it is never read as rich markup), and
    return the exit to raise: ``raise _failure(exc) from exc``."""
    if isinstance(message, KeyError) and message.args:
        message = message.args[0]  # str() of a KeyError is the repr of its message
    console.print(Text(_shown(message), style="red"))
    return typer.Exit(code)


def _print_table(rows: list[dict], title: str | None = None) -> None:
    if not rows:
        console.print("(none)")
        return
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(Text(_shown(col)))
    for row in rows:
        table.add_row(*(Text(_shown(v)) for v in row.values()))
    console.print(table)


def _emit(rows: list[dict], as_json: bool, title: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        _print_table(rows, title)


# Version and snapshot numbers are SQLite / DuckDB integers: a larger one is refused up front,
# naming the value, instead of overflowing inside the store.
MAX_INT64 = 2**63 - 1


def _int64_from(low: int) -> Callable[[int | None], int | None]:
    def check(value: int | None) -> int | None:
        if value is not None and not low <= value <= MAX_INT64:
            raise typer.BadParameter(f"{value} is out of range; expected {low} to {MAX_INT64}")
        return value

    return check


VersionArg = Annotated[int, typer.Argument(callback=_int64_from(1), help="Version number.")]


@contextmanager
def _refused_as_errors(code: int = 1) -> Iterator[None]:
    """Turn a lookup or validation error of the registry or the stores (an unknown model, a
    name that is not valid) into a red message and exit ``code``, without a traceback."""
    try:
        yield
    except (LookupError, ValueError) as exc:
        raise _failure(exc, code) from exc


features_app = typer.Typer(help="Feature groups: list them, read the online store.")
datasets_app = typer.Typer(help="Training datasets (immutable, versioned).")
app.add_typer(features_app, name="features")
app.add_typer(datasets_app, name="datasets")
models_app = typer.Typer(help="Model registry: versions, aliases, promotion, reproduction.")
app.add_typer(models_app, name="models")
simulate_app = typer.Typer(
    help="The synthetic world's days arriving in the landing zone, one day at a time."
)
app.add_typer(simulate_app, name="simulate")


class DriftKind(StrEnum):
    """What drifts from --drift-from on (lib/synthetic/generator.py: DRIFT_KINDS)."""

    covariate = "covariate"
    concept = "concept"
    both = "both"


@app.command()
def generate(
    cards: Annotated[int, typer.Option(help="Number of cards.")] = 2000,
    merchants: Annotated[int, typer.Option(help="Number of merchants.")] = 300,
    days: Annotated[int, typer.Option(help="Number of days in the world.")] = DEFAULT_DAYS,
    start: Annotated[
        str | None,
        typer.Option(help="First day (YYYY-MM-DD, UTC). Default: the world ends yesterday (UTC)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 42,
    fraud_rate: Annotated[float, typer.Option(help="Target share of fraud.")] = 0.01,
    bad_rows: Annotated[int, typer.Option(help="Bad rows of EACH kind per daily file.")] = 0,
    drift_from: Annotated[
        int | None, typer.Option(help="Day index (0-based) from which the world drifts.")
    ] = None,
    drift_kind: Annotated[
        DriftKind,
        typer.Option(
            help="What drifts: covariate (amounts and channel mix), concept (a new fraud "
            "pattern: card testing) or both."
        ),
    ] = DriftKind.both,
    hold_back: Annotated[
        int,
        typer.Option(
            help="Keep the last N days in the world only; `fti simulate advance` releases them."
        ),
    ] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (default: FTI_DATA_DIR or ./data).")
    ] = None,
) -> None:
    """Write a deterministic synthetic world (cards, merchants, daily transactions and late
    fraud labels, plus the oracle of true fraud probabilities) into world/, and release its days
    into the landing zone (all of them unless --hold-back)."""
    from fti_assets.lib.synthetic.generator import GeneratorConfig
    from fti_assets.lib.synthetic.generator import generate as run_generator

    first = date.fromisoformat(start) if start else last_complete_day() - timedelta(days=days - 1)
    try:
        config = GeneratorConfig(
            cards=cards,
            merchants=merchants,
            days=days,
            start=first,
            seed=seed,
            fraud_rate=fraud_rate,
            bad_rows=bad_rows,
            drift_from=drift_from,
            drift_kind=drift_kind.value,
        )
        target = data_dir or Settings.from_env().data_dir
        t0 = time.perf_counter()
        summary = run_generator(
            config, target, progress=days * cards > 200_000, hold_back=hold_back
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(
        f"[green]generated[/green] {summary.transactions:,} transactions "
        f"({summary.fraud:,} fraud, {summary.labels_written:,} labels) over "
        f"{summary.start} … {summary.end} into {target / 'world'} in "
        f"{time.perf_counter() - t0:.1f}s; released {summary.released_days} of {days} days "
        f"into {target / 'landing'}"
    )
    if drift_from is not None:
        console.print(f"drift ({drift_kind.value}) from day index {drift_from}")
    if bad_rows:
        console.print(
            f"injected bad rows: {sum(summary.bad_rows.values()):,} ({bad_rows}/kind/day)"
        )


def _world_dirs(data_dir: Path | None) -> tuple[Path, Path]:
    layout = Settings.for_data_dir(data_dir).layout if data_dir else Settings.from_env().layout
    return layout.world_dir, layout.landing_dir


@simulate_app.command("advance")
def simulate_advance(
    days: Annotated[int, typer.Option(help="How many days to release.", min=1)] = 1,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (default: FTI_DATA_DIR or ./data).")
    ] = None,
) -> None:
    """Release the world's next day(s) into the landing zone: each day's transactions and the
    fraud labels reported that day (late labels of earlier days). Exit code 1 when the world is
    exhausted."""
    from fti_assets.lib.synthetic.world import (
        NoWorldError,
        WorldExhaustedError,
        advance,
        world_status,
    )

    world_dir, landing_dir = _world_dirs(data_dir)
    try:
        released = advance(world_dir, landing_dir, days)
    except NoWorldError as exc:
        raise _failure(exc, 2) from exc
    except WorldExhaustedError as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(1) from exc
    status = world_status(world_dir, landing_dir)
    span = f"{released[0]}" + (f" … {released[-1]}" if len(released) > 1 else "")
    console.print(
        f"[green]released[/green] {span} into {landing_dir}; "
        f"{len(status.released)} of {len(status.released) + len(status.remaining)} days landed"
        + (f", next: {status.remaining[0]}" if status.remaining else ", the world is exhausted")
    )
    if len(released) < days:
        console.print(f"[yellow]only {len(released)} of {days} days were left[/yellow]")


@simulate_app.command("status")
def simulate_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (default: FTI_DATA_DIR or ./data).")
    ] = None,
) -> None:
    """The world's days: how many are in the landing zone, which comes next."""
    from fti_assets.lib.synthetic.world import NoWorldError, world_status

    world_dir, landing_dir = _world_dirs(data_dir)
    try:
        status = world_status(world_dir, landing_dir)
    except NoWorldError as exc:
        raise _failure(exc, 2) from exc
    payload = status.as_dict()
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    drift = status.drift
    _print_table(
        [
            {
                "world": f"{payload['start']} … {payload['end']}",
                "days": payload["days"],
                "released": payload["released"],
                "remaining": payload["remaining"],
                "last released": payload["last_released"] or "—",
                "next": payload["next"] or "— (exhausted)",
                "drift": f"{drift['kind']} from {drift['from']}" if drift else "—",
            }
        ],
        title="Simulated world",
    )


@app.command()
def demo(
    cards: Annotated[int, typer.Option(help="Number of cards.")] = 2000,
    days: Annotated[int, typer.Option(help="Number of days.")] = DEFAULT_DAYS,
    bad_rows: Annotated[int, typer.Option(help="Bad rows of each kind per day.")] = 1,
) -> None:
    """Generate the default world (every day released) and materialize the whole asset graph for
    every landed day, in-process, into the lake; then print a summary and where to look."""
    generate(cards=cards, days=days, bad_rows=bad_rows)
    from fti_assets.demo import run_demo

    run_demo(console)


@features_app.command("list")
def features_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every feature group: key, version, online flag, source and features."""
    from fti_assets.specs.feature_groups import FEATURE_GROUPS

    rows = [
        {
            "name": spec.name,
            "version": spec.version,
            "entity_keys": list(spec.entity_keys) if as_json else ", ".join(spec.entity_keys),
            "event_time": spec.event_time,
            "online": spec.online,
            "source": spec.source,
            "offline_table": spec.table,
            "features": (
                [
                    {"name": f.name, "dtype": f.dtype, "description": f.description}
                    for f in spec.features
                ]
                if as_json
                else len(spec.features)
            ),
            "description": spec.description,
        }
        for spec in FEATURE_GROUPS.values()
    ]
    if not as_json:
        for row in rows:
            row.pop("description")
    _emit(rows, as_json, "Feature groups")


def _parse_key(raw: str) -> tuple[str, str]:
    if "=" not in raw:
        raise typer.BadParameter(f"{raw!r}: expected KEY=VALUE, e.g. card_id=c0000001")
    name, value = raw.split("=", 1)
    return name, value


@features_app.command("get")
def features_get(
    group: Annotated[str, typer.Argument(help="Feature group name.")],
    keys: Annotated[list[str], typer.Argument(help="Entity key(s) as KEY=VALUE.")],
    snapshot: Annotated[
        int | None,
        typer.Option(
            callback=_int64_from(0),
            help="Read the offline store as it was at this lake snapshot id.",
        ),
    ] = None,
    snapshot_time: Annotated[
        str | None,
        typer.Option(help="Read the offline store as it was at this commit time (ISO, UTC)."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="The values current at this event time (ISO, UTC), offline."),
    ] = None,
) -> None:
    """Print one entity's newest row as JSON (exit code 1 when not found): from the online
    store; with --as-of, the values that were current at that time (offline store); with
    --snapshot / --snapshot-time, from the offline store as it was at that commit."""
    if snapshot is not None or snapshot_time is not None or as_of is not None:
        _offline_get(group, keys, snapshot, snapshot_time, as_of)
        return
    from fti_assets.lib.store.online import NotFound, OnlineStoreError, open_online_store

    try:
        store = open_online_store(Settings.from_env().online_url, readonly=True)
    except OnlineStoreError as exc:
        raise _failure(exc, 2) from exc
    with store:
        try:
            result = store.get(group, dict(_parse_key(k) for k in keys))
        except (KeyError, TypeError, ValueError, OnlineStoreError) as exc:
            raise _failure(exc, 2) from exc
    if isinstance(result, NotFound):
        typer.echo(json.dumps({"group": group, "keys": result.keys, "found": False}))
        raise typer.Exit(1)
    typer.echo(
        json.dumps(
            {
                "group": result.group,
                "version": result.version,
                "keys": result.keys,
                "found": True,
                "event_time": result.event_time.isoformat(),
                "features": result.features,
            },
            indent=2,
            default=str,
        )
    )


def _group_spec(group: str):
    from fti_assets.specs.feature_groups import FEATURE_GROUPS

    spec = FEATURE_GROUPS.get(group)
    if spec is None:
        raise _failure(f"unknown feature group {group!r}; expected one of {sorted(FEATURE_GROUPS)}")
    return spec


def _offline_get(
    group: str,
    keys: list[str],
    snapshot: int | None,
    snapshot_time: str | None,
    as_of: str | None,
) -> None:
    from fti_assets.lib.features.pipelines import read_group
    from fti_assets.lib.store.offline import OfflineStoreMissingError

    spec = _group_spec(group)
    wanted = dict(_parse_key(k) for k in keys)
    at = None if snapshot_time is None else _parse_time(snapshot_time)
    try:
        rows = read_group(
            Settings.from_env().lake, spec, wanted,
            as_of=None if as_of is None else _parse_time(as_of), snapshot=snapshot,
            snapshot_time=at,
        )  # fmt: skip
    except (LookupError, OfflineStoreMissingError, ValueError) as exc:
        raise _failure(exc, 2) from exc
    found = rows.height > 0
    payload = {
        "group": group,
        "version": spec.version,
        "keys": wanted,
        "found": found,
        "as_of": as_of,
        "snapshot": snapshot,
        "snapshot_time": snapshot_time,
    }
    if found:
        row = rows.row(0, named=True)
        payload["event_time"] = row.pop(spec.event_time).isoformat()
        payload["features"] = {k: v for k, v in row.items() if k not in spec.entity_keys}
    typer.echo(json.dumps(payload, indent=2, default=str))
    if not found:
        raise typer.Exit(1)


@features_app.command("history")
def features_history(
    group: Annotated[str, typer.Argument(help="Feature group name.")],
    keys: Annotated[list[str], typer.Argument(help="Entity key(s) as KEY=VALUE.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every row the offline store holds for one entity, oldest first (exit 1 when none)."""
    from fti_assets.lib.features.pipelines import entity_history, key_frame
    from fti_assets.lib.store.offline import OfflineStoreMissingError, connection

    spec = _group_spec(group)
    try:
        wanted = key_frame(spec, dict(_parse_key(k) for k in keys))
        with connection(Settings.from_env().lake, read_only=True) as con:
            rows = entity_history(con, spec, wanted)
    except (LookupError, OfflineStoreMissingError, ValueError) as exc:
        raise _failure(exc, 2) from exc
    _emit(rows.to_dicts(), as_json, f"{group}: {rows.height} rows")
    if rows.is_empty():
        raise typer.Exit(1)


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not an ISO date-time, e.g. 2026-10-01T12:00:00+00:00"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help="SQL to run; the lake's tables are the default database.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
    max_rows: Annotated[int, typer.Option(help="Rows to print at most (0 = all).")] = 100,
) -> None:
    """Run a READ-ONLY query against the offline store (works while pipelines write).

    Every lake table is there by name (`fti sql "select count(*) from raw_transactions"`);
    `from lake.snapshots()` lists the snapshots, `select * from t AT (VERSION => 12)` reads one.
    """
    import duckdb

    from fti_assets.lib.store.offline import OfflineStoreMissingError, connection, seal

    lake = Settings.from_env().lake
    try:
        with connection(lake, read_only=True) as con:
            seal(con, lake)
            relation = con.sql(query)
            if relation is None:
                typer.echo("ok")
                return
            columns = relation.columns
            rows = relation.fetchall() if max_rows == 0 else relation.fetchmany(max_rows + 1)
    except (duckdb.Error, OfflineStoreMissingError) as exc:
        raise _failure(exc, 2) from exc
    truncated = max_rows != 0 and len(rows) > max_rows
    records = [dict(zip(columns, row, strict=True)) for row in rows[: max_rows or None]]
    if as_json:
        typer.echo(json.dumps(records, indent=2, default=str))
    else:
        _print_table(records)
    if truncated:
        console.print(f"(first {max_rows} rows; --max-rows 0 prints all)", style="dim")


@datasets_app.command("list")
def datasets_list(
    name: Annotated[
        str | None, typer.Option(help="Dataset name (default: every model's dataset).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every version of the training datasets with rows, split, feature view and content hash."""
    from fti_assets.lib.training.datasets import list_datasets
    from fti_assets.specs.models import MODELS

    names = [spec.dataset_name for spec in MODELS.values()] if name is None else [name]
    rows = []
    for dataset in names:
        with _refused_as_errors(2):
            versions = list_datasets(Settings.from_env().layout.datasets_dir, dataset)
        for version in versions:
            m = version.manifest
            view = m.get("feature_view") or {}
            rows.append(
                {
                    "dataset": dataset,
                    "version": version.version,
                    "created_at": m.get("created_at"),
                    "rows": m["rows"]["total"],
                    "positives": m["positives"]["total"],
                    "cutoff": m["label"]["cutoff"],
                    "feature_view": f"{view.get('name')}@v{view.get('version')}",
                    "lake_snapshot": m.get("lake_snapshot"),
                    "frame_sha256": m["content_hash"]["frame_sha256"][:12],
                    "path": str(version.path),
                }
            )
    _emit(rows, as_json, "Training datasets")


views_app = typer.Typer(help="Feature views: the versioned feature selections models use.")
app.add_typer(views_app, name="feature-views")


@views_app.command("list")
def feature_views_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every feature view version: declared in the code, locked, and used by registered models."""
    from fti_assets.lib.features.views import check_lock
    from fti_assets.specs.feature_views import FEATURE_VIEWS, LOCK_PATH

    unlocked = {v.key for v in check_lock(FEATURE_VIEWS.values(), LOCK_PATH)}
    used = {f"{r['name']}@v{r['version']}": r for r in _registry().feature_views()}
    rows = []
    for key in sorted(set(FEATURE_VIEWS) | set(used)):
        view = FEATURE_VIEWS.get(key)
        rows.append(
            {
                "view": key,
                "declared": view is not None,
                "locked": view is not None and key not in unlocked,
                "groups": ", ".join(f"{s.group}@v{s.version}" for s in view.selections)
                if view
                else "(registry copy)",
                "on_demand": (view.on_demand.name if view and view.on_demand else "—"),
                "fingerprint": (view.fingerprint() if view else used[key]["fingerprint"])[:12],
                "models": (used.get(key) or {}).get("models") or "—",
            }
        )
    _emit(rows, as_json, "Feature views")


@views_app.command("show")
def feature_views_show(
    name: str,
    version: Annotated[
        int | None, typer.Argument(callback=_int64_from(1), help="Default: newest.")
    ] = None,
) -> None:
    """A view version's full definition (JSON): groups, columns, TTLs, on-demand features,
    request features, transforms; from the code, else from the registry's copy."""
    from fti_assets.specs.feature_views import FEATURE_VIEWS

    versions = sorted(v.version for v in FEATURE_VIEWS.values() if v.name == name)
    version = version or (versions[-1] if versions else None)
    if version is None:
        raise _failure(f"no feature view named {name!r} in the code; give a version")
    view = FEATURE_VIEWS.get(f"{name}@v{version}")
    if view is not None:
        payload = {**view.to_dict(), "fingerprint": view.fingerprint(), "source": "code"}
    else:
        with _refused_as_errors():
            payload = {**_registry().feature_view(name, version), "source": "registry"}
    typer.echo(json.dumps(payload, indent=2, default=str))


@views_app.command("lock")
def feature_views_lock() -> None:
    """Record the fingerprints of new view versions in the lock file (a changed selection under
    a locked version is refused: declare a new version instead)."""
    from fti_assets.lib.features.views import write_lock
    from fti_assets.specs.feature_views import FEATURE_VIEWS, LOCK_PATH

    added = write_lock(list(FEATURE_VIEWS.values()), LOCK_PATH)
    console.print(f"locked {', '.join(added)}" if added else "nothing new to lock")


scenario_app = typer.Typer(help="End-to-end scenarios of the loop on a synthetic world.")
app.add_typer(scenario_app, name="scenario")


@scenario_app.command("drift")
def scenario_drift(
    seed: Annotated[int, typer.Option(help="World seed.")] = 7,
    cards: Annotated[int, typer.Option(help="Cards in the world.")] = 500,
    days: Annotated[int, typer.Option(help="Days in the world.")] = 88,
    drift_from: Annotated[int, typer.Option(help="Day index (0-based) drift starts.")] = 57,
    drift_kind: Annotated[
        str,
        typer.Option(
            help="covariate (amounts, channel mix) | concept (a new fraud pattern) | both."
        ),
    ] = "both",
    initial_days: Annotated[
        int,
        typer.Option(
            help="Days landed before the loop starts; the first model is trained once 51 days "
            "landed (30 warm-up + 14 label maturity + 7 of examples)."
        ),
    ] = 52,
    data_dir: Annotated[
        Path,
        typer.Option(
            help="Scenario data folder (world, lake, models, reports, Dagster instance); a "
            "previous scenario's folder is cleared first, any other non-empty folder refused."
        ),
    ] = Path("data/scenario"),
    out: Annotated[
        Path, typer.Option(help="Where scenario.json, scenario.md and the PNG go.")
    ] = Path("data/scenario/out"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
) -> None:
    """A world whose data drift from --drift-from, driven day by day through the platform's own
    sensors and automation (in-process, against a persistent instance): the timeline of
    monitoring, retraining and promotion, as a table (or --json), a PNG and a Markdown summary."""
    import contextlib
    import dataclasses

    from fti_assets.lib.synthetic.generator import DRIFT_KINDS
    from fti_assets.scenario import (
        ScenarioConfig,
        check_folder,
        model_versions,
        run_drift_scenario,
        scenario_environment,
        write_outputs,
    )

    if drift_kind not in DRIFT_KINDS:
        raise typer.BadParameter(
            f"--drift-kind {drift_kind!r}: expected one of {', '.join(DRIFT_KINDS)}"
        )
    config = ScenarioConfig(
        seed=seed, cards=cards, days=days, drift_from=drift_from, drift_kind=drift_kind,
        initial_days=initial_days,
    )  # fmt: skip
    data_dir = data_dir.resolve()
    try:
        check_folder(data_dir)
    except ValueError as exc:
        raise _failure(exc) from exc
    progress = (
        None
        if as_json
        else lambda row: console.print(
            f"{row.day} (day {row.day_index}): drift {row.drift_share} est {row.estimated_pr_auc} "
            f"champion v{row.champion_version} {row.runs} runs {row.seconds} s"
            + (" RETRAIN" if row.retrain_run_id else "")
            + (" PROMOTED" if row.promoted else "")
        )
    )
    # dbt's log goes to stdout (dagster-dbt echoes it): with --json, stdout is the timeline only.
    with (
        scenario_environment(data_dir),
        contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout),
    ):
        rows = run_drift_scenario(config, data_dir, on_day=progress)
        versions = model_versions(Settings.from_env())
    command = (
        f"fti scenario drift --seed {seed} --cards {cards} --days {days} --drift-from "
        f"{drift_from} --drift-kind {drift_kind} --initial-days {initial_days}"
    )
    paths = write_outputs(rows, config, out.resolve(), versions, command)
    records = [dataclasses.asdict(r) for r in rows]
    if as_json:
        typer.echo(json.dumps(records, indent=2, default=str))
        return
    for record in records:
        record["drifted_columns"] = len(record["drifted_columns"])
    _print_table(records, "Drift scenario")
    console.print(f"timeline: {paths['png']}  json: {paths['json']}  summary: {paths['md']}")


reports_app = typer.Typer(help="Monitoring and evaluation reports (HTML, PNG).")
app.add_typer(reports_app, name="reports")


@reports_app.command("serve")
def reports_serve(
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port (FTI_REPORTS_URL must match).")] = 3001,
) -> None:
    """Serve FTI_DATA_DIR/reports over HTTP, read-only, so the report links in the Dagster UI
    open (`make dev` starts it beside the webserver)."""
    import functools
    import http.server

    folder = Settings.from_env().layout.reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    console.print(f"serving {folder} on http://{host}:{port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Start the prediction service (FastAPI + uvicorn): POST /predict, /predict/batch; GET
    /health, /ready, /docs. Serves the registry's champion and follows promote/rollback."""
    from fti_assets.service.server import serve as run_server

    run_server(host=host, port=port, workers=workers)


def _offline_connection() -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """The offline store, read-only: the one place the CLI opens it for the stream."""
    from fti_assets.lib.store.offline import connection

    return connection(Settings.from_env().lake, read_only=True)


@app.command()
def stream(
    once: Annotated[
        bool, typer.Option("--once", help="Apply the events in the log now, then exit.")
    ] = False,
    consumer: Annotated[
        str, typer.Option(help="Checkpoint name; run one instance per name.")
    ] = "card_transaction_features",
    lateness_s: Annotated[
        float,
        typer.Option(
            "--lateness-s",
            help="How many seconds older than its card's latest transaction an event may be "
            "and still be applied; older ones go to the dead-letter table.",
        ),
    ] = 600.0,
    batch_size: Annotated[int, typer.Option(help="Events per commit at most.")] = 500,
    bootstrap: Annotated[
        bool,
        typer.Option(
            "--bootstrap/--no-bootstrap",
            help="Start each card's windows from the trailing 30 days of raw_transactions in "
            "the offline store.",
        ),
    ] = True,
) -> None:
    """Run the streaming feature pipeline: transactions from the event log (FTI_EVENT_LOG_URL)
    keep card_transaction_features current in the online store (FTI_ONLINE_URL), each event
    applied exactly once. Stops on Ctrl-C or SIGTERM after its current batch (also `make
    stream`)."""
    import logging
    import signal
    from datetime import timedelta

    from fti_assets.lib.core.store_urls import display_url
    from fti_assets.lib.store.online import open_online_store
    from fti_assets.lib.streaming.bootstrap import bootstrap_transactions
    from fti_assets.lib.streaming.event_log import open_event_log
    from fti_assets.lib.streaming.processor import StreamConfig, StreamProcessor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    config = StreamConfig(
        consumer=consumer, lateness=timedelta(seconds=lateness_s), max_batch=batch_size
    )
    history = []
    if bootstrap:
        from fti_assets.lib.store.offline import OfflineStoreMissingError

        try:
            with _offline_connection() as con:
                history = bootstrap_transactions(con)
        except (LookupError, OfflineStoreMissingError) as exc:
            raise _failure(f"cannot bootstrap the card windows: {exc}") from exc
    stop = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.append(True))
    with (
        open_event_log(settings.event_log_url) as log,
        open_online_store(settings.online_url) as store,
    ):
        processor = StreamProcessor(log, store, config)
        started = processor.start(history)
        console.print(
            f"stream {consumer}: {display_url(log.url)} → {display_url(store.url)}, from offset "
            f"{started.offset} of {log.end_offset()}, {started.cards:,} cards in state"
        )
        progress = _StreamProgress(processor)
        processor.run(lambda: bool(stop), until_caught_up=once, on_batch=progress.batch)
        progress.report(force=True)


class _StreamProgress:
    """A progress line every 10 seconds: offset, lag, rate, counters, event -> visible latency."""

    def __init__(self, processor: StreamProcessor) -> None:
        self.processor = processor
        self.latencies_us: list[int] = []
        self.next_at = time.monotonic() + 10.0

    def batch(self, report: BatchReport) -> None:
        self.latencies_us.extend(report.latencies_us)
        self.report()

    def report(self, *, force: bool = False) -> None:
        if not force and time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + 10.0
        processor, latencies = self.processor, sorted(self.latencies_us)
        self.latencies_us = []
        checkpoint = processor.checkpoint()
        rate = checkpoint.info.get("events_per_s", 0.0) if checkpoint else 0.0
        visible = (
            f"; event → online p50 {latencies[len(latencies) // 2] / 1000:.1f} ms, p99 "
            f"{latencies[int(len(latencies) * 0.99)] / 1000:.1f} ms"
            if latencies
            else ""
        )
        console.print(
            f"offset {processor.offset:,} (lag {processor.log.end_offset() - processor.offset:,}),"
            f" {rate:,.0f} events/s, {processor.counters}{visible}"
        )


def _registry():
    from fti_assets.lib.registry.model_registry import ModelRegistry

    settings = Settings.from_env()
    return ModelRegistry(settings.registry_path, settings.layout.models_dir)


def _version_row(v) -> dict:
    return {
        "name": v.name,
        "version": v.version,
        "status": v.status,
        "aliases": ", ".join(v.aliases),
        "dataset": v.training_dataset_version,
        "valid_pr_auc": round(v.metrics.get("valid_pr_auc") or 0.0, 4),
        "created_at": v.created_at.isoformat(timespec="seconds"),
        "sha256": v.sha256[:12],
    }


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="Model name (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every registered model version with its status and aliases."""
    with _refused_as_errors():
        rows = [_version_row(v) for v in _registry().list(name)]
    _emit(rows, as_json, "Registered models")


@models_app.command("show")
def models_show(name: str, version: VersionArg) -> None:
    """Everything the registry records about one version (JSON)."""
    import dataclasses

    registry = _registry()
    with _refused_as_errors():
        model = registry.get(name, version)
        history = registry.alias_history(name)
    payload = dataclasses.asdict(model)
    payload["alias_history"] = [dataclasses.asdict(c) for c in history if c.version == version]
    typer.echo(json.dumps(payload, indent=2, default=str))


@models_app.command("promote")
def models_promote(
    name: str,
    version: VersionArg,
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
) -> None:
    """Point an alias (default champion) at a version; the service picks it up without restart."""
    registry = _registry()
    with _refused_as_errors():
        before = registry.resolve(name, alias)
        registry.promote(name, version, alias=alias, reason="fti models promote")
    console.print(f"{name}: {alias} v{before.version if before else '—'} → v{version}")


@models_app.command("rollback")
def models_rollback(
    name: str,
    alias: Annotated[str, typer.Option(help="Alias to roll back.")] = "champion",
) -> None:
    """Move the alias back to its previous holder."""
    registry = _registry()
    with _refused_as_errors():
        before = registry.resolve(name, alias)
        restored = registry.rollback(name, alias=alias, reason="fti models rollback")
    console.print(f"{name}: {alias} v{before.version if before else '—'} → v{restored.version}")


@models_app.command("reproduce")
def models_reproduce(name: str, version: VersionArg) -> None:
    """Rebuild the version's dataset, retrain with its params, compare the hashes
    (exit code 1 if the model sha256 differs)."""
    from fti_assets.lib.training.reproduce import reproduce
    from fti_assets.specs.feature_views import view_of_model
    from fti_assets.specs.models import model_spec

    settings = Settings.from_env()
    with _refused_as_errors(2):
        spec, registry = model_spec(name), _registry()
        view = view_of_model(registry, registry.get(name, version))
    report = reproduce(
        registry, settings.lake, settings.layout.datasets_dir, name=name, version=version,
        dataset_name=spec.dataset_name, view=view,
        label=spec.label,
    )  # fmt: skip
    console.print(
        f"dataset {report.dataset_version}: content hash "
        + ("[green]matches[/green]" if report.dataset_matches else "[red]differs[/red]")
    )
    console.print(
        f"model {name} v{version}: sha256 "
        + (
            f"[green]matches[/green] ({report.model_sha256_rebuilt[:16]})"
            if report.model_matches
            else f"[red]differs[/red] (expected {report.model_sha256_expected[:16]}, "
            f"rebuilt {report.model_sha256_rebuilt[:16]})"
        )
    )
    if not report.model_matches:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
