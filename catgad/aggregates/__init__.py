"""Aggregates: pure decide/evolve over the YAML rules, and loading state from a store."""
