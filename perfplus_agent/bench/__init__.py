"""Benchmarks: each measures on the real lab and reports figures with their environment."""
