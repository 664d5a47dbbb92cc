"""Deterministic synthetic credit-card fraud data: a whole world plus a ground-truth oracle.

One seeded run writes, under ``data_dir``, the **world** (everything that will ever land):

- ``world/cards.parquet`` and ``world/merchants.parquet`` (reference data),
- ``world/transactions/YYYY-MM-DD.parquet`` (one file per UTC day),
- ``world/fraud_labels/YYYY-MM-DD.parquet`` (labels reported that UTC day, days after the
  transaction; labels that would arrive after the last generated day are not written),
- ``world/_manifest.json`` (window, config, drift, counts, injected bad rows),
- ``oracle/transactions_oracle.parquet`` (the true fraud probability and label of every good
  transaction: no feature may read it; it gives the Bayes limit of model quality),

and then releases the world's days into ``landing/`` (same layout; see
:mod:`fti_assets.lib.synthetic.world`): all of them, or all but the last ``hold_back`` days, which
``fti simulate advance`` delivers later, one day at a time.

How fraud arises. Transactions come from three processes: cardholders' own activity, attack
episodes on stolen cards (short bursts far from home in risky categories, well above the card's
typical amount) and, from the day a concept drift starts, card testing (bursts of tiny online
digital-goods payments). Whatever the process, every transaction's fraud probability is
``sigmoid(intercept + logit)`` where the logit is a fixed function (:data:`LOGIT_WEIGHTS`) of
quantities a feature pipeline can observe: the card's transactions in the previous hour, the
seconds since its previous transaction, the distance from the card's home, amount over the card's
typical amount, the category, the channel, a night hour, whether the merchant is compromised at
that time (latent, learnable from the merchant's trailing fraud rate and risk_profile) and the
account's age. The intercept is found by bisection so that the mean probability equals
``fraud_rate`` over the run as it would be without drift; the label is a seeded Bernoulli draw.

Drift, from day index ``drift_from``, is of one of :data:`DRIFT_KINDS`: ``covariate`` (amounts
grow and the channel mix moves online: the inputs shift, the fraud logit stays the same function),
``concept`` (card testing appears: a fraud pattern the training data never showed) or ``both``.

Everything is drawn from numpy generators seeded with ``(seed, day, stream)``, so the same config
writes byte-identical files and the days before ``drift_from`` do not depend on the drift.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from fti_assets.lib.core.settings import LANDING_DIR, MANIFEST_FILE, WORLD_DIR
from fti_assets.lib.ingest.domain import (
    AGE_BANDS,
    CARD_COLUMNS,
    CARDS_FILE,
    CATEGORIES,
    CHANNELS,
    FRAUD_LABEL_COLUMNS,
    FRAUD_LABELS_DIR,
    MAX_AMOUNT,
    MERCHANT_COLUMNS,
    MERCHANTS_FILE,
    RISK_PROFILES,
    TRANSACTION_COLUMNS,
    TRANSACTIONS_DIR,
)
from fti_assets.lib.synthetic.world import release_world

logger = logging.getLogger(__name__)

ORACLE_DIR = "oracle"
ORACLE_FILE = "transactions_oracle.parquet"
PRODUCER_DEBUG_COLUMN = "_producer_debug"

BAD_ROW_KINDS: tuple[str, ...] = (
    "null_transaction_id",
    "null_card_id",
    "duplicate_transaction_id",
    "negative_amount",
    "nonfinite_amount",
    "absurd_amount",
    "unknown_card",
    "unknown_merchant",
    "future_timestamp",
    "unknown_category",
    "naive_timestamp",
)
UNKNOWN_CATEGORY = "crypto_casino"
ABSURD_AMOUNT = 1e9

# The generating process of a transaction (whatever its drawn label): "none" is the cardholder's
# own activity at a merchant that is not compromised at that time.
PATTERNS: tuple[str, ...] = ("none", "stolen_card_burst", "compromised_merchant", "card_testing")
_NONE, _BURST, _COMPROMISED, _CARD_TESTING = range(len(PATTERNS))

# (name, lat, lon, share of cardholders living there)
CITIES: tuple[tuple[str, float, float, float], ...] = (
    ("new_york", 40.71, -74.01, 0.28),
    ("los_angeles", 34.05, -118.24, 0.22),
    ("chicago", 41.88, -87.63, 0.18),
    ("houston", 29.76, -95.37, 0.12),
    ("miami", 25.76, -80.19, 0.10),
    ("seattle", 47.61, -122.33, 0.10),
)
RISKY_CATEGORIES: tuple[str, ...] = ("electronics", "jewelry", "online_retail", "digital_goods")

# Per category: share of merchants, legit in-store weight, legit online weight, amount scale
# (times the card's typical amount) and the category's term in the fraud logit.
_CATEGORY_TABLE: dict[str, tuple[float, float, float, float, float]] = {
    "grocery": (0.20, 0.26, 0.06, 1.0, -0.4),
    "restaurant": (0.18, 0.22, 0.08, 0.8, -0.3),
    "gas": (0.10, 0.14, 0.00, 1.0, 0.0),
    "travel": (0.06, 0.03, 0.12, 4.0, 0.2),
    "online_retail": (0.10, 0.00, 0.34, 1.5, 0.5),
    "electronics": (0.07, 0.04, 0.08, 3.0, 0.8),
    "entertainment": (0.08, 0.08, 0.10, 0.8, 0.0),
    "health": (0.08, 0.10, 0.04, 1.2, -0.4),
    "jewelry": (0.05, 0.01, 0.01, 4.0, 0.9),
    "digital_goods": (0.08, 0.00, 0.17, 0.3, 0.7),
}
if tuple(_CATEGORY_TABLE) != CATEGORIES:
    raise RuntimeError(f"category table {tuple(_CATEGORY_TABLE)} does not match {CATEGORIES}")
_CAT = np.array(list(_CATEGORY_TABLE.values()), dtype=np.float64)
_CAT_MERCHANT_SHARE, _CAT_INSTORE_W, _CAT_ONLINE_W, _CAT_AMOUNT_SCALE, CATEGORY_RISK = _CAT.T
_RISKY = np.isin(np.array(CATEGORIES), RISKY_CATEGORIES)
_DIGITAL = np.array(CATEGORIES) == "digital_goods"

# Legit activity by UTC hour: few transactions at night.
_HOUR_WEIGHTS = np.array(
    [0.4, 0.25, 0.15, 0.1, 0.1, 0.2, 0.6, 1.2, 2.0, 2.6, 3.0, 3.4]
    + [4.0, 3.8, 3.4, 3.2, 3.4, 3.8, 4.2, 4.0, 3.4, 2.6, 1.6, 0.9]
)
_HOUR_P = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()
NIGHT_HOURS = range(0, 6)  # UTC hours counted as "night" in the logit

_US_PER_S = 1_000_000
_US_PER_HOUR = 3600 * _US_PER_S
_US_PER_DAY = 24 * _US_PER_HOUR
_MEAN_DAILY_RATE = 1.2
_TRAVEL_SHARE = 0.05  # legit in-store transactions made while visiting another city
_ONLINE_ELSEWHERE_SHARE = 0.08  # legit online transactions from an IP in another city
_DISPUTE_SHARE = 0.002  # genuine transactions disputed and resolved as is_fraud=0
_BURST_SHARE_OF_FRAUD_RATE = 0.7  # attack-process share of all transactions / fraud_rate
_MEAN_BURST_LEN = 5.0
_CARD_TESTING_CARD_DAY_PROB_PER_FRAUD_RATE = 0.08
_DRIFT_AMOUNT_FACTOR = 1.4
_DRIFT_ONLINE_SHIFT = 0.43  # online share s -> s + (1 - s) * shift: ~0.3 -> ~0.6
_COMPROMISED_MERCHANT_SHARE = 0.03
_LABEL_DELAY_SCALE_DAYS = 3.0
_MAX_LABEL_DELAY_DAYS = 30.0
_FUTURE_OFFSET = timedelta(days=27_000)  # ~74 years: a 2026 timestamp lands around 2100
_BAD_ID_BASE = 900_000_000_000
_UNKNOWN_CARD_BASE = 9_000_000
_UNKNOWN_MERCHANT_BASE = 90_000
_LOGIT_CLIP = 30.0
DRIFT_KINDS: tuple[str, ...] = ("covariate", "concept", "both")
_EPOCH = date(1970, 1, 1)

# Stream ids mixed into the seed so that each kind of draw has its own reproducible sequence.
_S_CARDS, _S_MERCHANTS, _S_TX, _S_TESTING, _S_LABELS, _S_BAD = range(6)


@dataclass(frozen=True)
class LogitWeights:
    """Weights of the observable quantities in the fraud logit (before the intercept)."""

    velocity_1h: float = 0.6  # per earlier transaction of the card in the previous hour (cap 8)
    recency: float = 0.6  # per log10(3600 / seconds since the card's previous tx), 0 if >= 1 h
    distance: float = 1.2  # per log1p(km from home / 50)
    amount_ratio: float = 1.0  # per max(0, ln(amount / card's typical amount))
    online: float = 0.4
    night: float = 0.7  # UTC hour in NIGHT_HOURS
    compromised_merchant: float = 3.0
    new_account: float = 0.8  # times exp(-account age in days / 90)
    micro_online: float = 1.0  # online and amount < 5
    velocity_cap: int = 8


LOGIT_WEIGHTS = LogitWeights()


@dataclass(frozen=True)
class GeneratorConfig:
    cards: int = 2000
    merchants: int = 300
    days: int = 60
    start: date = date(2026, 9, 1)
    seed: int = 42
    fraud_rate: float = 0.01  # target share of transactions that are fraud
    bad_rows: int = 0  # rows of EACH bad kind injected into each daily transactions file
    drift_from: int | None = None  # 0-based day index from which distributions shift
    drift_kind: str = "both"  # one of DRIFT_KINDS: what shifts from drift_from on

    def __post_init__(self) -> None:
        if not 1 <= self.cards < _UNKNOWN_CARD_BASE:
            raise ValueError(f"cards={self.cards}: expected 1 <= cards < {_UNKNOWN_CARD_BASE}")
        if not len(CATEGORIES) <= self.merchants < _UNKNOWN_MERCHANT_BASE:
            raise ValueError(
                f"merchants={self.merchants}: expected {len(CATEGORIES)} <= merchants "
                f"< {_UNKNOWN_MERCHANT_BASE} (one per category at least)"
            )
        if self.days < 1:
            raise ValueError(f"days={self.days}: expected at least 1")
        if not 0.0 < self.fraud_rate < 0.5:
            raise ValueError(f"fraud_rate={self.fraud_rate}: expected 0 < fraud_rate < 0.5")
        if self.bad_rows < 0:
            raise ValueError(f"bad_rows={self.bad_rows}: expected >= 0")
        if self.drift_from is not None and self.drift_from < 0:
            raise ValueError(f"drift_from={self.drift_from}: expected None or a day index >= 0")
        if self.drift_kind not in DRIFT_KINDS:
            raise ValueError(f"drift_kind={self.drift_kind!r}: expected one of {DRIFT_KINDS}")

    @property
    def end(self) -> date:
        """Last generated day (inclusive)."""
        return self.start + timedelta(days=self.days - 1)

    def drift_on(self, day: int) -> _Drift:
        """What has shifted on the 0-based ``day``."""
        if self.drift_from is None or day < self.drift_from:
            return _NO_DRIFT
        return _Drift(
            covariate=self.drift_kind in ("covariate", "both"),
            concept=self.drift_kind in ("concept", "both"),
        )


@dataclass(frozen=True)
class _Drift:
    covariate: bool  # amounts grow and the channel mix moves online
    concept: bool  # card testing (a new fraud pattern) appears

    @property
    def any(self) -> bool:
        return self.covariate or self.concept


_NO_DRIFT = _Drift(covariate=False, concept=False)


@dataclass(frozen=True)
class GenerationSummary:
    transactions: int  # good transactions (bad rows excluded)
    fraud: int  # good transactions whose true label is fraud
    labels_written: int  # labels (fraud and disputes) that arrived within the window
    labels_pending: int  # labels that would arrive after the window (only in the oracle)
    bad_rows: dict[str, int]  # kind -> rows injected over all days
    files: int  # files written into the world
    released_days: int  # days released into the landing zone (the rest are held back)
    start: date
    end: date
    intercept: float  # the calibrated logit intercept
    oracle_mean_probability: float
    data_dir: Path


# --------------------------------------------------------------------------------------------
# Population: cards and merchants
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cards:
    home_lat: np.ndarray
    home_lon: np.ndarray
    home_city: np.ndarray
    typical_amount: np.ndarray
    daily_rate: np.ndarray
    online_share: np.ndarray
    open_day: np.ndarray  # days since 1970-01-01
    frame: pl.DataFrame


@dataclass(frozen=True)
class _Pool:
    """Merchants to draw from, with cumulative weights."""

    members: np.ndarray
    cum: np.ndarray

    def pick(self, rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n) * self.cum[-1]
        idx = np.minimum(np.searchsorted(self.cum, u, side="right"), self.members.size - 1)
        return self.members[idx]


@dataclass(frozen=True)
class _CityPools:
    pools: tuple[_Pool, ...]  # one per city

    def pick(self, rng: np.random.Generator, city: np.ndarray) -> np.ndarray:
        out = np.empty(city.size, dtype=np.int64)
        for c, pool in enumerate(self.pools):
            mask = city == c
            out[mask] = pool.pick(rng, int(mask.sum()))
        return out


@dataclass(frozen=True)
class _Merchants:
    lat: np.ndarray
    lon: np.ndarray
    category: np.ndarray
    compromised_from: np.ndarray  # day index, -1 if never compromised
    compromised_to: np.ndarray  # exclusive day index
    instore: _CityPools
    online: _Pool
    risky_instore: _CityPools
    risky_online: _Pool
    digital: _Pool
    frame: pl.DataFrame


def _day_number(day: date) -> int:
    """Days since 1970-01-01."""
    return (day - _EPOCH).days


def _rng(config: GeneratorConfig, stream: int, day: int = 0) -> np.random.Generator:
    return np.random.default_rng([config.seed, stream, day])


def _city_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lat = np.array([c[1] for c in CITIES])
    lon = np.array([c[2] for c in CITIES])
    share = np.array([c[3] for c in CITIES])
    return lat, lon, share / share.sum()


def _other_city(rng: np.random.Generator, city: np.ndarray) -> np.ndarray:
    return (city + rng.integers(1, len(CITIES), size=city.size)) % len(CITIES)


def _make_cards(config: GeneratorConfig) -> _Cards:
    rng = _rng(config, _S_CARDS)
    n = config.cards
    city_lat, city_lon, city_share = _city_arrays()
    # About one card in ten belongs to the customer of the previous card (and shares the home).
    second_card = rng.random(n) < 0.1
    second_card[0] = False
    customer = np.cumsum(~second_card) - 1
    n_customers = int(customer[-1]) + 1
    cust_city = rng.choice(len(CITIES), size=n_customers, p=city_share)
    cust_lat = city_lat[cust_city] + rng.normal(0.0, 0.08, n_customers)
    cust_lon = city_lon[cust_city] + rng.normal(0.0, 0.10, n_customers)
    age_band = rng.choice(len(AGE_BANDS), size=n, p=[0.12, 0.24, 0.30, 0.22, 0.12])
    online_factor = np.array([1.3, 1.2, 1.0, 0.8, 0.6])[age_band]
    online_share = np.minimum(rng.beta(3.0, 7.0, n) * online_factor, 0.95)
    typical = rng.lognormal(math.log(35.0), 0.5, n)
    daily_rate = rng.gamma(2.0, _MEAN_DAILY_RATE / 2.0, n)
    credit_limit = np.clip(np.round(typical * 100 * rng.lognormal(0, 0.3, n), -2), 500, 50_000)
    recent = rng.random(n) < 0.12
    days_open = np.where(recent, rng.integers(1, 180, n), rng.integers(180, 3650, n))
    start_day = _day_number(config.start)
    open_day = start_day - days_open
    ids = pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(7)
    cust_ids = pl.Series(customer + 1).cast(pl.String).str.zfill(7)
    home_lat, home_lon = cust_lat[customer], cust_lon[customer]
    frame = pl.DataFrame(
        {
            "card_id": "c" + ids,
            "customer_id": "u" + cust_ids,
            "home_lat": np.round(home_lat, 6),
            "home_lon": np.round(home_lon, 6),
            "credit_limit": credit_limit.astype(np.float64),
            "age_band": _labels(AGE_BANDS, age_band),
            "account_open_date": pl.Series(open_day.astype(np.int32)).cast(pl.Date),
        }
    )
    return _Cards(
        home_lat=frame["home_lat"].to_numpy(),
        home_lon=frame["home_lon"].to_numpy(),
        home_city=cust_city[customer],
        typical_amount=typical,
        daily_rate=daily_rate,
        online_share=online_share,
        open_day=open_day.astype(np.int64),
        frame=frame.select(list(CARD_COLUMNS)),
    )


def _pool(members: np.ndarray, weights: np.ndarray, fallback: _Pool | None) -> _Pool:
    keep = weights[members] > 0
    members = members[keep]
    if members.size == 0:
        if fallback is None:
            raise ValueError("no merchant can serve this kind of transaction; add merchants")
        return fallback
    return _Pool(members=members, cum=np.cumsum(weights[members]))


def _city_pools(city: np.ndarray, weights: np.ndarray, fallback: _Pool) -> _CityPools:
    """One pool per city; a city without a suitable merchant draws from all cities."""
    everywhere = _pool(np.arange(city.size), weights, fallback)
    return _CityPools(
        tuple(_pool(np.flatnonzero(city == c), weights, everywhere) for c in range(len(CITIES)))
    )


def _make_merchants(config: GeneratorConfig) -> _Merchants:
    rng = _rng(config, _S_MERCHANTS)
    n = config.merchants
    city_lat, city_lon, city_share = _city_arrays()
    share = _CAT_MERCHANT_SHARE / _CAT_MERCHANT_SHARE.sum()
    category = np.concatenate(
        [np.arange(len(CATEGORIES)), rng.choice(len(CATEGORIES), size=n - len(CATEGORIES), p=share)]
    )
    category = rng.permutation(category)
    city = rng.choice(len(CITIES), size=n, p=city_share)
    lat = np.round(city_lat[city] + rng.normal(0.0, 0.06, n), 6)
    lon = np.round(city_lon[city] + rng.normal(0.0, 0.08, n), 6)
    popularity = rng.lognormal(0.0, 0.8, n)

    n_comp = max(1, round(_COMPROMISED_MERCHANT_SHARE * n))
    comp_idx = rng.choice(n, size=n_comp, replace=False)
    comp_from = np.full(n, -1, dtype=np.int64)
    comp_to = np.full(n, -1, dtype=np.int64)
    comp_from[comp_idx] = rng.integers(0, config.days, n_comp)
    comp_to[comp_idx] = comp_from[comp_idx] + rng.integers(5, 15, n_comp)
    compromised = comp_from >= 0
    # The risk profile leans on the category and on being compromised, with noise.
    score = CATEGORY_RISK[category] + 1.5 * compromised + rng.normal(0.0, 0.5, n)
    risk = np.digitize(score, [0.35, 1.1])

    instore_w = _CAT_INSTORE_W[category] * popularity
    online_w = _CAT_ONLINE_W[category] * popularity
    all_instore = _pool(np.arange(n), instore_w, None)
    instore = _city_pools(city, instore_w, all_instore)
    online = _pool(np.arange(n), online_w, None)
    risky_instore = _city_pools(city, instore_w * _RISKY[category], all_instore)
    risky_online = _pool(np.arange(n), online_w * _RISKY[category], online)
    digital = _pool(np.arange(n), popularity * _DIGITAL[category], risky_online)

    ids = pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(5)
    frame = pl.DataFrame(
        {
            "merchant_id": "m" + ids,
            "category": _labels(CATEGORIES, category),
            "lat": lat,
            "lon": lon,
            "risk_profile": _labels(RISK_PROFILES, risk),
        }
    )
    return _Merchants(
        lat=lat,
        lon=lon,
        category=category,
        compromised_from=comp_from,
        compromised_to=comp_to,
        instore=instore,
        online=online,
        risky_instore=risky_instore,
        risky_online=risky_online,
        digital=digital,
        frame=frame.select(list(MERCHANT_COLUMNS)),
    )


# --------------------------------------------------------------------------------------------
# One day of transactions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Events:
    card: np.ndarray
    time_us: np.ndarray  # microseconds since the epoch, UTC
    merchant: np.ndarray
    online: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    amount: np.ndarray
    pattern: np.ndarray

    @staticmethod
    def concat(parts: list[_Events]) -> _Events:
        return _Events(
            **{
                name: np.concatenate([getattr(p, name) for p in parts])
                for name in _Events.__dataclass_fields__
            }
        )

    def take(self, order: np.ndarray) -> _Events:
        return _Events(
            **{name: getattr(self, name)[order] for name in _Events.__dataclass_fields__}
        )


@dataclass(frozen=True)
class _History:
    """What the next day needs to know about the cards' earlier transactions."""

    last_us: np.ndarray  # time of each card's latest transaction, -1 if none yet
    tail_card: np.ndarray  # transactions of the last hour of the previous day
    tail_us: np.ndarray

    @staticmethod
    def empty(cards: int) -> _History:
        return _History(
            np.full(cards, -1, dtype=np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
        )


@dataclass(frozen=True)
class _Day:
    events: _Events  # sorted by time
    logit: np.ndarray


def _round_amount(amount: np.ndarray) -> np.ndarray:
    return np.round(np.clip(amount, 0.5, MAX_AMOUNT / 2), 2)


def _jitter(
    rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, deg: float
) -> tuple[np.ndarray, np.ndarray]:
    return lat + rng.normal(0.0, deg, lat.size), lon + rng.normal(0.0, deg, lon.size)


def _legit_events(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    day: int,
    day_us: int,
    covariate_drift: bool,
) -> _Events:
    counts = rng.poisson(cards.daily_rate)
    card = np.repeat(np.arange(cards.home_lat.size), counts)
    n = card.size
    hour = rng.choice(24, size=n, p=_HOUR_P)
    time_us = day_us + hour * _US_PER_HOUR + rng.integers(0, _US_PER_HOUR, n)
    share = cards.online_share
    if covariate_drift:
        share = share + (1.0 - share) * _DRIFT_ONLINE_SHIFT
    online = rng.random(n) < share[card]
    home = cards.home_city[card]
    travel = rng.random(n) < _TRAVEL_SHARE
    city = np.where(travel, _other_city(rng, home), home)
    merchant = np.empty(n, dtype=np.int64)
    merchant[~online] = merchants.instore.pick(rng, city[~online])
    merchant[online] = merchants.online.pick(rng, int(online.sum()))
    # In store: the merchant's location. Online: where the IP is, mostly near home.
    ip_lat, ip_lon = _jitter(rng, cards.home_lat[card], cards.home_lon[card], 0.05)
    city_lat, city_lon, _ = _city_arrays()
    away = rng.random(n) < _ONLINE_ELSEWHERE_SHARE
    away_city = _other_city(rng, home)
    ip_lat = np.where(away, city_lat[away_city] + rng.normal(0, 0.05, n), ip_lat)
    ip_lon = np.where(away, city_lon[away_city] + rng.normal(0, 0.05, n), ip_lon)
    lat = np.where(online, ip_lat, merchants.lat[merchant])
    lon = np.where(online, ip_lon, merchants.lon[merchant])
    category = merchants.category[merchant]
    amount = cards.typical_amount[card] * _CAT_AMOUNT_SCALE[category] * rng.lognormal(0, 0.5, n)
    if covariate_drift:
        amount = amount * _DRIFT_AMOUNT_FACTOR
    compromised = (merchants.compromised_from[merchant] <= day) & (
        day < merchants.compromised_to[merchant]
    )
    pattern = np.where(compromised, _COMPROMISED, _NONE).astype(np.int8)
    return _Events(card, time_us, merchant, online, lat, lon, _round_amount(amount), pattern)


def _episodes(
    rng: np.random.Generator, cards: int, card_day_prob: float, lengths: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Cards hit today, and the episode (index into those cards) of each event."""
    hit = np.flatnonzero(rng.random(cards) < card_day_prob)
    length = rng.integers(lengths[0], lengths[1] + 1, hit.size)
    return hit, np.repeat(np.arange(hit.size), length)


def _burst_events(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    config: GeneratorConfig,
    day_us: int,
    covariate_drift: bool,
) -> _Events:
    """Stolen-card episodes: 2-8 transactions within an hour, far from home or online."""
    card_day_prob = (
        _BURST_SHARE_OF_FRAUD_RATE * config.fraud_rate * _MEAN_DAILY_RATE / _MEAN_BURST_LEN
    )
    hit, episode = _episodes(rng, cards.home_lat.size, card_day_prob, (2, 8))
    n_ep, n = hit.size, episode.size
    card = hit[episode]
    start = rng.integers(0, _US_PER_DAY - _US_PER_HOUR, n_ep)
    time_us = day_us + start[episode] + rng.integers(0, _US_PER_HOUR, n)
    online = (rng.random(n_ep) < 0.6)[episode]
    city = _other_city(rng, cards.home_city[hit])[episode]
    merchant = np.empty(n, dtype=np.int64)
    merchant[~online] = merchants.risky_instore.pick(rng, city[~online])
    merchant[online] = merchants.risky_online.pick(rng, int(online.sum()))
    city_lat, city_lon, _ = _city_arrays()
    ip_lat, ip_lon = _jitter(rng, city_lat[city], city_lon[city], 0.05)
    lat = np.where(online, ip_lat, merchants.lat[merchant])
    lon = np.where(online, ip_lon, merchants.lon[merchant])
    category = merchants.category[merchant]
    amount = (
        cards.typical_amount[card]
        * _CAT_AMOUNT_SCALE[category]
        * rng.uniform(2.0, 6.0, n)
        * rng.lognormal(0, 0.3, n)
    )
    if covariate_drift:
        amount = amount * _DRIFT_AMOUNT_FACTOR
    pattern = np.full(n, _BURST, dtype=np.int8)
    return _Events(card, time_us, merchant, online, lat, lon, _round_amount(amount), pattern)


def _card_testing_events(
    rng: np.random.Generator,
    cards: _Cards,
    merchants: _Merchants,
    config: GeneratorConfig,
    day_us: int,
) -> _Events:
    """The concept-drift pattern: 3-12 tiny online digital-goods payments within 15 minutes."""
    card_day_prob = _CARD_TESTING_CARD_DAY_PROB_PER_FRAUD_RATE * config.fraud_rate
    hit, episode = _episodes(rng, cards.home_lat.size, card_day_prob, (3, 12))
    n_ep, n = hit.size, episode.size
    card = hit[episode]
    span = 15 * 60 * _US_PER_S
    start = rng.integers(0, _US_PER_DAY - span, n_ep)
    time_us = day_us + start[episode] + rng.integers(0, span, n)
    merchant = merchants.digital.pick(rng, n)
    city = _other_city(rng, cards.home_city[hit])[episode]
    city_lat, city_lon, _ = _city_arrays()
    lat, lon = _jitter(rng, city_lat[city], city_lon[city], 0.05)
    amount = np.round(rng.uniform(0.5, 4.99, n), 2)
    online = np.ones(n, dtype=bool)
    pattern = np.full(n, _CARD_TESTING, dtype=np.int8)
    return _Events(card, time_us, merchant, online, lat, lon, amount, pattern)


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km (the same formula features should use for distance from home)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _card_history_stats(
    ev: _Events, history: _History, day_us: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per event: the card's transactions in the previous hour, and seconds since its previous."""
    origin = day_us - _US_PER_HOUR
    n_tail = history.tail_card.size
    card = np.concatenate([history.tail_card, ev.card])
    rel = np.concatenate([history.tail_us, ev.time_us]) - origin
    key = (card << 38) | rel  # rel < 2**38 us (3 days), cards < 2**24
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    pos = np.empty(key.size, dtype=np.int64)
    pos[order] = np.arange(key.size)
    pos_ev = pos[n_tail:]
    key_ev = key[n_tail:]
    count_1h = pos_ev - np.searchsorted(sorted_key, key_ev - _US_PER_HOUR, side="left")
    prev_pos = np.maximum(pos_ev - 1, 0)
    prev_same = (pos_ev > 0) & ((sorted_key[prev_pos] >> 38) == ev.card)
    prev_us = np.where(
        prev_same, (sorted_key[prev_pos] & ((1 << 38) - 1)) + origin, history.last_us[ev.card]
    )
    gap_s = np.where(prev_us >= 0, (ev.time_us - prev_us) / _US_PER_S, np.inf)
    return count_1h, gap_s


def _logit(
    ev: _Events,
    count_1h: np.ndarray,
    gap_s: np.ndarray,
    cards: _Cards,
    merchants: _Merchants,
    day: int,
    day_abs: int,
) -> np.ndarray:
    w = LOGIT_WEIGHTS
    category = merchants.category[ev.merchant]
    dist = haversine_km(ev.lat, ev.lon, cards.home_lat[ev.card], cards.home_lon[ev.card])
    ratio = ev.amount / cards.typical_amount[ev.card]
    hour = (ev.time_us // _US_PER_HOUR) % 24
    night = (hour >= NIGHT_HOURS.start) & (hour < NIGHT_HOURS.stop)
    recency = np.log10(3600.0 / np.clip(gap_s, 1.0, 3600.0))
    compromised = (merchants.compromised_from[ev.merchant] <= day) & (
        day < merchants.compromised_to[ev.merchant]
    )
    age_days = day_abs - cards.open_day[ev.card]
    return (
        w.velocity_1h * np.minimum(count_1h, w.velocity_cap)
        + w.recency * recency
        + w.distance * np.log1p(dist / 50.0)
        + w.amount_ratio * np.maximum(np.log(ratio), 0.0)
        + CATEGORY_RISK[category]
        + w.online * ev.online
        + w.night * night
        + w.compromised_merchant * compromised
        + w.new_account * np.exp(-age_days / 90.0)
        + w.micro_online * (ev.online & (ev.amount < 5.0))
    )


def _simulate_day(
    config: GeneratorConfig,
    cards: _Cards,
    merchants: _Merchants,
    day: int,
    history: _History,
    drift: _Drift,
) -> tuple[_Day, _History]:
    day_abs = _day_number(config.start) + day
    day_us = day_abs * _US_PER_DAY
    rng = _rng(config, _S_TX, day)
    parts = [
        _legit_events(rng, cards, merchants, day, day_us, drift.covariate),
        _burst_events(rng, cards, merchants, config, day_us, drift.covariate),
    ]
    if drift.concept:
        parts.append(
            _card_testing_events(_rng(config, _S_TESTING, day), cards, merchants, config, day_us)
        )
    ev = _Events.concat(parts)
    ev = ev.take(np.lexsort((ev.card, ev.time_us)))
    count_1h, gap_s = _card_history_stats(ev, history, day_us)
    logit = _logit(ev, count_1h, gap_s, cards, merchants, day, day_abs)

    last_us = history.last_us.copy()
    np.maximum.at(last_us, ev.card, ev.time_us)
    tail = ev.time_us >= day_us + _US_PER_DAY - _US_PER_HOUR
    return _Day(ev, logit), _History(last_us, ev.card[tail], ev.time_us[tail])


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _labels(values: tuple[str, ...], index: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(index)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    return prefix + pl.Series(numbers.astype(np.int64)).cast(pl.String).str.zfill(width)


def _utc(us: np.ndarray) -> pl.Series:
    return pl.from_epoch(pl.Series(us.astype(np.int64)), time_unit="us").dt.replace_time_zone("UTC")


def _transactions_frame(
    day: _Day, first_number: int, cards: _Cards, merchants: _Merchants
) -> pl.DataFrame:
    ev = day.events
    numbers = np.arange(first_number, first_number + ev.card.size)
    frame = pl.DataFrame(
        {
            "transaction_id": _ids("t", numbers, 12),
            "card_id": cards.frame["card_id"].gather(ev.card),
            "merchant_id": merchants.frame["merchant_id"].gather(ev.merchant),
            "amount": ev.amount,
            "category": merchants.frame["category"].gather(ev.merchant),
            "channel": _labels(CHANNELS, np.where(ev.online, 0, 1)),
            "transaction_time": _utc(ev.time_us),
            "lat": np.round(ev.lat, 6),
            "lon": np.round(ev.lon, 6),
        }
    )
    return frame.select(list(TRANSACTION_COLUMNS))


_ISO_UTC = "%Y-%m-%dT%H:%M:%S%.6f+00:00"
_ISO_NAIVE = "%Y-%m-%dT%H:%M:%S%.6f"


def _with_bad_rows(
    good: pl.DataFrame, config: GeneratorConfig, day: int, bad_number: int
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Good rows plus ``bad_rows`` rows of each kind, as an upstream export would carry them."""
    rng = _rng(config, _S_BAD, day)
    n, n_good = config.bad_rows, good.height
    exported = good.with_columns(pl.col("transaction_time").dt.strftime(_ISO_UTC))
    counts = dict.fromkeys(BAD_ROW_KINDS, 0)
    bad: list[pl.DataFrame] = []
    if n_good > 0:
        for kind_idx, kind in enumerate(BAD_ROW_KINDS):
            rows = good[rng.integers(0, n_good, n)]
            number = bad_number + kind_idx * n + np.arange(n)
            if kind != "duplicate_transaction_id":
                rows = rows.with_columns(transaction_id=_ids("t", _BAD_ID_BASE + number, 12))
            bad.append(_corrupt(rows, kind, number))
            counts[kind] = n
    frame = pl.concat([exported, *bad]) if bad else exported
    # Bad rows sit at random places among the good rows (kept in time order).
    keys = np.concatenate(
        [np.arange(n_good, dtype=np.float64), rng.random(frame.height - n_good) * max(n_good, 1)]
    )
    frame = frame[np.argsort(keys, kind="stable")]
    debug = f"exporter=v2.3.1;batch={(config.start + timedelta(days=day)).isoformat()}"
    return frame.with_columns(pl.lit(debug).alias(PRODUCER_DEBUG_COLUMN)), counts


def _corrupt(rows: pl.DataFrame, kind: str, number: np.ndarray) -> pl.DataFrame:
    """One defect of the given kind; the time column comes back as ISO-8601 strings."""
    time = pl.col("transaction_time")
    as_iso = time.dt.strftime(_ISO_UTC)
    change: dict[str, pl.Expr | pl.Series] = {}
    if kind == "null_transaction_id":
        change["transaction_id"] = pl.lit(None, dtype=pl.String)
    elif kind == "null_card_id":
        change["card_id"] = pl.lit(None, dtype=pl.String)
    elif kind == "negative_amount":
        change["amount"] = -pl.col("amount").abs()
    elif kind == "nonfinite_amount":
        change["amount"] = pl.Series(np.where(number % 2 == 0, np.nan, np.inf))
    elif kind == "absurd_amount":
        change["amount"] = pl.lit(ABSURD_AMOUNT)
    elif kind == "unknown_card":
        change["card_id"] = _ids("c", _UNKNOWN_CARD_BASE + number % 999_999, 7)
    elif kind == "unknown_merchant":
        change["merchant_id"] = _ids("m", _UNKNOWN_MERCHANT_BASE + number % 9_999, 5)
    elif kind == "future_timestamp":
        as_iso = (time + _FUTURE_OFFSET).dt.strftime(_ISO_UTC)
    elif kind == "unknown_category":
        change["category"] = pl.lit(UNKNOWN_CATEGORY)
    elif kind == "naive_timestamp":
        as_iso = time.dt.strftime(_ISO_NAIVE)
    elif kind != "duplicate_transaction_id":
        raise ValueError(f"unknown bad-row kind {kind!r}; expected one of {BAD_ROW_KINDS}")
    return rows.with_columns(transaction_time=as_iso, **change)


def _empty_labels() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "transaction_id": pl.String,
            "is_fraud": pl.Int8,
            "reported_at": pl.Datetime("us", "UTC"),
        }
    ).select(list(FRAUD_LABEL_COLUMNS))


def _calibrate_intercept(logits: np.ndarray, target: float) -> float:
    """The b with mean(sigmoid(b + logit)) == target: bisection, sped up by Newton steps.

    mean(sigmoid(b + logit)) increases with b, so the bracket [lo, hi] always holds the root; a
    Newton step is taken when it stays inside the bracket, else the midpoint.
    """
    lo, hi = -2 * _LOGIT_CLIP, 2 * _LOGIT_CLIP
    b = math.log(target / (1 - target)) - float(np.median(logits))
    for _ in range(200):
        p = _sigmoid(b + logits)
        error = float(p.mean()) - target
        if abs(error) < 1e-10 * target:
            break
        if error < 0:
            lo = b
        else:
            hi = b
        slope = float((p * (1 - p)).mean())
        step = b - error / slope if slope > 0 else lo - 1.0
        b = step if lo < step < hi else (lo + hi) / 2
        if hi - lo < 1e-12:
            break
    return b


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -_LOGIT_CLIP, _LOGIT_CLIP)))


def _label_delay_us(rng: np.random.Generator, n: int) -> np.ndarray:
    """1-30 days, truncated exponential beyond the first day: most within a week."""
    span = _MAX_LABEL_DELAY_DAYS - 1.0
    tail = -_LABEL_DELAY_SCALE_DAYS * np.log1p(
        -rng.random(n) * (1.0 - math.exp(-span / _LABEL_DELAY_SCALE_DAYS))
    )
    return ((1.0 + tail) * _US_PER_DAY).astype(np.int64)


def _prepare_dirs(data_dir: Path) -> tuple[Path, Path, Path, Path]:
    world = data_dir / WORLD_DIR
    tx_dir, labels_dir, oracle_dir = (
        world / TRANSACTIONS_DIR,
        world / FRAUD_LABELS_DIR,
        data_dir / ORACLE_DIR,
    )
    for folder in (tx_dir, labels_dir, oracle_dir):
        folder.mkdir(parents=True, exist_ok=True)
    # A shorter run must not leave the days of a longer previous run behind.
    for folder in (tx_dir, labels_dir):
        for old in folder.glob("*.parquet"):
            old.unlink()
    (oracle_dir / ORACLE_FILE).unlink(missing_ok=True)
    return world, tx_dir, labels_dir, oracle_dir


@dataclass
class _RunLog:
    """What phase 1 keeps per day for phase 2 (labels and oracle)."""

    logits: list[np.ndarray] = field(default_factory=list)
    calibration: list[np.ndarray] = field(default_factory=list)  # no-drift logits
    time_us: list[np.ndarray] = field(default_factory=list)
    pattern: list[np.ndarray] = field(default_factory=list)
    first_number: list[int] = field(default_factory=list)
    bad_rows: dict[str, dict[str, int]] = field(default_factory=dict)


def _write_transactions(
    config: GeneratorConfig,
    cards: _Cards,
    merchants: _Merchants,
    tx_dir: Path,
    progress: bool,
) -> _RunLog:
    log = _RunLog()
    history = _History.empty(config.cards)
    shadow: _History | None = None  # the same run without drift, for the intercept
    number, bad_number = 1, 0
    for day in tqdm(range(config.days), disable=not progress, desc="generating", unit="day"):
        drift = config.drift_on(day)
        if drift.any and shadow is None:
            shadow = history
        result, history = _simulate_day(config, cards, merchants, day, history, drift)
        if drift.any and shadow is not None:
            no_drift, shadow = _simulate_day(config, cards, merchants, day, shadow, _NO_DRIFT)
            log.calibration.append(no_drift.logit)
        else:
            log.calibration.append(result.logit)
        frame = _transactions_frame(result, number, cards, merchants)
        iso_day = (config.start + timedelta(days=day)).isoformat()
        if config.bad_rows > 0:
            frame, counts = _with_bad_rows(frame, config, day, bad_number)
            bad_number += sum(counts.values())
            log.bad_rows[iso_day] = counts
        frame.write_parquet(tx_dir / f"{iso_day}.parquet")
        log.logits.append(result.logit)
        log.time_us.append(result.events.time_us)
        log.pattern.append(result.events.pattern)
        log.first_number.append(number)
        number += result.events.card.size
    return log


def _write_labels_and_oracle(
    config: GeneratorConfig, log: _RunLog, intercept: float, labels_dir: Path, oracle_path: Path
) -> dict[str, int]:
    end_us = (_day_number(config.end) + 1) * _US_PER_DAY
    label_numbers, label_values, label_us = [], [], []
    fraud_total, n_total, disputes = 0, 0, 0
    writer: pq.ParquetWriter | None = None
    for day in range(config.days):
        rng = _rng(config, _S_LABELS, day)
        p = _sigmoid(intercept + log.logits[day])
        is_fraud = rng.random(p.size) < p
        disputed = (rng.random(p.size) < _DISPUTE_SHARE) & ~is_fraud
        numbers = log.first_number[day] + np.arange(p.size)
        labelled = np.flatnonzero(is_fraud | disputed)
        label_numbers.append(numbers[labelled])
        label_values.append(is_fraud[labelled].astype(np.int8))
        label_us.append(log.time_us[day][labelled] + _label_delay_us(rng, labelled.size))
        fraud_total += int(is_fraud.sum())
        disputes += int(disputed.sum())
        n_total += p.size
        table = pl.DataFrame(
            {
                "transaction_id": _ids("t", numbers, 12),
                "fraud_probability": p,
                "is_fraud": is_fraud.astype(np.int8),
                "pattern": _labels(PATTERNS, log.pattern[day]),
            }
        ).to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(oracle_path, table.schema, compression="zstd")
        writer.write_table(table)
    if writer is not None:
        writer.close()

    numbers = np.concatenate(label_numbers)
    values = np.concatenate(label_values)
    reported = np.concatenate(label_us)
    arrived = reported < end_us
    order = np.lexsort((numbers[arrived], reported[arrived]))
    numbers, values, reported = (
        numbers[arrived][order],
        values[arrived][order],
        reported[arrived][order],
    )
    start_us = _day_number(config.start) * _US_PER_DAY
    bounds = np.searchsorted(reported, start_us + _US_PER_DAY * np.arange(config.days + 1))
    for day in range(config.days):
        lo, hi = bounds[day], bounds[day + 1]
        if hi > lo:
            frame = pl.DataFrame(
                {
                    "transaction_id": _ids("t", numbers[lo:hi], 12),
                    "is_fraud": pl.Series(values[lo:hi], dtype=pl.Int8),
                    "reported_at": _utc(reported[lo:hi]),
                }
            )
        else:
            frame = _empty_labels()
        iso_day = (config.start + timedelta(days=day)).isoformat()
        frame.write_parquet(labels_dir / f"{iso_day}.parquet")
    return {
        "transactions": n_total,
        "fraud": fraud_total,
        "disputes": disputes,
        "labels_written": int(arrived.sum()),
        "labels_pending": int((~arrived).sum()),
    }


def generate(
    config: GeneratorConfig, data_dir: Path, progress: bool = False, hold_back: int = 0
) -> GenerationSummary:
    """Write the world and the oracle for ``config`` under ``data_dir``, then release every day
    but the last ``hold_back`` into the landing zone (whose earlier contents it replaces).

    Files of an earlier run in the same folder are replaced; the same config always writes
    byte-identical files.
    """
    if not 0 <= hold_back <= config.days:
        raise ValueError(f"hold_back={hold_back}: expected 0 <= hold_back <= days ({config.days})")
    data_dir = Path(data_dir)
    world, tx_dir, labels_dir, oracle_dir = _prepare_dirs(data_dir)
    cards = _make_cards(config)
    merchants = _make_merchants(config)
    cards.frame.write_parquet(world / CARDS_FILE)
    merchants.frame.write_parquet(world / MERCHANTS_FILE)

    log = _write_transactions(config, cards, merchants, tx_dir, progress)
    intercept = _calibrate_intercept(np.concatenate(log.calibration), config.fraud_rate)
    oracle_mean = float(_sigmoid(intercept + np.concatenate(log.logits)).mean())
    counts = _write_labels_and_oracle(config, log, intercept, labels_dir, oracle_dir / ORACLE_FILE)
    bad_totals = {
        kind: sum(day_counts[kind] for day_counts in log.bad_rows.values())
        for kind in BAD_ROW_KINDS
    }
    config_json = {**asdict(config), "start": config.start.isoformat()}
    manifest = {
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "config": config_json,
        "drift": _drift_manifest(config),
        "counts": {
            "cards": config.cards,
            "merchants": config.merchants,
            **counts,
            "bad_rows": sum(bad_totals.values()),
        },
        "bad_rows": log.bad_rows,
    }
    (world / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    released = release_world(world, data_dir / LANDING_DIR, config.days - hold_back)
    summary = GenerationSummary(
        transactions=counts["transactions"],
        fraud=counts["fraud"],
        labels_written=counts["labels_written"],
        labels_pending=counts["labels_pending"],
        bad_rows=bad_totals,
        files=2 * config.days + 4,
        released_days=len(released),
        start=config.start,
        end=config.end,
        intercept=intercept,
        oracle_mean_probability=oracle_mean,
        data_dir=data_dir,
    )
    logger.info(
        "generated %d transactions (%d fraud) over %d days into %s; %d days released",
        summary.transactions,
        summary.fraud,
        config.days,
        data_dir,
        len(released),
    )
    return summary


def _drift_manifest(config: GeneratorConfig) -> dict | None:
    """The drift as the manifest records it: kind, first day index and first date."""
    if config.drift_from is None:
        return None
    return {
        "kind": config.drift_kind,
        "from_day_index": config.drift_from,
        "from": (config.start + timedelta(days=config.drift_from)).isoformat(),
    }
