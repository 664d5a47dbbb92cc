"""What a feature group is, for every stage that stores or reads one: the storage contract.

A feature group is a table in the offline store with an entity key (one or more columns), an
``event_time`` (UTC, the moment the values became true/available), a version, a description,
owners and an ``online`` flag. The groups themselves are declared in
:mod:`fti_assets.lib.features.groups`; the offline and online stores, the point-in-time join,
the contracts and the asset metadata read them through :class:`FeatureGroupSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    dtype: str  # "float64", "int64", "string", "bool", "timestamp_utc"
    description: str
    nullable: bool = True
    # Inclusive valid range checked by the group's contract (None = unbounded).
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class FeatureGroupSpec:
    name: str
    version: int
    entity_keys: tuple[str, ...]
    features: tuple[FeatureSpec, ...]
    description: str
    owners: tuple[str, ...] = ("team:ml-platform",)
    online: bool = False
    event_time: str = "event_time"
    source: str = ""  # "dbt", "polars" or "on_demand"
    # For a group written in daily partitions: the column whose UTC day is the partition
    # (None: the group is rewritten whole).
    partition_column: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        """Offline table name: the version is part of it, so old versions stay readable."""
        return f"{self.name}_v{self.version}"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        return [*self.entity_keys, self.event_time, *self.feature_names]

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(
            f"feature group {self.name!r} has no feature {name!r}; has {self.feature_names}"
        )
