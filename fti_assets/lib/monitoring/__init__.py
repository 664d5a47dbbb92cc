"""Model monitoring as pure functions over Polars/NumPy: drift, performance, estimation.

``drift`` is the fast per-column drift layer (Evidently's test choice, on all rows);
``evidently_report`` runs Evidently itself on a bounded sample and writes its HTML;
``performance`` scores days whose labels have (partly) arrived; ``estimation`` estimates the
same figures from calibrated probabilities before any label arrives. Nothing here imports Dagster.
"""
