"""The test suite: one package, imported as `tests.<dir>.<module>` (the repository root is on the path)."""
