"""A handler at an HTTP URL: signed POSTs over a keep-alive pool, retries, a circuit breaker.

Outcomes, by what the handler did:

    2xx + {"events": [...]}      the events (each checked against its schema)
    4xx + {"error": "reason"}    CommandRejected (409) with that reason
    2xx/4xx, anything else       BadReply (502): not JSON, unknown event type, ...
    5xx, 408, 429, timeout,      retried with exponential backoff and full jitter,
    refused, connection dropped  then WebhookFailed (503) naming the handler
    circuit open                 CircuitOpen (503) at once, nothing sent

`timeout` bounds each attempt as a whole: waiting for a pooled connection,
connecting, sending, waiting for the answer and reading it, so a handler that
trickles its reply a byte at a time is cut off like one that never answers
(httpx's timeouts are per phase: each read could take the whole timeout
again). A call with its retries ends within `WebhookSettings.worst_case()`:
(retries + 1) x timeout plus the longest backoffs.

Retrying is safe because a handler decides and does not act: the events it
answers are appended by catgad, once, and every attempt of one decision
carries the same `webhook-id`, so a handler that keeps side effects can
deduplicate. No httpcore exception leaves this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import orjson

from catgad.aggregates.model import EventDef
from catgad.errors import WebhookFailed
from catgad.handlers.circuit import CircuitBreaker
from catgad.handlers.protocol import HandlerReply, HandlerRequest, ReplyCheck, Stats, outcome_of
from catgad.handlers.section import HandlerConfig
from catgad.handlers.signing import Signer
from catgad.handlers.transport import ClientPool
from catgad.observability import tracing
from catgad.observability.logs import get_logger

log = get_logger("catgad.handlers")

# webhook-id = uuid5(command id, version): the same for every attempt of one decision
_MESSAGE_NS = uuid.UUID("2d4b8f60-8f0e-4f5e-9a57-1c1b7a6b0e52")
_MESSAGE_SHA1 = hashlib.sha1(_MESSAGE_NS.bytes, usedforsecurity=False)
_RETRYABLE_4XX = frozenset({408, 429})  # request timeout, too many requests: transient


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """A webhook handler's config, with catgad's defaults filled in."""

    url: str
    secrets: tuple[str, ...] = ()
    timeout: float = 5.0  # seconds per attempt, all of it: connect, send, wait, read
    retries: int = 2  # attempts after the first
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    failures: int = 5  # consecutive failed attempts that open the circuit
    reset_after: float = 30.0  # seconds before a probe
    connections: int = 256  # keep-alive pool size

    @classmethod
    def from_config(cls, cfg: HandlerConfig) -> WebhookSettings:
        options = cfg.options
        secret = options.get("secret")
        secrets = tuple(secret) if isinstance(secret, list) else (secret,) if secret else ()
        backoff = options.get("backoff") or {}
        circuit = options.get("circuit_breaker") or {}
        given: dict[str, Any] = {
            "timeout": options.get("timeout"),
            "retries": options.get("retries"),
            "backoff_initial": backoff.get("initial"),
            "backoff_max": backoff.get("max"),
            "failures": circuit.get("failures"),
            "reset_after": circuit.get("reset_after"),
        }
        return cls(
            url=cfg.url or "",
            secrets=secrets,
            **{name: value for name, value in given.items() if value is not None},
        )

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2^retry)]."""
        return rng() * self.backoff_cap(retry)

    def backoff_cap(self, retry: int) -> float:
        return float(min(self.backoff_max, self.backoff_initial * (2**retry)))

    def worst_case(self) -> float:
        """The longest a call can take, retries included: every attempt times out and
        every backoff draws its maximum (a few ms of scheduling aside)."""
        waits = sum(self.backoff_cap(retry) for retry in range(self.retries))
        return (self.retries + 1) * self.timeout + waits


