"""`fti`: the human command line of the platform.

Heavy imports (Dagster, the asset graph) happen inside the commands that need them, so that
`fti --help` and the lookup commands stay quick.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fti_assets.lib.settings import DEFAULT_DAYS, DEFAULT_START, Settings

app = typer.Typer(help="FTI feature platform on Dagster: data, features, models, serving.",
                  no_args_is_help=True)
console = Console()


@app.command()
def generate(
    cards: Annotated[int, typer.Option(help="Number of cards.")] = 2000,
    merchants: Annotated[int, typer.Option(help="Number of merchants.")] = 300,
    days: Annotated[int, typer.Option(help="Number of daily landing files.")] = DEFAULT_DAYS,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD, UTC).")] = str(DEFAULT_START),
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 42,
    fraud_rate: Annotated[float, typer.Option(help="Target share of fraud.")] = 0.01,
    bad_rows: Annotated[int, typer.Option(help="Bad rows of EACH kind per daily file.")] = 0,
    drift_from: Annotated[
        int | None, typer.Option(help="Day index from which distributions shift.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (default: FTI_DATA_DIR or ./data).")
    ] = None,
) -> None:
    """Write deterministic synthetic landing files (cards, merchants, daily transactions and
    late fraud labels) plus the oracle of true fraud probabilities."""
    from fti_assets.lib.generator import GeneratorConfig
    from fti_assets.lib.generator import generate as run_generator

    config = GeneratorConfig(
        cards=cards,
        merchants=merchants,
        days=days,
        start=date.fromisoformat(start),
        seed=seed,
        fraud_rate=fraud_rate,
        bad_rows=bad_rows,
        drift_from=drift_from,
    )
    target = data_dir or Settings.from_env().data_dir
    t0 = time.perf_counter()
    summary = run_generator(config, target, progress=days * cards > 200_000)
    console.print(
        f"[green]generated[/green] {summary.transactions:,} transactions "
        f"({summary.fraud:,} fraud, {summary.labels_written:,} labels landed) over "
        f"{summary.start} … {summary.end} into {target} in {time.perf_counter() - t0:.1f}s"
    )
    if bad_rows:
        console.print(f"injected bad rows: {sum(summary.bad_rows.values()):,} ({bad_rows}/kind/day)")


@app.command()
def demo(
    cards: Annotated[int, typer.Option(help="Number of cards.")] = 2000,
    days: Annotated[int, typer.Option(help="Number of days.")] = DEFAULT_DAYS,
    bad_rows: Annotated[int, typer.Option(help="Bad rows of each kind per day.")] = 1,
) -> None:
    """Generate the default data set and materialize the whole asset graph for every partition,
    in-process, on the DuckDB file; then print a summary and where to look."""
    generate(cards=cards, days=days, bad_rows=bad_rows)
    from fti_assets.demo import run_demo

    run_demo(console)


def _print_table(rows: list[dict], title: str | None = None) -> None:
    if not rows:
        console.print("(none)")
        return
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(str(col))
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def _emit(rows: list[dict], as_json: bool, title: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        _print_table(rows, title)


if __name__ == "__main__":
    app()
