"""Small synthetic fraud-like frames shared by the model tests."""

import numpy as np
import polars as pl

NUMERIC = ["amount", "hour", "n_tx_24h"]
CATEGORICAL = ["merchant_category", "channel"]


def synthetic_frame(n: int, seed: int) -> pl.DataFrame:
    """Fraud-like rows whose label depends on every feature; some nulls in two columns."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.0, n)
    hour = rng.integers(0, 24, n)
    count = rng.poisson(2.0, n)
    category = rng.choice(["grocery", "travel", "online", "fuel", "games"], n)
    channel = rng.choice(["web", "pos", "app"], n)
    logit = (
        -4.0
        + 0.8 * np.log(amount / 20.0)
        + 0.4 * count
        + 1.5 * (category == "games")
        + 0.7 * (channel == "web")
        + 0.8 * (hour < 5)
    )
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    idx = np.arange(n)
    return pl.DataFrame(
        {
            "tx_id": idx,
            "amount": np.where(idx % 37 == 0, None, amount).tolist(),
            "hour": hour,
            "n_tx_24h": count,
            "merchant_category": np.where(idx % 41 == 0, None, category).tolist(),
            "channel": channel,
            "is_fraud": label,
        },
        schema_overrides={"amount": pl.Float64, "merchant_category": pl.String},
    )
