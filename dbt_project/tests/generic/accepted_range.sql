{% test accepted_range(model, column_name, min_value, max_value, partition_column=none) %}
select *
from {{ model }}
{{ partition_where(partition_column) }}
{{ 'and' if (partition_column and window_is_set()) else 'where' }}
    ({{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }})
{% endtest %}
