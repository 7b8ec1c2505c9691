"""Schemathesis against real example daemons: the OpenAPI document says exactly what the API
does (issue 11).

Every check runs but positive_data_acceptance: business rules legitimately refuse data the
schemas allow (paying an order that does not exist is a 422). Each run is bounded: a fixed
seed, MAX_EXAMPLES (10) cases per operation in the fuzzing and stateful phases beside the
examples and coverage phases, and a deadline; about a minute of CPU for the four runs. Any
failure or error fails the test with schemathesis's own report, whose `st replay` lines
reproduce a case. CATGAD_SCHEMATHESIS_SEED=random (or a number) explores beyond the fixed
seed, CATGAD_SCHEMATHESIS_EXAMPLES changes the number of cases.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.handlers.servers import SECRET, WebhookServer
from tests.helpers.daemon import ORDERS_YAML, Daemon, edited_example

EXAMPLES = ORDERS_YAML.parent
MAX_EXAMPLES = int(os.environ.get("CATGAD_SCHEMATHESIS_EXAMPLES", "10"))
DEADLINE = 240.0  # seconds for one run: far beyond its usual time, a hang is still a failure
OPS_TOKEN = "ops-token-for-schemathesis"
LISTEN = "  listen: ${CATGAD_LISTEN:-127.0.0.1:8080}\n"
AUTH = f"""  auth:
    tokens:
      - {{name: ops, secret: "{OPS_TOKEN}", scopes: [manage, approve, commands, read]}}
"""


def seed() -> int:
    chosen = os.environ.get("CATGAD_SCHEMATHESIS_SEED", "11")
    return random.randrange(2**32) if chosen == "random" else int(chosen)


@contextmanager
def example_daemon(config: Path, workdir: Path) -> Iterator[Daemon]:
    """The daemon of an example, its webhooks (gift notes, payments) served by the Python
    example server, so a command reaching them is answered rather than a 503."""
    with ExitStack() as stack:
        server = stack.enter_context(WebhookServer.python_example(SECRET))
        env = {
            "ORDERS_WEBHOOK_URL": server.url("/gift-note"),
            "PAYMENTS_WEBHOOK_URL": server.url("/payment"),
            "ORDERS_WEBHOOK_SECRET": SECRET,
        }
        yield stack.enter_context(Daemon(config, workdir, env=env, ready_timeout=90.0))


def run_schemathesis(
    daemon: Daemon, report: Path, *args: str, examples: int = MAX_EXAMPLES
) -> None:
    chosen = seed()
    command = [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "run",
        f"{daemon.url}/openapi.json",
        "--checks=all",
        "--exclude-checks=positive_data_acceptance",
        f"--max-examples={examples}",
        f"--seed={chosen}",
        "--workers=1",
        "--request-timeout=30",
        "--suppress-health-check=all",
        "--report=junit",
        f"--report-junit-path={report}",
        *args,
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env,
        check=False,
        cwd=report.parent,  # its cache of past crashes (.schemathesis/) is the run's own
    )
    output = done.stdout + done.stderr
    print(output)  # shown with -s, or -rP: the phases, their times, the warnings
    assert done.returncode == 0, f"schemathesis (seed {chosen}) found something:\n{output}"
    # a run that tested nothing would pass too: it must have reached every operation
    assert "Tested:" in output and "Failures:" not in output, output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("example", "only"),
    [
        pytest.param("orders.yaml", None, id="orders"),
        # what these add to the orders example: their sagas and processes (their commands,
        # streams and projections are the same operations as the orders example's)
        pytest.param("order-saga.yaml", "^/sagas/", id="sagas"),
        pytest.param("fulfilment.yaml", "^/processes/", id="processes"),
    ],
)
def test_schemathesis_finds_nothing(example: str, only: str | None, tmp_path: Path) -> None:
    with example_daemon(EXAMPLES / example, tmp_path / "daemon") as daemon:
        args = [] if only is None else [f"--include-path-regex={only}"]
        run_schemathesis(daemon, tmp_path / "junit.xml", *args)


@pytest.mark.slow
def test_schemathesis_finds_nothing_with_tokens(tmp_path: Path) -> None:
    """With access tokens: 401 and 403 are documented on every guarded operation, and the
    ignored_auth check sends requests without the token, or with a wrong one."""
    config = edited_example(tmp_path / "cfg", {LISTEN: LISTEN + AUTH})
    with example_daemon(config, tmp_path / "daemon") as daemon:
        run_schemathesis(
            daemon,
            tmp_path / "junit.xml",
            f"--header=Authorization: Bearer {OPS_TOKEN}",
            examples=max(MAX_EXAMPLES // 2, 1),  # the operations of the orders run again
        )
