"""The one error tree of catgad; each error knows how it is shown.

    CatgadError                       exit 1 · 500
    ├── UsageError                    exit 2                     (CLI misuse)
    ├── ConfigError(issues)           exit 1                     (file:line:col: path: expected)
    ├── ListenError                   exit 1                     (the address cannot be bound)
    ├── BenchFailed                   exit 1                     (a measured run went wrong)
    ├── RequestError                  400  bad-request           (what the client sent)
    │   ├── MalformedRequest(where)   400  malformed-request     (not JSON, bad header or query)
    │   ├── PayloadTooLarge(limit)    413  payload-too-large
    │   └── InvalidPayload(errors)    400  invalid-payload
    ├── Unauthorized                  401  unauthorized          (no known bearer token)
    ├── Forbidden(token, scope)       403  forbidden             (the token lacks the scope)
    ├── NotFound(what, name)          404  not-found
    │   ├── UnknownCommand(name)      404  unknown-command
    │   ├── SagaNotFound              404  saga-not-found
    │   ├── ProcessNotFound           404  process-not-found
    │   └── NotQueryable(name)        404  not-queryable         (a projection without rows)
    ├── CommandRejected(reason)       409  command-rejected      (a handler said no)
    ├── IdempotencyKeyReused          409  idempotency-key-reused
    ├── SagaConflict(saga, id)        409  saga-conflict         (retry or cancel not allowed)
    ├── NotAwaitingDecision           409  not-awaiting-decision (no approval is waited for)
    ├── ProjectionDisabled(name)      409  projection-disabled   (enabled: false)
    ├── PreconditionFailed(rule, msg) 422  precondition-failed   (a `require` rule is false)
    ├── EventRuleFailed(rule, field)  422  event-rule-failed     (a rule cannot apply the
    │                                                             command's own events)
    ├── RuleError(where)              500  rule-error            (a rule failed at run time)
    │   └── UnreadableStream          500  unreadable-stream     (a stored event a rule cannot
    │                                                             apply: docs/evolution.md)
    ├── HandlerError                  502  handler-error         (user code misbehaved / is down)
    │   ├── BadReply(handler, why)    502  bad-handler-reply
    │   └── HandlerUnavailable        503  handler-unavailable   (retryable)
    │       ├── WebhookFailed(handler, attempts)   503  handler-unavailable
    │       └── CircuitOpen(handler, retry_after)  503  handler-circuit-open
    ├── UpcastFailed(event, step)     500  upcast-failed         (an upcaster failed on read)
    ├── NoGraphviz                    503  svg-unavailable       (no `dot` to draw SVG with)
    ├── StoreError                    500  store-error
    │   ├── ConcurrencyError(stream, expected, actual)   409  version-conflict
    │   └── NotRewritable             500  not-rewritable        (migrate: only a dry run)
    ├── BusError                      500  bus-error
    │   ├── BadName                   500  bad-bus-name          (a prefix a broker refuses)
    │   ├── BadBusReply               502  bad-bus-reply         (a reply that is no CloudEvent)
    │   ├── BadRoutedReply            502  bad-command-reply     (a serving replica's answer)
    │   └── RoutedProblem(body)       its own                    (an error where it ran)
    ├── ProjectionError               500  projection-error
    │   ├── Fenced(projection)        500  projection-fenced     (another moved the checkpoint)
    │   └── TargetError(target)       500  projection-target-error (a read model refused)
    └── DependencyError               500  dependency-error      (a server catgad needs)
        ├── Unavailable(dependency, why)   503  unavailable      (retryable)
        └── UnsupportedServer(why)    500  unsupported-server    (too old a version)

Every error carries its data as attributes. `problem()` renders it as an
RFC 9457 body; the HTTP layer and the CLI never inspect messages, only these.
`catalogue()` lists them for the docs (docs/problems.md); a test keeps this
drawing, the classes and the catalogue equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

PROBLEM_BASE = "https://catgad.dev/problems/"


class CatgadError(Exception):
    """Root of every error catgad raises on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    exit_code: ClassVar[int] = 1
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extensions(self) -> dict[str, Any]:
        """Machine-readable members added to the problem body."""
        return {}

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries (a 401's WWW-Authenticate)."""
        return {}

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        body.update(self.extensions())
        return body


class ListenError(CatgadError):
    """The listen address cannot be bound (in use, not ours, not an address)."""

    slug = "listen"
    title = "Cannot listen"


class BenchFailed(CatgadError):
    """A measured run went wrong (wrong event count, daemon error): no figures reported."""

    slug = "bench-failed"
    title = "Benchmark failed"


class UsageError(CatgadError):
    """The command line was wrong (unknown verb, missing argument, bad flag value)."""

    exit_code = 2
    slug = "usage"
    title = "Usage error"


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file, positioned so an editor can jump to it."""

    file: str
    line: int  # 1-based; 0 when unknown
    column: int  # 1-based; 0 when unknown
    path: str  # dotted path inside the document, e.g. commands.PayOrder.require[0].rule
    message: str  # what was expected / what is wrong

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        return f"{where}: {self.path or '<root>'}: {self.message}"


class ConfigError(CatgadError):
    """A config could not be loaded; carries every issue found, not just the first."""

    slug = "config"
    title = "Invalid config"

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.column, i.path))
        super().__init__("\n".join(str(i) for i in self.issues))

    def extensions(self) -> dict[str, Any]:
        return {"errors": [_issue_dict(i) for i in self.issues]}


def _issue_dict(issue: ConfigIssue) -> dict[str, Any]:
    return {
        "file": issue.file,
        "line": issue.line,
        "column": issue.column,
        "path": issue.path,
        "message": issue.message,
    }


@dataclass(frozen=True, slots=True)
class FieldError:
    """One JSON Schema violation in a request body."""

    pointer: str  # JSON Pointer into the payload, e.g. /items/0/qty
    message: str


class RequestError(CatgadError):
    """The request is wrong as sent: retrying it unchanged will not help."""

    status = 400
    slug = "bad-request"
    title = "Bad request"


class MalformedRequest(RequestError):
    """The request itself is unusable: body not JSON, bad header or query value (400)."""

    slug = "malformed-request"
    title = "Malformed request"

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(detail)
        self.where = where

    def extensions(self) -> dict[str, Any]:
        return {"where": self.where}


class PayloadTooLarge(RequestError):
    """The request body is above the daemon's limit."""

    status = 413
    slug = "payload-too-large"
    title = "Request body too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds the limit of {limit} bytes")
        self.limit = limit

    def extensions(self) -> dict[str, Any]:
        return {"limit": self.limit}


