"""Event store tests: the contract per backend, properties, and a real crash for SQLite."""
