"""Point-in-time join: Feast 0.67's DuckDB offline store against raw DuckDB ASOF and pit_join.

Feast is not a dependency of the project: it is installed, the first time this runs, into a
venv of its own under ``.bench/feast-0.67/`` (``uv venv`` + ``uv pip install
'feast[duckdb]==0.67.*'``, from PyPI) and kept there for later runs. If it cannot be installed,
the section says so and gives no Feast figure.

Data: bench_pit's labels and features (benchmarks/world.py ``pit_files``), as Parquet files.
Feast gets a minimal repository built in code: an entity ``entity_id``, a ``FileSource`` over the
features' Parquet file (timestamp ``event_time``), a feature view of the five features with a
TTL longer than the data's span (so it drops nothing), a local SQLite registry; the entity
dataframe is the labels (pandas, ``ts`` renamed ``event_timestamp``). Timed inside Feast's
process: ``get_historical_features(...).to_arrow()``; its peak RSS is that process's (Feast runs
DuckDB in-process through ibis). The other contenders are bench_pit's, each in a fresh process.

Feast takes a feature row at or before the label's time; ours and raw DuckDB take strictly
earlier rows. The data has no ties between a label and its entity's feature times in practice;
the matched rows and the sum of f0 are compared.

Run alone: ``python -m benchmarks.bench_feast --scale quick``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_pit import (
    FEATURE_COLUMNS,
    Measure,
    measure,
    run_duckdb_on_frames,
    run_duckdb_on_parquet,
    run_pit_join_polars,
)
from benchmarks.common import Section, cli_main, machine_load, mib
from benchmarks.world import PitFiles, pit_files

ROOT = Path(__file__).resolve().parents[1]
FEAST_REQUIREMENT = "feast[duckdb]==0.67.*"
FEAST_VENV = ROOT / ".bench" / "feast-0.67"
INSTALL_TIMEOUT_S = 1800
JOIN_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Plan:
    repeats: int  # fresh processes per contender (Feast: one)


PLANS = {"quick": Plan(repeats=1), "full": Plan(repeats=3)}

# Runs in Feast's venv: builds the repository, joins, prints one RESULT line of JSON.
_FEAST_JOIN = """
import json, resource, sys, tempfile, time
from datetime import timedelta
from pathlib import Path

import duckdb
import feast
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
from feast.types import Float64

features_path, labels_path, columns = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
repo = Path(tempfile.mkdtemp())
store = FeatureStore(config=RepoConfig(
    project="bench", provider="local", registry=str(repo / "registry.db"),
    offline_store=DuckDBOfflineStoreConfig(),
    online_store={"type": "sqlite", "path": str(repo / "online.db")},
    entity_key_serialization_version=3,
))
entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
view = FeatureView(
    name="features", entities=[entity], ttl=timedelta(days=3650),
    schema=[Field(name=c, dtype=Float64) for c in columns],
    source=FileSource(path=features_path, timestamp_field="event_time"),
)
store.apply([entity, view])
labels = pq.read_table(labels_path).to_pandas().rename(columns={"ts": "event_timestamp"})
t0, c0 = time.perf_counter(), time.process_time()
out = store.get_historical_features(
    entity_df=labels, features=[f"features:{c}" for c in columns]
).to_arrow()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
f0 = out.column("f0")
print("RESULT" + json.dumps({
    "join_s": wall, "cpu_s": cpu, "rows": out.num_rows, "matched": out.num_rows - f0.null_count,
    "f0_sum": float(pc.sum(f0).as_py() or 0.0),
    "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "versions": f"feast {feast.__version__}, duckdb {duckdb.__version__}",
}))
"""


def feast_python() -> tuple[Path | None, str]:
    """Feast's venv interpreter, installing it on first use; or None and why it failed."""
    python = FEAST_VENV / "bin" / "python"
    marker = FEAST_VENV / ".installed"
    if marker.exists():
        return python, ""
    uv = ROOT / ".uv" / "bin" / "uv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for cmd in (
        [str(uv), "venv", "--clear", "--python", version, str(FEAST_VENV)],
        [str(uv), "pip", "install", "--python", str(python), FEAST_REQUIREMENT],
    ):
        try:
            out = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`{' '.join(cmd[1:3])}` failed: {exc}"
        if out.returncode != 0:
            return None, f"`{' '.join(cmd[1:3])}` exited {out.returncode}: {out.stderr[-800:]}"
    marker.write_text(FEAST_REQUIREMENT + "\n")
    return python, ""


