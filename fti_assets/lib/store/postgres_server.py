"""A local PostgreSQL server for the scale-out path of the data layer.

One server holds the Dagster instance (database ``dagster``: runs, event log and schedules
through dagster-postgres) and the DuckLake catalog of the offline store (database ``lake``).
It is a plain PostgreSQL cluster in a git-ignored folder (``.pg/`` by default), started with
``pg_ctl``, listening on 127.0.0.1 only (no Unix socket). ``make postgres-up`` /
``make postgres-down`` and the tests drive it; a deployment points the same client settings
(``FTI_PG_*``, ``FTI_LAKE_CATALOG``) at a managed server instead.

Without a password the server trusts every connection from this machine; with one, TCP
connections must give it (scram-sha-256).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2 import errors, sql

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 5433  # not 5432: a system server may already listen there
DEFAULT_USER = "fti"
DAGSTER_DATABASE = "dagster"
LAKE_DATABASE = "lake"
DATABASES = (DAGSTER_DATABASE, LAKE_DATABASE)
DEBIAN_ROOT = Path("/usr/lib/postgresql")
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
# initdb and postgres refuse to run as root: as root, the server runs as the first of these.
SERVICE_ACCOUNTS = ("postgres", "nobody")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVER_SETTINGS = f"""
# Added by fti_assets.lib.store.postgres_server: TCP on the loopback address only.
listen_addresses = '{LOOPBACK}'
unix_socket_directories = ''
"""


class PostgresNotFoundError(FileNotFoundError):
    """The PostgreSQL server programs are not installed."""


class PostgresServerError(RuntimeError):
    """The local server could not be created, started or stopped."""


def find_server_binaries(
    search_path: str | None = None, debian_root: Path = DEBIAN_ROOT
) -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: the one ``pg_ctl`` on
    ``search_path`` (default PATH) resolves into, else ``<debian_root>/<major>/bin`` with the
    newest major version (Debian's ``postgresql`` package does not put them on PATH)."""
    candidates = []
    on_path = shutil.which("pg_ctl", path=search_path)
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    majors = [folder for folder in debian_root.glob("*/bin") if folder.parent.name.isdigit()]
    candidates += sorted(majors, key=lambda folder: int(folder.parent.name), reverse=True)
    for folder in candidates:
        if all(os.access(folder / program, os.X_OK) for program in SERVER_PROGRAMS):
            return folder
    return None


def require_server_binaries() -> Path:
    folder = find_server_binaries()
    if folder is None:
        raise PostgresNotFoundError(
            f"PostgreSQL server programs ({', '.join(SERVER_PROGRAMS)}) not found on PATH nor "
            f"in {DEBIAN_ROOT}/<major>/bin; run `make install` as root (it installs Debian's "
            "postgresql package) or put them on PATH"
        )
    return folder


def _port(value: str | int) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise ValueError(f"PostgreSQL port {value!r} is not valid; expected an integer 1-65535")
    return port


