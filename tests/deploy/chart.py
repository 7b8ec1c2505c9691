"""Renders the Helm chart with Helm's own Go library (helm-python-sdk) and reads the result:
manifests, the config the ConfigMap holds, and the env a pod would get from the Secrets."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "catgad"
POSTGRES_NATS = CHART / "ci" / "postgres-nats.yaml"
RELEASE = "shop"
NAMESPACE = "prod"


def values_file(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`, maps merged key by key (as `helm -f a -f b` does)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_files(values: Mapping[str, Any] | None = None) -> dict[str, str]:
    """`helm template`: template path -> rendered text. Raises HelmRenderError on a `fail`."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        files: dict[str, str] = chart.render(
            dict(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True
        )
    return files


def render(values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest the chart renders, parsed (NOTES.txt and empty documents left out)."""
    manifests = []
    for path, text in sorted(render_files(values).items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                manifests.append(doc)
    return manifests


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests, expected 1"
    return found[0]


def workload(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [m["kind"] for m in found]
    return found[0]


def container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload(manifests)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def write_config(manifests: list[dict[str, Any]], folder: Path) -> Path:
    """The ConfigMap's files as the pod sees them at /etc/catgad; the path of catgad.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in one(manifests, "ConfigMap")["data"].items():
        (folder / name).write_text(text)
    return folder / "catgad.yaml"


def pod_env(
    manifests: list[dict[str, Any]], existing: Mapping[tuple[str, str], str]
) -> dict[str, str]:
    """The container's env with every secretKeyRef resolved: from the chart's own Secrets, or
    from `existing` ((secret name, key) -> value) for Secrets the chart only names."""
    secrets = {
        (m["metadata"]["name"], key): base64.b64decode(value).decode()
        for m in manifests
        if m["kind"] == "Secret"
        for key, value in (m.get("data") or {}).items()
    }
    secrets.update(existing)
    env = {}
    for entry in container(manifests).get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        where = (ref["name"], ref["key"])
        assert where in secrets, f"{entry['name']} reads {where}, which no Secret here holds"
        env[entry["name"]] = secrets[where]
    return env
