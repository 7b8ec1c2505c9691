"""The customer service at schema version 1 and after two releases (version 3), for the tests.

Version 1 stored `CustomerRegistered {customer_id, customer: "Ada Lovelace", mail}`
and `CustomerMoved {customer_id, town, zip}`. Version 3 reads
`CustomerRegistered {customer_id, customer: {first, last}, email, tier, vip}`
(step 1 → 2: rename, default, CEL; step 2 → 3: the example plugin
split-customer-name) and `CustomerMoved {customer_id, city}` (version 2).
"""

from __future__ import annotations

from pathlib import Path

HEAD = """
catgad: 1
service: {name: customers}
store: {store}
aggregates:
  Customer:
    id: customer_id
    initial: {moves: 0}
    on:
"""

V1 = (
    HEAD
    + """
      CustomerRegistered: {set: {name: data.customer, email: data.mail}}
      CustomerMoved: {set: {city: data.town, moves: state.moves + 1}}
commands:
  Register:
    aggregate: Customer
    schema:
      type: object
      required: [customer_id, customer, mail]
      properties: {customer_id: {type: string}, customer: {type: string}, mail: {type: string}}
    emit:
      - event: CustomerRegistered
        data: {customer_id: data.customer_id, customer: data.customer, mail: data.mail}
  Move:
    aggregate: Customer
    schema:
      type: object
      required: [customer_id, town]
      properties: {customer_id: {type: string}, town: {type: string}}
    emit:
      - event: CustomerMoved
        data: {customer_id: data.customer_id, town: data.town, zip: "'00000'"}
events:
  CustomerRegistered:
    schema:
      type: object
      required: [customer_id, customer, mail]
      properties: {customer_id: {type: string}, customer: {type: string}, mail: {type: string}}
  CustomerMoved:
    schema:
      type: object
      required: [customer_id, town]
      properties: {customer_id: {type: string}, town: {type: string}, zip: {type: string}}
"""
)

V3 = (
    HEAD
    + """
      CustomerRegistered:
        set:
          name: data.customer.first + ' ' + data.customer.last
          email: data.email
          tier: data.tier
      CustomerMoved: {set: {city: data.city, moves: state.moves + 1}}
commands:
  Move:
    aggregate: Customer
    schema:
      type: object
      required: [customer_id, city]
      properties: {customer_id: {type: string}, city: {type: string}}
    emit:
      - event: CustomerMoved
        data: {customer_id: data.customer_id, city: data.city}
events:
  CustomerRegistered:
    version: 3
    schema:
      type: object
      required: [customer_id, customer, email, tier, vip]
      additionalProperties: false
      properties:
        customer_id: {type: string}
        customer:
          type: object
          required: [first, last]
          properties: {first: {type: string}, last: {type: string}}
        email: {type: string}
        tier: {type: string}
        vip: {type: boolean}
    upcasters:
      1:
        rename: {mail: email}
        defaults: {tier: basic}
        set: {vip: "data.tier == 'gold' || size(data.email) > 40"}
      2: {handler: names}
  CustomerMoved:
    version: 2
    schema:
      type: object
      required: [customer_id, city]
      additionalProperties: false
      properties: {customer_id: {type: string}, city: {type: string}}
    upcasters:
      1: {rename: {town: city}, remove: [zip]}
handlers:
  names:
    kind: plugin
    entry_point: split-customer-name
"""
)


def write(directory: Path, version: int, store: str = "{kind: sqlite, path: customers.db}") -> Path:
    path = directory / f"customers-v{version}.yaml"
    path.write_text((V1 if version == 1 else V3).replace("{store}", store), encoding="utf-8")
    return path
