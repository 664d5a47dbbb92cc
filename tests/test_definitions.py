"""The definitions load, and the asset graph has the shape users rely on."""

import dataclasses

import dagster as dg

from fti_assets.definitions import defs
from fti_assets.specs.feature_groups import FEATURE_GROUPS


def _graph():
    return defs.resolve_asset_graph()


def test_definitions_load_and_validate() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot() -> None:
    graph = _graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "raw_cards": "ingest",
        "raw_merchants": "ingest",
        "raw_transactions": "ingest",
        "raw_fraud_labels": "ingest",
        "stg_cards": "transform",
        "stg_merchants": "transform",
        "stg_transactions": "transform",
        "stg_fraud_labels": "transform",
        "int_card_daily_activity": "transform",
        "int_merchant_daily_activity": "transform",
        "int_merchant_fraud_reports": "transform",
        "card_transaction_features": "features",
        "card_daily_features": "features",
        "merchant_daily_features": "features",
        "card_profile_features": "features",
        "merchant_profile_features": "features",
        "online_card_transaction_features": "online",
        "online_card_daily_features": "online",
        "online_merchant_daily_features": "online",
        "online_card_profile_features": "online",
        "online_merchant_profile_features": "online",
        "fraud_training_dataset": "training",
        "fraud_model": "training",
        "fraud_model_evaluation": "training",
        "fraud_model_champion": "training",
        "fraud_predictions": "inference",
        "lake_maintenance": "maintenance",
        "inference_log": "inference",
        # The second model, on the same feature groups (batch only: no train/serve skew).
        "card_risk_training_dataset": "training",
        "card_risk_score": "training",
        "card_risk_score_evaluation": "training",
        "card_risk_score_champion": "training",
        "card_risk_predictions": "inference",
        **{
            f"{model}_{report}": "monitoring"
            for model in ("fraud_model", "card_risk_score")
            for report in (
                "feature_drift_report",
                "prediction_drift_report",
                "estimated_performance",
                "performance_report",
            )
        },
        "fraud_model_training_serving_skew": "monitoring",
        "transaction_event_log": "streaming",
        "streaming_card_features": "streaming",
        "prediction_service": "streaming",
    }


def test_lineage_reads_raw_to_features_to_dataset_to_model_to_evaluation() -> None:
    graph = _graph()

    def upstream(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert "raw_transactions" in upstream("card_transaction_features")
    assert "stg_transactions" in upstream("int_card_daily_activity")
    assert set(FEATURE_GROUPS) <= upstream("fraud_training_dataset")
    assert upstream("fraud_model") == {"fraud_training_dataset"}
    assert upstream("fraud_model_evaluation") == {"fraud_model"}
    assert upstream("fraud_model_champion") == {"fraud_model_evaluation"}
    assert "fraud_model_champion" in upstream("fraud_predictions")


def test_every_asset_has_owner_kind_and_description() -> None:
    graph = _graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.owners, f"{name} has no owner"
        assert node.kinds, f"{name} has no kind"
        assert node.description, f"{name} has no description"


def test_feature_groups_carry_their_contract_as_metadata() -> None:
    graph = _graph()
    for name, spec in FEATURE_GROUPS.items():
        metadata = graph.get(dg.AssetKey(name)).metadata
        assert metadata["feature_group_version"] == spec.version
        assert metadata["entity_keys"] == ", ".join(spec.entity_keys)
        assert metadata["online"] == spec.online
        columns = [c.name for c in metadata["dagster/column_schema"].columns]
        assert columns == spec.columns


def test_blocking_checks_guard_feature_groups_dataset_and_model() -> None:
    checks = {
        key.to_user_string(): spec.blocking
        for key, spec in ((s.key, s) for c in defs.asset_checks for s in c.check_specs)
    }
    for name in FEATURE_GROUPS:
        assert checks[f"{name}:{name}_contract"] is True
    assert checks["fraud_training_dataset:training_dataset_has_no_leakage"] is True
    for gate in ("metric_floor", "beats_champion", "no_slice_regression"):
        assert checks[f"fraud_model_evaluation:{gate}"] is True


def test_partitioned_assets_share_daily_partitions() -> None:
    graph = _graph()
    partitioned = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).partitions_def is not None
    }
    assert {
        "raw_transactions",
        "raw_fraud_labels",
        "card_transaction_features",
        "card_daily_features",
        "merchant_daily_features",
        "fraud_predictions",
    } <= partitioned


def test_dbt_marts_match_feature_group_specs() -> None:
    """The dbt contract columns of each mart equal the Python spec of its feature group."""
    import json

    from fti_assets.defs.transform.assets import dbt_project

    manifest = json.loads(dbt_project.manifest_path.read_text())
    for spec in FEATURE_GROUPS.values():
        if spec.source != "dbt":
            continue
        node = next(
            n
            for n in manifest["nodes"].values()
            if n["resource_type"] == "model" and n["name"] == spec.name
        )
        assert node["config"]["alias"] == spec.table
        assert list(node["columns"]) == spec.columns
        assert node["config"]["contract"]["enforced"] is True


