"""Access (SPEC section 12) on every route: no token 401, a token without the scope 403, the
right scope through; no route is left unguarded; secrets are never logged; the OpenAPI
document says which scope each operation needs; an open API listens on loopback only."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from catgad.app.load import load_config
from catgad.cli.run import exposed
from catgad.http import create_app
from catgad.observability.logs import configure_logging
from catgad.runtime import Runtime
from catgad.store.memory import MemoryStore
from tests.helpers.daemon import ORDERS_YAML, edited_example, run_cli

SECRETS = {"reader": "r-secret-1", "writer": "w-secret-2", "ops": "o-secret-3"}
OPS_DIGEST = hashlib.sha256(SECRETS["ops"].encode()).hexdigest()
AUTH = f"""  auth:
    tokens:
      - {{name: reader, secret: "{SECRETS["reader"]}", scopes: [read]}}
      - {{name: writer, secret: "${{WRITER_TOKEN}}", scopes: [commands]}}
      - {{name: ops, secret: "sha256:{OPS_DIGEST}", scopes: [manage, approve, commands, read]}}
"""
HAS = {"reader": {"read"}, "writer": {"commands"}, "ops": {"manage", "approve", "commands", "read"}}
VALUES = {
    "command_type": "CreateOrder",
    "stream_id": "Order-o1",
    "aggregate_type": "Order",
    "instance_id": "o1",
    "name": "orders",
    "projection": "orders",
    "key": "o1",
    "id": "x",
}
BODY = {"order_id": "o1", "customer": "c", "items": [{"sku": "a", "qty": 1, "price": 3}]}


LISTEN = "  listen: ${CATGAD_LISTEN:-127.0.0.1:8080}\n"


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return edited_example(tmp_path / "cfg", {LISTEN: LISTEN + AUTH})


@pytest.fixture
async def app_and_client(
    config_path: Path, tmp_path: Path
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    env = {
        "WRITER_TOKEN": SECRETS["writer"],
        "CATGAD_REDIS_PROJECTIONS": "false",
        "CATGAD_READ_SQLITE_PATH": str(tmp_path / "read.db"),
    }
    config = load_config(config_path, env=env)
    async with Runtime.start(config, store=MemoryStore()) as runtime:
        app = create_app(runtime)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catgad") as client:
            yield app, client


def operations(app: Any) -> list[tuple[str, str, str]]:
    """(method, route path, concrete path) of every route the app serves."""
    out = []
    for route in app.routes:
        assert isinstance(route, Route), route
        concrete = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: VALUES[m.group(1)], route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            out.append((method, route.path, concrete))
    return out


async def test_no_route_is_left_unguarded(app_and_client: tuple[Any, httpx.AsyncClient]) -> None:
    app, _ = app_and_client
    declared = app.state.access.declared
    served = operations(app)
    assert len(served) >= 20
    missing = [(m, p) for m, p, _ in served if (m, p) not in declared]
    assert missing == [], f"routes with no declared scope: {missing}"
    open_ones = sorted(p for (m, p), scope in declared.items() if scope == "open")
    # the probes, and the dashboard's sign-in page (a form: it shows no data)
    assert open_ones == ["/healthz", "/readyz", "/ui/signin"]


async def test_every_route_asks_for_its_scope(
    app_and_client: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = app_and_client
    declared = app.state.access.declared
    checked = 0
    for method, path, concrete in operations(app):
        scope = declared[(method, path)]
        body = BODY if method == "POST" else None
        if scope == "open":
            assert (await client.request(method, concrete)).status_code == 200
            continue
        anonymous = await client.request(method, concrete, json=body)
        assert anonymous.status_code == 401, (method, concrete, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.json()["type"] == "https://catgad.dev/problems/unauthorized"
        unknown = await client.request(
            method, concrete, json=body, headers={"Authorization": "Bearer not-a-token"}
        )
        assert unknown.status_code == 401, (method, concrete)
        for name, secret in SECRETS.items():
            answer = await client.request(
                method, concrete, json=body, headers={"Authorization": f"Bearer {secret}"}
            )
            if scope in HAS[name]:
                assert answer.status_code not in (401, 403), (name, method, concrete, answer.text)
            else:
                assert answer.status_code == 403, (name, method, concrete, answer.text)
                problem = answer.json()
                assert (problem["scope"], problem["token"]) == (scope, name)
                assert secret not in answer.text
        checked += 1
    assert checked >= 18


async def test_secrets_are_never_logged(
    app_and_client: tuple[Any, httpx.AsyncClient], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", json=True)
    _, client = app_and_client
    for secret in [*SECRETS.values(), "wrong-one"]:
        await client.post(
            "/commands/CreateOrder", json=BODY, headers={"Authorization": f"Bearer {secret}"}
        )
        await client.post(
            "/projections/orders/rebuild", headers={"Authorization": f"Bearer {secret}"}
        )
    logged = capsys.readouterr()
    for secret in [*SECRETS.values(), "wrong-one"]:
        assert secret not in logged.out + logged.err


async def test_the_openapi_document_names_each_operations_scope(
    app_and_client: tuple[Any, httpx.AsyncClient],
) -> None:
    _, client = app_and_client
    doc = (
        await client.get("/openapi.json", headers={"Authorization": f"Bearer {SECRETS['reader']}"})
    ).json()
    validate(doc)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    create = doc["paths"]["/commands/CreateOrder"]["post"]
    assert create["security"] == [{"bearer": ["commands"]}]
    assert create["responses"]["403"] == {"$ref": "#/components/responses/Forbidden"}
    assert doc["paths"]["/projections/{name}/rebuild"]["post"]["security"] == [
        {"bearer": ["manage"]}
    ]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "security" in op, (method, path)


def auth_errors(tmp_path: Path, tokens: str) -> tuple[list[str], str]:
    path = edited_example(tmp_path, {LISTEN: LISTEN + "  auth:\n    tokens:\n" + tokens})
    done = run_cli("validate", str(path))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    return [line.split(": ", 1)[1] for line in lines if ": service.auth" in line], done.stderr


def test_tokens_the_schema_refuses(tmp_path: Path) -> None:
    found, _ = auth_errors(tmp_path / "a", """\
      - {name: b, secret: "${UNSET_TOKEN:-}", scopes: [read]}
      - {name: d, secret: some, scopes: [read, everything]}
