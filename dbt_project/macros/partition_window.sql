{#- The partition window Dagster asks for, from FTI_WINDOW_START / FTI_WINDOW_END (YYYY-MM-DD,
    inclusive), as SQL date expressions. Unset (a full refresh): every day with transactions.
    Environment variables rather than --vars: a new --vars value makes dbt re-parse the whole
    project on every daily run, a changed env var does not. -#}
{% macro window_is_set() -%}
  {{- return(env_var('FTI_WINDOW_START', '') != '') -}}
{%- endmacro %}

{% macro window_start() -%}
  {%- if window_is_set() -%}
    cast('{{ env_var("FTI_WINDOW_START") }}' as date)
  {%- else -%}
    (select min(cast(transaction_time as date)) from {{ source('raw', 'raw_transactions') }})
  {%- endif -%}
{%- endmacro %}

{% macro window_end() -%}
  {%- if window_is_set() -%}
    cast('{{ env_var("FTI_WINDOW_END") }}' as date)
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
  {%- if column and window_is_set() -%}
    where {{ column }} between {{ window_start() }} and {{ window_end() }}
  {%- endif -%}
{%- endmacro %}
