"""Handler replies in the engine: a ReplyCheck'd reply is not validated twice, any other is."""

from __future__ import annotations

from pathlib import Path

import pytest

from catgad.aggregates.rules import Decision
from catgad.app.load import load_config
from catgad.engine import CommandEngine
from catgad.errors import RuleError
from catgad.handlers.protocol import HandlerReply, HandlerRequest, ReplyCheck
from catgad.store.memory import MemoryStore

CONFIG = """
catgad: 1
service: {name: replies}
store: memory
aggregates:
  Note:
    id: note_id
    initial: {}
    on: {Noted: {set: {text: data.text}}}
commands:
  Note:
    aggregate: Note
    schema: {type: object, required: [note_id], properties: {note_id: {type: string}}}
    handler: raw
events:
  Noted:
    schema: {type: object, required: [text], properties: {text: {type: string}}}
handlers:
  raw: {kind: webhook, url: "http://127.0.0.1:9/", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
"""


class Raw:
    """A handler answering whatever it was given, checked or not."""

    kind = "webhook"
    name = "raw"

    def __init__(self, reply: HandlerReply) -> None:
        self.reply = reply

    async def __call__(self, request: HandlerRequest) -> HandlerReply:
        return self.reply

    async def close(self) -> None:
        return None


async def engine_with(tmp_path: Path, reply: HandlerReply) -> CommandEngine:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    store = MemoryStore()
    await store.open()
    return CommandEngine(load_config(path), store, handlers={"raw": Raw(reply)})


def test_reply_check_marks_its_replies_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    check = ReplyCheck("raw", load_config(path).events)
    assert check.events([{"type": "Noted", "data": {"text": "x"}}]).checked
    assert not HandlerReply([]).checked


async def test_an_unchecked_reply_is_still_held_to_the_event_schema(tmp_path: Path) -> None:
    engine = await engine_with(tmp_path, HandlerReply([Decision("Noted", {"text": 1})]))
    with pytest.raises(RuleError, match="breaks its schema"):
        await engine.execute("Note", {"note_id": "n1"})


async def test_a_checked_reply_is_appended(tmp_path: Path) -> None:
    reply = HandlerReply([Decision("Noted", {"text": "hi"})], checked=True)
    engine = await engine_with(tmp_path, reply)
    result = await engine.execute("Note", {"note_id": "n1"})
    assert [e.data for e in result.events] == [{"text": "hi"}]
    assert result.events[0].dataschemaversion == 1
