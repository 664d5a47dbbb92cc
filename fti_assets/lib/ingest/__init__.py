"""The landing files' domain and contracts, and reading them into raw tables."""
