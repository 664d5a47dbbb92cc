"""The real-time prediction service (FastAPI): online features + on-demand + champion model."""
