"""Training datasets, training, evaluation and gates, leakage, reproduction."""
