{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='feature_date',
    on_schema_change='fail',
    alias='merchant_daily_features_v1',
    tags=['daily'],
) }}
-- Per merchant and day: trailing activity and a trailing fraud rate available at the midnight
-- UTC ending the day. The fraud rate counts a transaction as fraud only if its fraud report
-- arrived by the end of that day: labels reported later cannot leak into earlier features.
with {{ dense_daily_grid(
    ref('stg_merchants'), 'merchant_id', ref('int_merchant_daily_activity'), ['tx_count', 'amount_sum']
) }},

windowed as (
    select
        merchant_id,
        feature_date,
        sum(tx_count) over w7 as tx_count_7d,
        sum(tx_count) over w30 as tx_count_30d,
        sum(amount_sum) over w30 as amount_sum_30d
    from dense
    window
        w7 as (partition by merchant_id order by feature_date rows between 6 preceding and current row),
        w30 as (partition by merchant_id order by feature_date rows between 29 preceding and current row)
    qualify feature_date between {{ window_start() }} and {{ window_end() }}
),

known_fraud as (
    -- Fraud among the merchant's transactions of the trailing 30 days, as reported by day end.
    select w.merchant_id, w.feature_date, count(r.transaction_id) as known_fraud_30d
    from windowed as w
    join {{ ref('int_merchant_fraud_reports') }} as r
        on r.merchant_id = w.merchant_id
        and r.transaction_date between w.feature_date - interval 29 day and w.feature_date
        and r.reported_date <= w.feature_date
    group by all
)

select
    w.merchant_id,
    {{ end_of_day_utc('w.feature_date') }} as event_time,
    w.feature_date,
    cast(w.tx_count_7d as bigint) as tx_count_7d,
    cast(w.tx_count_30d as bigint) as tx_count_30d,
    cast(w.amount_sum_30d / nullif(w.tx_count_30d, 0) as double) as amount_mean_30d,
    cast(coalesce(k.known_fraud_30d, 0) as bigint) as known_fraud_30d,
    cast(coalesce(k.known_fraud_30d, 0) / nullif(w.tx_count_30d, 0) as double) as fraud_rate_30d
from windowed as w
left join known_fraud as k using (merchant_id, feature_date)
