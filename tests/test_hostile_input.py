"""Hostile input through the CLI and the HTTP service: clear errors, and the stores unchanged.

One small real data layer (module scope): a DuckLake offline store holding every online feature
group, the SQLite online store with their latest rows, and a registry with a real LightGBM
``fraud_model`` version 1 as champion. Each test sends SQL-injection strings, names with quotes,
backticks and semicolons, 1 MB keys, control characters, unicode, huge numbers and NaN, then
compares a fingerprint of every store (lake snapshot id and row counts, a dump of each SQLite
file, the model files) with the one taken before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from fti_assets.cli import app as cli
from fti_assets.lib.core.settings import Settings
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.offline import (
    Replacement,
    connection,
    current_snapshot,
    list_tables,
    quote_ident,
    replace_partitions,
)
from fti_assets.lib.streaming.event_log import open_event_log
from fti_assets.service.app import create_app
from fti_assets.specs.feature_groups import FEATURE_GROUPS
from tests.unit.test_serving import group_tables, register, train_small_model, write_online_store

GROUP = "card_profile_features"
TABLE = FEATURE_GROUPS[GROUP].table  # its offline table
CARD = "c1"
ADMIN_TOKEN = "hostile-suite-token"
MB = 1 << 20

# Values a user may type or send: each must be treated as data, never as SQL or markup.
INJECTIONS = [
    f"x'; drop table {TABLE}; --",
    f'x"; drop table "fg__{GROUP}_v1"; --',
    "x`; drop table `fti_online_current`; --",
    "c1' or '1'='1",
    'c1" or "1"="1',
    "1; delete from models",
    "[/red][bold]markup[/]",
    "é🙂中文",
    "%s %d {0} ?",
    "../../../escaped",
]
CONTROL = ["\x00", "a\nb", "a\rb", "\x1b[31mred\x1b[0m", "\t", "\u202e"]
HOSTILE = [*INJECTIONS, *CONTROL, "k" * MB, "9" * 400, "NaN", "-1e400", ""]


def write_lake(data_dir: Path, tables: dict[str, pl.DataFrame]) -> None:
    with connection(Settings.for_data_dir(data_dir).lake) as con:
        replace_partitions(
            con,
            [Replacement(FEATURE_GROUPS[n].table, frame, "true") for n, frame in tables.items()],
            message="hostile-input fixture",
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    tables = group_tables()
    write_online_store(data_dir / "online.sqlite", tables).close()
    write_lake(data_dir, tables)
    settings = Settings.for_data_dir(data_dir)
    registry = ModelRegistry(settings.registry_path, settings.layout.models_dir)
    register(registry, train_small_model(tmp_path_factory.mktemp("hostile-model"), seed=5))
    registry.promote("fraud_model", 1)
    return data_dir


@pytest.fixture
def env(world: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FTI_LAKE_CATALOG", "FTI_LAKE_DATA_PATH", "FTI_ONLINE_URL", "FTI_EVENT_LOG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FTI_DATA_DIR", str(world))
    monkeypatch.setenv("FTI_ONLINE_PATH", str(world / "online.sqlite"))
    monkeypatch.setenv("FTI_REGISTRY_PATH", str(world / "registry.sqlite"))
    return world


def _sqlite_dump(path: Path) -> str:
    if not path.exists():
        return ""
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


def fingerprint(data_dir: Path, *, event_log: bool = True) -> dict[str, Any]:
    """Everything a hostile request could change: the lake (its SQLite catalog, which records
    every snapshot, and its data files), the online store, the registry, the model files."""
    settings = Settings.for_data_dir(data_dir)
    lake_dir = data_dir / "lake"
    state = {
        "lake_catalog": _sqlite_dump(Path(settings.lake.target)),
        "files": {
            str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in (settings.layout.models_dir, lake_dir / "data")
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        },
        "online": _sqlite_dump(settings.online_path),
        "registry": _sqlite_dump(settings.registry_path),
    }
    if event_log:
        state["events"] = _sqlite_dump(data_dir / "events.sqlite")
    return state


def lake_rows(data_dir: Path) -> dict[str, Any]:
    with connection(Settings.for_data_dir(data_dir).lake, read_only=True) as con:
        return {
            "snapshot": current_snapshot(con),
            "rows": {
                t: con.execute(f"select count(*) from {quote_ident(t)}").fetchone()[0]
                for t in list_tables(con)
            },
        }


@pytest.fixture
def unchanged(env: Path) -> Iterator[None]:
    before = fingerprint(env)
    yield
    assert fingerprint(env) == before


def test_the_fingerprint_sees_a_lake_write(tmp_path: Path) -> None:
    """The lake part of the fingerprint is not blind: a commit changes it."""
    data_dir = tmp_path / "data"
    write_lake(data_dir, group_tables())
    before, rows = fingerprint(data_dir), lake_rows(data_dir)
    assert rows["rows"][TABLE] == 4
    assert set(rows["rows"]) >= {spec.table for spec in FEATURE_GROUPS.values()}
    with connection(Settings.for_data_dir(data_dir).lake) as con:
        con.execute(f"delete from {quote_ident(TABLE)} where card_id = 'c1'")
    assert lake_rows(data_dir)["rows"][TABLE] == 3
    assert fingerprint(data_dir)["lake_catalog"] != before["lake_catalog"]


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    # Refusals are messages and exit codes, never a crash with a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"fti {args!r:.200} crashed: {result.exception!r:.500}"
    )
    assert "Traceback" not in result.output
    return result


def _squashed(text: str) -> str:
    return re.sub(r"\s+", "", text)  # rich wraps long messages at any space


def shown(value: str) -> str:
    """The start of ``value`` as the CLI prints it (non-printable characters escaped)."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode() for c in value[:40]
    )


