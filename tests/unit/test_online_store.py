"""Online store: latest row per entity, typed lookups, versions, atomic batches.

Every test that takes ``online_url`` (or ``store``) runs against both backends: a SQLite file
and a real redis-server (skipped, saying why, when redis-server is not installed).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import redis

from fti_assets.lib.core.store_urls import sqlite_path, sqlite_url
from fti_assets.lib.store.group_spec import FeatureGroupSpec, FeatureSpec
from fti_assets.lib.store.online import (
    NotFound,
    OnlineRow,
    OnlineStore,
    OnlineStoreBackend,
    OnlineStoreLayoutError,
    OnlineStoreUnavailableError,
    StreamCommit,
    WriteResult,
    codec,
    open_online_store,
)
from fti_assets.lib.store.online.codec import pack_rows, row_packer, schema_for_row

T0 = datetime(2026, 9, 1, tzinfo=UTC)
SPAWN = mp.get_context("spawn")

CARD = FeatureGroupSpec(
    name="card_profile",
    version=1,
    entity_keys=("card_id",),
    features=(
        FeatureSpec("amount_mean", "float64", "mean amount"),
        FeatureSpec("tx_count", "int64", "transactions"),
        FeatureSpec("home_country", "string", "country"),
        FeatureSpec("is_premium", "bool", "premium card"),
        FeatureSpec("last_tx_at", "timestamp_utc", "previous transaction"),
    ),
    description="card features",
    online=True,
)

CARD_MERCHANT = FeatureGroupSpec(
    name="card_merchant",
    version=1,
    entity_keys=("card_id", "merchant_id"),
    features=(FeatureSpec("tx_count", "int64", "transactions of the card at the merchant"),),
    description="pair features",
    online=True,
)


def card_frame(rows: list[tuple[int, datetime, float]]) -> pl.DataFrame:
    """Frame for CARD from (card_id, event_time, amount_mean); other features derive from them."""
    return pl.DataFrame(
        {
            "card_id": [r[0] for r in rows],
            "event_time": [r[1] for r in rows],
            "amount_mean": [r[2] for r in rows],
            "tx_count": [int(r[2]) for r in rows],
            "home_country": [f"C{r[0]}" for r in rows],
            "is_premium": [r[0] % 2 == 0 for r in rows],
            "last_tx_at": [r[1] - timedelta(minutes=5) for r in rows],
        },
        schema_overrides={
            "event_time": pl.Datetime("us", "UTC"),
            "last_tx_at": pl.Datetime("us", "UTC"),
        },
    )


@pytest.fixture
def store(online_url: str) -> Iterator[OnlineStoreBackend]:
    with open_online_store(online_url) as opened:
        yield opened


def amounts(rows: list[OnlineRow | NotFound]) -> list[float | None]:
    return [r.features["amount_mean"] if isinstance(r, OnlineRow) else None for r in rows]


def test_latest_row_per_entity_wins_within_a_batch(store: OnlineStoreBackend) -> None:
    frame = card_frame(
        [
            (1, T0 + timedelta(hours=2), 12.0),
            (1, T0, 10.0),
            (2, T0, 20.0),
            (1, T0 + timedelta(hours=1), 11.0),
        ]
    )

    result = store.write_group(CARD, frame)

    assert result == WriteResult(
        "card_profile", 1, rows_in=4, entities_written=2, entities_skipped_older=0
    )
    row = store.get("card_profile", 1)
    assert row.event_time == T0 + timedelta(hours=2)
    assert row.features["amount_mean"] == 12.0
    assert store.get("card_profile", 2).features["amount_mean"] == 20.0


def test_older_incoming_rows_never_overwrite_newer_stored_ones(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(1, T0 + timedelta(days=1), 1.0), (2, T0, 2.0)]))

    late = card_frame([(1, T0, 100.0), (2, T0 + timedelta(days=2), 200.0)])
    result = store.write_group(CARD, late)

    assert (result.entities_written, result.entities_skipped_older) == (1, 1)
    assert amounts(store.get_many("card_profile", [1, 2])) == [1.0, 200.0]
    assert store.get("card_profile", 1).event_time == T0 + timedelta(days=1)


def test_values_come_back_with_python_types(store: OnlineStoreBackend) -> None:
    frame = card_frame([(4, T0, 7.5)]).vstack(
        pl.DataFrame(
            {
                "card_id": [5],
                "event_time": [T0],
                "amount_mean": [None],
                "tx_count": [None],
                "home_country": [None],
                "is_premium": [None],
                "last_tx_at": [None],
            },
            schema=card_frame([(4, T0, 7.5)]).schema,
        )
    )
    store.write_group(CARD, frame)

    row = store.get("card_profile", 4)
    assert row == OnlineRow(
        group="card_profile",
        version=1,
        keys={"card_id": 4},
        event_time=T0,
        features={
            "amount_mean": 7.5,
            "tx_count": 7,
            "home_country": "C4",
            "is_premium": True,
            "last_tx_at": T0 - timedelta(minutes=5),
        },
    )
    assert type(row.features["amount_mean"]) is float
    assert type(row.features["tx_count"]) is int
    assert type(row.features["is_premium"]) is bool
    assert row.event_time.tzinfo is not None and row.event_time.utcoffset() == timedelta(0)
    assert row.features["last_tx_at"].utcoffset() == timedelta(0)
    assert store.get("card_profile", 5).features == dict.fromkeys(CARD.feature_names)
    assert store.get_many("card_profile", [4]) == [row]


def test_timestamps_round_trip_to_the_microsecond(store: OnlineStoreBackend) -> None:
    rng = random.Random(7)
    span_us = int(
        (datetime(2100, 1, 1, tzinfo=UTC) - datetime(1901, 1, 1, tzinfo=UTC))
        / timedelta(microseconds=1)
    )
    moments = [
        datetime(1901, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(span_us))
        for _ in range(3000)
    ]
    frame = card_frame([(i, m, 1.0) for i, m in enumerate(moments)])

    store.write_group(CARD, frame)

    rows = store.get_many("card_profile", list(range(len(moments))))
    assert [r.event_time for r in rows] == moments
    assert [r.features["last_tx_at"] for r in rows] == [m - timedelta(minutes=5) for m in moments]


def test_event_time_in_another_timezone_is_stored_as_utc(store: OnlineStoreBackend) -> None:
    frame = card_frame([(1, T0, 1.0)]).with_columns(
        pl.col("event_time").dt.convert_time_zone("Europe/Berlin")
    )

    store.write_group(CARD, frame)

    assert store.get("card_profile", 1).event_time == T0


def test_get_many_mixes_rows_and_not_found_in_request_order(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(i, T0, float(i)) for i in range(0, 2000, 2)]))

    result = store.get_many("card_profile", [6, 7, 2, 6, 999_999])

    assert amounts(result) == [6.0, None, 2.0, 6.0, None]
    assert result[1] == NotFound("card_profile", {"card_id": 7})
    assert not result[1] and bool(result[0])
    assert store.get_many("card_profile", []) == []
    # More keys than one statement takes: still every answer, in order.
    wanted = list(range(1999, -1, -1))
    assert amounts(store.get_many("card_profile", wanted)) == [
        float(k) if k % 2 == 0 else None for k in wanted
    ]


def test_unknown_entity_is_not_found(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(1, T0, 1.0)]))

    assert store.get("card_profile", 2) == NotFound("card_profile", {"card_id": 2})
    assert store.get("card_profile", {"card_id": 1}).keys == {"card_id": 1}


def test_multi_column_keys(store: OnlineStoreBackend) -> None:
    frame = pl.DataFrame(
        {
            "card_id": [1, 1, 2, 1],
            "merchant_id": ["m1", "m2", "m1", "m1"],
            "event_time": [T0, T0, T0, T0 + timedelta(hours=1)],
            "tx_count": [1, 2, 3, 4],
        }
    )

    result = store.write_group(CARD_MERCHANT, frame)

    assert result.entities_written == 3
    row = store.get("card_merchant", {"merchant_id": "m1", "card_id": 1})
    assert row.keys == {"card_id": 1, "merchant_id": "m1"}
    assert row.features == {"tx_count": 4}
    many = store.get_many(
        "card_merchant",
        [
            {"card_id": 2, "merchant_id": "m1"},
            {"card_id": 2, "merchant_id": "m2"},
            {"card_id": 1, "merchant_id": "m2"},
        ],
    )
    assert [r.features["tx_count"] if r else None for r in many] == [3, None, 2]
    assert many[1] == NotFound("card_merchant", {"card_id": 2, "merchant_id": "m2"})
    with pytest.raises(ValueError, match="card_id"):
        store.get("card_merchant", 1)
    with pytest.raises(ValueError, match="merchant_id"):
        store.get("card_merchant", {"card_id": 1})


def test_key_of_the_wrong_type_is_refused(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(1, T0, 1.0)]))

    with pytest.raises(TypeError, match="'1'"):
        store.get("card_profile", "1")
    with pytest.raises(TypeError, match="1.5"):
        store.get_many("card_profile", [1, 1.5])


def test_unknown_group_raises_key_error_naming_known_groups(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(1, T0, 1.0)]))

    with pytest.raises(KeyError, match=r"'card_profil'.*\['card_profile'\]"):
        store.get("card_profil", 1)
    with pytest.raises(KeyError, match="nope"):
        store.get_many("nope", [1])
    with pytest.raises(KeyError, match="nope"):
        store.latest("nope")


def test_version_bump_serves_the_new_version_and_keeps_the_old(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(1, T0, 1.0), (2, T0, 2.0)]))
    v2 = FeatureGroupSpec(
        name="card_profile",
        version=2,
        entity_keys=("card_id",),
        features=(FeatureSpec("amount_max", "float64", "max amount"),),
        description="v2",
        online=True,
    )

    store.write_group(v2, pl.DataFrame({"card_id": [1], "event_time": [T0], "amount_max": [50.0]}))

    row = store.get("card_profile", 1)
    assert (row.version, row.features) == (2, {"amount_max": 50.0})
    assert isinstance(store.get("card_profile", 2), NotFound)
    (listed,) = store.groups()
    assert (listed["version"], listed["versions"], listed["row_count"]) == (2, [1, 2], 1)
    assert store.latest("card_profile", version=1)["card_id"].to_list() == [1, 2]
    with pytest.raises(ValueError, match="version 1.*version 2"):
        store.write_group(CARD, card_frame([(3, T0, 3.0)]))

    store.replace_group(CARD, card_frame([(3, T0, 3.0)]))

    assert store.get("card_profile", 3).version == 1
    assert isinstance(store.get("card_profile", 1), NotFound)


def test_breaking_change_without_version_bump_is_refused(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(1, T0, 1.0)]))
    changed = FeatureGroupSpec(
        name="card_profile",
        version=1,
        entity_keys=("card_id",),
        features=(*CARD.features[:-1], FeatureSpec("last_tx_at", "int64", "now an int")),
        description="changed",
    )

    with pytest.raises(ValueError, match="bump the version"):
        store.write_group(
            changed, card_frame([(1, T0, 1.0)]).with_columns(pl.lit(1).alias("last_tx_at"))
        )
    assert store.get("card_profile", 1).features["last_tx_at"] == T0 - timedelta(minutes=5)


def test_replace_group_rebuilds_from_the_frame_alone(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(1, T0 + timedelta(days=9), 1.0), (2, T0, 2.0)]))

    result = store.replace_group(CARD, card_frame([(1, T0, 10.0)]))

    assert result.entities_written == 1
    assert amounts(store.get_many("card_profile", [1, 2])) == [10.0, None]


def test_write_rejects_bad_frames(store: OnlineStoreBackend) -> None:
    good = card_frame([(1, T0, 1.0)])

    with pytest.raises(ValueError, match="lacks columns.*tx_count"):
        store.write_group(CARD, good.drop("tx_count"))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.write_group(CARD, good.with_columns(pl.col("event_time").dt.replace_time_zone(None)))
    with pytest.raises(ValueError, match="must not be null"):
        store.write_group(CARD, good.with_columns(pl.lit(None, pl.Int64).alias("card_id")))
    with pytest.raises(ValueError, match="does not convert"):
        store.write_group(CARD, good.with_columns(pl.lit("x").alias("amount_mean")))
    with pytest.raises(KeyError, match="card_profile"):
        store.get("card_profile", 1)


def test_a_missing_sqlite_file_is_unavailable_to_a_reader(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "online.sqlite")

    with pytest.raises(OnlineStoreUnavailableError, match="online.sqlite does not exist"):
        open_online_store(url, readonly=True)


def test_an_unreachable_redis_is_unavailable() -> None:
    with pytest.raises(OnlineStoreUnavailableError, match="127.0.0.1:1"):
        open_online_store("redis://127.0.0.1:1/0")


def test_online_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="FTI_ONLINE_URL='postgres://x'.*sqlite:///.*redis://"):
        open_online_store("postgres://x")
    with pytest.raises(ValueError, match="absolute path"):
        open_online_store("sqlite://relative/online.sqlite")


def test_readonly_store_cannot_write(online_url: str) -> None:
    with open_online_store(online_url) as writer:
        writer.write_group(CARD, card_frame([(1, T0, 1.0)]))

    with open_online_store(online_url, readonly=True) as reader:
        with pytest.raises(PermissionError, match="read-only"):
            reader.write_group(CARD, card_frame([(1, T0 + timedelta(days=1), 9.0)]))
        with pytest.raises(PermissionError, match="read-only"):
            reader.replace_group(CARD, card_frame([(2, T0, 9.0)]))
        assert amounts(reader.get_many("card_profile", [1, 2])) == [1.0, None]


def test_groups_describe_what_is_stored(store: OnlineStoreBackend) -> None:
    before = datetime.now(UTC)
    store.write_group(CARD, card_frame([(1, T0, 1.0), (2, T0 + timedelta(hours=3), 2.0)]))
    store.write_group(
        CARD_MERCHANT,
        pl.DataFrame({"card_id": [1], "merchant_id": ["m"], "event_time": [T0], "tx_count": [1]}),
    )

    listed = {g["name"]: g for g in store.groups()}

    assert sorted(listed) == ["card_merchant", "card_profile"]
    card = listed["card_profile"]
    assert card["version"] == 1
    assert card["entity_keys"] == ["card_id"]
    assert card["features"] == {f.name: f.dtype for f in CARD.features}
    assert card["row_count"] == 2
    assert card["max_event_time"] == T0 + timedelta(hours=3)
    assert before - timedelta(seconds=1) <= card["last_write_at"] <= datetime.now(UTC)
    assert listed["card_merchant"]["entity_keys"] == ["card_id", "merchant_id"]


def test_latest_equals_the_newest_offline_rows(store: OnlineStoreBackend) -> None:
    offline = card_frame([(i % 50, T0 + timedelta(minutes=i), float(i)) for i in range(200)])
    store.write_group(CARD, offline)

    online = store.latest("card_profile")

    expected = offline.sort("event_time").group_by("card_id").last().sort("card_id")
    assert online.schema == offline.schema
    assert online.sort("card_id").equals(expected)


def test_a_reader_on_another_connection_sees_a_version_bump(online_url: str) -> None:
    with (
        open_online_store(online_url) as writer,
        open_online_store(online_url, readonly=True) as reader,
    ):
        writer.write_group(CARD, card_frame([(1, T0, 1.0)]))
        assert reader.get("card_profile", 1).version == 1
        v2 = FeatureGroupSpec("card_profile", 2, ("card_id",), CARD.features[:1], "v2")

        writer.write_group(v2, card_frame([(1, T0, 2.0)]).select(v2.columns))

        assert reader.get("card_profile", 1) == OnlineRow(
            "card_profile", 2, {"card_id": 1}, T0, {"amount_mean": 2.0}
        )


def test_one_store_serves_many_threads(store: OnlineStoreBackend) -> None:
    store.write_group(CARD, card_frame([(i, T0, float(i)) for i in range(1000)]))
    errors: list[str] = []

    def lookups(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            keys = [rng.randrange(1200) for _ in range(5)]
            got = amounts(store.get_many("card_profile", keys))
            if got != [float(k) if k < 1000 else None for k in keys]:
                errors.append(f"keys {keys} gave {got}")
            key = rng.randrange(1000)
            if store.get("card_profile", key).features["amount_mean"] != float(key):
                errors.append(f"key {key}")

    threads = [threading.Thread(target=lookups, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []


def test_store_satisfies_the_backend_interface(store: OnlineStoreBackend) -> None:
    assert isinstance(store, OnlineStoreBackend)


# -- other processes ---------------------------------------------------------------------------


def read_in_child(url: str) -> tuple[list[Any], list[Any], list[dict[str, Any]]]:
    with open_online_store(url, readonly=True) as reader:
        return (
            reader.get_many("card_profile", [1, 2, 3]),
            [reader.get("card_merchant", {"card_id": 1, "merchant_id": "m"})],
            reader.groups(),
        )


def test_store_reopened_in_another_process_reads_the_same_rows(online_url: str) -> None:
    with open_online_store(online_url) as writer:
        writer.write_group(CARD, card_frame([(1, T0, 1.0), (2, T0, 2.0)]))
        writer.write_group(
            CARD_MERCHANT,
            pl.DataFrame(
                {"card_id": [1], "merchant_id": ["m"], "event_time": [T0], "tx_count": [5]}
            ),
        )
        expected = (
            writer.get_many("card_profile", [1, 2, 3]),
            [writer.get("card_merchant", {"card_id": 1, "merchant_id": "m"})],
            writer.groups(),
        )

    with ProcessPoolExecutor(max_workers=1, mp_context=SPAWN) as pool:
        got = pool.submit(read_in_child, online_url).result(timeout=120)

    assert got == expected
    assert isinstance(got[0][2], NotFound) and got[1][0].features == {"tx_count": 5}


ATOMIC_ENTITIES = 200_000
# Spread over the whole key range: rows are written in key order, so a torn batch would show
# the first probes updated and the last ones not.
PROBES = [0, *range(1, ATOMIC_ENTITIES, ATOMIC_ENTITIES // 64), ATOMIC_ENTITIES - 1]


def atomic_frame(tag: str, event_time: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "card_id": pl.int_range(0, ATOMIC_ENTITIES, eager=True),
            "event_time": pl.repeat(event_time, ATOMIC_ENTITIES, eager=True),
            "tag": pl.repeat(tag, ATOMIC_ENTITIES, eager=True),
        }
    )


ATOMIC = FeatureGroupSpec(
    "atomic", 1, ("card_id",), (FeatureSpec("tag", "string", "A or B"),), "batch marker"
)


def watch_snapshots(url: str, ready: Any, stop: Any, reads: Any, out: Any) -> None:
    """Read the probes until told to stop; report the run-length sequence of snapshot states."""
    runs: list[list[Any]] = []
    with open_online_store(url, readonly=True) as reader:
        ready.set()
        while not stop.is_set():
            rows = reader.get_many("atomic", PROBES)
            tags = {r.features["tag"] if r else "missing" for r in rows}
            state = tags.pop() if len(tags) == 1 else "mixed:" + ",".join(sorted(tags))
            if runs and runs[-1][0] == state:
                runs[-1][1] += 1
            else:
                runs.append([state, 1])
            with reads.get_lock():
                reads.value += 1
    out.put(runs)


def wait_for_reads(reads: Any, at_least: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while reads.value < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"reader did {reads.value} reads, expected {at_least}")
        time.sleep(0.001)


def pause_inside_the_write(
    store: OnlineStoreBackend, monkeypatch: pytest.MonkeyPatch, pause: Callable[[], None]
) -> None:
    """Call ``pause`` once the write has sent part of its rows but before it is complete.

    SQLite: every row is in the WAL, the COMMIT not yet run. Redis: the first Lua upsert of the
    batch has been sent (queued inside MULTI by the atomic implementation, applied at once by
    one that is not), the others not yet.
    """
    if isinstance(store, OnlineStore):

        def commit_after_pause(writer: Any) -> None:
            pause()
            OnlineStore._commit(store, writer)

        monkeypatch.setattr(store, "_commit", commit_after_pause)
        return
    upsert, calls = store._upsert, []

    def upsert_then_pause(*args: Any, **kwargs: Any) -> Any:
        result = upsert(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            pause()
        return result

    monkeypatch.setattr(store, "_upsert", upsert_then_pause)


def test_a_reader_never_sees_a_partial_batch(
    online_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_online_store(online_url)
    store.write_group(ATOMIC, atomic_frame("A", T0))
    ready, stop, reads, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Value("i", 0), SPAWN.Queue()
    reader = SPAWN.Process(target=watch_snapshots, args=(online_url, ready, stop, reads, out))
    reader.start()
    reads_while_incomplete: list[int] = []

    def let_the_reader_look() -> None:
        start = reads.value
        wait_for_reads(reads, start + 5)
        reads_while_incomplete.append(reads.value - start)

    try:
        assert ready.wait(120), "reader process did not start"
        wait_for_reads(reads, 1)
        pause_inside_the_write(store, monkeypatch, let_the_reader_look)
        result = store.write_group(ATOMIC, atomic_frame("B", T0 + timedelta(hours=1)))
        wait_for_reads(reads, reads.value + 5)
    finally:
        stop.set()
        runs = out.get(timeout=60)
        reader.join(timeout=60)
        store.close()

    assert result.entities_written == ATOMIC_ENTITIES
    assert reads_while_incomplete and reads_while_incomplete[0] >= 5
    assert [state for state, _ in runs] == ["A", "B"], runs


# -- packed values: every dtype, awkward values, old layouts -----------------------------------

EVERY_DTYPE = FeatureGroupSpec(
    name="every_dtype",
    version=1,
    entity_keys=("merchant_id",),
    features=(
        FeatureSpec("score", "float64", "a float"),
        FeatureSpec("count", "int64", "an int"),
        FeatureSpec("label", "string", "a string"),
        FeatureSpec("flag", "bool", "a bool"),
        FeatureSpec("seen_at", "timestamp_utc", "a timestamp"),
        FeatureSpec("opened_on", "date", "a date"),
    ),
    description="one feature of each dtype",
)


def every_dtype_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "merchant_id": ["plain", "awkward", "nulls", "nan", "-inf"],
            "event_time": [T0, T0 + timedelta(seconds=1), T0, T0, T0],
            "score": [7.0, float("inf"), None, float("nan"), float("-inf")],
            "count": [-(2**63), 2**63 - 1, None, 0, 1],
            "label": ["x", 'quote " back \\ nl \n tab \t é 😀 \u2028 ,]', None, "inf", "-inf"],
            "flag": [True, False, None, True, False],
            "seen_at": [
                datetime(1, 1, 1, tzinfo=UTC),
                datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
                None,
                T0,
                T0,
            ],
            "opened_on": [date(1999, 12, 31), date(1, 1, 1), None, date(2026, 9, 1), None],
        },
        schema_overrides={
            "event_time": pl.Datetime("us", "UTC"),
            "seen_at": pl.Datetime("us", "UTC"),
        },
    )


def test_every_dtype_and_awkward_value_comes_back_as_written(store: OnlineStoreBackend) -> None:
    frame = every_dtype_frame()
    store.write_group(EVERY_DTYPE, frame)

    rows = store.get_many("every_dtype", ["plain", "awkward", "nulls", "nan", "-inf"])

    assert [r.features for r in rows] == [
        {
            "score": 7.0,
            "count": -(2**63),
            "label": "x",
            "flag": True,
            "seen_at": datetime(1, 1, 1, tzinfo=UTC),
            "opened_on": date(1999, 12, 31),
        },
        {
            "score": float("inf"),
            "count": 2**63 - 1,
            "label": 'quote " back \\ nl \n tab \t é 😀 \u2028 ,]',
            "flag": False,
            "seen_at": datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            "opened_on": date(1, 1, 1),
        },
        dict.fromkeys(EVERY_DTYPE.feature_names),
        # NaN comes back as a missing value; strings that spell infinities stay strings.
        {
            "score": None,
            "count": 0,
            "label": "inf",
            "flag": True,
            "seen_at": T0,
            "opened_on": date(2026, 9, 1),
        },
        {
            "score": float("-inf"),
            "count": 1,
            "label": "-inf",
            "flag": False,
            "seen_at": T0,
            "opened_on": None,
        },
    ]
    assert type(rows[0].features["score"]) is float
    assert rows[1].event_time == T0 + timedelta(seconds=1)
    assert store.get("every_dtype", "awkward") == rows[1]
    expected = frame.with_columns(
        pl.when(pl.col("score").is_nan()).then(None).otherwise(pl.col("score")).alias("score")
    )
    latest = store.latest("every_dtype")
    assert latest.schema == expected.schema
    assert latest.sort("merchant_id").equals(expected.sort("merchant_id"))


def test_string_keys_accept_scalars_and_dicts_in_one_call(store: OnlineStoreBackend) -> None:
    store.write_group(EVERY_DTYPE, every_dtype_frame())

    rows = store.get_many("every_dtype", ["nan", {"merchant_id": "plain"}, "missing", "nan"])

    assert [r.keys if r else None for r in rows] == [
        {"merchant_id": "nan"},
        {"merchant_id": "plain"},
        None,
        {"merchant_id": "nan"},
    ]
    assert rows[2] == NotFound("every_dtype", {"merchant_id": "missing"})
    with pytest.raises(TypeError, match="7"):
        store.get_many("every_dtype", ["plain", 7])


def test_a_key_named_like_the_packed_values_column_is_refused(store: OnlineStoreBackend) -> None:
    spec = FeatureGroupSpec(
        "clash", 1, ("fti_values",), (FeatureSpec("x", "int64", "x"),), "clashing key"
    )

    with pytest.raises(ValueError, match="fti_values"):
        store.write_group(spec, pl.DataFrame({"fti_values": [1], "event_time": [T0], "x": [1]}))


def mark_as_old_layout(url: str) -> None:
    """Make the store look written by the one-column-per-feature code: its specs had no layout."""
    if url.startswith("sqlite:"):
        con = sqlite3.connect(sqlite_path(url, "url"))
        with con:
            con.execute("UPDATE fti_online_group_versions SET spec = json_remove(spec, '$.layout')")
        con.close()
        return
    client = redis.Redis.from_url(url)
    for field, spec in client.hgetall("fti:online:specs").items():
        raw = json.loads(spec)
        del raw["layout"]
        client.hset("fti:online:specs", field, json.dumps(raw))
    client.incr("fti:online:generation")
    client.close()


def test_a_group_written_with_the_old_layout_is_refused_until_rewritten(online_url: str) -> None:
    with open_online_store(online_url) as writer:
        writer.write_group(CARD, card_frame([(1, T0, 1.0)]))
    mark_as_old_layout(online_url)

    with pytest.raises(OnlineStoreLayoutError, match="'card_profile' version 1.*layout 1.*rewrite"):
        open_online_store(online_url, readonly=True)
    with open_online_store(online_url) as writer:
        with pytest.raises(OnlineStoreLayoutError, match="layout 1"):
            writer.get("card_profile", 1)
        with pytest.raises(OnlineStoreLayoutError, match="layout 1"):
            writer.get_many("card_profile", [1])
        with pytest.raises(OnlineStoreLayoutError, match="layout 1"):
            writer.latest("card_profile")
        with pytest.raises(OnlineStoreLayoutError, match="replace_group"):
            writer.write_group(CARD, card_frame([(2, T0, 2.0)]))

        writer.replace_group(CARD, card_frame([(2, T0, 2.0)]))

        assert amounts(writer.get_many("card_profile", [1, 2])) == [None, 2.0]
    with open_online_store(online_url, readonly=True) as reader:
        assert reader.get("card_profile", 2).features["amount_mean"] == 2.0


def test_rows_of_a_stream_commit_read_back_as_the_same_rows_written_in_a_batch(
    store: OnlineStoreBackend,
) -> None:
    frame = every_dtype_frame()
    streamed = dataclasses.replace(EVERY_DTYPE, name="every_dtype_streamed")
    keys = frame["merchant_id"].to_list()
    store.write_group(EVERY_DTYPE, frame)

    store.commit_stream(StreamCommit("c", 0, 1, streamed, frame.to_dicts(), counters={"events": 1}))

    batch, stream = store.get_many("every_dtype", keys), store.get_many(streamed.name, keys)
    assert [(r.event_time, r.features) for r in stream] == [
        (r.event_time, r.features) for r in batch
    ]
    assert stream[1].features["score"] == float("inf")
    assert store.latest(streamed.name).equals(store.latest("every_dtype"))
    (meta,) = [g for g in store.groups() if g["name"] == streamed.name]
    assert (meta["row_count"], meta["max_event_time"]) == (5, T0 + timedelta(seconds=1))


MINUTE = timedelta(minutes=1)
PLAIN_DTYPES = FeatureGroupSpec(
    name="plain_dtypes",
    version=1,
    entity_keys=("merchant_id",),
    features=EVERY_DTYPE.features[:4],  # float64, int64, string, bool: packed on a fast path
    description="the dtypes a stream commit packs without the general checks",
    online=True,
)


def test_stream_rows_pack_alike_on_the_fast_path_and_through_the_general_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = {"merchant_id": "a", "event_time": T0, "score": 1.5, "count": 3, "label": "x"}
    row["flag"] = True
    cases = [
        [row],
        [{**row, "score": None, "count": None, "label": None, "flag": None}],
        [{**row, "score": 0.1 + 0.2, "label": 'quote " é 😀'}],
        [{**row, "score": float("inf")}],  # the marker
        [{**row, "score": float("nan")}],  # null
        [{**row, "score": 2}],  # an int for a float
        [{**row, "event_time": T0.astimezone(timezone(timedelta(hours=2)))}],
        # several rows of an entity: the newest wins, whatever the order
        [{**row, "merchant_id": "b"}, row, {**row, "score": 9.0, "event_time": T0 - MINUTE}],
        [{**row, "count": True}],  # refused: a bool is not an int64
        [{**row, "count": 2.0}],
        [{**row, "event_time": T0.replace(tzinfo=None)}],
        [{k: v for k, v in row.items() if k != "label"}],
    ]
    schema = schema_for_row(PLAIN_DTYPES, row)
    assert row_packer(schema) is not None

    def packed(rows: list[dict[str, Any]]) -> object:
        try:
            return pack_rows(schema, rows)
        except ValueError as exc:
            return str(exc)

    fast = [packed(rows) for rows in cases]
    monkeypatch.setattr(codec, "row_packer", lambda schema: None)
    general = [packed(rows) for rows in cases]

    assert fast == general
    assert sum(isinstance(result, str) for result in fast) == 4


def test_a_stream_commit_with_a_bad_value_writes_nothing(store: OnlineStoreBackend) -> None:
    row = every_dtype_frame().to_dicts()[0]

    with pytest.raises(ValueError, match="count='x' \\(str\\) is not a int64"):
        store.commit_stream(
            StreamCommit("c", 0, 1, EVERY_DTYPE, [{**row, "count": "x"}], counters={"events": 1})
        )
    assert store.stream_checkpoint("c") is None
    with pytest.raises(KeyError, match="every_dtype"):
        store.get("every_dtype", "plain")
