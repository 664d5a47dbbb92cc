"""Pure-Python core of the platform: no Dagster imports live under this package.

Grouped by concern into layers; a module imports only from its own layer and the layers below
(lowest first; tests/unit/test_import_layers.py checks it):

- ``core``: settings, backend URLs, provenance (the git sha of the code);
- ``store``: the feature store (offline DuckLake, online SQLite/Redis, the Postgres catalog
  server) and the spec of what it stores, :class:`~.store.group_spec.FeatureGroupSpec`;
- ``registry``: the model registry and the model artifact it stores (the predictor);
- ``ingest``: the landing files' domain and contracts, reading them into raw tables;
- ``features``: feature groups, windows, pipelines, on-demand features, views, the PIT join;
- ``streaming``: the streaming feature pipeline (event log, window state, processor);
- ``training``: datasets, training, evaluation and gates, leakage, reproduction;
- ``inference``: batch scoring, online serving, the inference log;
- ``monitoring``: drift, performance, estimation, skew;
- ``synthetic``: the generated world, which nothing else in lib depends on.
"""
