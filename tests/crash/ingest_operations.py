"""The ingest the crash trials kill (see ``lake_operations`` for the trial folder's layout)."""

from pathlib import Path

from fti_assets.lib.ingest.raw import ingest_fraud_labels_day, ingest_transactions_day
from fti_assets.lib.store.offline import connection
from tests.crash.lake_operations import REWRITTEN_DAYS, lake_of, landing_of


def ingest_partitions(workdir: Path) -> None:
    """Re-ingest the rewritten days from the whole landing files, as the daily ingest assets
    do: per day and table, accepted and quarantined rows in one commit."""
    landing = landing_of(workdir)
    with connection(lake_of(workdir)) as con:
        for day in REWRITTEN_DAYS:
            ingest_transactions_day(con, landing, day)
            ingest_fraud_labels_day(con, landing, day)
