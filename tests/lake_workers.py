"""Processes that write and read one DuckLake at once (started by tests/test_postgres.py).

A module of their own, light to import: each runs in a freshly spawned interpreter.
"""

from __future__ import annotations

import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import polars as pl

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.store.offline import (
    Replacement,
    connect,
    replace_partitions,
    table_exists,
)

TABLE = "events"
ROWS_PER_BATCH = 50
WAIT_S = 60.0


def batch(writer: int, number: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "writer": [writer] * ROWS_PER_BATCH,
            "batch": [number] * ROWS_PER_BATCH,
            "row": list(range(ROWS_PER_BATCH)),
        }
    )


def write(
    lake: LakeConfig,
    writer: int,
    batches: int,
    lake_ready: Event,
    reader_saw_rows: Event,
    results: Queue,
) -> None:
    """Replace partition (writer, n) for n in 0..batches-1, one commit each; after the first,
    wait until the reader has seen rows, so it surely reads while both writers still write."""
    try:
        con = connect(lake)  # the first attachment creates the lake's catalog
        lake_ready.set()
        snapshots = []
        for number in range(batches):
            replacement = Replacement(
                TABLE, batch(writer, number), "writer = ? and batch = ?", (writer, number)
            )
            snapshots.append(replace_partitions(con, [replacement]))
            if number == 0 and not reader_saw_rows.wait(WAIT_S):
                raise TimeoutError(f"the reader saw no rows within {WAIT_S} s")
        con.close()
        results.put(("writer", writer, snapshots))
    except BaseException as exc:
        results.put(("error", writer, repr(exc)))


def read(
    lake: LakeConfig,
    lake_ready: Event,
    writers_done: Event,
    reader_saw_rows: Event,
    results: Queue,
) -> None:
    """Count the table's rows over and over on a read-only attachment until the writers are
    done, then once more; report every count."""
    try:
        if not lake_ready.wait(WAIT_S):
            raise TimeoutError(f"no writer created the lake within {WAIT_S} s")
        con = connect(lake, read_only=True)
        deadline = time.monotonic() + 2 * WAIT_S
        counts = []
        while True:
            done = writers_done.is_set()
            # Each statement is its own transaction: it reads the newest committed snapshot.
            if table_exists(con, TABLE):
                counts.append(con.execute(f"select count(*) from {TABLE}").fetchone()[0])
                if counts[-1] > 0:
                    reader_saw_rows.set()
            if done:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the writers did not finish")
            time.sleep(0.01)
        con.close()
        results.put(("reader", 0, counts))
    except BaseException as exc:
        results.put(("error", -1, repr(exc)))
