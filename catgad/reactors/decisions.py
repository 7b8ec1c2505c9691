"""What every reactor's pure decisions share: the decision they make, and the ids of the
commands they send (fixed by the instance and the decision, so a re-send is the same command,
which the store keeps once)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

_COMMANDS = uuid.UUID("6f1c7d52-9d7e-4b8a-a1f7-3a0c2f5d9e10")


@dataclass(frozen=True, slots=True)
class Decide:
    """Append this decision (an event of the instance's stream) and nothing else."""

    type: str
    data: dict[str, Any]


def command_id(stream: str, *parts: object) -> str:
    """The id of a command an instance sends: the same on every re-send of that decision."""
    return str(uuid.uuid5(_COMMANDS, "/".join((stream, *map(str, parts)))))