class InvalidPayload(RequestError):
    """The body is JSON but does not match the command's (or saga's) schema: `errors` lists
    each field."""

    status = 400
    slug = "invalid-payload"
    title = "The payload does not match its schema"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []

    def extensions(self) -> dict[str, Any]:
        return {"errors": [{"pointer": e.pointer, "message": e.message} for e in self.errors]}


class NotFound(CatgadError):
    """What the path names does not exist: a stream, aggregate, projection, row or definition."""

    status = 404
    slug = "not-found"
    title = "Not found"

    def __init__(self, what: str, name: str) -> None:
        shown = name if len(name) <= 200 else f"{name[:100]}…{name[-20:]}"  # not echoed whole
        super().__init__(f"unknown {what} {shown!r}")
        self.what = what
        self.name = shown

    def extensions(self) -> dict[str, Any]:
        return {"kind": self.what, "name": self.name}


class UnknownCommand(NotFound):
    """POST /commands/{type} names no command of the config: `known` lists them."""

    slug = "unknown-command"
    title = "Unknown command type"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__("command type", name)
        self.known = known

    def extensions(self) -> dict[str, Any]:
        return {"command": self.name, "known": self.known}


class CommandRejected(CatgadError):
    """A handler (plugin or webhook) rejected the command for a business reason."""

    status = 409
    slug = "command-rejected"
    title = "Command rejected"

    def __init__(self, reason: str, handler: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.handler = handler

    def extensions(self) -> dict[str, Any]:
        return {"reason": self.reason, **({"handler": self.handler} if self.handler else {})}


class IdempotencyKeyReused(CatgadError):
    """An Idempotency-Key was sent again with another command or other data."""

    status = 409
    slug = "idempotency-key-reused"
    title = "Idempotency key already used for another command"

    def __init__(self, command_id: str, first: str) -> None:
        super().__init__(f"command id {command_id!r} was already used for {first}")
        self.command_id = command_id


class PreconditionFailed(CatgadError):
    """A `require` rule evaluated to false (or could not be evaluated)."""

    status = 422
    slug = "precondition-failed"
    title = "Precondition failed"

    def __init__(self, command: str, rule: str, message: str, index: int) -> None:
        super().__init__(message)
        self.command = command
        self.rule = rule
        self.message = message
        self.index = index

    def extensions(self) -> dict[str, Any]:
        return {"command": self.command, "rule": self.rule, "rule_index": self.index}


class RuleError(CatgadError):
    """A YAML rule failed at run time in a way the config check could not foresee."""

    status = 500
    slug = "rule-error"
    title = "A rule of the config failed"

    def __init__(self, where: str, detail: str, field: str | None = None) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.why = detail
        self.field = field  # the state field or column the failing expression computes

    def extensions(self) -> dict[str, Any]:
        return {"rule": self.where, **({"field": self.field} if self.field else {})}


class EventRuleFailed(CatgadError):
    """A command's events break a rule that has to apply them (the aggregate's `on` rule,
    a projection's mapping): the command is refused before anything is stored, so no
    stream ever holds an event its own rules cannot read back."""

    status = 422
    slug = "event-rule-failed"
    title = "The command's event breaks a rule that applies it"

    def __init__(self, command: str, event_type: str, rule: str, field: str | None, why: str):
        at = f" (field {field!r})" if field else ""
        super().__init__(
            f"{command}: its event {event_type} cannot be applied by {rule}{at}: {why}; "
            "nothing was stored"
        )
        self.command = command
        self.event_type = event_type
        self.rule = rule
        self.field = field

    def extensions(self) -> dict[str, Any]:
        out = {"command": self.command, "event": self.event_type, "rule": self.rule}
        return out | ({"field": self.field} if self.field else {})


class UnreadableStream(RuleError):
    """A stored event that the aggregate's rules cannot apply (stored before catgad checked
    events against their rules, or under other rules): the stream cannot be loaded until
    it is repaired (`catgad migrate`, an upcaster, or a rule that accepts it)."""

    slug = "unreadable-stream"
    title = "A stored event cannot be applied"

    def __init__(self, stream: str, version: int, event_type: str, cause: RuleError) -> None:
        super().__init__(
            cause.where,
            f"stream {stream!r} cannot be read back: its event {version} ({event_type}) "
            f"breaks the rule: {cause.why.rstrip('.')}. Repair it as docs/evolution.md says "
            "(Repairing a stream): `catgad migrate` normalises stored numbers, an upcaster "
            "rewrites other data",
            cause.field,
        )
        self.stream = stream
        self.version = version

    def extensions(self) -> dict[str, Any]:
        return super().extensions() | {"stream": self.stream, "version": self.version}


class SagaNotFound(NotFound):
    """No saga of that name, or no instance of it with that id."""

    slug = "saga-not-found"
    title = "Unknown saga or instance"


class SagaConflict(CatgadError):
    """Retry of a saga that is not `failed`, or cancel of one that has ended."""

    status = 409
    slug = "saga-conflict"
    title = "The saga instance is not in a state that allows this"

    def __init__(self, saga: str, instance: str, status: str | None, wanted: str) -> None:
        super().__init__(f"saga {saga} instance {instance!r} is {status}; {wanted}")
        self.saga = saga
        self.instance = instance
        self.state = status

    def extensions(self) -> dict[str, Any]:
        return {"saga": self.saga, "id": self.instance, "saga_status": self.state}


class ProcessNotFound(NotFound):
    """No process of that name, or no instance of it with that id."""

    slug = "process-not-found"
    title = "Unknown process or process instance"


class NotAwaitingDecision(CatgadError):
    """An approval or rejection for a process instance that waits for none: 409."""

    status = 409
    slug = "not-awaiting-decision"
    title = "The process instance waits for no decision"

    def __init__(self, process: str, instance: str, state: str | None) -> None:
        super().__init__(
            f"process {process} instance {instance!r} waits for no decision (it is in state "
            f"{state}: decided already, timed out, or finished)"
        )
        self.process = process
        self.instance = instance
        self.state = state

    def extensions(self) -> dict[str, Any]:
        return {"process": self.process, "id": self.instance, "state": self.state}


class NotQueryable(NotFound):
    """The projection has no read model to query: its events go to a handler."""

    slug = "not-queryable"
    title = "Projection has no read model"

    def __init__(self, name: str, kind: str) -> None:
        super().__init__("projection", name)
        self.detail = f"projection {name!r} sends its events to a {kind} handler; it has no rows"
        self.args = (self.detail,)

    def extensions(self) -> dict[str, Any]:
        return {"projection": self.name}


class ProjectionDisabled(CatgadError):
    """The projection is declared but `enabled: false`: it has no runner and no read model."""

    status = 409
    slug = "projection-disabled"
    title = "Projection disabled"

    def __init__(self, name: str) -> None:
        super().__init__(f"projection {name!r} is disabled (enabled: false in the config)")
        self.name = name

    def extensions(self) -> dict[str, Any]:
        return {"projection": self.name}


class NoGraphviz(CatgadError):
    """An SVG diagram was asked for and Graphviz's `dot` is not installed."""

    status = 503
    slug = "svg-unavailable"
    title = "SVG diagrams need Graphviz"


class Unauthorized(CatgadError):
    """No bearer token, or one the config does not know (WWW-Authenticate: Bearer)."""

    status = 401
    slug = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="catgad"'}


class Forbidden(CatgadError):
    """The token is known but lacks the scope the route needs: `scope` names it."""

    status = 403
    slug = "forbidden"
    title = "The token lacks the scope this needs"

    def __init__(self, token: str, scope: str) -> None:
        super().__init__(f"token {token!r} does not have the scope {scope!r} this needs")
        self.token = token
        self.scope = scope

    def extensions(self) -> dict[str, Any]:
        return {"scope": self.scope, "token": self.token}


class HandlerError(CatgadError):
    """User code (webhook or plugin) misbehaved or is unreachable."""

    status = 502
    slug = "handler-error"
    title = "Handler error"

    def __init__(self, handler: str, detail: str) -> None:
        super().__init__(detail)
        self.handler = handler

    def extensions(self) -> dict[str, Any]:
        return {"handler": self.handler}


class BadReply(HandlerError):
    """A webhook or plugin answered something that is not a valid reply (not JSON, an
    undeclared event, data off its schema)."""

    slug = "bad-handler-reply"
    title = "The handler's reply is malformed"


class HandlerUnavailable(HandlerError):
    """The handler cannot be reached or keeps failing; sending again later may work."""

    status = 503
    slug = "handler-unavailable"
    title = "Handler unavailable"
    retryable = True


class WebhookFailed(HandlerUnavailable):
    """A webhook answered 5xx, timed out or could not be reached, on every attempt."""

    def __init__(self, handler: str, attempts: int, why: str) -> None:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        super().__init__(handler, f"handler {handler!r} failed after {tries}: {why}")
        self.attempts = attempts
        self.why = why

    def extensions(self) -> dict[str, Any]:
        return {"handler": self.handler, "attempts": self.attempts}


class CircuitOpen(HandlerUnavailable):
    """The handler failed too often in a row; catgad does not call it until a probe is due."""

    slug = "handler-circuit-open"
    title = "Handler circuit open"

    def __init__(self, handler: str, retry_after: float) -> None:
        super().__init__(
            handler,
            f"handler {handler!r} is failing; its circuit is open, "
            f"the next probe is in {retry_after:.1f}s",
        )
        self.retry_after = retry_after

    def extensions(self) -> dict[str, Any]:
        return {"handler": self.handler, "retry_after": round(self.retry_after, 3)}


class UpcastFailed(CatgadError):
    """A stored event could not be brought to its newest schema version by its upcasters."""

    slug = "upcast-failed"
    title = "An upcaster failed"

    def __init__(self, event_type: str, event_id: str, from_version: int, why: str) -> None:
        super().__init__(
            f"event {event_id!r} ({event_type}): upcaster {from_version} -> "
            f"{from_version + 1} failed: {why}"
        )
        self.event_type = event_type
        self.event_id = event_id
        self.from_version = from_version
        self.why = why

    def extensions(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "event_id": self.event_id,
            "from_version": self.from_version,
        }


class StoreError(CatgadError):
    """The event store refused or failed an operation for a reason other than a version clash."""

    slug = "store-error"
    title = "Event store error"


class ConcurrencyError(StoreError):
    """The stream's version was not the expected one: someone else appended first.

    Every store raises this on a version clash, so optimistic concurrency means
    the same thing on every backend.
    """

    status = 409
    slug = "version-conflict"
    title = "Stream version conflict"

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual

    def extensions(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "expected_version": self.expected,
            "actual_version": self.actual,
        }


class NotRewritable(StoreError):
    """The store cannot rewrite events in place (yet): only a dry run is possible."""

    slug = "not-rewritable"
    title = "The store cannot rewrite events"


class BusError(CatgadError):
    """The bus, or a message on it, is not what catgad can use."""

    slug = "bus-error"
    title = "Bus error"


class BadName(BusError):
    """A prefix or name cannot be used with a broker; says which and why."""

    slug = "bad-bus-name"
    title = "Invalid bus name"


class BadBusReply(BusError):
    """A reply arrived but is not a CloudEvent: a bug in the serving replica."""

    status = 502
    slug = "bad-bus-reply"
    title = "The command's reply could not be decoded"


class BadRoutedReply(BusError):
    """The replica that ran a routed command answered something that is not a result."""

    status = 502
    slug = "bad-command-reply"
    title = "The serving replica's reply could not be read"


class RoutedProblem(BusError):
    """An error raised where the command ran, shown here as it was there (same status and
    body)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("detail", "")))
        self.body = body

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body = {k: v for k, v in self.body.items() if k not in ("instance", "request_id")}
        if instance is not None:
            body["instance"] = instance
        return body


class ProjectionError(CatgadError):
    """A read model could not take a change."""

    slug = "projection-error"
    title = "Projection error"


class Fenced(ProjectionError):
    """The checkpoint was not where the writer thought: another consumer moved it.

    The writer lost its lease (or never had it); it must stop and reload."""

    slug = "projection-fenced"
    title = "Projection checkpoint moved by another consumer"

    def __init__(self, projection: str, expected: int, actual: int | None) -> None:
        super().__init__(
            f"projection {projection!r}: checkpoint is at {actual}, expected {expected}"
        )
        self.projection = projection
        self.expected = expected
        self.actual = actual


class TargetError(ProjectionError):
    """The target refused a write for what it contains, not for being unreachable: the
    runner looks for the event at fault and treats it as poison."""

    slug = "projection-target-error"
    title = "The read model refused a change"

    def __init__(self, target: str, detail: str) -> None:
        super().__init__(f"{target}: {detail}")
        self.target = target


class DependencyError(CatgadError):
    """A server catgad needs (store, bus, read model) cannot serve it."""

    slug = "dependency-error"
    title = "Dependency error"


class UnsupportedServer(DependencyError):
    """The server answers, but its version lacks what catgad needs: upgrade it."""

    slug = "unsupported-server"
    title = "Server version not supported"


class Unavailable(DependencyError):
    """A dependency (store, bus) cannot be reached right now; retrying may help."""

    status = 503
    slug = "unavailable"
    title = "Dependency unavailable"
    retryable = True

    def __init__(self, dependency: str, why: str) -> None:
        super().__init__(f"{dependency} is unavailable: {why}")
        self.dependency = dependency

    def extensions(self) -> dict[str, Any]:
        return {"dependency": self.dependency}


def subclasses(root: type[CatgadError] = CatgadError) -> list[type[CatgadError]]:
    """`root` and every class below it written in this module, depth first in the order they
    are defined (not the RoutedProblem kinds catgad.engine.routing makes as problems arrive)."""
    out = [root] if root.__module__ == __name__ else []
    for child in root.__subclasses__():
        out += subclasses(child)
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """One row of the problem catalogue (docs/problems.md)."""

    name: str
    parent: str
    type: str
    status: int
    exit_code: int
    retryable: bool
    when: str


def catalogue() -> list[Problem]:
    """Every error a user can meet, as the docs list it: made from the classes themselves."""
    rows = []
    for cls in subclasses():
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        parent = cls.__mro__[1].__name__ if cls is not CatgadError else ""
        rows.append(
            Problem(
                cls.__name__,
                parent,
                PROBLEM_BASE + cls.slug,
                cls.status,
                cls.exit_code,
                cls.retryable,
                " ".join(doc.split()),
            )
        )
    return rows


def catalogue_markdown() -> str:
    """The text of docs/problems.md."""
    lines = [
        "# Problems",
        "",
        "Every error catgad reports, generated from `catgad/errors.py` "
        "(`catgad.errors.catalogue_markdown()`). Over HTTP each is an RFC 9457 "
        "problem (`application/problem+json`) whose `type` is below; the CLI prints its "
        "detail and exits with the code below. Retryable ones may succeed if sent again "
        "unchanged (honour `Retry-After` when given).",
        "",
        "| type | error | under | HTTP | exit | retryable | when |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in catalogue():
        slug = row.type.removeprefix(PROBLEM_BASE)
        lines.append(
            f"| `{slug}` | {row.name} | {row.parent or '-'} | {row.status} | {row.exit_code} "
            f"| {'yes' if row.retryable else 'no'} | {row.when or '-'} |"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Rejected(Exception):
    """Raised by plugin handlers to reject a command for a business reason (409)."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.reason
