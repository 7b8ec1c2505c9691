"""Shared fixtures; backend fixtures live beside their tests, except the private NATS server
that store, daemon and fault tests all start (tests.servers.nats.private_nats_server)."""

pytest_plugins = ["tests.servers.nats"]
