{{ config(unique_key='reported_date') }}
-- Each confirmed fraud transaction with the day its first fraud report arrived, partitioned by
-- that report day: a merchant's fraud rate on day d may only count reports from day <= d.
select
    t.merchant_id,
    t.transaction_id,
    t.transaction_date,
    min(l.reported_at) as first_reported_at,
    cast(min(l.reported_at) as date) as reported_date
from {{ ref('stg_fraud_labels') }} as l
join {{ ref('stg_transactions') }} as t using (transaction_id)
where l.is_fraud = 1
group by all
having cast(min(l.reported_at) as date) between {{ window_start() }} and {{ window_end() }}