@dataclass(frozen=True)
class LocalPostgres:
    """A PostgreSQL cluster in ``root/data`` (log in ``root/server.log``) served on
    127.0.0.1:``port``, whose superuser is ``user``."""

    root: Path
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())
        object.__setattr__(self, "port", _port(self.port))
        if not _IDENTIFIER.match(self.user):
            raise ValueError(
                f"PostgreSQL user {self.user!r} is not valid; expected letters, digits and _"
            )

    @classmethod
    def from_env(cls, default_root: Path) -> LocalPostgres:
        """The server named by FTI_PG_DIR (default ``default_root``), FTI_PG_PORT, FTI_PG_USER
        and FTI_PG_PASSWORD."""
        return cls(
            root=Path(os.environ.get("FTI_PG_DIR") or default_root),
            port=_port(os.environ.get("FTI_PG_PORT") or DEFAULT_PORT),
            user=os.environ.get("FTI_PG_USER") or DEFAULT_USER,
            password=os.environ.get("FTI_PG_PASSWORD", ""),
        )

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def dsn(self, dbname: str) -> str:
        """A libpq connection string for ``dbname`` (no password: libpq takes PGPASSWORD)."""
        return f"dbname={dbname} host={LOOPBACK} port={self.port} user={self.user}"

    def lake_catalog(self, dbname: str = LAKE_DATABASE) -> str:
        """The FTI_LAKE_CATALOG value of a DuckLake whose catalog is database ``dbname``."""
        return f"postgres:{self.dsn(dbname)}"

    def client_environment(self) -> dict[str, str]:
        """What clients read to use this server: the FTI_PG_* variables of
        ``dagster-postgres.yaml`` and the lake catalog. The password is not among them."""
        return {
            "FTI_PG_HOST": LOOPBACK,
            "FTI_PG_PORT": str(self.port),
            "FTI_PG_USER": self.user,
            "FTI_PG_DB": DAGSTER_DATABASE,
            "FTI_LAKE_CATALOG": self.lake_catalog(),
        }

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def running_port(self) -> int | None:
        """The port the cluster's server listens on, or None when it is not running."""
        if not self.is_initialised():
            return None
        status = self._pg_ctl(require_server_binaries(), "status", check=False)
        if status.returncode != 0:
            return None
        # postmaster.pid: pid, data directory, start time, port, ...
        return int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])

    def start(self, databases: Sequence[str] = DATABASES, timeout_s: int = 60) -> None:
        """Create the cluster if needed, start its server if it is not running, and create the
        missing ``databases``. Idempotent."""
        binaries = require_server_binaries()
        if not self.is_initialised():
            self._initdb(binaries)
        port = self.running_port()
        if port is None:
            self._pg_ctl(
                binaries, "start", "-l", str(self.log_path), "-o", f"-p {self.port}",
                "-w", "-t", str(timeout_s),
            )  # fmt: skip
        elif port != self.port:
            raise PostgresServerError(
                f"the server of {self.pgdata} already runs on port {port}, not {self.port}; "
                f"stop it first (make postgres-down) or use FTI_PG_PORT={port}"
            )
        self.create_databases(databases)

    def stop(self, timeout_s: int = 60) -> None:
        """Stop the server (fast shutdown: open sessions are rolled back). Idempotent."""
        if self.running_port() is not None:
            self._pg_ctl(
                require_server_binaries(), "stop", "-m", "fast", "-w", "-t", str(timeout_s)
            )

    def connect(self, dbname: str = "postgres") -> psycopg2.extensions.connection:
        return psycopg2.connect(
            self.dsn(dbname), password=self.password or None, connect_timeout=10
        )

    def create_databases(self, names: Sequence[str]) -> None:
        for name in names:
            if not _IDENTIFIER.match(name):
                raise ValueError(
                    f"database name {name!r} is not valid; expected letters, digits and _"
                )
        with closing(self.connect()) as con:
            con.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with con.cursor() as cur:
                for name in names:
                    cur.execute("select 1 from pg_database where datname = %s", [name])
                    if cur.fetchone() is not None:
                        continue
                    try:
                        cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                    except errors.DuplicateDatabase:
                        pass  # another process created it since the check

    def _initdb(self, binaries: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        account = self._account()
        if account is not None:
            os.chown(self.root, *account)
        args = [
            str(binaries / "initdb"), "-D", str(self.pgdata), "-U", self.user,
            "-E", "UTF8", "--no-locale", "--auth-local=trust",
        ]  # fmt: skip
        password_file = self.root / ".initdb-password"
        if self.password:
            password_file.write_text(self.password + "\n")
            password_file.chmod(0o600)
            if account is not None:
                os.chown(password_file, *account)
            args += ["--auth-host=scram-sha-256", f"--pwfile={password_file}"]
        else:
            args += ["--auth-host=trust"]
        try:
            self._run(args, account)
        finally:
            password_file.unlink(missing_ok=True)
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(_SERVER_SETTINGS)

    def _pg_ctl(
        self, binaries: Path, command: str, *options: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        args = [str(binaries / "pg_ctl"), command, "-D", str(self.pgdata), *options]
        return self._run(args, self._account(), check=check)

    def _account(self) -> tuple[int, int] | None:
        """The (uid, gid) to run the server programs as; None = this process's user. As root:
        the owner of an existing cluster, else the first of SERVICE_ACCOUNTS that exists."""
        if os.geteuid() != 0:
            return None
        for folder in (self.pgdata, self.root):
            if folder.exists() and folder.stat().st_uid != 0:
                return folder.stat().st_uid, folder.stat().st_gid
        for name in SERVICE_ACCOUNTS:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return entry.pw_uid, entry.pw_gid
        raise PostgresServerError(
            f"running as root and none of the users {SERVICE_ACCOUNTS} exists to run the "
            "PostgreSQL server (it refuses to run as root); create one or run as another user"
        )

    def _run(
        self, args: list[str], account: tuple[int, int] | None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        as_account = {}
        if account is not None:
            as_account = {"user": account[0], "group": account[1], "extra_groups": []}
        result = subprocess.run(
            args, capture_output=True, text=True, cwd=self.root, check=False, **as_account
        )
        if check and result.returncode != 0:
            as_whom = ""
            if account is not None:
                as_whom = (
                    f" (run as {pwd.getpwuid(account[0]).pw_name}, since PostgreSQL refuses "
                    f"root: that user must be able to reach {self.root}; FTI_PG_DIR moves it)"
                )
            raise PostgresServerError(
                f"`{' '.join(args)}` failed (exit {result.returncode}){as_whom}: "
                f"{(result.stderr or result.stdout).strip()}{self._log_tail()}"
            )
        return result

    def _log_tail(self, lines: int = 10) -> str:
        if not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"\nlast lines of {self.log_path}:\n" + "\n".join(tail)
