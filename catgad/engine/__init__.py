"""The command engine: the one path every command takes, whatever the transport."""

from catgad.engine.commands import CommandEngine, CommandResult

__all__ = ["CommandEngine", "CommandResult"]
