{{ config(unique_key='activity_date') }}
-- One row per card and day with activity: the daily grain the trailing windows sum over.
-- Amounts are summed as exact decimals (cents): a float sum depends on the order rows are added
-- in, so an incremental run and a full refresh could differ in the last digit.
select
    card_id,
    transaction_date as activity_date,
    count(*) as tx_count,
    sum(cast(amount as decimal(18, 2))) as amount_sum,
    max(amount) as amount_max,
    count(*) filter (where channel = 'online') as online_count
from {{ ref('stg_transactions') }}
where transaction_date between {{ window_start() }} and {{ window_end() }}
group by all
