{#- One row per combination of columns. On a daily model pass partition_column: a partition run
    then checks only the days it wrote (a full refresh, with no vars, checks everything). -#}
{% test unique_combination(model, columns, partition_column=none) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
{{ partition_where(partition_column) }}
group by all
having count(*) > 1
{% endtest %}
