select
    merchant_id,
    category,
    lat,
    lon,
    risk_profile
from {{ source('raw', 'raw_merchants') }}