def assert_refused(result: Result, value: str, code: int | None = None) -> None:
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert _squashed(shown(value)) in _squashed(result.output), result.output[:2000]
    assert "\x1b[31mred" not in result.output  # the user's terminal is not restyled
    assert len(result.output) < 20_000  # a 1 MB value is cut, not echoed whole


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def test_cli_sanity(unchanged: None) -> None:
    """The fixture answers the honest questions the hostile ones imitate."""
    found = run("features", "get", GROUP, f"card_id={CARD}")
    assert found.exit_code == 0, found.output
    assert '"found": true' in found.output
    history = run("features", "history", GROUP, f"card_id={CARD}", "--json")
    assert history.exit_code == 0, history.output
    assert run("models", "show", "fraud_model", "1").exit_code == 0
    assert run("sql", f"select count(*) as n from {TABLE}", "--json").exit_code == 0


AS_OF = "--as-of=2026-09-20T00:00:00+00:00"


# Positional values go after "--", option values after "=": a value starting with "-" is then
# still a value, as a careful user would pass it.
@pytest.mark.parametrize("value", HOSTILE)
def test_cli_hostile_group_names(unchanged: None, value: str) -> None:
    for args in (
        ("features", "get", "--", value, f"card_id={CARD}"),
        ("features", "get", AS_OF, "--", value, f"card_id={CARD}"),
        ("features", "history", "--", value, f"card_id={CARD}"),
    ):
        assert_refused(run(*args), value, code=2)


@pytest.mark.parametrize("value", [v for v in HOSTILE if "\x00" not in v])
def test_cli_hostile_key_values_are_data(unchanged: None, value: str) -> None:
    """A key value is looked up as it is: no row has it, so nothing is found (exit 1)."""
    for args in (
        ("features", "get", GROUP, f"card_id={value}"),
        ("features", "get", AS_OF, GROUP, f"card_id={value}"),
        ("features", "history", "--json", GROUP, f"card_id={value}"),
    ):
        result = run(*args)
        assert result.exit_code == 1, result.output[:2000]


def test_cli_nul_in_a_key_is_refused_by_the_offline_reads(unchanged: None) -> None:
    # The online store finds nothing; the offline store (DuckLake) cannot compare such a key.
    assert run("features", "get", GROUP, "card_id=c1\x00").exit_code == 1
    for args in (
        ("features", "get", AS_OF, GROUP, "card_id=c1\x00"),
        ("features", "history", GROUP, "card_id=c1\x00"),
    ):
        result = run(*args)
        assert_refused(result, "c1\x00", code=2)
        assert "NUL" in result.output


