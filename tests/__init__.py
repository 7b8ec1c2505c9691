"""The test suite, one package: modules are imported as `tests.<dir>.<module>`."""
