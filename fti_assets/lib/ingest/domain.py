"""The credit-card fraud domain: the landing-file columns and the value sets they may take.

The generator writes these columns, the Pandera contracts check them, and the prediction
service's request model uses the same names and types.
"""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurant",
    "gas",
    "travel",
    "online_retail",
    "electronics",
    "entertainment",
    "health",
    "jewelry",
    "digital_goods",
)
CHANNELS: tuple[str, ...] = ("online", "in_store")
AGE_BANDS: tuple[str, ...] = ("18-25", "26-35", "36-50", "51-65", "65+")
RISK_PROFILES: tuple[str, ...] = ("low", "medium", "high")

# Amounts above this are not card payments but data errors (a cent-for-unit mix-up, say).
MAX_AMOUNT = 50_000.0

# Landing file layout under FTI_DATA_DIR/landing (one file per day for the partitioned sources);
# the generator writes the same layout under FTI_DATA_DIR/world (see lib/core/settings.py).
TRANSACTIONS_DIR = "transactions"
FRAUD_LABELS_DIR = "fraud_labels"
CARDS_FILE = "cards.parquet"
MERCHANTS_FILE = "merchants.parquet"

# Column -> logical type of each landing file. "timestamp_utc" is a timezone-aware UTC timestamp.
TRANSACTION_COLUMNS: dict[str, str] = {
    "transaction_id": "string",
    "card_id": "string",
    "merchant_id": "string",
    "amount": "float64",
    "category": "string",
    "channel": "string",
    "transaction_time": "timestamp_utc",
    "lat": "float64",
    "lon": "float64",
}
FRAUD_LABEL_COLUMNS: dict[str, str] = {
    "transaction_id": "string",
    "is_fraud": "int8",
    "reported_at": "timestamp_utc",
}
CARD_COLUMNS: dict[str, str] = {
    "card_id": "string",
    "customer_id": "string",
    "home_lat": "float64",
    "home_lon": "float64",
    "credit_limit": "float64",
    "age_band": "string",
    "account_open_date": "date",
}
MERCHANT_COLUMNS: dict[str, str] = {
    "merchant_id": "string",
    "category": "string",
    "lat": "float64",
    "lon": "float64",
    "risk_profile": "string",
}
