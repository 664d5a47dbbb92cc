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
from collections.abc import Callable, Iterable
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
# The running-sum slots some feature reads; only these are kept up to date.
_READ_SUMS = frozenset(f.slot for f in _FEATURES if f.kind in (_CENTS_SUM, _CENTS_MEAN, _CENTS_STD))
_READ_SUMS_BY_WINDOW = tuple(
    tuple(3 * slot for slot in range(w * _N_CENTS, (w + 1) * _N_CENTS) if slot in _READ_SUMS)
    for w in range(_N_WINDOWS)
)


class _Entry(NamedTuple):
    time_us: int
    transaction_id: str
    values: tuple[Any, ...]
    cents: tuple[int | None, ...]


# Builds an _Entry without NamedTuple's Python-level __new__ (one per event).
_new_entry = tuple.__new__


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


# -- specialised per-event code, generated from the plan -------------------------------------------
#
# The per-event methods below are generated as source from the plan above, the way ``dataclasses``
# builds ``__init__`` (and :func:`fti_assets.lib.store.online.codec.make_decoder` a row decoder):
# with the windows, running-sum slots, extremes and features unrolled into straight-line code,
# applying an in-order event and building a row cost a few list and dict operations each instead
# of loops over the plan with a dispatch per feature. They stay derived from the declarations in
# :mod:`fti_assets.lib.features.windows`; the replay tests compare their rows with the batch path.
# Only numbers and ``repr`` of names enter the source.


def _sum_bases(window: int) -> list[tuple[int, int]]:
    """(cents column, index of its count in ``_sums``) of each running sum of ``window`` that a
    feature reads (the others are not kept)."""
    return [(j, 3 * slot) for j in range(_N_CENTS) if (slot := window * _N_CENTS + j) in _READ_SUMS]


def _enter_every_window_source() -> list[str]:
    lines = ["def _enter_every_window(self, entry):"]
    if _N_CENTS:
        lines += ["    sums = self._sums", "    cents = entry[3]"]
    for j in range(_N_CENTS):
        bases = [base for window in range(_N_WINDOWS) for k, base in _sum_bases(window) if k == j]
        if not bases:
            continue
        lines += [f"    c = cents[{j}]", "    if c is not None:", "        squared = c * c"]
        for base in bases:
            lines += [
                f"        sums[{base}] += 1",
                f"        sums[{base + 1}] += c",
                f"        sums[{base + 2}] += squared",
            ]
    if _EXTREMES:
        lines += [
            "    values = entry[2]",
            "    extremes = self._extremes",
            "    dirty = self._dirty",
        ]
    for slot, (_, column, is_max) in enumerate(_EXTREMES):
        lines += [
            f"    value = values[{column}]",
            f"    if value is not None and not dirty[{slot}]:",
            f"        current = extremes[{slot}]",
            f"        if current is None or value {'>' if is_max else '<'} current:",
            f"            extremes[{slot}] = value",
        ]
    lines.append("    return None")
    return lines


def _slide_source() -> list[str]:
    lines = [
        "def _slide(self, latest):",
        "    entries = self.entries",
        "    starts = self._starts",
        "    sums = self._sums",
        "    extremes = self._extremes",
        "    dirty = self._dirty",
    ]
    for window, length in enumerate(WINDOWS_US):
        lines += [
            f"    horizon = latest - {length}",
            f"    start = starts[{window}]",
            "    entry = entries[start]",
            "    if entry[0] <= horizon:",
            "        while True:",  # the latest entry is inside every window: the loop ends
        ]
        if _sum_bases(window):
            lines.append("            cents = entry[3]")
        for j, base in _sum_bases(window):
            lines += [
                f"            c = cents[{j}]",
                "            if c is not None:",
                f"                sums[{base}] -= 1",
                f"                sums[{base + 1}] -= c",
                f"                sums[{base + 2}] -= c * c",
            ]
        for slot, column, _ in _EXTREMES_BY_WINDOW[window]:
            lines += [
                f"            if entry[2][{column}] == extremes[{slot}]:",
                f"                dirty[{slot}] = True",
            ]
        lines += [
            "            start += 1",
            "            entry = entries[start]",
            "            if entry[0] > horizon:",
            "                break",
            f"        starts[{window}] = start",
        ]
    lines.append("    return None")
    return lines


