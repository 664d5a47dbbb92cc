"""The retraining sensor: exactly one run per breach, across repeated evaluations and a
daemon restart (cursor), a cooldown in data days, only the current champion's days, and the
first training once enough days landed."""

import json
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fti_assets.defs.models.monitoring import DRIFT_SUMMARY_TABLE, SCHEMAS
from fti_assets.defs.models.retraining import retraining_job, retraining_sensor
from fti_assets.lib.core.settings import LakeConfig
from fti_assets.lib.registry.model_registry import ModelRegistry
from fti_assets.lib.store.offline import Replacement, connection, replace_partitions
from fti_assets.lib.training.train import TrainParams, train_model
from fti_assets.resources import DataDirResource, ModelRegistryResource, OfflineStoreResource
from fti_assets.specs.models import FRAUD_MODEL
from tests.unit.synthetic import synthetic_frame

SPEC = FRAUD_MODEL  # drift rule: share >= 0.3 on 2 consecutive days; cooldown 7 days
D0 = date(2026, 9, 1)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact")
    params = TrainParams(n_estimators=5, early_stopping_rounds=None)
    train_model(
        synthetic_frame(1000, 0), synthetic_frame(300, 1), "is_fraud", ["amount"], ["channel"],
        params, out,
    )  # fmt: skip
    return out


@pytest.fixture
def world(tmp_path: Path, artifact: Path):
    lake = LakeConfig.under(tmp_path / "lake")
    registry = ModelRegistry(tmp_path / "registry.sqlite", tmp_path / "models")
    resources = {
        "offline_store": OfflineStoreResource(catalog=lake.catalog, data_path=lake.data_path),
        "model_registry": ModelRegistryResource(
            path=str(registry.path), models_dir=str(registry.models_dir)
        ),
        "data_dir": DataDirResource(path=str(tmp_path)),
    }
    # The champions' dataset: its labels end at D0 (the days from D0 on are new data).
    version_dir = tmp_path / "datasets" / SPEC.dataset_name / "v0001"
    version_dir.mkdir(parents=True)
    pl.DataFrame({"x": [1]}).write_parquet(version_dir / "data.parquet")
    (version_dir / "manifest.json").write_text(
        json.dumps({"version": "v0001", "label": {"cutoff": f"{D0}T00:00:00+00:00"}})
    )
    sensor = retraining_sensor(SPEC, retraining_job(SPEC))

    def register() -> int:
        version = registry.register(
            SPEC.name, artifact, training_dataset_version="v0001", feature_group_versions={},
            params={}, metrics={"valid_pr_auc": 0.5}, code_version="test",
        ).version  # fmt: skip
        registry.set_status(SPEC.name, version, "validated", "test")
        registry.promote(SPEC.name, version)
        return version

    def drift(shares: list[float], version: int, start: date = D0) -> None:
        rows = [
            {"model_name": SPEC.name, "day": start + timedelta(days=i), "model_version": version,
             "status": "tested", "drift_share": share}
            for i, share in enumerate(shares)
        ]  # fmt: skip
        frame = pl.DataFrame(rows, schema=SCHEMAS[DRIFT_SUMMARY_TABLE], strict=False)
        with connection(lake) as con:
            replace_partitions(
                con,
                [Replacement(DRIFT_SUMMARY_TABLE, frame, "day >= ? and day <= ?",
                             [start, start + timedelta(days=len(shares) - 1)])],
            )  # fmt: skip

    def landed(days: int) -> None:
        frame = pl.DataFrame({"landing_date": [D0 + timedelta(days=i) for i in range(days)]})
        with connection(lake) as con:
            replace_partitions(con, [Replacement("raw_transactions", frame, "true")])

    def evaluate(cursor: str | None):
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            return sensor(context)

    return register, drift, landed, evaluate


def _requests(result) -> list[dg.RunRequest]:
    return list(result.run_requests) if isinstance(result, dg.SensorResult) else []


def test_the_first_version_is_trained_once_enough_days_landed(world) -> None:
    register, drift, landed, evaluate = world
    landed(10)
    first = evaluate(None)
    assert isinstance(first, dg.SkipReason) and "no champion yet" in first.skip_message
    landed(60)  # 30 warm-up + 14 maturity + 7 days of examples = 51 needed
    result = evaluate(None)
    assert [r.run_key for r in _requests(result)] == ["fraud_model:first_version:1"]
    again = evaluate(result.cursor)
    assert _requests(again) == [] and "requested already" in again.skip_message


def test_one_run_per_breach_across_evaluations_a_restart_and_a_cooldown(world) -> None:
    register, drift, landed, evaluate = world
    version = register()
    drift([0.1, 0.6, 0.2], version)
    assert _requests(evaluate(None)) == []  # an isolated drift day is no breach

    drift([0.1, 0.6, 0.7, 0.8], version)
    result = evaluate(None)
    [request] = _requests(result)
    assert request.run_key == f"fraud_model:drift:{D0 + timedelta(days=1)}:v{version}"
    assert request.tags["fti/breach_kind"] == "drift"
    cursor = result.cursor
    # The cooldown counts from the newest monitored day when the request was made.
    assert json.loads(cursor)["last_request_day"] == str(D0 + timedelta(days=3))

    # The daemon evaluates again, or restarts with the cursor it stored: no second request
    # while the same drift goes on, within the cooldown.
    for _ in range(3):
        assert _requests(evaluate(cursor)) == []
    drift([0.1, 0.6, 0.7, 0.8, 0.9, 0.9, 0.1, 0.7, 0.8], version)
    skipped = evaluate(cursor)
    assert _requests(skipped) == [] and "cooldown" in skipped.skip_message

    # After the cooldown (7 data days after the request), a new breach asks again.
    later = D0 + timedelta(days=12)
    drift([0.9, 0.9], version, start=later)
    [again] = _requests(evaluate(cursor))
    assert again.run_key == f"fraud_model:drift:{later}:v{version}"


def test_a_breach_found_during_the_cooldown_asks_once_the_cooldown_is_over(world) -> None:
    register, drift, landed, evaluate = world
    version = register()
    drift([0.6, 0.7], version)  # a breach, detected on day 1
    first = evaluate(None)
    [request] = _requests(first)
    # The drift stops, then a new streak starts on day 4, within the cooldown (days 1..7)...
    drift([0.6, 0.7, 0.1, 0.1, 0.8, 0.8], version)
    skipped = evaluate(first.cursor)
    assert _requests(skipped) == [] and "cooldown" in skipped.skip_message
    # ...and lasts: it asks on the first day after the cooldown, not never (its detection day,
    # day 5, stays inside the cooldown whatever day it is now).
    drift([0.6, 0.7, 0.1, 0.1, 0.8, 0.8, 0.9, 0.9], version)
    assert _requests(evaluate(first.cursor)) == []  # day 7: the cooldown's last day
    drift([0.6, 0.7, 0.1, 0.1, 0.8, 0.8, 0.9, 0.9, 0.9], version)
    [late] = _requests(evaluate(first.cursor))
    assert late.run_key == f"fraud_model:drift:{D0 + timedelta(days=4)}:v{version}"
    assert late.run_key != request.run_key


def test_a_new_champion_starts_afresh(world) -> None:
    register, drift, landed, evaluate = world
    old = register()
    drift([0.9, 0.9], old)
    assert len(_requests(evaluate(None))) == 1
    register()  # the retrained version is promoted: the old version's drift does not count
    assert _requests(evaluate(None)) == []
