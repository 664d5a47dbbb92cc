"""Crash trials of every writer of the data layer but the model registry (see
``test_crash_registry.py``), killed with SIGKILL at random points (``FTI_CRASH_TRIALS`` per kind;
``make soak`` runs 20). After each kill:

* offline store (ingesting partitions, writing feature-group partitions, the dbt build, the
  ``inference_log`` asset's load), see ``lake_checks``: every partition of every table is
  wholly old or wholly new, no snapshot references a missing file and every table reads to its
  last row, maintenance removes the orphan files the kill left and changes nothing else; for
  the ingest, each landed day comes from one file with rows_in = accepted + quarantined;
* online store: the group is as before or as after the write (one transaction), as the service
  reads it, and no entity's row moved back in time;
* training datasets: every version folder has its manifest and verifies against its hashes;
* inference log: every record a flush acknowledged is there, no logger wrote one twice, only a
  file's last line can be partial and the reader skips it.

Re-running the operation then gives what an uninterrupted run gives (row counts and content
hashes). The kinds' lines, and how often a kill left orphan files or a partial line, are printed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from fti_assets.lib.features.pipelines import refresh_card_transaction_features
from fti_assets.lib.inference.log import InferenceLogger
from fti_assets.lib.store.offline import connection
from fti_assets.lib.store.online import OnlineStore
from fti_assets.lib.training.datasets import frame_sha256
from tests.crash.harness import CrashKind, CrashReport, run_crash_trials
from tests.crash.ingest_operations import ingest_partitions
from tests.crash.lake_checks import LakeCheck, check_ingest_counts, check_lake, lake_summary
from tests.crash.lake_operations import (
    dbt_build,
    lake_of,
    midnight,
    refresh_feature_partitions,
    run_dbt,
)
from tests.crash.lake_world import (
    DBT_SLOT,
    WORLD,
    World,
    copy_lake,
    ingest_world,
    lay_out,
    make_world,
    occupy_dbt_slot,
)
from tests.crash.store_checks import (
    check_datasets,
    check_inference_log,
    check_online_group,
    datasets_summary,
    inference_log_summary,
    online_rows,
)
from tests.crash.store_operations import (
    DATASET_INPUT,
    ONLINE_FILE,
    ONLINE_GROUP,
    ONLINE_INPUT,
    dataset_frame,
    log_predictions,
    log_record,
    online_batch,
    write_online_group,
    write_training_dataset,
)


@dataclass(frozen=True)
class Template:
    """Where a kind's trials start, and the lake's contents before and after the operation."""

    lake: Path
    before: dict[str, str]
    after: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def ingested(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake holding the whole world, the rewritten days from their truncated files."""
    workdir = tmp_path_factory.mktemp("ingested")
    ingest_world(lake_of(workdir), world)
    return workdir / "lake"


def _template(
    folder: Path,
    start: Path,
    layout: Callable[[Path, Path], None],
    operation: Callable[[Path], None],
) -> Template:
    """Hash the lake in ``start`` before and after ``operation`` runs on a copy of it, laid
    out by ``layout(workdir, lake)``."""
    done = folder / "done"
    done.mkdir(parents=True)
    layout(done, start)
    before = lake_summary(lake_of(done))
    operation(done)
    return Template(start, before, lake_summary(lake_of(done)))


def _report(report: CrashReport, found: list[LakeCheck]) -> None:
    """How often a kill left orphan files (or a writer's scratch tables) behind."""
    orphans = [check.orphans for check in found if check.orphans]
    print(
        f"{report.kind}: maintenance removed orphan files after {len(orphans)} of "
        f"{report.killed} kills ({sum(orphans)} files)"
    )
    leftovers = [check.leftovers for check in found if check.leftovers]
    if leftovers:
        names = sorted({name for names in leftovers for name in names})
        print(f"{report.kind}: scratch tables left after {len(leftovers)} kills: {names}")


