"""Performance benchmarks of the screening service: `python -m benchmarks.run` (see README.md)."""
