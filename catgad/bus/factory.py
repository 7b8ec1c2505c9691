"""Build the bus a config asks for (unopened: the caller opens and closes it) and relay settings."""

from __future__ import annotations

from typing import Any

from catgad.bus.memory import MemoryBus
from catgad.bus.protocol import Bus
from catgad.bus.relay import RelaySettings
from catgad.bus.section import OPTIONS, BusConfig
from catgad.config.section import checked_options, config_error

_COMMON_OPTIONS = frozenset({"relay", "commands"})  # read by the relay and the router


def open_bus(cfg: BusConfig) -> Bus:
    """The bus for `cfg`; `await bus.open()` before use."""
    if cfg.kind == "memory":
        return MemoryBus(**_checked(cfg))
    # broker clients are imported only by the configs that use them
    if cfg.kind == "nats":
        from catgad.bus.nats import DEFAULT_URL as NATS_URL
        from catgad.bus.nats import NatsBus

        return NatsBus(cfg.url or NATS_URL, **_checked(cfg))
    if cfg.kind == "kafka":
        from catgad.bus.kafka import DEFAULT_URL as KAFKA_URL
        from catgad.bus.kafka import KafkaBus

        return KafkaBus(cfg.url or KAFKA_URL, **_checked(cfg))
    raise config_error(cfg.where, "bus.kind", f"expected one of {', '.join(OPTIONS)}")


def relay_settings(cfg: BusConfig) -> RelaySettings:
    """How the outbox relay runs (`bus.options.relay`), checked."""
    return RelaySettings.from_options(cfg.options.get("relay"), cfg.where)


def _checked(cfg: BusConfig) -> dict[str, Any]:
    known = OPTIONS[cfg.kind]
    return checked_options(
        "bus.options", f"the {cfg.kind} bus", cfg.options, known, cfg.where, _COMMON_OPTIONS
    )
