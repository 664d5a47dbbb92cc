{{ config(unique_key='activity_date') }}
-- One row per merchant and day with activity.
select
    merchant_id,
    transaction_date as activity_date,
    count(*) as tx_count,
    sum(cast(amount as decimal(18, 2))) as amount_sum  -- exact, like int_card_daily_activity
from {{ ref('stg_transactions') }}
where transaction_date between {{ window_start() }} and {{ window_end() }}
group by all
