"""Online feature vectors equal training rows; the champion model follows its alias file.

The helpers :func:`random_group_frame` and :func:`training_frame` build spec-driven synthetic
feature rows and model training data; tests/test_service.py and benchmarks/bench_service.py
reuse them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.features.groups import CARD_TRANSACTION_FEATURES
from fti_assets.lib.features.on_demand import col, compute_on_demand
from fti_assets.lib.features.vectors import join_features
from fti_assets.lib.features.views import FeatureView, ResolvedView, resolve
from fti_assets.lib.features.windows import build_card_transaction_features
from fti_assets.lib.inference.serving import ChampionModel, FeatureAssembler
from fti_assets.lib.ingest.domain import AGE_BANDS, CATEGORIES, CHANNELS, RISK_PROFILES
from fti_assets.lib.registry import model_registry as registry_module
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.group_spec import FeatureGroupSpec, FeatureSpec
from fti_assets.lib.store.offline import connect
from fti_assets.lib.store.online import OnlineStore
from fti_assets.lib.training.train import TrainParams, TrainResult, train_model
from fti_assets.specs.feature_groups import (
    CARD_DAILY_FEATURES,
    CARD_PROFILE_FEATURES,
    FEATURE_GROUPS,
    MERCHANT_DAILY_FEATURES,
    MERCHANT_PROFILE_FEATURES,
    online_groups,
)
from fti_assets.specs.feature_views import FRAUD_FEATURES, resolved

VIEW = resolved(FRAUD_FEATURES)
REQUEST_FIELDS = ("amount", "category", "channel", "lat", "lon")
VECTOR_FIELDS = (*REQUEST_FIELDS, "transaction_time")
# What the registry records of the view a model was trained on (a dataset manifest's entry).
VIEW_RECORD = {
    "name": FRAUD_FEATURES.name,
    "version": FRAUD_FEATURES.version,
    "fingerprint": FRAUD_FEATURES.fingerprint(),
    "definition": FRAUD_FEATURES.to_dict(),
}


def assembler_for(store, view: ResolvedView = VIEW) -> FeatureAssembler:
    return FeatureAssembler(
        store, view, request_fields=REQUEST_FIELDS, time_field="transaction_time"
    )


UTC_US = pl.Datetime("us", "UTC")
T0 = datetime(2026, 9, 1, tzinfo=UTC)
_VOCABULARIES = {
    "age_band": AGE_BANDS,
    "merchant_category": CATEGORIES,
    "merchant_risk_profile": RISK_PROFILES,
    "last_channel": CHANNELS,
    "last_category": CATEGORIES,
}


# ----------------------------------------------------------------------------------------------
# Synthetic data (shared with tests/test_service.py and benchmarks/bench_service.py)
# ----------------------------------------------------------------------------------------------


def _random_column(
    feature: FeatureSpec, n: int, rng: np.random.Generator, event_times: pl.Series
) -> pl.Series:
    name = feature.name
    if feature.dtype == "float64":
        if name.endswith("lat"):
            low, high = -60.0, 70.0
        elif name.endswith("lon"):
            low, high = -170.0, 170.0
        else:
            low = 0.0 if feature.min_value is None else float(feature.min_value)
            high = 500.0 if feature.max_value is None else float(feature.max_value)
        values = pl.Series(name, rng.uniform(low, high, n))
    elif feature.dtype == "int64":
        values = pl.Series(name, rng.integers(0, 60, n))
    elif feature.dtype == "string":
        vocabulary = _VOCABULARIES.get(name, ("a", "b", "c"))
        values = pl.Series(name, np.asarray(vocabulary)[rng.integers(0, len(vocabulary), n)])
    elif feature.dtype == "date":
        days = pl.Series(rng.integers(1, 900, n)) * timedelta(days=1)
        values = (event_times - days).dt.date().alias(name)
    elif feature.dtype == "bool":
        values = pl.Series(name, rng.random(n) < 0.5)
    else:
        raise ValueError(f"no random values for dtype {feature.dtype!r} of {name!r}")
    if feature.nullable and n:
        values = values.scatter(np.flatnonzero(rng.random(n) < 0.1), None)
    return values


def random_group_frame(
    spec: FeatureGroupSpec, keys: list[str], event_times: list[datetime] | pl.Series, seed: int
) -> pl.DataFrame:
    """Rows of a single-key group: ``keys[i]`` at ``event_times[i]`` with random features."""
    rng = np.random.default_rng(seed)
    times = pl.Series(spec.event_time, event_times, dtype=UTC_US)
    columns = [pl.Series(spec.entity_keys[0], keys, dtype=pl.String), times]
    columns += [_random_column(f, len(keys), rng, times) for f in spec.features]
    return pl.DataFrame(columns)


def training_frame(n: int, seed: int, *, label_shift: float = 0.0) -> pl.DataFrame:
    """``n`` rows with the columns of ``model_feature_columns(online groups)`` and is_fraud.

    Group features are random; the request fields are plausible and the on-demand features are
    computed from them with the real code, so a model trained here reacts to what the service
    sends. The label depends on the amount, the channel and the distance from home.
    """
    rng = np.random.default_rng(seed)
    keys = [f"card_{i}" for i in range(n)]
    event_times = pl.Series([T0] * n, dtype=UTC_US) + pl.Series(
        rng.integers(0, 30 * 86_400, n) * 1_000_000
    ).cast(pl.Duration("us"))
    frame = pl.DataFrame(
        {
            "amount": rng.lognormal(3.5, 1.0, n),
            "category": np.asarray(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)],
            "channel": np.asarray(CHANNELS)[rng.integers(0, len(CHANNELS), n)],
            "lat": rng.uniform(-60, 70, n),
            "lon": rng.uniform(-170, 170, n),
            "transaction_time": event_times
            + pl.Series(rng.integers(1, 86_400, n) * 1_000_000).cast(pl.Duration("us")),
        }
    )
    for i, spec in enumerate(online_groups()):
        group = random_group_frame(spec, keys, event_times, seed * 10 + i)
        renames = {f: col(spec.name, f) for f in spec.feature_names}
        renames[spec.event_time] = col(spec.name, "event_time")
        frame = frame.hstack(group.drop(spec.entity_keys).rename(renames).get_columns())
    frame = compute_on_demand(frame)
    distance = frame["distance_from_home_km"].fill_null(0).to_numpy()
    logit = (
        -3.0
        + label_shift
        + 0.8 * np.log(frame["amount"].to_numpy() / 30.0)
        + 1.2 * (frame["channel"] == "online").to_numpy()
        + distance / 10_000.0
    )
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return frame.with_columns(pl.Series("is_fraud", label))


def train_small_model(out_dir: Path, seed: int, n_estimators: int = 30) -> TrainResult:
    """A real LightGBM artifact over the service's feature names (seconds)."""
    numeric_and_categorical, categorical = resolved(FRAUD_FEATURES).input_columns()
    numeric = [c for c in numeric_and_categorical if c not in categorical]
    return train_model(
        training_frame(3000, seed),
        training_frame(1000, seed + 1),
        "is_fraud",
        numeric,
        categorical,
        TrainParams(n_estimators=n_estimators, early_stopping_rounds=None, min_child_samples=20),
        out_dir,
    )


