"""Online store: the latest row per entity of each online feature group, for low-latency lookups.

Two backends behind one interface (:class:`OnlineStoreBackend`), chosen by one setting,
``FTI_ONLINE_URL``:

- ``sqlite:///abs/path/online.sqlite`` (the default, ``<FTI_DATA_DIR>/online.sqlite``): an
  embedded SQLite file in WAL mode (:class:`OnlineStore`);
- ``redis://host:port/db``: a Redis server (:class:`~.redis_store.RedisOnlineStore`), for
  several machines.

Every caller opens the store with :func:`open_online_store` and catches
:class:`OnlineStoreError`.
"""

from __future__ import annotations

from fti_assets.lib.core.store_urls import REDIS, backend_of, sqlite_path
from fti_assets.lib.store.online.base import (
    DeadLetter,
    NotFound,
    OnlineRow,
    OnlineStoreBackend,
    OnlineStoreError,
    OnlineStoreLayoutError,
    OnlineStoreUnavailableError,
    StateEntry,
    StreamCheckpoint,
    StreamCommit,
    StreamFencedError,
    WriteResult,
)
from fti_assets.lib.store.online.sqlite_store import OnlineStore

ONLINE_URL_SETTING = "FTI_ONLINE_URL"

__all__ = [
    "DeadLetter",
    "NotFound",
    "OnlineRow",
    "OnlineStore",
    "OnlineStoreBackend",
    "OnlineStoreError",
    "OnlineStoreLayoutError",
    "OnlineStoreUnavailableError",
    "StateEntry",
    "StreamCheckpoint",
    "StreamCommit",
    "StreamFencedError",
    "WriteResult",
    "open_online_store",
]


def open_online_store(url: str, *, readonly: bool = False) -> OnlineStoreBackend:
    """Open the online store an ``FTI_ONLINE_URL`` names (the one factory every caller uses).

    ``readonly`` stores refuse writes; a read-only SQLite store also refuses a missing file.
    Raises :class:`OnlineStoreUnavailableError` when the store cannot be reached.
    """
    if backend_of(url, ONLINE_URL_SETTING) == REDIS:
        # Imported here: redis-py is only loaded by processes that use it.
        from fti_assets.lib.store.online.redis_store import RedisOnlineStore

        return RedisOnlineStore(url, readonly=readonly)
    return OnlineStore(sqlite_path(url, ONLINE_URL_SETTING), readonly=readonly)
