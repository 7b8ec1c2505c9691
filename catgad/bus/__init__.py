"""Transports for events and commands: one Protocol, one module per broker."""
