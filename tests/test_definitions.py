"""The definitions load, and the asset graph has the shape users rely on."""

import dataclasses
import importlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import dagster as dg
from dagster._core.definitions.module_loaders.object_list import ALL_LOADABLE_TYPES

import fti_assets
import fti_assets.defs
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


# The defs folder: each Dagster object of a module under fti_assets/defs/ is loaded, once.

DAGSTER_OBJECTS = (*ALL_LOADABLE_TYPES, dg.Definitions)
NOT_LOADED = (
    "not loaded: the loader reads module-level objects and lists of them, and of a module that "
    "has a Definitions object, that object only"
)


def _defs_modules() -> list[ModuleType]:
    """Every .py file under fti_assets/defs/, as the folder loader walks them (a folder without
    an __init__.py included)."""
    root = Path(fti_assets.defs.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if any(p == "__pycache__" or p.startswith(".") for p in parts):
            continue
        names.append(".".join(["fti_assets.defs", *parts]).removesuffix(".__init__"))
    return [importlib.import_module(name) for name in names]


def _held(value: object, depth: int = 0) -> Iterator[object]:
    """The Dagster objects a module-level value is or holds (in a list, tuple, set or dict)."""
    if isinstance(value, DAGSTER_OBJECTS):
        yield value
    elif type(value) in (list, tuple, set, frozenset, dict) and depth < 2:  # not a @record
        for item in value.values() if isinstance(value, dict) else value:
            yield from _held(item, depth + 1)


def _contents(definitions: dg.Definitions) -> list[object]:
    return [
        *(definitions.assets or []),
        *(definitions.asset_checks or []),
        *(definitions.sensors or []),
        *(definitions.schedules or []),
        *(definitions.jobs or []),
    ]


def _keys(obj: object) -> list[str]:
    if isinstance(obj, dg.AssetsDefinition):  # asset checks too
        return [f"asset {k.to_user_string()}" for k in obj.keys] + [
            f"check {k.to_user_string()}" for k in obj.check_keys
        ]
    if isinstance(obj, (dg.AssetSpec, dg.SourceAsset)):
        return [f"asset {obj.key.to_user_string()}"]
    kind = type(obj).__name__.removeprefix("Unresolved").replace("AssetJob", "Job")
    return [f"{kind} {obj.name}"]  # sensors, schedules, jobs


def _unloaded_and_duplicated(
    modules: list[ModuleType], loaded: dg.Definitions
) -> tuple[list[str], list[str]]:
    """The module-level objects not in ``loaded``, and the keys two distinct objects define."""
    loaded_ids = {id(obj) for obj in _contents(loaded)}
    unloaded: set[str] = set()
    definers: dict[str, dict[int, str]] = defaultdict(dict)  # key -> object id -> where
    for module in modules:
        for name, value in vars(module).items():
            where = f"{module.__name__}.{name}"
            for held in _held(value):
                inner = _contents(held) if isinstance(held, dg.Definitions) else [held]
                for obj in inner:
                    if id(obj) not in loaded_ids:
                        unloaded.add(f"{where}: {', '.join(_keys(obj))}")
                    for key in _keys(obj):
                        definers[key].setdefault(id(obj), where)
    duplicated = [f"{key}: {sorted(by.values())}" for key, by in definers.items() if len(by) > 1]
    return sorted(unloaded), sorted(duplicated)


def test_every_object_in_a_defs_module_is_loaded_and_no_key_is_defined_twice() -> None:
    """Adding a stage or an asset edits one place: the module under fti_assets/defs/ that holds
    it. An object the folder loader does not see (in a tuple or a dict, or next to a module's
    Definitions object), or two objects with one key, fail here rather than silently in the UI.
    An object imported into a second module is the same object: loaded once, no duplicate."""
    modules = _defs_modules()
    assert {"fti_assets.defs.ingest.sensors", "fti_assets.defs.models.per_spec"} <= {
        m.__name__ for m in modules
    }
    unloaded, duplicated = _unloaded_and_duplicated(modules, defs)
    assert unloaded == [], f"{NOT_LOADED}:\n" + "\n".join(unloaded)
    assert duplicated == [], "keys defined by two objects:\n" + "\n".join(duplicated)
    contents = _contents(defs)
    assert len({id(o) for o in contents}) == len(contents), "an object is listed twice"


def test_unloaded_and_duplicated_objects_are_found() -> None:
    @dg.asset(name="a")
    def first() -> None: ...

    @dg.asset(name="a")
    def second() -> None: ...

    @dg.asset(name="b")
    def in_a_tuple() -> None: ...

    @dg.asset(name="c")
    def in_definitions() -> None: ...

    @dg.asset(name="d")
    def beside_definitions() -> None: ...

    one, two, three = ModuleType("one"), ModuleType("two"), ModuleType("three")
    one.first, one.pair = first, (in_a_tuple,)
    two.second, two.reexported = second, in_definitions
    three.defs, three.loose, three.imported = (
        dg.Definitions(assets=[in_definitions]),
        beside_definitions,
        first,
    )
    loaded = dg.Definitions(assets=[first, in_definitions])
    unloaded, duplicated = _unloaded_and_duplicated([one, two, three], loaded)
    assert unloaded == ["one.pair: asset b", "three.loose: asset d", "two.second: asset a"]
    assert duplicated == ["asset a: ['one.first', 'two.second']"]


def test_load_from_defs_folder_finds_the_same_objects() -> None:
    """definitions.py builds the folder without load_from_defs_folder's plugin component catalog
    (see its docstring); the objects are the same."""
    folder = dg.load_from_defs_folder(path_within_project=Path(fti_assets.__file__).parent)
    assert {id(o) for o in _contents(folder)} == {id(o) for o in _contents(defs)}
