"""Crash trials: real subprocesses killed with SIGKILL at random points (see harness.py)."""