def register(registry: ModelRegistry, trained: TrainResult, name: str = "fraud_model") -> int:
    version = registry.register(
        name,
        trained.artifact_dir,
        training_dataset_version="v0001",
        feature_group_versions={s.name: s.version for s in online_groups()},
        params={},
        metrics={},
        code_version="test",
        feature_view=VIEW_RECORD,
    )
    return version.version


# ----------------------------------------------------------------------------------------------
# A small offline history and the online store holding its latest rows
# ----------------------------------------------------------------------------------------------

CARDS = ["c1", "c2", "c3", "c4"]
MERCHANTS = ["m1", "m2", "m3"]
REQUEST_TIME = datetime(2026, 9, 12, 10, 30, tzinfo=UTC)


def history_transactions() -> pl.DataFrame:
    """Ten days of transactions of c1..c3 (c4 never transacts) at m1, m2."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(60):
        card = CARDS[i % 3]
        rows.append(
            {
                "transaction_id": f"t{i:03d}",
                "card_id": card,
                "merchant_id": MERCHANTS[i % 2],
                "amount": float(np.round(rng.lognormal(3.0, 1.0), 2)),
                "category": CATEGORIES[i % len(CATEGORIES)],
                "channel": CHANNELS[i % 2],
                "transaction_time": T0 + timedelta(minutes=int(rng.integers(0, 10 * 1440))),
                "lat": float(rng.uniform(40, 41)),
                "lon": float(rng.uniform(-74, -73)),
            }
        )
    return pl.DataFrame(rows).with_columns(pl.col("transaction_time").cast(UTC_US))


def group_tables() -> dict[str, pl.DataFrame]:
    """Every online group's offline rows: several per entity for the daily groups.

    m3 is in no group (an unknown merchant); c4 has a profile but no transactions nor daily rows.
    """
    days = [T0 + timedelta(days=d + 1) for d in range(10)]
    daily_cards = [c for c in CARDS[:3] for _ in days]
    daily_merchants = [m for m in MERCHANTS[:2] for _ in days]
    return {
        CARD_TRANSACTION_FEATURES.name: build_card_transaction_features(history_transactions()),
        CARD_DAILY_FEATURES.name: random_group_frame(
            CARD_DAILY_FEATURES, daily_cards, days * 3, seed=1
        ),
        MERCHANT_DAILY_FEATURES.name: random_group_frame(
            MERCHANT_DAILY_FEATURES, daily_merchants, days * 2, seed=2
        ),
        CARD_PROFILE_FEATURES.name: random_group_frame(
            CARD_PROFILE_FEATURES, CARDS, [T0 - timedelta(days=400)] * 4, seed=3
        ),
        MERCHANT_PROFILE_FEATURES.name: random_group_frame(
            MERCHANT_PROFILE_FEATURES,
            MERCHANTS[:2],
            [datetime(1970, 1, 1, tzinfo=UTC)] * 2,
            seed=4,
        ),
    }


def write_online_store(path: Path, tables: dict[str, pl.DataFrame]) -> OnlineStore:
    store = OnlineStore(path)
    for spec in online_groups():
        store.write_group(spec, tables[spec.name])
    return store


def request(card: str, merchant: str, at: datetime = REQUEST_TIME, **overrides: object) -> dict:
    fields = {
        "transaction_id": f"req-{card}-{merchant}",
        "card_id": card,
        "merchant_id": merchant,
        "amount": 123.45,
        "category": "electronics",
        "channel": "online",
        "transaction_time": at,
        "lat": 40.5,
        "lon": -73.9,
    }
    fields.update(overrides)
    return fields


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return group_tables()


@pytest.fixture
def store(tmp_path: Path, tables: dict[str, pl.DataFrame]) -> OnlineStore:
    with write_online_store(tmp_path / "online.sqlite", tables) as writer:
        writer.close()
    reader = OnlineStore(tmp_path / "online.sqlite", readonly=True)
    yield reader
    reader.close()


def _training_rows(
    tmp_path: Path, tables: dict[str, pl.DataFrame], requests: list[dict]
) -> list[dict]:
    """The training-data rows of ``requests``: DuckDB tables + vectors.join_features."""
    con = connect(LakeConfig.under(tmp_path / "lake"))
    try:
        for spec in online_groups():
            arrow = tables[spec.name].to_arrow()  # noqa: F841 - read by name in the SQL below
            con.execute(f'create table "{spec.table}" as select * from arrow')
        labels = pl.DataFrame(requests).with_columns(pl.col("transaction_time").cast(UTC_US))
        view = resolved(FRAUD_FEATURES)
        return join_features(con, labels, view, "transaction_time").rows(named=True)
    finally:
        con.close()


def test_online_vector_equals_the_training_row(
    tmp_path: Path, tables: dict[str, pl.DataFrame], store: OnlineStore
) -> None:
    requests = [request(c, m) for c in CARDS for m in MERCHANTS]
    expected_rows = _training_rows(tmp_path, tables, requests)
    assembler = assembler_for(store)
    model_columns, _ = resolved(FRAUD_FEATURES).input_columns()
    assert set(model_columns) <= set(assembler.feature_names)

    for req, expected in zip(requests, expected_rows, strict=True):
        vector = assembler.vector(req).values
        assert list(vector) == assembler.feature_names
        assert vector == {name: expected[name] for name in assembler.feature_names}, req
    # Not vacuous: known entities have features and on-demand values, unknown ones have None.
    c1_m1 = assembler.vector(request("c1", "m1")).values
    assert c1_m1[col(CARD_TRANSACTION_FEATURES.name, "amount_mean_30d")] is not None
    assert c1_m1["distance_from_last_km"] is not None
    assert (
        assembler.vector(request("c1", "m3")).values[
            col(MERCHANT_PROFILE_FEATURES.name, "merchant_risk_profile")
        ]
        is None
    )


def test_batch_vectors_equal_single_vectors(store: OnlineStore) -> None:
    assembler = assembler_for(store)
    requests = [request(c, m) for c in CARDS for m in MERCHANTS] + [request("c1", "m1")]
    batch = assembler.vectors(requests)
    assert [b.values for b in batch] == [assembler.vector(r).values for r in requests]
    assert [b.unknown_entities for b in batch] == [
        assembler.vector(r).unknown_entities for r in requests
    ]
    assert assembler.vectors([]) == []


def test_unknown_entities_get_missing_features_and_are_reported(store: OnlineStore) -> None:
    assembled = assembler_for(store).vector(request("nobody", "m3"))
    assert assembled.unknown_entities == ["card_id=nobody", "merchant_id=m3"]
    assert assembled.fallback
    assert sorted(assembled.missing_groups) == sorted(s.name for s in online_groups())
    assert all(t is None for t in assembled.event_times.values())
    group_columns = [c for c in assembled.values if "__" in c]
    assert group_columns and all(assembled.values[c] is None for c in group_columns)
    # Request-only features are still computed.
    assert assembled.values["is_online"] == 1
    assert assembled.values["hour_of_day"] == 10
    assert assembled.values["amount"] == 123.45


def test_card_without_history_is_partly_known(store: OnlineStore) -> None:
    assembled = assembler_for(store).vector(request("c4", "m1"))
    assert assembled.unknown_entities == ["card_id=c4"]
    assert set(assembled.missing_groups) == {"card_transaction_features", "card_daily_features"}
    assert assembled.event_times["card_profile_features"] is not None
    assert assembled.values["distance_from_home_km"] is not None
    assert assembled.values["seconds_since_last_tx"] is None


def test_rows_not_strictly_earlier_than_the_request_are_not_used(
    store: OnlineStore, tables: dict[str, pl.DataFrame]
) -> None:
    latest = tables[CARD_TRANSACTION_FEATURES.name].filter(pl.col("card_id") == "c1")
    last_tx = latest["event_time"].max()
    assembler = assembler_for(store)
    for at in (last_tx, last_tx - timedelta(hours=1)):  # equal is not "strictly earlier"
        assembled = assembler.vector(request("c1", "m1", at=at))
        assert "card_transaction_features" in assembled.stale
        assert assembled.event_times["card_transaction_features"] is None
        assert assembled.values[col(CARD_TRANSACTION_FEATURES.name, "last_amount")] is None
        assert assembled.unknown_entities == []
        assert assembled.fallback
    later = assembler.vector(request("c1", "m1", at=last_tx + timedelta(microseconds=1)))
    assert later.event_times["card_transaction_features"] == last_tx
    assert "card_transaction_features" not in later.stale


def test_naive_time_or_missing_field_is_refused(store: OnlineStore) -> None:
    assembler = assembler_for(store)
    with pytest.raises(ValueError, match="timezone-aware"):
        assembler.vector(request("c1", "m1", at=datetime(2026, 9, 12, 10)))
    incomplete = {k: v for k, v in request("c1", "m1").items() if k != "merchant_id"}
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['merchant_id'\]"):
        assembler.vectors([request("c2", "m1"), incomplete])


def test_groups_that_cannot_feed_the_on_demand_features_are_refused(store: OnlineStore) -> None:
    with pytest.raises(ValueError, match="card_profile_features__home_lat"):
        only_cards = FeatureView(
            "cards_only", 1, "test", FRAUD_FEATURES.selections[:1],
            on_demand=FRAUD_FEATURES.on_demand,
        )  # fmt: skip
        assembler_for(store, resolve(only_cards, FEATURE_GROUPS))


# ----------------------------------------------------------------------------------------------
# ChampionModel
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[TrainResult]:
    root = tmp_path_factory.mktemp("artifacts")
    return [train_small_model(root / f"m{i}", seed=i, n_estimators=10) for i in (1, 2)]


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_champion_follows_promote_and_rollback(
    registry: ModelRegistry, models: list[TrainResult]
) -> None:
    clock = FakeClock()
    champion = ChampionModel(registry.models_dir, "fraud_model", check_interval_s=1.0, clock=clock)
    assert champion.get() is None
    assert "no 'champion' alias" in champion.status()["error"]

    v1, v2 = register(registry, models[0]), register(registry, models[1])
    registry.promote("fraud_model", v1)
    assert champion.get() is None  # not checked again before the interval
    clock.now += 1.0
    first = champion.get()
    assert (first.version, first.sha256) == (v1, models[0].sha256)
    assert champion.status()["error"] is None

    registry.promote("fraud_model", v2)
    clock.now += 1.0
    assert champion.get().version == v2
    registry.rollback("fraud_model")
    clock.now += 1.0
    assert champion.get().version == v1
    assert champion.get() is not first  # a new load, same version


def test_a_version_that_fails_to_load_leaves_the_previous_one_serving(
    registry: ModelRegistry, models: list[TrainResult]
) -> None:
    v1, v2 = register(registry, models[0]), register(registry, models[1])
    registry.promote("fraud_model", v1)
    champion = ChampionModel(registry.models_dir, "fraud_model", check_interval_s=0)
    assert champion.get().version == v1
    registry.promote("fraud_model", v2)  # verified now, altered before the service loads it
    tampered = registry.get("fraud_model", v2).artifact_path / "transforms.json"
    tampered.chmod(0o644)
    tampered.write_text(tampered.read_text().replace('"numeric"', '"numeric" ', 1))

    assert champion.get().version == v1
    status = champion.status()
    assert status["alias_version"] == v2
    assert "TamperedModelError" in status["error"] and "still serving version 1" in status["error"]
    with pytest.raises(RuntimeError, match="sha256"):
        champion.reload()


def test_a_model_needing_features_the_service_lacks_is_refused(
    registry: ModelRegistry, models: list[TrainResult]
) -> None:
    registry.promote("fraud_model", register(registry, models[0]))
    names = FeatureAssembler.names_for(VIEW, VECTOR_FIELDS)
    champion = ChampionModel(
        registry.models_dir,
        "fraud_model",
        resolve_view=lambda version: VIEW,
        required_features=lambda view: [n for n in names if n != "amount"],
    )
    assert champion.get() is None
    assert "['amount']" in champion.status()["error"]


def test_reload_reads_the_alias_file_at_once(
    registry: ModelRegistry, models: list[TrainResult]
) -> None:
    v1, v2 = register(registry, models[0]), register(registry, models[1])
    registry.promote("fraud_model", v1)
    champion = ChampionModel(registry.models_dir, "fraud_model", check_interval_s=3600)
    assert champion.get().version == v1
    registry.promote("fraud_model", v2)
    assert champion.get().version == v1  # next check in an hour
    assert champion.reload().version == v2
    alias = json.loads((registry.models_dir / "fraud_model" / "aliases.json").read_text())
    assert champion.status()["alias_version"] == alias["aliases"]["champion"]["version"] == v2


def test_champion_bypasses_an_alias_file_left_behind_by_a_crash(
    registry: ModelRegistry, models: list[TrainResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = register(registry, models[0]), register(registry, models[1])
    registry.promote("fraud_model", v1)
    follows_file = ChampionModel(registry.models_dir, "fraud_model", check_interval_s=0)
    follows_registry = ChampionModel(
        registry.models_dir, "fraud_model", check_interval_s=0, registry_path=registry.path
    )
    assert follows_file.get().version == follows_registry.get().version == v1
    with monkeypatch.context() as patch:
        # The promoting process dies after its commit, before rewriting aliases.json.
        patch.setattr(registry_module, "_write_json_atomic", _die)
        with pytest.raises(SystemExit):
            registry.promote("fraud_model", v2)

    assert follows_file.get().version == v1  # the file alone is behind
    assert follows_registry.get().version == v2
    assert follows_registry.status()["error"] is None
    registry.read_alias_file("fraud_model")  # the next registry read repairs the file
    assert follows_file.get().version == v2


def _die(path: Path, payload: object) -> None:
    raise SystemExit(f"killed before writing {path}")
