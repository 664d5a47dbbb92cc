{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='feature_date',
    on_schema_change='fail',
    alias='card_daily_features_v1',
    tags=['daily'],
) }}
-- Per card and day: trailing 1/7/30-day counts and amounts, available at the midnight UTC that
-- ends the day. One row per card for every day of the window (a quiet day is a row of zeros),
-- so a point-in-time lookup never picks a stale row from an earlier active day.
with {{ dense_daily_grid(
    ref('stg_cards'), 'card_id', ref('int_card_daily_activity'),
    ['tx_count', 'amount_sum', 'online_count'],
) }},

windowed as (
    select
        card_id,
        feature_date,
        tx_count as tx_count_1d,
        amount_sum as amount_sum_1d,
        sum(tx_count) over w7 as tx_count_7d,
        sum(amount_sum) over w7 as amount_sum_7d,
        sum(tx_count) over w30 as tx_count_30d,
        sum(amount_sum) over w30 as amount_sum_30d,
        sum(online_count) over w30 as online_count_30d,
        count(*) filter (where tx_count > 0) over w30 as active_days_30d
    from dense
    window
        w7 as (partition by card_id order by feature_date rows between 6 preceding and current row),
        w30 as (partition by card_id order by feature_date rows between 29 preceding and current row)
)

select
    card_id,
    {{ end_of_day_utc('feature_date') }} as event_time,
    feature_date,
    cast(tx_count_1d as bigint) as tx_count_1d,
    cast(tx_count_7d as bigint) as tx_count_7d,
    cast(tx_count_30d as bigint) as tx_count_30d,
    cast(amount_sum_1d as double) as amount_sum_1d,
    cast(amount_sum_7d as double) as amount_sum_7d,
    cast(amount_sum_30d as double) as amount_sum_30d,
    cast(amount_sum_7d / nullif(tx_count_7d, 0) as double) as amount_mean_7d,
    cast(amount_sum_30d / nullif(tx_count_30d, 0) as double) as amount_mean_30d,
    cast(online_count_30d / nullif(tx_count_30d, 0) as double) as online_share_30d,
    cast(active_days_30d as bigint) as active_days_30d
from windowed
where feature_date between {{ window_start() }} and {{ window_end() }}
