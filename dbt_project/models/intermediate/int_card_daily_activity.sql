{{ config(unique_key='activity_date') }}
-- One row per card and day with activity: the daily grain the trailing windows sum over.
select
    card_id,
    transaction_date as activity_date,
    count(*) as tx_count,
    sum(amount) as amount_sum,
    max(amount) as amount_max,
    count(*) filter (where channel = 'online') as online_count
from {{ ref('stg_transactions') }}
where transaction_date between {{ window_start() }} and {{ window_end() }}
group by all