def _row_source() -> list[str]:
    lines = [
        "def row(self):",
        "    entries = self.entries",
        "    if not entries:",
        "        raise ValueError(f'card {self.card_id!r} has no transaction yet')",
        "    latest = entries[-1]",
        "    at = latest[0]",
        "    n_entries = len(entries)",
        "    starts = self._starts",
        "    sums = self._sums",
        "    extremes = self._extremes",
        "    dirty = self._dirty",
        f"    gap = at - entries[-2][0] if n_entries > 1 else {LOOKBACK_US}",
        "    values = latest[2]",
        "    return {",
        f"        {CARD_ID!r}: self.card_id,",
        f"        {EVENT_TIME!r}: _from_us(at),",
    ]
    for i, feature in enumerate(_FEATURES):
        name, _, kind, window, _, slot = feature
        if kind == _COUNT:
            value = f"n_entries - starts[{window}]"
        elif kind == _EXTREME:  # recomputed from the window when its value left it
            value = f"self._extreme(_FEATURES[{i}]) if dirty[{slot}] else extremes[{slot}]"
        elif kind == _SCAN:
            value = f"self._scan(_FEATURES[{i}])"
        elif kind == _CENTS_SUM:
            value = f"float(sums[{3 * slot + 1}]) * 0.01"  # as _from_cents
        else:
            base = 3 * slot
            value = f"_from_cents({kind}, sums[{base}], sums[{base + 1}], sums[{base + 2}])"
        lines.append(f"        {name!r}: {value},")
    # As the batch path: float microseconds times 1e-6, null from the lookback on.
    lines.append(
        f"        {PREV_TX_GAP_SECONDS!r}: float(gap) * 1e-6 if gap < {LOOKBACK_US} else None,"
    )
    lines += [f"        {name!r}: values[{column}]," for name, column in _LAST_VALUES]
    lines.append("    }")
    return lines


def _cents_of_source() -> list[str]:
    # round() is half to even, as Polars' round() in the batch path.
    items = "".join(
        f"None if values[{i}] is None else _round(values[{i}] * 100), " for i in _CENTS_POSITIONS
    )
    return ["def _cents_of(values):", f"    return ({items})"]


def _compile(lines: list[str], name: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {
        "_from_us": from_us,
        "_from_cents": _from_cents,
        "_FEATURES": _FEATURES,
        "_round": round,
    }
    exec(compile("\n".join(lines) + "\n", f"<streaming state {name}>", "exec"), namespace)
    return namespace[name]


_cents_of: Callable[[tuple[Any, ...]], tuple[int | None, ...]] = _compile(
    _cents_of_source(), "_cents_of"
)


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
        time_us, transaction_id, values = tx.time_us, tx.transaction_id, tx.values
        entry = _new_entry(_Entry, (time_us, transaction_id, values, _cents_of(values)))
        entries = self.entries
        if not entries:
            entries.append(entry)
            self._enter_every_window(entry)
        else:
            last = entries[-1]
            if time_us > last[0]:
                entries.append(entry)
                self._enter_every_window(entry)
                self._slide(time_us)
            elif time_us == last[0] and transaction_id > last[1]:
                entries.append(entry)  # the same instant: no window moves
                self._enter_every_window(entry)
            else:
                self._insert(entry)
        self._ids[transaction_id] = time_us
        if self._starts[_LOOKBACK_WINDOW] < _PRUNE_AFTER:
            return None
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

    # :meth:`_enter` for every window at once (the common, in-order case); generated.
    _enter_every_window: Callable[[CardWindows, _Entry], None] = _compile(
        _enter_every_window_source(), "_enter_every_window"
    )

    def _enter(self, window: int, entry: _Entry) -> None:
        sums, first = self._sums, 3 * window * _N_CENTS
        for base in _READ_SUMS_BY_WINDOW[window]:
            c = entry.cents[(base - first) // 3]
            if c is not None:
                sums[base] += 1
                sums[base + 1] += c
                sums[base + 2] += c * c
        for slot, column, is_max in _EXTREMES_BY_WINDOW[window]:
            value = entry.values[column]
            if value is None or self._dirty[slot]:
                continue
            current = self._extremes[slot]
            if current is None or (value > current if is_max else value < current):
                self._extremes[slot] = value

    # Moves every window's start past the entries at or before ``latest`` minus its length,
    # taking them out of its running sums (an extreme they held is marked dirty); generated.
    _slide: Callable[[CardWindows, int], None] = _compile(_slide_source(), "_slide")

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

    # The card's current row: card_id, event_time (its latest transaction) and the features in
    # declaration order; generated.
    row: Callable[[CardWindows], dict[str, Any]] = _compile(_row_source(), "row")

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
        entries = card.entries
        if entries:
            latest = entries[-1][0]
            at = card._ids.get(tx.transaction_id)
            if at is not None and at > latest - LOOKBACK_US:  # card.holds(), inlined
                return _DUPLICATE
            if tx.time_us < latest - self.lateness_us:
                late_by = from_us(latest) - from_us(tx.time_us)
                return LATE, (
                    f"late: transaction {tx.transaction_id!r} at {from_us(tx.time_us)} is "
                    f"{late_by} older than card {tx.card_id!r}'s latest at {from_us(latest)}; "
                    f"allowed lateness {timedelta(microseconds=self.lateness_us)}"
                )
        dropped_to = card.add(tx)
        if dropped_to is not None:
            self._trims[card.card_id] = dropped_to
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