@pytest.mark.parametrize("value", [v for v in HOSTILE if "=" not in v])
def test_cli_hostile_key_names(unchanged: None, value: str) -> None:
    for args in (
        ("features", "get", "--", GROUP, f"{value}={CARD}"),
        ("features", "get", "--snapshot=1", "--", GROUP, f"{value}={CARD}"),
        ("features", "history", "--", GROUP, f"{value}={CARD}"),
        ("features", "get", "--", GROUP, value),  # not KEY=VALUE at all
    ):
        result = run(*args)
        assert result.exit_code == 2, result.output[:2000]
        assert "card_id" in result.output or "KEY=VALUE" in result.output


@pytest.mark.parametrize("value", HOSTILE)
def test_cli_hostile_times_and_numbers(unchanged: None, value: str) -> None:
    for option in ("--as-of", "--snapshot-time", "--snapshot"):
        result = run("features", "get", f"{option}={value}", GROUP, f"card_id={CARD}")
        assert result.exit_code == 2, result.output[:2000]
    assert run("models", "show", "--", "fraud_model", value).exit_code == 2


@pytest.mark.parametrize("number", [str(2**63), str(10**30), "-1", "0"])
def test_cli_out_of_range_numbers_name_the_value(unchanged: None, number: str) -> None:
    for args in (
        ("models", "show", "--", "fraud_model", number),
        ("models", "promote", "--", "fraud_model", number),
        ("feature-views", "show", "--", "fraud_features", number),
    ):
        assert_refused(run(*args), number, code=2)
    if number != "0":
        result = run("features", "get", f"--snapshot={number}", GROUP, f"card_id={CARD}")
        assert_refused(result, number, code=2)


def _valid_name(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", value) is not None


@pytest.mark.parametrize("value", HOSTILE)
def test_cli_hostile_model_names_and_aliases(unchanged: None, value: str) -> None:
    assert_refused(run("models", "show", "--", value, "1"), value)
    assert_refused(run("models", "promote", "--", value, "1"), value)
    assert_refused(run("models", "rollback", "--", value), value)
    assert_refused(run("models", "rollback", f"--alias={value}", "fraud_model"), value)
    assert_refused(run("feature-views", "show", "--", value, "1"), value)
    assert_refused(run("feature-views", "show", "--", value), value)
    if not _valid_name(value):  # "NaN" is a fine name: no dataset of it; promoting to it works
        assert_refused(run("models", "promote", f"--alias={value}", "fraud_model", "1"), value)
        assert_refused(run("datasets", "list", f"--name={value}"), value)
    listed = run("models", "list", "--json", "--", value)
    assert listed.exit_code == 0 and listed.output.strip() == "[]", listed.output[:2000]


@pytest.mark.parametrize(
    "statement",
    [
        f"drop table {TABLE}",
        f"select 1; drop table {TABLE}",
        f"delete from {TABLE}",
        f"insert into {TABLE} select * from {TABLE}",
        f"update {TABLE} set card_id = 'x'",
        "create table pwned as select 1 as x",
        f"select * from {TABLE}; drop table {TABLE}; --",
    ],
)
def test_cli_sql_is_read_only(unchanged: None, statement: str) -> None:
    result = run("sql", statement)
    assert result.exit_code == 2, result.output
    assert "read-only" in result.output.lower() or "read only" in result.output.lower()


# ----------------------------------------------------------------------------------------------
# HTTP service
# ----------------------------------------------------------------------------------------------

BODY = {
    "transaction_id": "tx-1",
    "card_id": CARD,
    "merchant_id": "m1",
    "amount": 250.0,
    "category": "electronics",
    "channel": "online",
    "transaction_time": "2026-09-12T10:30:00Z",
    "lat": 40.6,
    "lon": -73.8,
}


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "fastapi-routes"])
def client(request: pytest.FixtureRequest, world: Path) -> Iterator[TestClient]:
    settings = dataclasses.replace(Settings.for_data_dir(world), admin_token=ADMIN_TOKEN)
    app = create_app(settings, alias_check_interval_s=3600, fast_path=request.param)
    with TestClient(app) as test_client:
        assert test_client.post("/predict", json=BODY).status_code == 200
        yield test_client


