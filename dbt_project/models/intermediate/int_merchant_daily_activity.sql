{{ config(unique_key='activity_date') }}
-- One row per merchant and day with activity.
select
    merchant_id,
    transaction_date as activity_date,
    count(*) as tx_count,
    sum(amount) as amount_sum
from {{ ref('stg_transactions') }}
where transaction_date between {{ window_start() }} and {{ window_end() }}
group by all
