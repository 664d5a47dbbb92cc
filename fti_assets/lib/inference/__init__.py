"""Batch scoring, online serving and the inference log."""
