"""Benchmarks: `python -m bench` runs them all (`make bench` starts the stack first); see each module's docstring."""
