"""The model registry (SQLite, aliases, status) and the model artifact it stores."""
