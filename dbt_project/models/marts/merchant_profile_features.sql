{{ config(alias='merchant_profile_features_v1') }}
-- Merchant reference attributes. The reference file carries no validity time, so they are
-- treated as true since the epoch (slowly changing, overwritten in place).
select
    merchant_id,
    cast(timestamp '1970-01-01 00:00:00' at time zone 'UTC' as timestamptz) as event_time,
    category as merchant_category,
    risk_profile as merchant_risk_profile,
    cast(lat as double) as merchant_lat,
    cast(lon as double) as merchant_lon
from {{ ref('stg_merchants') }}
