select
    card_id,
    customer_id,
    home_lat,
    home_lon,
    credit_limit,
    age_band,
    account_open_date
from {{ source('raw', 'raw_cards') }}