def feast_join(python: Path, files: PitFiles, work: Path) -> tuple[Measure, str]:
    """Feast's join in its venv: the measure and the Feast and DuckDB versions it ran."""
    script = work / "feast_join.py"
    script.write_text(_FEAST_JOIN)
    out = subprocess.run(
        [str(python), "-W", "ignore", str(script), str(files.features), str(files.labels),
         ",".join(FEATURE_COLUMNS)],
        capture_output=True,
        text=True,
        timeout=JOIN_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"Feast's join exited {out.returncode}:\n{out.stderr[-3000:]}")
    result = json.loads(line[len("RESULT") :])
    joined = Measure(
        join_s=result["join_s"],
        cpu_s=result["cpu_s"],
        peak_mib=mib(result["peak_bytes"]),
        rows=result["rows"],
        matched=result["matched"],
        f0_sum=result["f0_sum"],
    )
    return joined, result["versions"]


BASELINE = "raw DuckDB ASOF, SQL over the same Parquet files (time includes reading)"
OURS = {
    BASELINE: run_duckdb_on_parquet,
    "raw DuckDB ASOF, SQL over in-memory Polars frames": run_duckdb_on_frames,
    "pit_join (ours, default engine) over in-memory Polars frames": run_pit_join_polars,
}
FEAST = "Feast 0.67 get_historical_features, DuckDB offline store (to_arrow)"


def run(scale: str) -> list[Section]:
    plan = PLANS[scale]
    files = pit_files(scale)
    section = Section(
        f"PIT join vs Feast's DuckDB offline store: {files.size}",
        [
            "contender",
            "join s",
            "join CPU s",
            "peak RSS MiB",
            "time vs raw DuckDB",
            "RSS vs raw DuckDB",
            "rows",
            "matched",
        ],
    )
    section.notes.append(machine_load())
    with tempfile.TemporaryDirectory(prefix="fti-bench-feast-") as tmp:
        work = Path(tmp)
        results = {
            name: measure(fn, files.features, files.labels, work, plan.repeats)
            for name, fn in OURS.items()
        }
        python, why = feast_python()
        if python is None:
            section.notes.append(f"Feast could not be installed here, so it has no row: {why}")
        else:
            results[FEAST], versions = feast_join(python, files, work)
            section.notes.append(f"Feast's venv ran {versions}.")
    base = results[BASELINE]
    for name, m in results.items():
        section.add(
            name,
            m.join_s,
            m.cpu_s,
            m.peak_mib,
            m.join_s / base.join_s,
            m.peak_mib / base.peak_mib,
            m.rows,
            m.matched,
        )
    _agreement(results, section)
    section.notes += [
        f"Best of {plan.repeats} fresh process(es) for our contenders, one run of Feast; each "
        "timed around the join alone (Feast: get_historical_features + to_arrow, after building "
        "its repository and reading the labels into pandas). Peak RSS is the whole process's.",
        f"Feast runs in its own venv ({FEAST_VENV.relative_to(ROOT)}/, {FEAST_REQUIREMENT}, "
        "with the DuckDB release it resolves to, which may be newer than the project's).",
    ]
    return [section]


def _agreement(results: dict[str, Measure], section: Section) -> None:
    base = results[BASELINE]
    differing = [
        f"{name}: {m.matched:,} matched, f0 sum {m.f0_sum:.6f}"
        for name, m in results.items()
        if m.matched != base.matched
        or not math.isclose(m.f0_sum, base.f0_sum, rel_tol=1e-9, abs_tol=1e-6)
    ]
    section.notes.append(
        f"Matched label rows: {base.matched:,} of {base.rows:,} by raw DuckDB (f0 sum "
        f"{base.f0_sum:.6f}); "
        + ("every contender agrees." if not differing else "differing: " + "; ".join(differing))
    )


if __name__ == "__main__":
    cli_main(run, __doc__, PLANS)