def _lake_kind(
    name: str,
    operation: Callable[[Path], None],
    template: Template,
    setup: Callable[[Path], None],
    delay_s: tuple[float, float],
    found: list[LakeCheck],
    extra_check: Callable[[Path], None] = lambda workdir: None,
    scratch: tuple[str, ...] = (),
) -> CrashKind:
    def check(workdir: Path) -> None:
        found.append(check_lake(lake_of(workdir), template.before, template.after, scratch))
        extra_check(workdir)

    return CrashKind(
        name,
        operation,
        setup=setup,
        check=check,
        summary=lambda workdir: lake_summary(lake_of(workdir)),
        delay_s=delay_s,
    )


def test_crash_while_ingesting_partitions(world: World, ingested: Path, tmp_path: Path) -> None:
    layout = partial(lay_out, world=world)
    template = _template(tmp_path / "template", ingested, layout, ingest_partitions)
    found: list[LakeCheck] = []
    kind = _lake_kind(
        "ingest a partition",
        ingest_partitions,
        template,
        setup=lambda workdir: layout(workdir, template.lake),
        delay_s=(0.0, 0.7),
        found=found,
        extra_check=lambda workdir: check_ingest_counts(
            lake_of(workdir), ("raw_transactions", "raw_fraud_labels")
        ),
    )

    report = run_crash_trials(kind, tmp_path / "trials")

    _report(report, found)
    assert report.failures == [], "\n".join(report.failures)


def test_crash_while_writing_feature_partitions(
    world: World, ingested: Path, tmp_path: Path
) -> None:
    start = tmp_path / "start"
    lay_out(start, ingested, world)
    with connection(lake_of(start)) as con:  # the feature rows of the truncated days
        end = midnight(WORLD.end + timedelta(days=1))
        refresh_card_transaction_features(con, midnight(WORLD.start), end)
    ingest_partitions(start)  # then the whole days land
    layout = partial(lay_out, world=world)
    template = _template(tmp_path / "template", start / "lake", layout, refresh_feature_partitions)
    found: list[LakeCheck] = []
    kind = _lake_kind(
        "write a feature-group partition",
        refresh_feature_partitions,
        template,
        setup=lambda workdir: layout(workdir, template.lake),
        delay_s=(0.0, 0.35),
        found=found,
    )

    report = run_crash_trials(kind, tmp_path / "trials")

    _report(report, found)
    assert report.failures == [], "\n".join(report.failures)


@pytest.mark.slow
def test_crash_during_the_dbt_build(world: World, ingested: Path, tmp_path: Path) -> None:
    trials = tmp_path / "trials"
    slot = trials / DBT_SLOT
    first = tmp_path / "first"  # the template is made at the slot, so dbt parses just once
    first.mkdir()
    occupy_dbt_slot(slot, ingested, first)
    (first / "landing").symlink_to(world.landing)
    run_dbt(first, "build", None)  # every model over the truncated days
    ingest_partitions(first)  # then the whole days land
    before = lake_summary(lake_of(first))
    copy_lake(slot, tmp_path / "start")
    dbt_build(first)  # leaves a partial parse for the slot's path in first/target
    template = Template(tmp_path / "start", before, lake_summary(lake_of(first)))

    def setup(workdir: Path) -> None:
        occupy_dbt_slot(slot, template.lake, workdir)
        shutil.copytree(first / "target", workdir / "target")

    found: list[LakeCheck] = []
    kind = _lake_kind(
        "the dbt build",
        dbt_build,
        template,
        setup,
        delay_s=(2.5, 5.8),
        found=found,
        # dbt drops a model's previous relation, renamed '<model>__dbt_backup', in a
        # transaction of its own after the model's commit; a kill in between leaves it (a
        # stale copy, read fully here) until the next build drops it first thing: the re-run
        # must give the uninterrupted run's tables exactly.
        scratch=("__dbt_backup",),
    )

    report = run_crash_trials(kind, trials)

    _report(report, found)
    assert report.failures == [], "\n".join(report.failures)


