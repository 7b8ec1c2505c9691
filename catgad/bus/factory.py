"""Build the bus a config asks for (unopened: the caller opens and closes it) and relay settings."""

from __future__ import annotations

from typing import Any

from catgad.bus.memory import MemoryBus
from catgad.bus.protocol import Bus
from catgad.bus.relay import RelaySettings
from catgad.config.model import BusConfig
from catgad.errors import CatgadError

# bus.options understood per kind; every kind understands `relay` (RelaySettings) and
# `commands` (catgad.engine.routing's CommandSettings), each checked by its reader
_COMMON_OPTIONS = frozenset({"relay", "commands"})
OptionTypes = dict[str, type | tuple[type, ...]]


def open_bus(cfg: BusConfig) -> Bus:
    """The bus for `cfg`; `await bus.open()` before use."""
    if cfg.kind == "memory":
        from catgad.bus.memory import OPTIONS as MEMORY_OPTIONS

        return MemoryBus(**_checked(cfg.kind, cfg.options, MEMORY_OPTIONS))
    # broker clients are imported only by the configs that use them
    if cfg.kind == "nats":
        from catgad.bus.nats import DEFAULT_URL as NATS_URL
        from catgad.bus.nats import OPTIONS as NATS_OPTIONS
        from catgad.bus.nats import NatsBus

        return NatsBus(cfg.url or NATS_URL, **_checked(cfg.kind, cfg.options, NATS_OPTIONS))
    if cfg.kind == "kafka":
        from catgad.bus.kafka import DEFAULT_URL as KAFKA_URL
        from catgad.bus.kafka import OPTIONS as KAFKA_OPTIONS
        from catgad.bus.kafka import KafkaBus

        return KafkaBus(cfg.url or KAFKA_URL, **_checked(cfg.kind, cfg.options, KAFKA_OPTIONS))
    raise CatgadError(f"bus kind {cfg.kind!r} is not available")


def relay_settings(cfg: BusConfig) -> RelaySettings:
    """How the outbox relay runs (`bus.options.relay`), checked."""
    return RelaySettings.from_options(cfg.options.get("relay"))


def _checked(kind: str, options: dict[str, Any], known: OptionTypes) -> dict[str, Any]:
    """The options meant for the bus itself, each known and of its type."""
    allowed = frozenset(known) | _COMMON_OPTIONS
    given: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            names = ", ".join(sorted(allowed))
            raise CatgadError(f"bus option {key!r} is not known for {kind} (known: {names})")
        if key in _COMMON_OPTIONS:
            continue
        want = known[key]
        wants = want if isinstance(want, tuple) else (want,)
        # bool is an int to Python: `partitions: true` is surely a mistake
        if (isinstance(value, bool) and bool not in wants) or not isinstance(value, wants):
            if float in wants and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # `timeout: 5` means 5.0
            else:
                names = " or ".join(t.__name__ for t in wants)
                raise CatgadError(f"bus option {key!r} must be {names}, not {value!r}")
        given[key] = value
    return given
