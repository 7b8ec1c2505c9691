"""The chart's PostgreSQL + NATS rendering served for real: the mounted config, the env a pod
gets from the Secrets, a daemon on the shared servers (its own schema and bus prefix)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.cluster.deployments import delete_nats_streams
from tests.deploy.chart import POSTGRES_NATS, merged, pod_env, render, values_file, write_config
from tests.helpers.daemon import Daemon
from tests.servers import nats as nats_servers
from tests.servers import postgres as postgres_servers

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.slow]

ORDER = {"order_id": "o1", "customer": "ann", "items": [{"sku": "a", "qty": 2, "price": 500}]}


@pytest.fixture
def servers() -> Iterator[tuple[str, str, str, str]]:
    """(postgres URL, schema, NATS URL, bus prefix), removed from the servers afterwards."""
    postgres_url, nats_url = postgres_servers.server_url(), nats_servers.server_url("2.9")
    unique = uuid.uuid4().hex[:10]
    schema, prefix = f"catgad_helm_{unique}", f"helm{unique}"
    yield postgres_url, schema, nats_url, prefix
    postgres_servers.drop_schema(postgres_url, schema)
    asyncio.run(delete_nats_streams(nats_url, prefix))


def test_rendered_postgres_nats_config_serves(
    servers: tuple[str, str, str, str], tmp_path: Path
) -> None:
    postgres_url, schema, nats_url, prefix = servers
    values = merged(
        values_file(POSTGRES_NATS),
        {
            "store": {"url": postgres_url, "options": {"schema": schema, "pool_max": 2}},
            "bus": {"options": {"prefix": prefix}},
        },
    )
    manifests = render(values)
    config = write_config(manifests, tmp_path / "etc-catgad")
    env = pod_env(
        manifests, {("catgad-nats", "url"): nats_url, ("catgad-ops-token", "token"): "ops-1"}
    )
    tokens = {
        "frontend": env["CATGAD_TOKEN_0"],
        "ops": "ops-1",
        "prometheus": env["CATGAD_TOKEN_2"],
    }

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[name]}"}

    with Daemon(config, tmp_path / "run", env=env) as daemon, daemon.client() as client:
        ready = client.get("/readyz")  # the readiness probe: store and bus answer
        assert ready.status_code == 200, ready.text
        assert client.get("/healthz").status_code == 200  # the liveness probe, no token

        assert client.post("/commands/CreateOrder", json=ORDER).status_code == 401
        created = client.post("/commands/CreateOrder", json=ORDER, headers=bearer("frontend"))
        assert created.status_code == 201, created.text
        # The example plugin the image ships decides ApplyDiscount.
        discount = {"order_id": "o1", "code": "TEN", "percent": 10}
        applied = client.post("/commands/ApplyDiscount", json=discount, headers=bearer("ops"))
        assert applied.status_code == 200, applied.text
        assert [e["data"]["amount"] for e in applied.json()["events"]] == [100]

        # What the ServiceMonitor scrapes, with the token it sends.
        assert client.get("/metrics").status_code == 401
        metrics = client.get("/metrics", headers=bearer("prometheus"))
        assert metrics.status_code == 200
        assert "catgad_" in metrics.text
        assert daemon.terminate() == 0

    # The store made its tables in the schema the values named, on the shared server.
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()
    assert tables is not None and tables[0] > 0