@pytest.fixture
def untouched(client: TestClient, world: Path) -> Iterator[None]:
    """The stores, the event log included, are unchanged by refused requests."""
    before = fingerprint(world)
    yield
    assert fingerprint(world) == before


def refused_fields(response: Any) -> set[str]:
    assert response.status_code == 422, response.text[:2000]
    body = response.json()
    assert "Traceback" not in response.text
    return {error["field"] for error in body["detail"]}


@pytest.mark.parametrize("field", ["transaction_id", "card_id", "merchant_id"])
@pytest.mark.parametrize("value", [*CONTROL, "k" * 129, "k" * 500_000, ""])
def test_http_refuses_bad_ids_naming_the_field(
    client: TestClient, untouched: None, field: str, value: str
) -> None:
    assert refused_fields(client.post("/predict", json={**BODY, field: value})) == {field}
    batch = {"transactions": [BODY, BODY, {**BODY, field: value}]}
    assert refused_fields(client.post("/predict/batch", json=batch)) == {f"transactions[2].{field}"}


def test_http_one_megabyte_key_is_too_large(client: TestClient, untouched: None) -> None:
    response = client.post("/predict", json={**BODY, "card_id": "k" * MB})
    assert response.status_code == 413, response.text[:500]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "NaN"),
        ("amount", 10**400),
        ("amount", -1),
        ("lat", 10**30),
        ("lon", "1e400"),
        ("category", f"x'; drop table {GROUP}; --"),
        ("channel", "online\x00"),
        ("transaction_time", "2026-09-12T10:30:00Z'; drop table x; --"),
        ("transaction_time", 1e300),
    ],
)
def test_http_refuses_bad_values_naming_the_field(
    client: TestClient, untouched: None, field: str, value: Any
) -> None:
    assert refused_fields(client.post("/predict", json={**BODY, field: value})) == {field}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_http_refuses_non_finite_json_numbers(
    client: TestClient, untouched: None, literal: str
) -> None:
    raw = (
        orjson.dumps({**BODY, "amount": 0.0})
        .decode()
        .replace('"amount":0.0', f'"amount":{literal}')
    )
    assert literal in raw
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "amount" in response.text or "body" in response.text


@pytest.mark.parametrize("name", [*INJECTIONS, "\x00", "k" * 10_000])
def test_http_refuses_hostile_field_names(client: TestClient, untouched: None, name: str) -> None:
    fields = refused_fields(client.post("/predict", json={**BODY, name: 1}))
    assert fields == {name}


@pytest.mark.parametrize("value", INJECTIONS)
def test_http_injection_strings_in_ids_are_data(
    client: TestClient, world: Path, value: str
) -> None:
    """An id that merely looks like SQL is an unknown entity: scored on fallback features and
    logged verbatim; no store but the event log (one more event) changes."""
    before = fingerprint(world, event_log=False)
    with open_event_log(Settings.for_data_dir(world).event_log_url) as log:
        events_before = log.end_offset()
        response = client.post("/predict", json={**BODY, "card_id": value, "merchant_id": value})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["fallback"] is True
        assert body["unknown_entities"]
        assert log.end_offset() == events_before + 1
    assert fingerprint(world, event_log=False) == before


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {v}" for v in INJECTIONS if v.isascii()]
    + ["Bearer " + "k" * 100_000, f"Bearer {ADMIN_TOKEN}x", f"Bearer {ADMIN_TOKEN[:-1]}"],
)
def test_http_admin_refuses_hostile_tokens(
    client: TestClient, untouched: None, authorization: str
) -> None:
    response = client.post("/admin/reload", headers={"Authorization": authorization})
    assert response.status_code in (400, 401), response.text[:500]
    assert ADMIN_TOKEN not in response.text


@pytest.mark.parametrize(
    "statement",
    [
        "copy (select 42 as x) to '{out}'",
        "attach '{out}' as other",
        "select * from read_csv('/etc/passwd')",
        "set enable_external_access = true",
        "install httpfs",
    ],
)
def test_cli_sql_cannot_reach_the_file_system(
    unchanged: None, statement: str, tmp_path: Path
) -> None:
    out = tmp_path / "exfiltrated.csv"
    result = run("sql", statement.format(out=out))
    assert result.exit_code == 2, result.output
    assert not out.exists()
    assert "Traceback" not in result.output
