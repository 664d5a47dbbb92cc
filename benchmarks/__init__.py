"""Benchmarks behind `make bench`: each module measures one area against its alternatives."""
