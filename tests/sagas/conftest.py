# ruff: noqa: E501  (the YAML of the shop reads best one definition a line)
"""A saga service in-process on any store: engine, router, saga runner and a clock to move.

The config is the shop of tests/sagas (rule commands only, so no server is
needed besides the store): reserve, charge (declined above a limit, or left
pending for an outside capture), ship, confirm; release, refund, cancel.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from catgad.app.load import load_config
from catgad.consumer.clock import ManualClock
from catgad.consumer.settings import LeasedSettings
from catgad.engine.commands import CommandEngine
from catgad.engine.routing import CommandRouter
from catgad.errors import SagaNotFound
from catgad.model import Config
from catgad.reactors.send import RouterSender
from catgad.sagas.runner import SagaRunner
from catgad.sagas.state import SagaState
from catgad.store.protocol import EventStore
from tests.sagas.orders import payments_server

SHOP = """
catgad: 1
service: {name: shop}
store: memory
sagas:
  Place:
    start: {event: OrderPlaced, id: data.order_id}
    timeout: 10m
    retry: {attempts: 3, backoff: 1s}
    steps:
      - {name: reserve, command: ReserveStock, data: {order_id: input.order_id, qty: input.qty}}
      - name: pay
        command: ChargePayment
        data: {order_id: input.order_id, amount: input.amount}
        await:
          success: PaymentCaptured
          failure: [PaymentDeclined]
          timeout: 30s
      - {name: ship, command: BookShipment, data: {order_id: input.order_id, address: input.address}}
      - {name: confirm, command: ConfirmOrder, data: {order_id: input.order_id}}
    compensate:
      StockReserved: {command: ReleaseStock, data: {order_id: event.data.order_id}}
      PaymentCaptured: {command: RefundPayment, data: {order_id: event.data.order_id, amount: event.data.amount}}
      ShipmentBooked: {command: CancelShipment, data: {order_id: event.data.order_id}}
aggregates:
  Order:
    id: order_id
    initial: {status: none}
    on:
      OrderPlaced: {set: {status: "'placed'"}}
      OrderConfirmed: {set: {status: "'confirmed'"}}
      OrderWithdrawn: {set: {status: "'withdrawn'"}}
  Reservation:
    id: order_id
    initial: {status: none}
    on:
      StockReserved: {set: {status: "'reserved'"}}
      StockReleased: {set: {status: "'released'"}}
      StockHeld: {set: {status: "'held'"}}
      StockUnheld: {set: {status: "'reserved'"}}
  Payment:
    id: order_id
    initial: {status: none, captured: 0}
    on:
      PaymentCaptured: {set: {status: "'captured'", captured: data.amount}}
      PaymentDeclined: {set: {status: "'declined'"}}
      PaymentRefunded: {set: {status: "'refunded'", captured: 0}}
  Shipment:
    id: order_id
    initial: {status: none}
    on:
      ShipmentBooked: {set: {status: "'booked'"}}
      ShipmentCancelled: {set: {status: "'cancelled'"}}
commands:
  PlaceOrder:
    aggregate: Order
    schema: &order
      type: object
      required: [order_id, qty, amount, address]
      properties:
        order_id: {type: string}
        qty: {type: integer}
        amount: {type: integer}
        address: {type: string}
    require: [{rule: version == 0, message: placed already}]
    emit: [{event: OrderPlaced, data: {order_id: data.order_id, qty: data.qty, amount: data.amount, address: data.address}}]
  WithdrawOrder:
    aggregate: Order
    schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
    require: [{rule: state.status == 'placed', message: not placed}]
    emit: [{event: OrderWithdrawn, data: {order_id: data.order_id}}]
  ConfirmOrder:
    aggregate: Order
    schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
    require: [{rule: state.status == 'placed', message: only a placed order can be confirmed}]
    emit: [{event: OrderConfirmed, data: {order_id: data.order_id}}]
  ReserveStock:
    aggregate: Reservation
    schema: {type: object, required: [order_id, qty], properties: {order_id: {type: string}, qty: {type: integer}}}
    require:
      - {rule: version == 0, message: reserved already}
      - {rule: data.qty <= 10, message: not enough stock}
    emit: [{event: StockReserved, data: {order_id: data.order_id, qty: data.qty}}]
  ReleaseStock:
    aggregate: Reservation
    schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
    require: [{rule: state.status == 'reserved', message: nothing to release}]
    emit: [{event: StockReleased, data: {order_id: data.order_id}}]
  HoldStock:
    aggregate: Reservation
    schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
    require: [{rule: state.status == 'reserved', message: nothing to hold}]
    emit: [{event: StockHeld, data: {order_id: data.order_id}}]
  UnholdStock:
    aggregate: Reservation
    schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
    require: [{rule: state.status == 'held', message: not held}]
    emit: [{event: StockUnheld, data: {order_id: data.order_id}}]
  ChargePayment:
    aggregate: Payment
    schema: {type: object, required: [order_id, amount], properties: {order_id: {type: string}, amount: {type: integer}}}
    require: [{rule: version == 0, message: charged already}]
    emit:
      # up to 1000: captured at once; up to 5000: nothing yet, captured later by CapturePayment
      # (or never: the await times out); above: declined
      - {event: PaymentCaptured, when: data.amount <= 1000, data: {order_id: data.order_id, amount: data.amount}}
      - {event: PaymentDeclined, when: data.amount > 5000, data: {order_id: data.order_id, reason: "'over the limit'"}}
  CapturePayment:
    aggregate: Payment
    schema: {type: object, required: [order_id, amount], properties: {order_id: {type: string}, amount: {type: integer}}}
    require: [{rule: version == 0, message: paid already}]
    emit: [{event: PaymentCaptured, data: {order_id: data.order_id, amount: data.amount}}]
  RefundPayment:
    aggregate: Payment
    schema: {type: object, required: [order_id, amount], properties: {order_id: {type: string}, amount: {type: integer}}}
    require: [{rule: state.status == 'captured', message: nothing captured}]
    emit: [{event: PaymentRefunded, data: {order_id: data.order_id, amount: data.amount}}]
  BookShipment:
    aggregate: Shipment
    schema: {type: object, required: [order_id, address], properties: {order_id: {type: string}, address: {type: string}}}
    require:
      - {rule: version == 0, message: booked already}
      - {rule: data.address != 'nowhere', message: we do not ship there}
    emit: [{event: ShipmentBooked, data: {order_id: data.order_id, address: data.address}}]
  CancelShipment:
    aggregate: Shipment
    schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
    require: [{rule: state.status == 'booked', message: nothing booked}]
    emit: [{event: ShipmentCancelled, data: {order_id: data.order_id}}]
