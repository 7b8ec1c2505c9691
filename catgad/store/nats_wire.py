"""The NATS side of the NATS store: one connection, multiplexed JetStream requests, errors mapped.

Requests share one wildcard reply subscription and are matched by token; a
reply resolves its request where nats-py parses it (a reply without headers,
i.e. every publish ack, before nats-py's general message processing), one
periodic sweep enforces the deadlines, requests are written as ready-made
protocol frames into nats-py's output buffer (its flusher task sends them),
and orjson parses the answers: well under half the client CPU of nats-py's
`js.publish`, which is what limits throughput on a small machine. The private
nats-py attributes this touches are looked up at connect; without them it
falls back to nats-py's public calls. Every request is bounded by `timeout`; while the client is
reconnecting, requests fail at once, and requests in flight when the
connection drops fail as soon as the drop is noticed: their outcome is unknown
and the caller gets Unavailable, never a hang.

No nats-py exception leaves this module. Connection trouble, timeouts and
JetStream answering 503 become Unavailable; other JetStream API errors become
StoreError. Two outcomes the store acts on are raised as this module's own
signals: WrongLastSequence (JetStream error 10071, an expected last sequence
did not match) and NoStream (nobody answers for a stream: it does not exist,
e.g. after a memory-storage server restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import nats
import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from catgad import natsclient
from catgad.errors import StoreError, Unavailable
from catgad.store.nats_codec import KV_OPERATION

log = logging.getLogger(__name__)

DEPENDENCY = "nats"
_STREAM_NOT_FOUND = 10059
_STREAM_NAME_IN_USE = 10058
_CREATE_PAUSES = (0.25, 0.5, 1.0)  # seconds before each new try of a create the server failed
_WRONG_LAST_SEQUENCE = 10071


class Reply(NamedTuple):
    """A reply to a request: its payload and headers (None when it has none)."""

    data: bytes
    headers: dict[str, str] | None


Pending = asyncio.Future[Reply]  # a request sent, its reply to come


class WrongLastSequence(Exception):
    """A publish's expected last (subject) sequence did not match; nothing was written."""


class NoStream(Exception):
    """Nobody answered for a JetStream stream: it does not exist (yet, or any more)."""


class ApiError(Exception):
    """An error answer of the JetStream API, before it is mapped to catgad's errors."""

    def __init__(self, status: int, code: int, description: str) -> None:
        super().__init__(f"{description} (status {status}, error {code})")
        self.status = status
        self.code = code

    def mapped(self) -> StoreError | Unavailable:
        if self.status == 503:
            return Unavailable(DEPENDENCY, str(self))
        return StoreError(f"JetStream refused a request: {self}")


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    duplicate: bool  # the Nats-Msg-Id was seen within the duplicate window: nothing written


