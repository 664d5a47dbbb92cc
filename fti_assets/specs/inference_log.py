"""What the prediction service logs for each request: the transaction it scored (the request
fields of the card-payments domain), then the record every service logs
(:data:`~fti_assets.lib.inference.log.RECORD_COLUMNS`: model, probability, latency, the feature
vector used…)."""

from __future__ import annotations

import polars as pl

from fti_assets.lib.inference.log import LogSchema

SERVICE_LOG = LogSchema(
    request={
        "transaction_id": pl.String(),
        "card_id": pl.String(),
        "merchant_id": pl.String(),
        "amount": pl.Float64(),
        "category": pl.String(),
        "channel": pl.String(),
        "transaction_time": pl.String(),
        "lat": pl.Float64(),
        "lon": pl.Float64(),
    },
    request_times=("transaction_time",),
    # Logs written before the record's columns were the same for every service.
    renamed={"fraud_probability": "probability"},
)
