"""Models and feature views declared as data: one asset factory turns each model spec into its
training, evaluation, promotion, scoring and monitoring assets."""
