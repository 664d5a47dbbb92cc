"""URLs that choose a storage backend: ``sqlite:///abs/path`` or ``redis://host:port/db``.

``FTI_ONLINE_URL`` (the online store) and ``FTI_EVENT_LOG_URL`` (the streaming event log) take
one of these forms; the factories of both read them through the helpers here, so both accept
and refuse the same URLs with the same messages.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

SQLITE = "sqlite"
REDIS = "redis"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def sqlite_url(path: str | Path) -> str:
    """The URL of a SQLite file: ``sqlite:///abs/path`` (the path made absolute)."""
    return f"sqlite://{Path(path).resolve()}"


def backend_of(url: str, setting: str) -> str:
    """:data:`SQLITE` or :data:`REDIS` for a backend URL; a ValueError names ``setting``."""
    scheme = urlsplit(url).scheme
    if scheme == SQLITE:
        return SQLITE
    if scheme in _REDIS_SCHEMES:
        return REDIS
    raise ValueError(
        f"{setting}={url!r}: unknown backend {scheme!r}; expected sqlite:///abs/path/file.sqlite "
        "or redis://host:port/db"
    )


def sqlite_path(url: str, setting: str) -> Path:
    """The file of a ``sqlite:///abs/path`` URL; a ValueError names ``setting``."""
    parts = urlsplit(url)
    if parts.scheme != SQLITE or parts.netloc or not parts.path.startswith("/"):
        raise ValueError(
            f"{setting}={url!r}: expected sqlite:///abs/path/file.sqlite (three slashes, then "
            "an absolute path)"
        )
    return Path(unquote(parts.path))


def display_url(url: str) -> str:
    """``url`` without its password, for logs, metadata and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
