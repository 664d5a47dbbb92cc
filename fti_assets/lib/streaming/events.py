"""Transaction events: what the service appends to the event log and the pipeline reads back.

An event's payload is the scored transaction as a JSON object with the landing-file columns
(:data:`~fti_assets.lib.ingest.domain.TRANSACTION_COLUMNS`), ``transaction_time`` as ISO 8601
with its offset. :func:`decode_transaction` checks exactly what the window features need and raises
:class:`InvalidEventError` naming the field otherwise, so that one bad event becomes one dead
letter instead of stopping the pipeline.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from fti_assets.lib.features.windows import CARD_ID, TRANSACTION_ID, TRANSACTION_TIME, value_columns
from fti_assets.lib.ingest.domain import TRANSACTION_COLUMNS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
VALUE_COLUMNS: tuple[str, ...] = tuple(value_columns())
_FLOAT_COLUMNS = frozenset(c for c in VALUE_COLUMNS if TRANSACTION_COLUMNS[c] == "float64")


class InvalidEventError(ValueError):
    """An event the pipeline cannot apply; the message names the field and what was expected."""


class Transaction(NamedTuple):
    """What the window state needs of one transaction."""

    transaction_id: str
    card_id: str
    time_us: int  # transaction_time, microseconds since the epoch (UTC)
    values: tuple[Any, ...]  # the VALUE_COLUMNS, in that order


_new_transaction = tuple.__new__


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    return (moment - EPOCH) // _US


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def encode_transaction(fields: Mapping[str, Any]) -> bytes:
    """The event payload of a transaction (a mapping holding at least the landing columns)."""
    return orjson.dumps({name: fields[name] for name in TRANSACTION_COLUMNS})


def _text(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEventError(f"{name}={value!r}: expected a non-empty string")
    return value


def _time_us(event: Mapping[str, Any]) -> int:
    raw = event.get(TRANSACTION_TIME)
    try:
        moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise InvalidEventError(
            f"{TRANSACTION_TIME}={raw!r}: expected an ISO 8601 date-time with a time zone"
        )
    return to_us(moment)


def _value(event: Mapping[str, Any], name: str) -> Any:
    value = event.get(name)
    if name in _FLOAT_COLUMNS:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidEventError(f"{name}={value!r}: expected a finite number")
        return float(value)
    if not isinstance(value, str):
        raise InvalidEventError(f"{name}={value!r}: expected a string")
    return value


def _checked(event: dict[str, Any]) -> Transaction:
    """The transaction of a decoded event, every field checked (names the first bad one)."""
    return Transaction(
        _text(event, TRANSACTION_ID),
        _text(event, CARD_ID),
        _time_us(event),
        tuple(_value(event, name) for name in VALUE_COLUMNS),
    )


def _plain_values_check() -> Callable[[tuple[Any, ...]], bool]:
    """Whether values (in VALUE_COLUMNS order) are exactly what the service writes: finite
    floats and strings. One expression generated from the columns' types, instead of a loop."""
    checks = [
        f"type(v[{i}]) is float and v[{i}] - v[{i}] == 0.0"  # x - x is nan for inf and nan
        if name in _FLOAT_COLUMNS
        else f"type(v[{i}]) is str"
        for i, name in enumerate(VALUE_COLUMNS)
    ]
    return eval(f"lambda v: {' and '.join(checks) or 'True'}")  # only the checks above


_plain_values = _plain_values_check()
# The VALUE_COLUMNS of a decoded event as a tuple, in one C call.
_values_of: Callable[[dict[str, Any]], tuple[Any, ...]] = (
    operator.itemgetter(*VALUE_COLUMNS)
    if len(VALUE_COLUMNS) > 1
    else lambda event: tuple(event[name] for name in VALUE_COLUMNS)
)
_loads = orjson.loads
_fromisoformat = datetime.fromisoformat


def decode_transaction(payload: bytes) -> Transaction:
    """The transaction an event payload holds; :class:`InvalidEventError` if it holds none.

    The common case (every field present with the type the service writes) takes a fast path;
    anything else goes through the field-by-field checks, which name the bad field.
    """
    try:
        event = _loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"payload is not JSON: {exc}") from exc
    if type(event) is not dict:
        raise InvalidEventError(f"payload is a JSON {type(event).__name__}; expected an object")
    try:
        tx_id, card, raw_time = event[TRANSACTION_ID], event[CARD_ID], event[TRANSACTION_TIME]
        values = _values_of(event)
        moment = _fromisoformat(raw_time)
    except (KeyError, TypeError, ValueError):
        return _checked(event)
    if (
        type(tx_id) is not str
        or type(card) is not str
        or not tx_id
        or not card
        or moment.tzinfo is None
        or not _plain_values(values)
    ):
        return _checked(event)
    # to_us(), inlined; Transaction built without NamedTuple's Python-level __new__
    return _new_transaction(Transaction, (tx_id, card, (moment - EPOCH) // _US, values))


def identify(payload: bytes) -> tuple[str | None, str | None]:
    """(card id, transaction id) of a payload when it names them, for dead letters."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(event, dict):
        return None, None
    card, tx = event.get(CARD_ID), event.get(TRANSACTION_ID)
    return (card if isinstance(card, str) else None), (tx if isinstance(tx, str) else None)
