"""Helpers that find or start the real servers the tests talk to, one module per server."""
