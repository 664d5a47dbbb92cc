"""Transaction events: what the service appends, what the pipeline accepts and refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from fti_assets.lib.streaming.events import (
    InvalidEventError,
    Transaction,
    _checked,
    decode_transaction,
    encode_transaction,
    identify,
    to_us,
)

AT = datetime(2026, 9, 1, 10, 0, 0, 123_456, tzinfo=UTC)
FIELDS = {
    "transaction_id": "t1",
    "card_id": "c1",
    "merchant_id": "m1",
    "amount": 12.5,
    "category": "gas",
    "channel": "online",
    "transaction_time": AT,
    "lat": 40.5,
    "lon": -73.9,
}


def test_an_encoded_transaction_decodes_to_what_the_windows_read() -> None:
    payload = encode_transaction({**FIELDS, "extra": "ignored"})

    assert decode_transaction(payload) == Transaction(
        "t1", "c1", to_us(AT), (12.5, 40.5, -73.9, "online", "gas")
    )
    assert b"extra" not in payload


def test_other_offsets_and_integer_amounts_are_read_exactly() -> None:
    paris = AT.astimezone(timezone(timedelta(hours=2)))
    event = {**FIELDS, "transaction_time": paris.isoformat(), "amount": 12}

    tx = decode_transaction(orjson.dumps(event))

    assert tx.time_us == to_us(AT)
    assert tx.values[0] == 12.0 and type(tx.values[0]) is float


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"card_id": None}, "card_id=None: expected a non-empty string"),
        ({"transaction_id": ""}, "transaction_id='': expected a non-empty string"),
        ({"amount": True}, "amount=True: expected a finite number"),
        ({"amount": None}, "amount=None: expected a finite number"),
        ({"lat": "40"}, "lat='40': expected a finite number"),
        ({"channel": 3}, "channel=3: expected a string"),
        ({"transaction_time": "2026-09-01T10:00:00"}, "expected an ISO 8601 date-time with a"),
        ({"transaction_time": "yesterday"}, "transaction_time='yesterday'"),
        ({"transaction_time": 1788220800}, "transaction_time=1788220800"),
    ],
)
def test_an_invalid_event_names_the_field_and_what_was_expected(change: dict, message: str) -> None:
    event = {**FIELDS, "transaction_time": AT.isoformat(), **change}

    with pytest.raises(InvalidEventError, match=message.replace("(", r"\(")):
        decode_transaction(orjson.dumps(event))


def test_payloads_that_are_not_a_json_object_are_invalid() -> None:
    with pytest.raises(InvalidEventError, match="not JSON"):
        decode_transaction(b"\xff{")
    with pytest.raises(InvalidEventError, match="JSON list; expected an object"):
        decode_transaction(b"[1, 2]")


def test_identify_names_card_and_transaction_when_it_can() -> None:
    assert identify(orjson.dumps({"card_id": "c9", "transaction_id": "t9"})) == ("c9", "t9")
    assert identify(orjson.dumps({"card_id": 9})) == (None, None)
    assert identify(b"garbage") == (None, None)


def test_the_fast_path_decodes_as_the_field_by_field_checks() -> None:
    """decode_transaction takes a fast path for events as the service writes them; anything
    else goes through the field checks (the reference), which name the bad field."""
    base = {**FIELDS, "transaction_time": AT.isoformat()}
    events = [
        base,
        {**base, "transaction_time": "2026-09-01T12:00:00.5+02:00"},
        {**base, "amount": 12},  # an integer amount: converted by the field checks
        {**base, "amount": 1e300, "lat": -0.0, "lon": 5e-324},
        {**base, "category": "é 😀", "card_id": "c" * 300, "extra": [1, {"x": None}]},
        {**base, "amount": False},
        {**base, "channel": None},
        {k: v for k, v in base.items() if k != "lon"},
        {**base, "transaction_time": "2026-09-01T10:00:00"},
    ]
    for event in events:
        payload = orjson.dumps(event)
        try:
            want: object = _checked(orjson.loads(payload))
        except InvalidEventError as exc:
            want = str(exc)
        try:
            got: object = decode_transaction(payload)
        except InvalidEventError as exc:
            got = str(exc)
        assert got == want, event
        if isinstance(got, Transaction):
            assert all(type(a) is type(b) for a, b in zip(got.values, want.values, strict=True))