class WebhookHandler:
    """One webhook: its own connection pool, signer and circuit breaker."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        settings: WebhookSettings,
        events: Mapping[str, EventDef],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.settings = settings
        self.breaker = CircuitBreaker(
            name, failures=settings.failures, reset_after=settings.reset_after, clock=clock
        )
        self._check = ReplyCheck(name, events)
        self._signer = Signer(settings.secrets)
        self._rng = rng
        self.pool = ClientPool.for_url(settings.url, settings.connections)
        self._target = self.pool.target(settings.url)
        self._deadlines = Deadlines(settings.timeout)
        self.stats: Stats | None = None
        if not self._signer.signs:
            log.warning("webhook has no secret: its requests are not signed", handler=name)

    @classmethod
    def from_config(cls, cfg: HandlerConfig, events: Mapping[str, EventDef]) -> WebhookHandler:
        return cls(cfg.name, WebhookSettings.from_config(cfg), events)

    async def close(self) -> None:
        await self.pool.aclose()

    def instrument(self, stats: Stats) -> None:
        self.stats = stats
        stats.watch_circuit(lambda: self.breaker.state)

    async def __call__(self, request: HandlerRequest) -> HandlerReply:
        """The checked reply, with its outcome and time reported to `stats` (as
        protocol.observed does: a cancelled call reports nothing). One coroutine for it all:
        each of the several resumes of a round trip runs down the chain of those awaiting."""
        started = time.perf_counter()
        try:
            body = orjson.dumps(request.body())
            reply = self._answer(*await self.post(message_id(request), body))
        except Exception as exc:
            if self.stats is not None:
                self.stats.done(outcome_of(exc), time.perf_counter() - started)
            raise
        if self.stats is not None:
            self.stats.done("ok", time.perf_counter() - started)
        return reply

    async def post(self, msg_id: str, body: bytes) -> tuple[int, bytes]:
        """The (status, body) of the first attempt answered, retrying as the settings say
        (each attempt within the timeout), behind the breaker; WebhookFailed when none was.
        Also what a webhook projection target sends its events with (`msg_id`: the event id)."""
        settings = self.settings
        attempts = 0
        why = ""
        for retry in range(settings.retries + 1):
            if retry:
                if self.stats is not None:
                    self.stats.retried()
                await asyncio.sleep(settings.backoff(retry - 1, self._rng))
            self.breaker.admit()  # CircuitOpen: refused at once, nothing sent
            attempts += 1
            headers = self._signer.header_values(msg_id, body)
            for name, value in tracing.headers().items():  # W3C trace context, when on
                headers.append((name.encode(), value.encode()))
            task = self._deadlines.start()
            timed_out = False
            try:
                try:
                    status, content = await self.pool.post(self._target, body, headers)
                finally:
                    timed_out = self._deadlines.finish(task)
            except asyncio.CancelledError:
                if not timed_out:
                    self.breaker.abandoned()
                    raise
                why = f"no answer within {settings.timeout:g}s"
            except httpcore.ConnectError as exc:
                why = f"cannot connect to {settings.url}: {_reason(exc)}"
            except (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError) as exc:
                why = f"the connection broke mid-request: {_reason(exc)}"
            except _TRANSPORT_ERRORS as exc:  # any other transport trouble, same treatment
                why = f"{type(exc).__name__}: {_reason(exc)}"
            except BaseException:
                self.breaker.abandoned()
                raise
            else:
                if status < 500 and status not in _RETRYABLE_4XX:
                    self.breaker.succeeded()  # it answered: whatever it said, it is up
                    return status, content
                why = f"answered {status}{snippet(content)}"
            self.breaker.failed()
            log.warning(
                "webhook attempt failed",
                handler=self.name,
                attempt=attempts,
                of=settings.retries + 1,
                why=why,
            )
        raise WebhookFailed(self.name, attempts, why)

    def _answer(self, status: int, content: bytes) -> HandlerReply:
        if 300 <= status < 400:
            raise self._check.bad(f"answered {status}; redirects are not followed")
        try:
            body: Any = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            what = "an empty body" if not content.strip() else f"not JSON ({exc})"
            raise self._check.bad(f"answered {status} with {what}") from None
        if status >= 400:
            raise self._check.rejection(status, body)
        return self._check.reply(body)


def message_id(request: HandlerRequest) -> str:
    """The `webhook-id` of a decision: the same for each attempt of it, ASCII whatever the
    command id is, and different for the same command decided again on a newer version.

    It is uuid5(namespace, "id\\0version") (RFC 4122), computed from a SHA-1 already fed
    the namespace: a quarter of uuid.uuid5's time, on every request."""
    sha1 = _MESSAGE_SHA1.copy()
    sha1.update(f"{request.command.id}\0{request.version}".encode())
    digest = bytearray(sha1.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return "msg_" + digest.hex()


# httpcore's exceptions have no common base: these are all it raises for a request
_TRANSPORT_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.TimeoutException,
    httpcore.UnsupportedProtocol,
    OSError,
)


_EXPIRED = -1.0


class Deadlines:
    """Cancels the attempts of one webhook that outlive its timeout, with one timer for all.

    asyncio.timeout arms and disarms a timer per attempt, 6 µs, when everything else
    catgad does around a webhook call takes about as much. Here an attempt is a dict
    entry, and since every attempt of a handler has the same timeout, entries are in
    deadline order: one timer, armed for the oldest, is enough; an attempt that ends
    leaves the timer alone, which on firing re-arms for the oldest still running.
    The cancellation itself follows asyncio.timeout: it is this class's only when the
    task's cancel count says so, so a cancellation from outside (shutdown, a client
    gone) still propagates as CancelledError.
    """

    __slots__ = ("_loop", "_running", "_timeout", "_timer")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        # task -> (deadline, or _EXPIRED once cancelled; its cancel count at start)
        self._running: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def watching(self) -> int:
        """Attempts started and not yet finished."""
        return len(self._running)

    def start(self) -> asyncio.Task[Any]:
        """Watch the current task's attempt; finish() it however it ends."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:  # pragma: no cover - an attempt always runs in a task
            raise RuntimeError("a webhook call must run in a task")
        deadline = loop.time() + self._timeout
        self._running[task] = (deadline, task.cancelling())
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_at(deadline, self._expire)
        return task

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching; True when the attempt was cancelled for its deadline (and the
        cancellation is then taken back, as asyncio.timeout does)."""
        deadline, cancelling = self._running.pop(task)
        return deadline == _EXPIRED and task.uncancel() <= cancelling

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for task, (deadline, cancelling) in self._running.items():
            if deadline == _EXPIRED:
                continue
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire)
                return
            self._running[task] = (_EXPIRED, cancelling)  # a value, not a key: safe here
            task.cancel()


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def snippet(content: bytes, limit: int = 200) -> str:
    text = content[:limit].decode("utf-8", "replace").strip()
    if not text:
        return ""
    return f": {text}{'…' if len(content) > limit else ''}"
