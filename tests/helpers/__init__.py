"""Reusable test helpers: real daemons in subprocesses (daemon.py)."""
