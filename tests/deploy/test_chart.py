"""The Helm chart, rendered by Helm's own Go library: linted, every manifest checked against
the Kubernetes schemas, the refusals, and the config it mounts accepted by `catgad validate`."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    CHART,
    POSTGRES_NATS,
    container,
    merged,
    one,
    pod_env,
    render,
    render_files,
    values_file,
    workload,
    write_config,
)
from tests.helpers.daemon import run_cli

# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest schemas
# kubernetes-validate ships.
KUBE_VERSIONS = ["1.25.0", "1.37.0"]
# Secrets the postgres-nats values name but do not create (an operator's own).
EXISTING = {("catgad-nats", "url"): "nats://nats:4222", ("catgad-ops-token", "token"): "ops-1"}
VALUES = {"default": {}, "postgres-nats": values_file(POSTGRES_NATS)}
DEFAULT_CONFIG: str = values_file(CHART / "values.yaml")["config"]


@pytest.mark.parametrize("case", VALUES)
def test_lint_finds_nothing(case: str) -> None:
    import helm_python as helm

    report = helm.lint(CHART, VALUES[case], strict=True)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert problems == []
    assert report["total_charts_linted"] == 1


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("case", VALUES)
def test_manifests_match_the_kubernetes_schemas(case: str, kube: str) -> None:
    import kubernetes_validate

    manifests = render(VALUES[case])
    kinds = sorted(m["kind"] for m in manifests)
    if case == "default":
        assert kinds == [
            "ConfigMap", "Secret", "Service", "Service", "ServiceAccount", "StatefulSet",
        ]  # fmt: skip
    else:
        assert kinds == [
            "ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount", "ServiceMonitor",
        ]  # fmt: skip
    for manifest in manifests:
        if manifest["kind"] == "ServiceMonitor":
            continue  # a Prometheus Operator CRD, not in Kubernetes' schemas: checked below
        try:
            kubernetes_validate.validate(manifest, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = f"{manifest['kind']} {manifest['metadata']['name']}"
            pytest.fail(f"{where} breaks the Kubernetes {kube} schema: {exc.message}")


def test_schema_check_is_live() -> None:
    import kubernetes_validate

    deployment = workload(render(VALUES["postgres-nats"]))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def probe_paths(pod: dict[str, Any]) -> dict[str, str]:
    return {
        kind: pod[kind]["httpGet"]["path"]
        for kind in ("livenessProbe", "readinessProbe", "startupProbe")
    }


def test_default_is_one_sqlite_pod_on_a_volume_claim() -> None:
    manifests = render()
    sts = one(manifests, "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == one_headless(manifests)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    pod = container(manifests)
    mounts = {m["mountPath"]: m["name"] for m in pod["volumeMounts"]}
    assert mounts["/var/lib/catgad"] == claim["metadata"]["name"]
    assert mounts["/etc/catgad"] == "config"
    config = yaml.safe_load(one(manifests, "ConfigMap")["data"]["catgad.yaml"])
    assert config["store"] == {
        "kind": "sqlite",
        "path": "/var/lib/catgad/catgad.db",
        "synchronous": "full",
    }
    assert pod["command"] + pod["args"] == [
        "catgad", "run", "--listen", "0.0.0.0:8080", "/etc/catgad/catgad.yaml",
    ]  # fmt: skip
    assert probe_paths(pod) == {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    assert pod["resources"]["requests"] and pod["resources"]["limits"]
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["readOnlyRootFilesystem"] is True


def one_headless(manifests: list[dict[str, Any]]) -> str:
    (name,) = [
        m["metadata"]["name"]
        for m in manifests
        if m["kind"] == "Service" and m["spec"].get("clusterIP") == "None"
    ]
    return str(name)


def test_postgres_nats_replicas_read_urls_and_tokens_from_secrets() -> None:
    manifests = render(VALUES["postgres-nats"])
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert "volumeClaimTemplates" not in deployment["spec"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(manifests)["env"]}
    chart_secret = one(manifests, "Secret")
    own = chart_secret["metadata"]["name"]
    assert env == {
        "CATGAD_STORE_URL": {"name": own, "key": "store-url"},
        "CATGAD_BUS_URL": {"name": "catgad-nats", "key": "url"},
        "CATGAD_TOKEN_0": {"name": own, "key": "token-0"},
        "CATGAD_TOKEN_1": {"name": "catgad-ops-token", "key": "token"},
        "CATGAD_TOKEN_2": {"name": own, "key": "token-2"},
    }
    assert sorted(chart_secret["data"]) == ["store-url", "token-0", "token-2"]
    # The ConfigMap names the variables, never a URL with its credentials or a token.
    configmap = yaml.safe_dump(one(manifests, "ConfigMap"))
    for secret in ("postgresql://", "frontend-token-change-me", "prometheus-token-change-me"):
        assert secret not in configmap
    config = yaml.safe_load(one(manifests, "ConfigMap")["data"]["catgad.yaml"])
    assert config["store"]["url"] == "${CATGAD_STORE_URL}"
    assert config["bus"] == {
        "kind": "nats",
        "url": "${CATGAD_BUS_URL}",
        "options": {"prefix": "orders", "partitions": 8},
    }
    assert [t["secret"] for t in config["service"]["auth"]["tokens"]] == [
        "${CATGAD_TOKEN_0}", "${CATGAD_TOKEN_1}", "${CATGAD_TOKEN_2}",
    ]  # fmt: skip


def test_service_monitor_scrapes_metrics_with_the_read_token() -> None:
    manifests = render(VALUES["postgres-nats"])
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"]
        == (one(manifests, "Deployment")["spec"]["selector"]["matchLabels"])
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == one(manifests, "Service")["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    secret = one(manifests, "Secret")
    assert credentials["name"] == secret["metadata"]["name"]
    token = base64.b64decode(secret["data"][credentials["key"]]).decode()
    assert token == "prometheus-token-change-me"  # the token with the read scope


def test_a_token_without_a_secret_is_generated() -> None:
    manifests = render()
    secret = one(manifests, "Secret")
    token = base64.b64decode(secret["data"]["token-0"]).decode()
    assert len(token) == 40 and token.isalnum()


PG = {"store": {"kind": "postgres", "url": "postgresql://db/catgad"}}
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "sqlite-two-replicas": (
        {"replicas": 2},
        "replicas is 2, but the sqlite store has a single writer on one volume",
    ),
    "memory-two-replicas": (
        {"replicas": 3, "store": {"kind": "memory"}},
        "replicas is 3, but each replica would keep its own memory store",
    ),
    "memory-bus-two-replicas": (
        {**PG, "replicas": 2},
        "replicas is 2 with the in-process memory bus: several replicas share the commands "
        "through a broker; set bus.kind to nats or kafka",
    ),
    "postgres-without-url": (
        {"store": {"kind": "postgres"}},
        "store.kind postgres needs its server's URL: set store.url or store.existingSecret.name",
    ),
    "nats-bus-without-url": (
        {**PG, "bus": {"kind": "nats"}},
        "bus.kind nats needs its server's URL",
    ),
    "no-tokens": ({"auth": {"tokens": []}}, "no auth.tokens: the API would be open"),
    "token-without-scopes": (
        {"auth": {"tokens": [{"name": "a", "scopes": []}]}},
        "auth.tokens[0] (a) has no scopes",
    ),
    "duplicate-token": (
        {"auth": {"tokens": [{"name": "a", "scopes": ["read"]}] * 2}},
        'auth.tokens[1]: the name "a" is already used',
    ),
    "monitor-unknown-token": (
        {"serviceMonitor": {"enabled": True, "token": "prom"}},
        'serviceMonitor.token is "prom", which is not one of auth.tokens',
    ),
    "monitor-token-without-read": (
        {
            "auth": {"tokens": [{"name": "w", "scopes": ["commands"]}]},
            "serviceMonitor": {"enabled": True, "token": "w"},
        },
        'serviceMonitor.token "w" lacks the read scope',
    ),
    "monitor-token-digest": (
        {
            "auth": {"tokens": [{"name": "p", "scopes": ["read"], "secret": "sha256:" + "0" * 64}]},
            "serviceMonitor": {"enabled": True, "token": "p"},
        },
        'serviceMonitor.token "p" is given as a sha256: digest',
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_values_the_daemon_cannot_run_with_are_refused(case: str) -> None:
    import helm_python as helm

    values, message = REFUSED[case]
    with pytest.raises(helm.HelmRenderError) as caught:
        render_files(values)
    assert f"catgad: {message}" in str(caught.value)


# values.schema.json: Helm checks the values' shape before any template runs.
MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "typo": ({"replica": 3}, "at '': additional properties 'replica' not allowed"),
    "no-replicas": ({"replicas": 0}, "at '/replicas': minimum"),
    "replicas-text": ({"replicas": "3"}, "at '/replicas': got string, want integer"),
    "unknown-store": ({"store": {"kind": "mongo"}}, "at '/store/kind': value must be one of"),
    "unknown-bus": ({"bus": {"kind": "kinesis"}}, "at '/bus/kind': value must be one of"),
    "unknown-scope": (
        {"auth": {"tokens": [{"name": "a", "scopes": ["write"]}]}},
        "at '/auth/tokens/0/scopes/0': value must be one of",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_values_are_refused_by_the_schema(case: str) -> None:
    import helm_python as helm

    values, message = MALFORMED[case]
    with pytest.raises(helm.HelmValuesError) as caught:
        render_files(values)
    assert message in str(caught.value)
    report = helm.lint(CHART, values, strict=True)  # and `helm lint` says the same
    assert any(message in error for error in report["errors"]), report


def test_scaling_out_is_allowed_with_a_shared_store() -> None:
    for store, bus in (("postgres", "nats"), ("redis", "kafka"), ("nats", "nats")):
        values = {
            "replicas": 2,
            "store": {"kind": store, "url": f"{store}://server"},
            "bus": {"kind": bus, "url": f"{bus}://server"},
        }
        assert one(render(values), "Deployment")["spec"]["replicas"] == 2


def test_insecure_serves_without_tokens() -> None:
    manifests = render({"auth": {"tokens": []}, "insecure": True})
    assert container(manifests)["args"] == ["/etc/catgad/catgad.yaml", "--insecure"]
    assert "service" not in yaml.safe_load(one(manifests, "ConfigMap")["data"]["catgad.yaml"])
    assert not [m for m in manifests if m["kind"] == "Secret"]  # nothing to keep


@pytest.mark.parametrize("case", VALUES)
def test_catgad_validate_accepts_the_mounted_config(case: str, tmp_path: Path) -> None:
    manifests = render(VALUES[case])
    config = write_config(manifests, tmp_path / "etc-catgad")
    result = run_cli("validate", str(config), env=pod_env(manifests, EXISTING))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_in_the_app_config_is_a_clear_error(tmp_path: Path) -> None:
    # The chart owns `store`: one declared in `config` too is named, with both places.
    values = merged(VALUES["postgres-nats"], {"config": DEFAULT_CONFIG + "store: memory\n"})
    manifests = render(values)
    config = write_config(manifests, tmp_path / "etc-catgad")
    result = run_cli("validate", str(config), env=pod_env(manifests, EXISTING))
    assert result.returncode == 1
    assert "app.yaml" in result.stdout + result.stderr
    assert "'store' is already defined at" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
