"""`catgad test` and handlers: plugins run, webhook replies are stubbed, or skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.errors import ConfigError
from tests.handlers.conftest import tickets_yaml
from tests.helpers.daemon import run_cli

SCENARIOS = """
tests:
  - name: a stubbed reply is checked and applied
    given: [{type: TicketOpened, data: {ticket_id: t1, title: x}}]
    when:
      command: Triage
      data: {ticket_id: t1}
      reply: {events: [{type: TicketTriaged, data: {ticket_id: t1, priority: 4}}]}
    then:
      events: [{type: TicketTriaged, data: {ticket_id: t1, priority: 4}}]
      state: {priority: 4}
  - name: a stubbed reply breaking its schema is a 502
    given: [{type: TicketOpened, data: {ticket_id: t1, title: x}}]
    when:
      command: Triage
      data: {ticket_id: t1}
      reply: {events: [{type: TicketTriaged, data: {ticket_id: t1, priority: 9}}]}
    then:
      rejected: {status: 502, message: "breaks its schema at /priority"}
  - name: a stubbed rejection
    when: {command: Triage, data: {ticket_id: t1}, reply: {error: not today}}
    then: {rejected: {status: 409, message: not today}}
  - name: without a reply the webhook is not called
    when: {command: Triage, data: {ticket_id: t1}}
    then: {events: []}
"""


def test_stubbed_replies_and_a_skip(tmp_path: Path) -> None:
    config = tickets_yaml(tmp_path, "http://127.0.0.1:9/never-called")
    config.write_text(config.read_text() + SCENARIOS)
    done = run_cli("test", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "TAP version 14",
        "1..4",
        "ok 1 - a stubbed reply is checked and applied",
        "ok 2 - a stubbed reply breaking its schema is a 502",
        "ok 3 - a stubbed rejection",
        "ok 4 - without a reply the webhook is not called # SKIP needs webhook 'triage' "
        "(or give when.reply)",
        "# 3 passed, 0 failed, 1 skipped",
    ]


def test_a_reply_for_a_rule_command_is_a_config_error(tmp_path: Path) -> None:
    config = tickets_yaml(tmp_path, "http://127.0.0.1:9/x")
    config.write_text(
        config.read_text()
        + "tests:\n  - name: n\n    when: {command: OpenTicket, data: {ticket_id: t, title: x},"
        " reply: {error: e}}\n    then: {rejected: {status: 409}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    assert [f"{i.path}: {i.message}" for i in caught.value.issues] == [
        "tests[0].when.reply: 'reply' stubs a handler, but OpenTicket has rules"
    ]
