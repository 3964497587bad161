"""deploy/: the kustomize base and the staging overlay render, pass the Kubernetes JSON schemas
(strict: unknown fields are errors) and are wired correctly."""

from __future__ import annotations

import copy
import importlib
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S_VERSION = "1.33.0"
#: Services that consume Kafka: replicas beyond the partition count (6) would sit idle.
KAFKA_CONSUMERS = {"routing", "contacts"}
PARTITIONS = 6


def render(kustomize: Path, path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(kustomize), "build", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def base(kustomize: Path, repo: Path) -> list[dict[str, Any]]:
    return render(kustomize, repo / "deploy" / "base")


@pytest.fixture(scope="module")
def staging(kustomize: Path, repo: Path) -> list[dict[str, Any]]:
    return render(kustomize, repo / "deploy" / "overlays" / "staging")


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_manifest_file_passes_the_schema(repo: Path) -> None:
    """Without kustomize: each plain manifest file in deploy/ is a valid Kubernetes object."""
    checked = 0
    for path in sorted((repo / "deploy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") == "Kustomization" or "op" in str(doc)[:10]:
                continue
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            checked += 1
    assert checked >= 4 * 5 + 2


@pytest.mark.parametrize("overlay", ["base", "staging"])
def test_rendered_manifests_pass_the_strict_schema(
    overlay: str, request: pytest.FixtureRequest
) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert len(docs) >= 21


def test_schema_check_rejects_a_broken_manifest(base: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(by_kind(base, "Deployment")["routing"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpc"]["port"] = "grpc"  # grpc probes take a number
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    container["readinessProbe"]["grpc"]["port"] = 50062
    container["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_each_service_has_its_workload_objects(
    base: list[dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(by_kind(base, kind)) == set(services), kind
    assert set(by_kind(base, "ConfigMap")) == {f"{n}-config" for n in services}
    assert set(by_kind(base, "Secret")) == {"inbox-secrets"}


def test_deployments_probe_grpc_health_and_take_config_from_configmap_and_secret(
    base: list[dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    deployments, configmaps = by_kind(base, "Deployment"), by_kind(base, "ConfigMap")
    secret_keys = set(by_kind(base, "Secret")["inbox-secrets"]["stringData"])
    for name, cfg in services.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == cfg["grpc"], (name, probe)
        # liveness = the process runs; readiness ("" = default) = its dependencies answer
        assert container["livenessProbe"]["grpc"]["service"] == "liveness", name
        assert container["startupProbe"]["grpc"]["service"] == "liveness", name
        assert "service" not in container["readinessProbe"]["grpc"], name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": cfg["grpc"], "metrics": cfg["metrics"]}
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"]
        assert resources["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        (env_from,) = container["envFrom"]
        assert env_from["configMapRef"]["name"] in configmaps
        secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert secret_env[f"{cfg['prefix']}JWT_SECRET"] == {
            "name": "inbox-secrets",
            "key": "jwt-secret",
        }
        assert {ref["key"] for ref in secret_env.values()} <= secret_keys
        data = configmaps[f"{name}-config"]["data"]
        assert all(key.startswith(cfg["prefix"]) for key in data)
        assert data[f"{cfg['prefix']}GRPC_PORT"] == str(cfg["grpc"])
        assert data[f"{cfg['prefix']}GRPC_HOST"] == "0.0.0.0"


def test_configmaps_parse_as_service_settings(
    base: list[dict[str, Any]],
    services: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The keys are real settings: each service's settings class accepts them as env."""
    configmaps = by_kind(base, "ConfigMap")
    checked = 0
    for name, cfg in services.items():
        try:
            module = importlib.import_module(f"{name}_service.settings")
        except ModuleNotFoundError:
            continue  # service not landed yet
        cls = next(
            v
            for k, v in vars(module).items()
            if k.endswith("Settings") and getattr(v, "__module__", "") == module.__name__
        )
        data = configmaps[f"{name}-config"]["data"]
        for key, value in data.items():
            monkeypatch.setenv(key, value)
        settings = cls()
        for key, value in data.items():
            field = key.removeprefix(cfg["prefix"]).lower()
            assert field in type(settings).model_fields, f"{key} is not a {name} setting"
            parsed = getattr(settings, field)
            assert parsed == type(parsed)(value), key
        checked += 1
    assert checked >= 1


def test_selectors_and_scaling_targets_match(
    base: list[dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    deployments = by_kind(base, "Deployment")
    for name in services:
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        service = by_kind(base, "Service")[name]
        assert service["spec"]["selector"].items() <= labels.items()
        pdb = by_kind(base, "PodDisruptionBudget")[name]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        hpa = by_kind(base, "HorizontalPodAutoscaler")[name]["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
        if name in KAFKA_CONSUMERS:
            assert hpa["maxReplicas"] <= PARTITIONS, f"{name}: idle consumers past partitions"


def test_staging_overlay_sets_namespace_images_and_addresses(
    staging: list[dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    assert by_kind(staging, "Namespace").keys() == {"inbox-staging"}
    for doc in staging:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "inbox-staging", doc["metadata"]["name"]
    deployments, configmaps = by_kind(staging, "Deployment"), by_kind(staging, "ConfigMap")
    for name, cfg in services.items():
        image = deployments[name]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"registry.example.com/inbox/{name}:0.1.0"
        data = configmaps[f"{name}-config"]["data"]
        assert data[f"{cfg['prefix']}KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka-staging")
    assert all(
        h["spec"]["maxReplicas"] == 3 for h in by_kind(staging, "HorizontalPodAutoscaler").values()
    )
