"""The streaming pipeline's window state: one :class:`CardWindows` per card, updated per event.

Built from the declarations in :mod:`fti_assets.lib.features.windows` (the same ones the Polars
batch path is built from), with the same semantics: a window ``w`` covers ``(T - w, T]`` where ``T``
is the card's latest transaction time; several transactions at one instant give the state after
all of them, ordered by ``(transaction_time, transaction_id)``; money columns are summed as exact
integer cents and turned into floats with the batch path's own arithmetic, so the rows equal the
batch rows (the replay test compares every row, with its stated tolerance).

:class:`~fti_assets.lib.features.windows.CardWindowState` recomputes every window from the card's
whole history on each event (O(history)); at the goal of 20,000 events/s that is too slow, so this
class keeps running sums per window and moves a start index as time advances: O(1) amortised per
event and window. Maximum and minimum are kept as a value, recomputed from the window only when
the value leaving the window was the extreme.

An event older than the card's latest is inserted in time order and the card's row (at its
latest time) recomputed, provided it is at most ``lateness`` older (:class:`CardStates`); later
ones are refused as late. A transaction id the card already holds is a duplicate and changes
nothing. Entries older than the largest window cannot reach any row and are dropped; the
(card, time) up to which they were dropped is reported so the persisted copy can be trimmed.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, NamedTuple

from fti_assets.lib.features.windows import (
    CARD_ID,
    CARD_LAST_VALUE_FEATURES,
    CARD_WINDOW_FEATURES,
    CENTS_COLUMNS,
    EVENT_TIME,
    LOOKBACK,
    PREV_TX_GAP_SECONDS,
    aggregate,
)
from fti_assets.lib.streaming.events import VALUE_COLUMNS, Transaction, from_us

_US = timedelta(microseconds=1)
LOOKBACK_US = LOOKBACK // _US
# Physically drop entries that left every window once this many have piled up at the front.
_PRUNE_AFTER = 16

APPLIED = "applied"
DUPLICATE = "duplicate"
LATE = "late"
_APPLIED: tuple[str, None] = (APPLIED, None)
_DUPLICATE: tuple[str, None] = (DUPLICATE, None)

# -- the plan, derived once from the declarations ------------------------------------------------

WINDOWS_US: tuple[int, ...] = tuple(dict.fromkeys(f.window // _US for f in CARD_WINDOW_FEATURES))
_LOOKBACK_WINDOW = WINDOWS_US.index(LOOKBACK_US)
_COLUMN_INDEX = {name: i for i, name in enumerate(VALUE_COLUMNS)}
# Value columns aggregated as cents (their position among an entry's cents).
_CENTS = tuple(c for c in VALUE_COLUMNS if c in CENTS_COLUMNS)
_CENTS_INDEX = {name: i for i, name in enumerate(_CENTS)}


_COUNT, _CENTS_SUM, _CENTS_MEAN, _CENTS_STD, _EXTREME, _SCAN = range(6)


class _Feature(NamedTuple):
    name: str
    agg: str
    kind: int  # how it is computed: one of _COUNT ... _SCAN
    window: int  # index into WINDOWS_US
    column: int  # index into VALUE_COLUMNS (-1 for count)
    slot: int  # index of its running sums (cents kinds) or of its extreme (max/min), else -1


# Running sums: per window and cents column, three ints (values, sum of cents, sum of squares),
# laid out flat: slot = window * len(_CENTS) + cents column; its ints at 3 * slot.
_N_CENTS = len(_CENTS)
# Extremes kept per window: (window, column, is_max) for every max/min feature.
_EXTREMES = tuple(
    dict.fromkeys(
        (WINDOWS_US.index(f.window // _US), _COLUMN_INDEX[f.column], f.agg == "max")
        for f in CARD_WINDOW_FEATURES
        if f.agg in ("max", "min")
    )
)
_EXTREMES_BY_WINDOW = tuple(
    tuple(
        (slot, column, is_max) for slot, (w, column, is_max) in enumerate(_EXTREMES) if w == window
    )
    for window in range(len(WINDOWS_US))
)


def _plan() -> tuple[_Feature, ...]:
    features = []
    for f in CARD_WINDOW_FEATURES:
        window = WINDOWS_US.index(f.window // _US)
        if f.agg == "count":
            features.append(_Feature(f.name, f.agg, _COUNT, window, -1, -1))
            continue
        column = _COLUMN_INDEX[f.column]
        if f.agg in ("max", "min"):
            slot = _EXTREMES.index((window, column, f.agg == "max"))
            features.append(_Feature(f.name, f.agg, _EXTREME, window, column, slot))
        elif f.column in _CENTS_INDEX:
            kind = {"sum": _CENTS_SUM, "mean": _CENTS_MEAN, "std": _CENTS_STD}[f.agg]
            slot = window * _N_CENTS + _CENTS_INDEX[f.column]
            features.append(_Feature(f.name, f.agg, kind, window, column, slot))
        else:  # a float column without running sums: computed from the window's entries
            features.append(_Feature(f.name, f.agg, _SCAN, window, column, -1))
    return tuple(features)


_FEATURES = _plan()
_LAST_VALUES = tuple((f.name, _COLUMN_INDEX[f.column]) for f in CARD_LAST_VALUE_FEATURES)
_N_WINDOWS = len(WINDOWS_US)
_CENTS_POSITIONS = tuple(_COLUMN_INDEX[c] for c in _CENTS)


class _Entry(NamedTuple):
    time_us: int
    transaction_id: str
    values: tuple[Any, ...]
    cents: tuple[int | None, ...]


# Builds an _Entry without NamedTuple's Python-level __new__ (one per event).
_new_entry = tuple.__new__


def _cents_of(values: tuple[Any, ...]) -> tuple[int | None, ...]:
    # round() is half to even, as Polars' round() in the batch path.
    return tuple([None if values[i] is None else round(values[i] * 100) for i in _CENTS_POSITIONS])


class CardWindows:
    """The window state of one card: its recent transactions and running sums per window."""

    __slots__ = ("card_id", "entries", "_ids", "_starts", "_sums", "_extremes", "_dirty")

    def __init__(self, card_id: str) -> None:
        self.card_id = card_id
        self.entries: list[_Entry] = []  # sorted by (time_us, transaction_id)
        self._ids: dict[str, int] = {}  # transaction id -> time_us, of the entries
        self._starts = [0] * _N_WINDOWS  # first entry inside each window
        self._sums = [0] * (3 * _N_WINDOWS * _N_CENTS)
        self._extremes: list[Any] = [None] * len(_EXTREMES)
        # An extreme whose value left its window: recomputed when a row needs it.
        self._dirty = [False] * len(_EXTREMES)

    def holds(self, transaction_id: str) -> bool:
        """Whether the transaction is among those that can still reach a window."""
        at = self._ids.get(transaction_id)
        return at is not None and at > self.entries[-1].time_us - LOOKBACK_US

    def add(self, tx: Transaction) -> int | None:
        """Apply one transaction (in or out of time order).

        Returns the time up to which entries were dropped from the front (None: none were).
        """
        entry = _new_entry(_Entry, (tx.time_us, tx.transaction_id, tx.values, _cents_of(tx.values)))
        entries = self.entries
        last = entries[-1] if entries else None
        if last is None or entry.time_us > last.time_us:
            entries.append(entry)
            self._enter_every_window(entry)
            if last is not None:
                self._slide(entry.time_us)
        elif entry.time_us == last.time_us and entry.transaction_id > last.transaction_id:
            entries.append(entry)  # the same instant: no window moves
            self._enter_every_window(entry)
        else:
            self._insert(entry)
        self._ids[entry.transaction_id] = entry.time_us
        return self._prune()

    def _insert(self, entry: _Entry) -> None:
        entries, latest = self.entries, self.entries[-1].time_us
        position = bisect_right(entries, entry[:2], key=lambda e: e[:2])
        entries.insert(position, entry)
        for window, length in enumerate(WINDOWS_US):
            if entry.time_us > latest - length:
                self._enter(window, entry)  # inside: at or after the window's start
            else:
                self._starts[window] += 1  # before the window: it shifts the start

    def _enter_every_window(self, entry: _Entry) -> None:
        """:meth:`_enter` for every window at once (the common, in-order case)."""
        sums = self._sums
        for base in range(0, len(sums), 3):
            c = entry.cents[(base // 3) % _N_CENTS]
            if c is not None:
                sums[base] += 1
                sums[base + 1] += c
                sums[base + 2] += c * c
        values, extremes, dirty = entry.values, self._extremes, self._dirty
        for slot, (_, column, is_max) in enumerate(_EXTREMES):
            value = values[column]
            if value is None or dirty[slot]:
                continue
            current = extremes[slot]
            if current is None or (value > current if is_max else value < current):
                extremes[slot] = value

    def _enter(self, window: int, entry: _Entry) -> None:
        sums, base = self._sums, 3 * window * _N_CENTS
        for c in entry.cents:
            if c is not None:
                sums[base] += 1
                sums[base + 1] += c
                sums[base + 2] += c * c
            base += 3
        for slot, column, is_max in _EXTREMES_BY_WINDOW[window]:
            value = entry.values[column]
            if value is None or self._dirty[slot]:
                continue
            current = self._extremes[slot]
            if current is None or (value > current if is_max else value < current):
                self._extremes[slot] = value

    def _leave(self, window: int, entry: _Entry) -> None:
        sums, base = self._sums, 3 * window * _N_CENTS
        for c in entry.cents:
            if c is not None:
                sums[base] -= 1
                sums[base + 1] -= c
                sums[base + 2] -= c * c
            base += 3
        for slot, column, _ in _EXTREMES_BY_WINDOW[window]:
            if entry.values[column] == self._extremes[slot]:
                self._dirty[slot] = True

    def _slide(self, latest: int) -> None:
        entries, starts = self.entries, self._starts
        for window, length in enumerate(WINDOWS_US):
            horizon = latest - length
            start = starts[window]
            while entries[start].time_us <= horizon:
                self._leave(window, entries[start])
                start += 1
            starts[window] = start

    def _prune(self) -> int | None:
        dropped = self._starts[_LOOKBACK_WINDOW]  # entries before it are in no window
        if dropped < _PRUNE_AFTER:
            return None
        removed = self.entries[:dropped]
        del self.entries[:dropped]
        for entry in removed:
            if self._ids.get(entry.transaction_id) == entry.time_us:
                del self._ids[entry.transaction_id]
        self._starts = [start - dropped for start in self._starts]
        return removed[-1].time_us

    def row(self) -> dict[str, Any]:
        """The card's current row: card_id, event_time (its latest transaction) and features."""
        entries = self.entries
        if not entries:
            raise ValueError(f"card {self.card_id!r} has no transaction yet")
        latest = entries[-1]
        row: dict[str, Any] = {CARD_ID: self.card_id, EVENT_TIME: from_us(latest.time_us)}
        n_entries, starts, sums = len(entries), self._starts, self._sums
        for feature in _FEATURES:
            name, _, kind, window, _, slot = feature
            if kind == _COUNT:
                row[name] = n_entries - starts[window]
            elif kind == _EXTREME:
                row[name] = self._extreme(feature)
            elif kind == _SCAN:
                row[name] = self._scan(feature)
            else:
                i = 3 * slot
                row[name] = _from_cents(kind, sums[i], sums[i + 1], sums[i + 2])
        gap = latest.time_us - entries[-2].time_us if n_entries > 1 else LOOKBACK_US
        # As the batch path: float microseconds times 1e-6, null from the lookback on.
        row[PREV_TX_GAP_SECONDS] = float(gap) * 1e-6 if gap < LOOKBACK_US else None
        for name, column in _LAST_VALUES:
            row[name] = latest.values[column]
        return row

    def _extreme(self, feature: _Feature) -> Any:
        slot = feature.slot
        if self._dirty[slot]:
            self._dirty[slot] = False
            self._extremes[slot] = self._scan(feature)
        return self._extremes[slot]

    def _scan(self, feature: _Feature) -> Any:
        """The feature computed from the window's entries (extremes, non-cents sums)."""
        values = [
            e.values[feature.column]
            for e in self.entries[self._starts[feature.window] :]
            if e.values[feature.column] is not None
        ]
        if feature.agg == "max":
            return max(values, default=None)
        if feature.agg == "min":
            return min(values, default=None)
        return aggregate(feature.agg, values)


