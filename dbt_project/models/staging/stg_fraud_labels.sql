select
    transaction_id,
    is_fraud,
    reported_at,
    cast(reported_at as date) as reported_date
from {{ source('raw', 'raw_fraud_labels') }}