def test_model_config_defaults_are_the_spec_defaults() -> None:
    """Each model asset's dg.Config takes its defaults from the model spec's TrainParams."""
    from fti_assets.defs.models.training import _train_config_class, train_params
    from fti_assets.lib.training.params import TrainParams
    from fti_assets.specs.models import FRAUD_MODEL

    TrainConfig = _train_config_class(FRAUD_MODEL)  # noqa: N806 - a class
    assert train_params(TrainConfig()) == FRAUD_MODEL.params == TrainParams()
    assert set(TrainConfig.model_fields) - {"dataset_version"} <= {
        f.name for f in dataclasses.fields(TrainParams)
    }
    assert train_params(TrainConfig(early_stopping_rounds=0)).early_stopping_rounds is None


def test_both_models_are_fed_by_the_same_feature_groups() -> None:
    graph = _graph()

    def upstream(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    shared = {"card_transaction_features", "card_daily_features", "card_profile_features"}
    assert shared <= upstream("fraud_training_dataset") & upstream("card_risk_training_dataset")
    assert "merchant_daily_features" not in upstream("card_risk_training_dataset")


def test_every_declared_feature_view_is_locked() -> None:
    from fti_assets.lib.features.views import check_lock
    from fti_assets.specs.feature_views import FEATURE_VIEWS, LOCK_PATH

    assert check_lock(FEATURE_VIEWS.values(), LOCK_PATH) == [], "run `fti feature-views lock`"


def test_daily_tag_marks_the_daily_partitioned_assets_automation_sees() -> None:
    """The conditions of defs/automation.py tell a day's upstream from reference data by this
    tag: every daily asset using one of them, or upstream of one, carries it (no other asset)."""
    from fti_assets.defs.automation import daily_condition, latest_condition, reference_condition
    from fti_assets.partitions import DAILY_TAGS, daily_partitions, log_partitions

    graph = _graph()
    ours = {c().get_label() for c in (daily_condition, latest_condition, reference_condition)}
    automated = {
        key
        for key in graph.get_all_asset_keys()
        if (condition := graph.get(key).automation_condition) and condition.get_label() in ours
    }
    assert automated, "no asset uses the conditions of defs/automation.py"
    seen = automated | {p for k in automated for p in graph.get(k).parent_keys}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        tagged = DAILY_TAGS.items() <= node.tags.items()
        daily = node.partitions_def in (daily_partitions, log_partitions)
        assert not tagged or daily, f"{key.to_user_string()} is tagged daily but is not"
        assert tagged or not daily or key not in seen, f"{key.to_user_string()}: no daily tag"


def test_sensors_are_described_and_on_by_default() -> None:
    sensors = {s.name: s for s in defs.sensors}
    assert {"landing_sensor", "fti_automation"} <= set(sensors)
    for sensor in sensors.values():
        assert sensor.description, f"sensor {sensor.name} has no description"
    for name in ("landing_sensor", "fti_automation"):
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING


def test_feature_side_downstream_of_ingest_moves_by_automation() -> None:
    graph = _graph()
    feature_side = dg.AssetSelection.groups("transform", "features", "online").resolve(graph)
    for key in feature_side:
        condition = graph.get(key).automation_condition
        assert condition is not None, f"{key.to_user_string()} has no automation condition"
        assert condition.get_label(), f"{key.to_user_string()}: the condition has no label"
    for key in dg.AssetSelection.groups("ingest").resolve(graph):
        assert graph.get(key).automation_condition is None  # the landing sensor ingests


def test_blocking_dbt_tests_depend_on_one_model() -> None:
    """dbt runs a test on two models only when both are built in the same run (indirect
    selection: cautious); as a blocking check it would stay skipped when automation rebuilds one
    of them alone, and hold everything downstream."""
    import json

    from fti_assets.defs.transform.assets import dbt_project

    manifest = json.loads(dbt_project.manifest_path.read_text())
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or node["config"]["severity"].lower() != "error":
            continue
        models = [n for n in node["depends_on"]["nodes"] if n.startswith("model.")]
        assert len(models) <= 1, f"{node['name']} is blocking and depends on {models}"


def test_re_materializing_an_upstream_day_marks_stale_the_days_that_read_it() -> None:
    """The daily marts read 30 days of their daily dbt parents, as card_transaction_features
    reads 30 days of raw_transactions: the partition mappings say so, so the UI marks exactly
    the downstream days that read a re-materialized upstream day as stale."""
    graph = _graph()
    for parent, child in [
        ("int_card_daily_activity", "card_daily_features"),
        ("int_merchant_daily_activity", "merchant_daily_features"),
        ("int_merchant_fraud_reports", "merchant_daily_features"),
    ]:
        days = graph.get_child_partition_keys_of_parent(
            "2026-09-05", dg.AssetKey(parent), dg.AssetKey(child)
        )
        assert (days[0], days[-1], len(days)) == ("2026-09-05", "2026-10-04", 30), (parent, child)
    every_day = graph.get_child_partition_keys_of_parent(
        None, dg.AssetKey("stg_transactions"), dg.AssetKey("int_card_daily_activity")
    )
    assert len(every_day) > 30  # an unpartitioned staging view feeds every day
    features = graph.get_child_partition_keys_of_parent(
        "2026-09-05", dg.AssetKey("raw_transactions"), dg.AssetKey("card_transaction_features")
    )
    assert features[0] == "2026-09-05" and len(features) >= 30
