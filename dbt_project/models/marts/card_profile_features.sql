{{ config(alias='card_profile_features_v1') }}
-- Card and customer attributes; true from the day the account was opened.
select
    card_id,
    cast(cast(account_open_date as timestamp) at time zone 'UTC' as timestamptz) as event_time,
    cast(home_lat as double) as home_lat,
    cast(home_lon as double) as home_lon,
    cast(credit_limit as double) as credit_limit,
    age_band,
    account_open_date
from {{ ref('stg_cards') }}
