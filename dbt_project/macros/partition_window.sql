{#- The partition window Dagster asks for, as SQL date expressions.
    With no vars (a full refresh) the window is every day that has transactions. -#}
{% macro window_start() -%}
  {%- if var('start_date') -%}
    cast('{{ var("start_date") }}' as date)
  {%- else -%}
    (select min(cast(transaction_time as date)) from {{ source('raw', 'raw_transactions') }})
  {%- endif -%}
{%- endmacro %}

{% macro window_end() -%}
  {%- if var('end_date') -%}
    cast('{{ var("end_date") }}' as date)
  {%- else -%}
    (select max(cast(transaction_time as date)) from {{ source('raw', 'raw_transactions') }})
  {%- endif -%}
{%- endmacro %}

{#- Midnight UTC after a day: the moment a day's aggregate becomes available. -#}
{% macro end_of_day_utc(day) -%}
  (cast({{ day }} + interval 1 day as timestamp) at time zone 'UTC')
{%- endmacro %}

{#- "where <column> in the run's window" for a partition run; nothing for a full refresh. -#}
{% macro partition_where(column) -%}
  {%- if column and var('start_date') -%}
    where {{ column }} between {{ window_start() }} and {{ window_end() }}
  {%- endif -%}
{%- endmacro %}
