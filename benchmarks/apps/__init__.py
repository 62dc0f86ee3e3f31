"""Minimal apps the middleware benchmarks serve: the same routes with and without capture."""