def _from_cents(kind: int, n: int, total: int, squares: int) -> float | None:
    """A money sum, mean or sample std from integer cents, with the batch path's arithmetic."""
    if kind == _CENTS_SUM:
        return float(total) * 0.01
    if n == 0:
        return None
    if kind == _CENTS_MEAN:
        return float(total) / float(n) * 0.01
    if n < 2:
        return None
    size = float(n)
    variance = (size * float(squares) - float(total) * float(total)) / (size * (size - 1.0))
    return math.sqrt(max(variance * 1e-4, 0.0))


class CardStates:
    """Every card's :class:`CardWindows`, with the duplicate and lateness rules."""

    def __init__(self, lateness: timedelta) -> None:
        if not timedelta(0) <= lateness <= LOOKBACK:
            raise ValueError(
                f"lateness {lateness} must be between 0 and the largest window ({LOOKBACK})"
            )
        self.lateness_us = lateness // _US
        self.cards: dict[str, CardWindows] = {}
        self._trims: dict[str, int] = {}

    def restore(self, transactions: Iterable[Transaction]) -> int:
        """Load transactions known to be applied (checkpoint, offline history); returns how many
        were new. Duplicates (same card and transaction id) are skipped; no lateness rule."""
        ordered = sorted(transactions, key=lambda t: (t.card_id, t.time_us, t.transaction_id))
        added = 0
        for tx in ordered:
            card = self._card(tx.card_id)
            if card.entries and card.holds(tx.transaction_id):
                continue
            self._add(card, tx)
            added += 1
        return added

    def apply(self, tx: Transaction) -> tuple[str, str | None]:
        """Apply one event: (:data:`APPLIED`, None), (:data:`DUPLICATE`, None) or
        (:data:`LATE`, the reason)."""
        card = self.cards.get(tx.card_id) or self._card(tx.card_id)
        if card.entries:
            latest = card.entries[-1].time_us
            if card.holds(tx.transaction_id):
                return _DUPLICATE
            if tx.time_us < latest - self.lateness_us:
                late_by = from_us(latest) - from_us(tx.time_us)
                return LATE, (
                    f"late: transaction {tx.transaction_id!r} at {from_us(tx.time_us)} is "
                    f"{late_by} older than card {tx.card_id!r}'s latest at {from_us(latest)}; "
                    f"allowed lateness {timedelta(microseconds=self.lateness_us)}"
                )
        self._add(card, tx)
        return _APPLIED

    def row(self, card_id: str) -> dict[str, Any]:
        return self.cards[card_id].row()

    def take_trims(self) -> dict[str, int]:
        """Cards whose old entries were dropped since the last call, with the time up to which."""
        trims, self._trims = self._trims, {}
        return trims

    def _card(self, card_id: str) -> CardWindows:
        card = self.cards.get(card_id)
        if card is None:
            card = self.cards[card_id] = CardWindows(card_id)
        return card

    def _add(self, card: CardWindows, tx: Transaction) -> None:
        dropped_to = card.add(tx)
        if dropped_to is not None:
            self._trims[card.card_id] = dropped_to
