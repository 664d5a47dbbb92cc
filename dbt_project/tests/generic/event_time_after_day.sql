{#- A daily aggregate is only available once its day is over: event_time must be the midnight
    UTC after feature_date, never earlier (an earlier event_time would leak the day's data). -#}
{% test event_time_after_day(model, day_column) %}
select *
from {{ model }}
{{ partition_where(day_column) }}
{{ 'and' if window_is_set() else 'where' }} event_time <> {{ end_of_day_utc(day_column) }}
{% endtest %}
