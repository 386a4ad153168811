"""Benchmarks: ``python -m bench`` prints one table, each figure beside a baseline measured in the same run."""