@dataclass(frozen=True, slots=True)
class Got:
    """A stored message read back."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]
    time: str = ""  # server timestamp, known for direct gets

    @property
    def deleted(self) -> bool:
        return self.headers.get(KV_OPERATION) in ("DEL", "PURGE")


def status_of(msg: Reply | Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None


class Wire:
    """One NATS connection that reconnects by itself; see the module docstring."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._nc: Client | None = None
        self._prefix = ""
        self._tokens = itertools.count()
        # token -> (future, deadline); insertion order is deadline order (one timeout for all)
        self._pending: dict[str, tuple[Pending, float]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._on_reconnect: Callable[[], Awaitable[None]] | None = None
        self._lean = False  # frames written straight into nats-py's output buffer (_queue)
        self._reply_sid = -1  # the reply subscription's id, once connected
        self._skip = 0  # length of the reply subjects' common prefix
        self._process_msg: Callable[..., Awaitable[None]] | None = None
        # which of nats-py's private parts this connection uses: "handover" (replies
        # resolved where parsed), "dispatch" (acks taken before its message processing),
        # "frames" (requests written into its output buffer); none means public calls only
        self.shortcuts: frozenset[str] = frozenset()

    async def connect(self, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        self._on_reconnect = on_reconnect
        nc = await natsclient.connect(
            self.url,
            name="catgad-store",
            timeout=self.timeout,
            dependency=DEPENDENCY,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnect,
            reconnected_cb=self._on_reconnected,
        )
        self._nc = nc
        self._prefix = nc.new_inbox() + "."
        self._skip = len(self._prefix)
        # pending_bytes_limit=0: replies are handed over at once (below), never queued up
        sub = await nc.subscribe(self._prefix + "*", cb=self._on_reply, pending_bytes_limit=0)
        shortcuts: set[str] = set()
        if _has(sub, _SUBSCRIPTION_QUEUE):
            # nats-py queues each message for a task that then awaits the callback: two
            # loop turns per reply. Resolving the waiting future right where the message is
            # parsed saves about a fifth of a request's cost; without this private
            # attribute, the callback does the same work.
            sub._pending_queue = _Handover(self._deliver)  # type: ignore[assignment]
            shortcuts.add("handover")
        if _has(nc, _CLIENT_DISPATCH) and _has(sub, _SUBSCRIPTION_ID):
            # Most replies are publish acks without headers: hand them over before nats-py's
            # general message processing (stats, flow control, header parsing) sees them.
            self._reply_sid = sub._id
            self._process_msg = nc._process_msg
            nc._process_msg = self._on_msg  # type: ignore[method-assign]
            shortcuts.add("dispatch")
        self._lean = _has(nc, _CLIENT_INTERNALS)
        if self._lean:
            shortcuts.add("frames")
        self.shortcuts = frozenset(shortcuts)
        self._sweep()

    @property
    def max_payload(self) -> int:
        """The largest message the server takes (its max_payload, 1 MB by default)."""
        return self.client().max_payload

    def server_version(self) -> tuple[int, int, int]:
        version = self.client().connected_server_version
        return version.major, version.minor, version.patch

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._fail_pending("the store was closed")
        if nc is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await nc.close()

    # -- callbacks -------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats: %r", exc)

    async def _on_disconnect(self) -> None:
        self._fail_pending(f"lost the connection to {self.url}")

    async def _on_reconnected(self) -> None:
        if self._on_reconnect is not None:
            await self._on_reconnect()

    async def _on_reply(self, msg: Msg) -> None:
        self._deliver(msg)

    async def _on_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        if headers is None and sid == self._reply_sid:
            entry = self._pending.pop(subject[self._skip :].decode(), None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(Reply(data, None))
            return
        assert self._process_msg is not None  # set with _reply_sid
        await self._process_msg(sid, subject, reply, data, headers)

    def _deliver(self, msg: Msg) -> None:
        entry = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(Reply(msg.data, msg.headers))

    def _sweep(self) -> None:
        """Fail the requests past their deadline; one timer for all instead of one each."""
        now = asyncio.get_running_loop().time()
        expired = []
        for token, (_, deadline) in self._pending.items():
            if deadline > now:
                break
            expired.append(token)
        for token in expired:
            future = self._pending.pop(token)[0]
            if not future.done():
                future.set_exception(Unavailable(DEPENDENCY, f"no answer within {self.timeout}s"))
        if self._nc is not None:
            tick = min(0.05, self.timeout / 10)
            self._sweeper = asyncio.get_running_loop().call_later(tick, self._sweep)

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(Unavailable(DEPENDENCY, why))

    # -- requests ----------------------------------------------------------------

    def client(self) -> Client:
        """The connected nats-py client; Unavailable while there is none."""
        nc = self._nc
        if nc is None:
            raise Unavailable(DEPENDENCY, "the store is not open")
        if not nc.is_connected:
            raise Unavailable(DEPENDENCY, f"not connected to {self.url} (reconnecting)")
        return nc

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> Pending:
        """Send a request; the reply (or Unavailable) arrives in the returned future."""
        future = self.send_nowait(subject, payload, headers)
        if future is not None:
            return future
        nc = self.client()
        token, future, reply = self._expect()
        try:
            await nc.publish(subject, payload, reply=reply, headers=headers)
        except nats.errors.MaxPayloadError as exc:
            self._pending.pop(token, None)
            raise StoreError(
                f"a message of {len(payload)} bytes is over the server's max_payload"
            ) from exc
        except (OSError, nats.errors.Error) as exc:
            self._pending.pop(token, None)
            raise Unavailable(DEPENDENCY, f"cannot send to {self.url}: {exc!r}") from exc
        return future

    def send_nowait(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> Pending | None:
        """`send`'s fast path: the frame queued for nats-py's flusher and the reply's future,
        or None when only nats-py's own publish can send it now."""
        nc = self.client()
        if not self._lean or len(payload) > nc.max_payload:
            return None  # the slow path says why
        token = str(next(self._tokens))
        if not _queue(nc, _frame(subject, self._prefix + token, payload, headers)):
            return None
        return self._register(token)  # no reply can come before the flusher has sent it

    def _expect(self) -> tuple[str, Pending, str]:
        """A reply token, the future its reply will resolve, and the inbox to send it to."""
        token = str(next(self._tokens))
        return token, self._register(token), self._prefix + token

    def _register(self, token: str) -> Pending:
        loop = asyncio.get_running_loop()
        future: Pending = loop.create_future()
        self._pending[token] = (future, loop.time() + self.timeout)
        return future

    async def request(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> Reply:
        msg = await (await self.send(subject, payload, headers))
        if msg.headers is not None and msg.headers.get("Status") == "503":  # no responders
            raise NoStream(subject)
        return msg

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> Ack:
        return self.outcome(await (await self.send(subject, payload, headers)), subject)

    async def settle(self, future: Pending, subject: str) -> Ack:
        """The Ack of a publish sent with `send`."""
        return self.outcome(await future, subject)

    def outcome(self, msg: Reply, subject: str) -> Ack:
        """The Ack in the reply to a publish; raises NoStream, WrongLastSequence, ..."""
        if msg.headers is not None and msg.headers.get("Status") == "503":
            raise NoStream(subject)
        return self.ack_of(msg, subject)

    @staticmethod
    def ack_of(msg: Reply, subject: str) -> Ack:
        try:
            doc = orjson.loads(msg.data)
        except orjson.JSONDecodeError as exc:
            raise StoreError(
                f"JetStream answered a publish to {subject} with {msg.data!r}"
            ) from exc
        error = doc.get("error")
        if error:
            code = int(error.get("err_code", 0))
            if code == _WRONG_LAST_SEQUENCE:
                raise WrongLastSequence(error.get("description", ""))
            raise ApiError(int(error.get("code", 0)), code, str(error.get("description"))).mapped()
        return Ack(int(doc["seq"]), bool(doc.get("duplicate", False)))

    async def direct_get(
        self, stream: str, *, seq: int = 0, subject: str = "", last: bool = False
    ) -> Got | None:
        """A message by sequence, the first at/after `seq` on `subject`, or the last on
        `subject` (last=True); None when there is none."""
        if last:
            msg = await self.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"")
        else:
            query: dict[str, Any] = {"seq": max(seq, 1)}
            if subject:
                query["next_by_subj"] = subject
            msg = await self.request(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(query))
        return self._got(stream, msg)

    async def last_of(self, stream: str, subjects: list[str]) -> list[Got | None]:
        """The last message on each subject (None where there is none), all asked at once:
        one round trip for the lot."""
        futures = [await self.send(f"$JS.API.DIRECT.GET.{stream}.{s}", b"") for s in subjects]
        out: list[Got | None] = []
        failure: BaseException | None = None
        for future in futures:  # every reply is awaited, so none is left to fail unheard
            try:
                msg = await future
                if msg.headers is not None and msg.headers.get("Status") == "503":
                    raise NoStream(stream)
                out.append(self._got(stream, msg))
            except (StoreError, Unavailable, NoStream) as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return out

    @staticmethod
    def _got(stream: str, msg: Reply) -> Got | None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status == "404":
            return None
        if status:
            description = headers.get("Description", "")
            raise ApiError(int(status), 0, f"direct get on {stream}: {description}").mapped()
        return Got(
            int(headers["Nats-Sequence"]),
            headers["Nats-Subject"],
            msg.data,
            headers,
            headers.get("Nats-Time-Stamp", ""),
        )

    async def api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API request; ApiError on an error answer."""
        try:
            msg = await self.request(subject, b"" if body is None else orjson.dumps(body))
        except NoStream as exc:
            raise Unavailable(DEPENDENCY, "JetStream does not answer (not enabled?)") from exc
        doc: dict[str, Any] = orjson.loads(msg.data)
        error = doc.get("error")
        if error:
            raise ApiError(
                int(error.get("code", 0)), int(error.get("err_code", 0)), str(error["description"])
            )
        return doc

    async def ensure_streams(self, configs: list[dict[str, Any]]) -> list[str]:
        """Create the streams that do not exist; the names of those created."""
        created = []
        for config in configs:
            name = config["name"]
            try:
                info = await self.api(f"$JS.API.STREAM.INFO.{name}")
            except ApiError as exc:
                if exc.code != _STREAM_NOT_FOUND:
                    raise exc.mapped() from exc
            else:
                have = set(info.get("config", {}).get("subjects") or [])
                if not set(config["subjects"]) <= have:
                    raise StoreError(
                        f"JetStream stream {name} exists with subjects {sorted(have)}, not"
                        f" {config['subjects']}: it was made with other options, or by"
                        " something else; give the store the `subject_prefix` it was made"
                        " with, or another `stream`"
                    )
                continue
            for pause in (*_CREATE_PAUSES, None):
                try:
                    await self.api(f"$JS.API.STREAM.CREATE.{name}", config)
                    created.append(name)
                    break
                except ApiError as exc:
                    if exc.code == _STREAM_NAME_IN_USE:  # another process created it just now
                        break
                    if exc.status != 500 or pause is None:
                        raise exc.mapped() from exc
                    # the server failed to make the stream's files (status 500): may pass
                    log.warning("JetStream could not create stream %s (%s); trying again in %g s",
                                name, exc, pause)  # fmt: skip
                    await asyncio.sleep(pause)
        return created


# nats-py's private parts that connect looks for; where one is missing, the public path
# is taken (tests/canary/test_nats_private.py checks both).
# A Subscription's message queue: replaced by _Handover, replies resolved where parsed.
_SUBSCRIPTION_QUEUE = ("_pending_queue",)
# The Client's message dispatch and a Subscription's id: acks taken before it (_on_msg).
_CLIENT_DISPATCH = ("_process_msg",)
_SUBSCRIPTION_ID = ("_id",)
# What _queue touches of the Client; without any of it, send uses nc.publish.
_CLIENT_INTERNALS = (
    "_pending",
    "_pending_data_size",
    "_max_pending_size",
    "_flush_queue",
    "_flusher_task",
)


def _has(obj: object, names: tuple[str, ...]) -> bool:
    return all(hasattr(obj, name) for name in names)


def _frame(subject: str, reply: str, payload: bytes, headers: dict[str, str] | None) -> bytes:
    """The protocol frame nats-py's publish would write, built in one go.

    Subjects, reply inboxes and header values here are the store's own (tokens,
    numbers), never caller text, so nats-py's per-call validation is skipped;
    a header value with a line break would still be refused, by the count below.
    """
    if headers is None:
        return b"".join((f"PUB {subject} {reply} {len(payload)}\r\n".encode(), payload, b"\r\n"))
    head = "NATS/1.0\r\n" + "".join([f"{k}: {v}\r\n" for k, v in headers.items()]) + "\r\n"
    if head.count("\n") != len(headers) + 2 or not head.isascii():
        raise StoreError(f"a header of a message to {subject} is not one line of ASCII")
    size = len(head)
    line = f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n{head}"
    return b"".join((line.encode(), payload, b"\r\n"))


def _queue(nc: Client, frame: bytes) -> bool:
    """Queue a frame for nats-py's flusher task, as its publish does, without the
    coroutine, validation and header encoding around it (a third of a request's
    client CPU). False when nats-py's own path must take it: no running flusher,
    or a full output buffer (which it flushes first)."""
    flusher = nc._flusher_task
    queue = nc._flush_queue
    if flusher is None or flusher.done() or queue is None:
        return False
    size = nc._pending_data_size + len(frame)
    if 0 < nc._max_pending_size < size:
        return False
    nc._pending.append(frame)
    nc._pending_data_size = size
    if queue.empty():
        queue.put_nowait(asyncio.get_running_loop().create_future())
    return True


class _Handover:
    """Stands in for a subscription's message queue: hands each message over at once."""

    def __init__(self, deliver: Callable[[Msg], None]) -> None:
        self.put_nowait = deliver

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    async def get(self) -> Msg:
        await asyncio.Event().wait()  # nothing is ever queued: the task waits until cancelled
        raise AssertionError("unreachable")

    def task_done(self) -> None:
        return None

    async def join(self) -> None:
        return None
