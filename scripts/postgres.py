"""The local PostgreSQL server of the scale-out path: ``make postgres-up`` / ``postgres-down``.

    python scripts/postgres.py up     # create + start it (idempotent), print the variables
    python scripts/postgres.py env    # print the variables only
    python scripts/postgres.py down   # stop it (the data stays in FTI_PG_DIR)

The variables are printed as shell ``export`` lines on stdout (``eval "$(… env)"``), messages
go to stderr. Settings: FTI_PG_DIR (default ``.pg/`` in the project), FTI_PG_PORT (5433),
FTI_PG_USER (fti), FTI_PG_PASSWORD (empty: trust connections from this machine).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from fti_assets.lib.core.settings import PROJECT_ROOT
from fti_assets.lib.store.postgres_server import (
    LocalPostgres,
    PostgresNotFoundError,
    PostgresServerError,
)

DEFAULT_ROOT = PROJECT_ROOT / ".pg"


def lake_data_path() -> str:
    """FTI_LAKE_DATA_PATH if set, else a folder of its own under FTI_DATA_DIR: a lake records
    its data path at creation, and two lakes must not share one (each one's orphan-file cleanup
    would delete the other's files)."""
    data_dir = Path(os.environ.get("FTI_DATA_DIR") or PROJECT_ROOT / "data").resolve()
    return os.environ.get("FTI_LAKE_DATA_PATH") or f"{data_dir / 'lake_postgres' / 'data'}/"


def exports(server: LocalPostgres) -> list[str]:
    lines = [
        f"export {name}={shlex.quote(value)}"
        for name, value in {
            **server.client_environment(),
            "FTI_LAKE_DATA_PATH": lake_data_path(),
        }.items()
    ]
    if server.password:
        # Expanded by the shell that evaluates these lines: the secret is never printed.
        lines.append('export PGPASSWORD="$FTI_PG_PASSWORD"  # for libpq clients (DuckDB, psql)')
    else:
        lines.append("export FTI_PG_PASSWORD=''  # trust: no password on 127.0.0.1")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "env"])
    command = parser.parse_args(argv).command
    server = LocalPostgres.from_env(DEFAULT_ROOT)
    try:
        if command == "up":
            server.start()
            print(
                f"PostgreSQL {server.root} listens on 127.0.0.1:{server.port} (databases "
                'dagster, lake); to use it from a shell: eval "$(make -s postgres-up)"',
                file=sys.stderr,
            )
        elif command == "down":
            running = server.running_port() is not None
            server.stop()
            state = "stopped" if running else "was not running"
            print(f"PostgreSQL {server.root} {state}", file=sys.stderr)
            return 0
    except (PostgresNotFoundError, PostgresServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(exports(server)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
