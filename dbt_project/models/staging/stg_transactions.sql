select
    transaction_id,
    card_id,
    merchant_id,
    amount,
    category,
    channel,
    transaction_time,
    cast(transaction_time as date) as transaction_date,
    lat,
    lon
from {{ source('raw', 'raw_transactions') }}