events:
  OrderPlaced: {schema: *order}
  OrderConfirmed: {schema: {type: object, properties: {order_id: {type: string}}}}
  OrderWithdrawn: {schema: {type: object, properties: {order_id: {type: string}}}}
  StockReserved: {schema: {type: object, properties: {order_id: {type: string}, qty: {type: integer}}}}
  StockReleased: {schema: {type: object, properties: {order_id: {type: string}}}}
  StockHeld: {schema: {type: object, properties: {order_id: {type: string}}}}
  StockUnheld: {schema: {type: object, properties: {order_id: {type: string}}}}
  PaymentCaptured: {schema: {type: object, properties: {order_id: {type: string}, amount: {type: integer}}}}
  PaymentDeclined: {schema: {type: object, properties: {order_id: {type: string}, reason: {type: string}}}}
  PaymentRefunded: {schema: {type: object, properties: {order_id: {type: string}, amount: {type: integer}}}}
  ShipmentBooked: {schema: {type: object, properties: {order_id: {type: string}, address: {type: string}}}}
  ShipmentCancelled: {schema: {type: object, properties: {order_id: {type: string}}}}
"""


def shop_config(tmp_path: Path, edit: dict[str, str] | None = None) -> Config:
    text = textwrap.dedent(SHOP).lstrip()
    for old, new in (edit or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "shop.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={})


@dataclass
class Shop:
    config: Config
    store: EventStore
    engine: CommandEngine
    runner: SagaRunner
    clock: ManualClock
    registry: CollectorRegistry

    async def place(self, order_id: str, **data: Any) -> None:
        order = {"order_id": order_id, "qty": 1, "amount": 500, "address": "Main St"} | data
        await self.engine.execute("PlaceOrder", order)

    async def settled(self, order_id: str, within: float = 20.0) -> SagaState:
        async with asyncio.timeout(within):
            return await self.runner.settled("Place", order_id)

    async def waiting(self, order_id: str, step: str, within: float = 20.0) -> SagaState:
        """Until the instance has its `step` accepted and waits on its outcome."""
        async with asyncio.timeout(within):
            while True:
                try:
                    state = await self.runner.instance("Place", order_id)
                except SagaNotFound:
                    await asyncio.sleep(0.01)
                    continue
                if state.current_step(self.runner.definition("Place")) == step and state.accepted:
                    if order_id in self.runner.sagas["Place"].deadlines:
                        return state
                await asyncio.sleep(0.01)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def payments(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A slow payments webhook recording each request: its URL, and the record file."""
    yield from payments_server(tmp_path)


@asynccontextmanager
async def shop(
    store: EventStore, config: Config, *, owner: str = "test-daemon", drive: bool = True
) -> AsyncIterator[Shop]:
    clock = ManualClock()
    registry = CollectorRegistry()
    runner_box: list[SagaRunner] = []
    engine = CommandEngine(
        config,
        store,
        on_appended=lambda result: runner_box[0].notify(result) if runner_box else None,
    )
    router = CommandRouter(engine, None, service=config.service.name)
    runner = SagaRunner(
        config,
        store,
        RouterSender(router, config.service.name),
        owner=owner,
        clock=clock,
        registry=registry,
        settings=LeasedSettings(lease_ttl=3.0, poll_interval=0.05),
        drive=drive,
    )
    runner_box.append(runner)
    await runner.start()
    try:
        yield Shop(config, store, engine, runner, clock, registry)
    finally:
        await runner.stop()