# ---------------------------------------------------------- outside the lake


def test_crash_while_writing_an_online_group(tmp_path: Path) -> None:
    start = tmp_path / "start"
    start.mkdir()
    with OnlineStore(start / ONLINE_FILE) as store:
        store.write_group(ONLINE_GROUP, online_batch(0))
    online_batch(1).write_parquet(start / ONLINE_INPUT)
    done = tmp_path / "done"
    shutil.copytree(start, done)
    write_online_group(done)
    before, after = online_rows(start), online_rows(done)
    kind = CrashKind(
        "write an online-store group",
        write_online_group,
        setup=lambda workdir: shutil.copytree(start, workdir, dirs_exist_ok=True),
        check=lambda workdir: check_online_group(workdir, before, after),
        summary=lambda workdir: frame_sha256(online_rows(workdir)),
        delay_s=(0.0, 0.25),
    )

    report = run_crash_trials(kind, tmp_path / "trials")

    assert report.failures == [], "\n".join(report.failures)


def test_crash_while_writing_a_training_dataset(tmp_path: Path) -> None:
    start = tmp_path / "start"
    start.mkdir()
    dataset_frame(seed=0).write_parquet(start / DATASET_INPUT)
    write_training_dataset(start)  # v0001
    dataset_frame(seed=1).write_parquet(start / DATASET_INPUT)
    kind = CrashKind(
        "write a training dataset",
        write_training_dataset,
        setup=lambda workdir: shutil.copytree(start, workdir, dirs_exist_ok=True),
        check=check_datasets,
        summary=datasets_summary,
        delay_s=(0.0, 0.25),
    )

    report = run_crash_trials(kind, tmp_path / "trials")

    assert report.failures == [], "\n".join(report.failures)


def test_crash_while_flushing_the_inference_log(tmp_path: Path) -> None:
    partial_lines: list[int] = []

    def check(workdir: Path) -> None:
        partial_lines.append(check_inference_log(workdir))

    kind = CrashKind(
        "flush the inference log",
        log_predictions,
        setup=lambda workdir: None,
        check=check,
        summary=inference_log_summary,
        delay_s=(0.0, 0.45),
    )

    report = run_crash_trials(kind, tmp_path / "trials")

    print(f"{kind.name}: {sum(partial_lines)} partial last lines found (and skipped by the reader)")
    assert report.failures == [], "\n".join(report.failures)


def _log(directory: Path, numbers: range) -> None:
    with InferenceLogger(directory) as logger:
        for number in numbers:
            logger.log(log_record(number))


@pytest.mark.slow
def test_crash_while_loading_the_inference_log(tmp_path: Path) -> None:
    # Imported here: it imports Dagster and the asset definitions, which no other kind needs.
    from tests.crash.asset_operations import materialize_inference_log

    logs = tmp_path / "inference_log"
    _log(logs, range(0, 6_000))

    def layout(workdir: Path, lake: Path | None) -> None:
        if lake is not None:
            copy_lake(lake, workdir / "lake")
        (workdir / "data").mkdir()
        (workdir / "data" / "inference_log").symlink_to(logs)

    start = tmp_path / "start"
    start.mkdir()
    layout(start, None)
    materialize_inference_log(start)  # the day as logged so far
    _log(logs, range(6_000, 12_000))  # then the service logs more of it
    template = _template(tmp_path / "template", start / "lake", layout, materialize_inference_log)
    found: list[LakeCheck] = []
    kind = _lake_kind(
        "load the inference log into the lake",
        materialize_inference_log,
        template,
        setup=lambda workdir: layout(workdir, template.lake),
        delay_s=(0.3, 1.5),
        found=found,
    )

    report = run_crash_trials(kind, tmp_path / "trials")

    _report(report, found)
    assert report.failures == [], "\n".join(report.failures)
