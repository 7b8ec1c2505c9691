"""The loaded, checked config: what the rest of catgad runs from.

Built by catgad.app.load_config(): every CEL expression is already compiled and
every name already resolved, so the runtime never re-checks the YAML. The parts
every service has are typed fields; what a feature adds (projections, sagas,
processes, scenario tests) is in `sections`, read through the feature's own
section (`SAGAS.of(config)`), so a new feature adds no field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catgad.aggregates.model import AggregateDef, CommandDef, EventDef
from catgad.bus.section import BusConfig
from catgad.handlers.section import HandlerConfig
from catgad.service.model import ServiceConfig
from catgad.store.section import StoreConfig


@dataclass(slots=True)
class Config:
    path: str
    version: int = 1
    service: ServiceConfig = field(default_factory=ServiceConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    handlers: dict[str, HandlerConfig] = field(default_factory=dict)
    aggregates: dict[str, AggregateDef] = field(default_factory=dict)
    commands: dict[str, CommandDef] = field(default_factory=dict)
    events: dict[str, EventDef] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # by key: what each section built
