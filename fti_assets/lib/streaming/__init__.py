"""The streaming feature pipeline: card window features kept current per transaction.

- :mod:`.events`: the transaction event the service appends and the pipeline decodes;
- :mod:`.event_log`: the durable ordered log (SQLite table or Redis Stream, ``FTI_EVENT_LOG_URL``);
- :mod:`.state`: the per-card window state, built from the declarations in
  :mod:`fti_assets.lib.features.windows` (the batch path's declarations);
- :mod:`.bootstrap`: the state's starting point, read from the offline store;
- :mod:`.processor`: micro-batches committed to the online store with their offset, exactly once.
"""
