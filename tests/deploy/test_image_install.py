"""The image's install steps, run outside Docker (no engine here): docker/install.sh into a
fresh virtualenv, then the image's entry point, ENV and default config, checked by its own
health check. The paths the Dockerfile names are moved under a temporary folder, and the
listen address to loopback and a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.dockerfile import REPO, Stage, stages
from tests.helpers.daemon import free_port

pytestmark = pytest.mark.slow

ORDER = {"order_id": "o1", "customer": "ann", "items": [{"sku": "a", "qty": 1, "price": 300}]}
DEADLINE = 60.0  # seconds for the daemon to answer its health check


class Image:
    """The installed tree, and the image's instructions with its paths moved into it."""

    def __init__(self, root: Path, final: Stage) -> None:
        self.root = root
        self.moves = {  # image path -> here (longest first, so none shadows another)
            "/usr/share/catgad": str(root / "share"),
            "/var/lib/catgad": str(root / "data"),
            "/opt/catgad": str(root / "opt"),
            "/etc/catgad": str(root / "etc"),
        }
        self.final = final
        (root / "data").mkdir(parents=True)

    def here(self, text: str) -> str:
        for image_path, path in self.moves.items():
            text = text.replace(image_path, path)
        return text

    def env(self, **extra: str) -> dict[str, str]:
        """The image's ENV over this machine's (PATH first of all), and `extra`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CATGAD_")}
        for key, value in self.final.env().items():
            env[key] = self.here(value.replace("$PATH", os.environ["PATH"]))
        return {**env, **extra}

    def command(self, port: int) -> list[str]:
        """ENTRYPOINT + CMD, listening on loopback instead of every address."""
        words = self.final.exec_form("ENTRYPOINT") + self.final.exec_form("CMD")
        assert "0.0.0.0:8080" in words
        return [self.here(w.replace("0.0.0.0:8080", f"127.0.0.1:{port}")) for w in words]

    def healthcheck(self, port: int) -> tuple[list[str], dict[str, str]]:
        """HEALTHCHECK's command, and the env pointing it at `port` instead of 8080."""
        command = [self.here(w) for w in self.final.exec_form("HEALTHCHECK")]
        return command, {"CATGAD_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    build, final = stages()
    root = tmp_path_factory.mktemp("image")
    image = Image(root, final)
    # The build stage's install step, with this checkout as its source.
    step = build.last("RUN").split()
    assert step[:2] == ["sh", "docker/install.sh"]
    args = [REPO.as_posix() if a == build.last("WORKDIR") else image.here(a) for a in step[2:]]
    env = {**os.environ, **build.env()}
    env.pop("PIP_NO_CACHE_DIR")  # the image keeps no pip cache; here the cache saves downloads
    # A fresh virtualenv from this Python, as the image's from its own.
    env["PATH"] = f"{Path(sys.executable).resolve().parent}:{env['PATH']}"
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        ["sh", str(REPO / "docker" / "install.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield image


def test_the_default_config_wants_a_token(image: Image) -> None:
    port = free_port()
    result = subprocess.run(
        image.command(port), env=image.env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "environment variable CATGAD_TOKEN is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_entry_point_serves_the_example(image: Image) -> None:
    port = free_port()
    token = "image-token"
    log = (image.root / "daemon.log").open("wb")
    proc = subprocess.Popen(
        image.command(port),
        env=image.env(CATGAD_TOKEN=token),
        cwd=image.here("/var/lib/catgad"),  # WORKDIR
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    try:
        check, check_env = image.healthcheck(port)
        deadline = time.monotonic() + DEADLINE
        while True:  # the image's HEALTHCHECK, until it passes
            assert proc.poll() is None, (image.root / "daemon.log").read_text()
            if subprocess.run(check, env=image.env(**check_env), check=False).returncode == 0:
                break
            assert time.monotonic() < deadline, (image.root / "daemon.log").read_text()
            time.sleep(0.2)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            assert client.post("/commands/CreateOrder", json=ORDER).status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            created = client.post("/commands/CreateOrder", json=ORDER, headers=auth)
            assert created.status_code == 201, created.text
            discount = {"order_id": "o1", "code": "TEN", "percent": 10}
            applied = client.post("/commands/ApplyDiscount", json=discount, headers=auth)
            assert applied.status_code == 200, applied.text  # the example plugin, installed
        # The SQLite files went where the image's ENV sends them: its data volume.
        assert (image.root / "data" / "orders.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        # Stopped: the health check says so, and fails.
        assert subprocess.run(check, env=image.env(**check_env), check=False).returncode == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