""")  # fmt: skip
    assert found == [
        "service.auth.tokens[0].secret: must not be empty",
        "service.auth.tokens[1].scopes[1]: expected one of commands, read, approve, manage, "
        "got 'everything'",
    ]


def test_tokens_that_clash_or_are_malformed(tmp_path: Path) -> None:
    found, stderr = auth_errors(tmp_path / "b", """\
      - {name: a, secret: "sha256:abc", scopes: [read]}
      - {name: c, secret: same, scopes: [read]}
      - {name: c, secret: other, scopes: [read]}
      - {name: e, secret: same, scopes: [read]}
""")  # fmt: skip
    assert found == [
        "service.auth.tokens[0].secret: a sha256: secret is 64 hex digits",
        "service.auth.tokens[2].name: tokens[1] has this name too",
        "service.auth.tokens[3].secret: token 'c' has this secret too",
    ]
    assert "same" not in stderr and "other" not in stderr, "a secret was shown"


def test_an_open_api_listens_on_loopback_only(tmp_path: Path) -> None:
    assert not exposed("127.0.0.1") and not exposed("::1") and not exposed("localhost")
    assert exposed("0.0.0.0") and exposed("10.1.2.3")
    assert not exposed("no-such-host.invalid"), "binding it fails and says why"
    done = run_cli("run", str(ORDERS_YAML), "--listen", "0.0.0.0:0", cwd=tmp_path)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0:0 with no access tokens" in done.stderr
    assert "--insecure" in done.stderr and "Traceback" not in done.stderr
