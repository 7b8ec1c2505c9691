"""The Dockerfile: hadolint finds nothing (nor shellcheck in its install script), and the
image is what docs/operations.md says."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.dockerfile import DOCKERFILE, REPO, stages, tool


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = tool("hadolint")
    assert binary is not None
    return subprocess.run(
        [binary, "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_hadolint_is_live(tmp_path: Path) -> None:
    # The same linter on a careless Dockerfile: an unpinned base and apt without cleanup.
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    result = hadolint(careless)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image
    assert "DL3009" in result.stdout  # apt lists left behind


def test_the_install_script_passes_shellcheck() -> None:
    binary = tool("shellcheck")
    assert binary is not None
    script = REPO / "docker" / "install.sh"
    result = subprocess.run(
        [binary, "--shell=sh", str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_small_non_root_and_runs_catgad() -> None:
    build, final = stages()
    # Debian slim (the CEL libraries have no musl wheels), the same Python in both stages.
    assert final.base == build.base
    assert "-slim" in final.base and "alpine" not in final.base
    # The install steps are the script CI runs outside Docker (test_image_install.py).
    assert build.last("RUN").startswith("sh docker/install.sh ")
    user = final.last("USER").split(":")[0]
    assert user not in ("root", "0")
    assert final.exec_form("ENTRYPOINT")[:2] == ["catgad", "run"]
    assert final.exec_form("CMD") == ["/etc/catgad/catgad.yaml"]
    assert final.exec_form("HEALTHCHECK")[-1] == "/usr/share/catgad/healthcheck.py"
    assert final.last("EXPOSE") == "8080"
