"""Servers and engines behind the shared data layer."""
