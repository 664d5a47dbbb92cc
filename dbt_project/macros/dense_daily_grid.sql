{#- The CTEs `days`, `activity` and `dense` shared by the daily feature marts: one row per entity
    and day, from `lookback_days` before the run's window to its end, with the entity's daily
    activity measures (zero on a quiet day). Trailing windows over `dense` then see every day,
    so a point-in-time lookup never picks a stale row from an earlier active day.
    Use: `with {{ dense_daily_grid(ref('stg_cards'), 'card_id', ref('int_card_daily_activity'),
    ['tx_count', 'amount_sum']) }}, windowed as (...)`. -#}
{% macro dense_daily_grid(entities, key, activity, measures, lookback_days=29) -%}
days as (
    select cast(unnest(generate_series(
        {{ window_start() }} - interval {{ lookback_days }} day, {{ window_end() }}, interval 1 day
    )) as date) as feature_date
),

activity as (
    select *
    from {{ activity }}
    where activity_date between {{ window_start() }} - interval {{ lookback_days }} day and {{ window_end() }}
),

dense as (
    select
        e.{{ key }},
        d.feature_date,
        {%- for measure in measures %}
        coalesce(a.{{ measure }}, 0) as {{ measure }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ entities }} as e
    cross join days as d
    left join activity as a
        on a.{{ key }} = e.{{ key }} and a.activity_date = d.feature_date
)
{%- endmacro %}
