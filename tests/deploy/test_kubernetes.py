"""deploy/: the kustomize base and the staging overlay render, pass the Kubernetes JSON schemas
(strict: unknown fields are errors) and are wired correctly. The production overlay adds the
components: monitoring (ServiceMonitor, PrometheusRule, Grafana dashboard) and KEDA
autoscaling; they pass their CRDs' schemas, the alerts pass ``promtool test rules``, and
everything refers to real services, metrics and settings."""

from __future__ import annotations

import copy
import importlib
import json
import re
import shutil
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
#: API groups of the custom resources in deploy/components (checked against their CRDs).
CUSTOM_API_GROUPS = ("monitoring.coreos.com/", "keda.sh/")


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
            if (
                not doc
                or doc.get("kind") in ("Kustomization", "Component")
                or "op" in str(doc)[:10]
            ):
                continue
            if doc.get("apiVersion", "").startswith(CUSTOM_API_GROUPS):
                continue  # custom resources: test_custom_resources_pass_their_crd_schemas
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
    container["readinessProbe"]["grpc"]["port"] = 7062
    container["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_each_service_has_its_workload_objects(
    base: list[dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    for kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(by_kind(base, kind)) == set(services), kind
    assert set(by_kind(base, "Service")) == set(services) | {"contacts-headless"}
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


# --- deploy/components (production overlay) ---

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "components" / "monitoring"
NODE_TOOLS = Path(__file__).resolve().parents[2] / "tools" / "node"


@pytest.fixture(scope="module")
def production(kustomize: Path, repo: Path) -> list[dict[str, Any]]:
    return render(kustomize, repo / "deploy" / "overlays" / "production")


def _validate_crds(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    if not (NODE_TOOLS / "node_modules").is_dir():
        pytest.fail("the checkers are not installed: run `make setup`")
    return subprocess.run(
        ["node", str(NODE_TOOLS / "validate-crds.mjs")],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_renders_builtin_objects_that_pass_the_strict_schema(
    production: list[dict[str, Any]],
) -> None:
    builtin = [d for d in production if not d["apiVersion"].startswith(CUSTOM_API_GROUPS)]
    for doc in builtin:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert by_kind(production, "Deployment").keys() == {
        "presence",
        "routing",
        "contacts",
        "replies",
    }


def test_custom_resources_pass_their_crd_schemas(production: list[dict[str, Any]]) -> None:
    result = _validate_crds(production)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("valid ") == 4, result.stdout  # 2 ScaledObjects, rule, monitor


def test_the_crd_check_rejects_a_broken_resource(production: list[dict[str, Any]]) -> None:
    (scaled,) = [d for d in production if d["kind"] == "ScaledObject"][:1]
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicaCount"] = "six"
    result = _validate_crds([broken])
    assert result.returncode == 1
    assert "maxReplicaCount must be integer" in result.stdout


def test_keda_replaces_the_cpu_hpa_of_the_kafka_consumers_only(
    production: list[dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    from contacts_service.settings import ContactsSettings
    from routing_service.settings import RoutingSettings

    groups = {
        "routing": {RoutingSettings().consumer_group, RoutingSettings().presence_consumer_group},
        "contacts": {ContactsSettings().consumer_group},
    }
    assert set(by_kind(production, "HorizontalPodAutoscaler")) == {"presence", "replies"}
    scaled = by_kind(production, "ScaledObject")
    assert set(scaled) == set(groups)
    configmaps = by_kind(production, "ConfigMap")
    for name, obj in scaled.items():
        spec = obj["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 2 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= PARTITIONS
        kafka = [t["metadata"] for t in spec["triggers"] if t["type"] == "kafka"]
        assert {t["consumerGroup"] for t in kafka} == groups[name]
        env = configmaps[f"{name}-config"]["data"]
        assert all(t["bootstrapServersFromEnv"] in env for t in kafka)
        assert any(t["type"] == "cpu" for t in spec["triggers"]), "gRPC reads scale on CPU"


def test_the_servicemonitor_scrapes_every_service_metrics_port(
    production: list[dict[str, Any]],
) -> None:
    (monitor,) = by_kind(production, "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    scraped = set()
    for name, service in by_kind(production, "Service").items():
        assert selector.items() <= service["metadata"]["labels"].items(), name
        if endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}:
            scraped.add(name)
    # the headless contacts Service has no metrics port: its pods are not scraped twice
    assert scraped == {"presence", "routing", "contacts", "replies"}


def test_replies_balances_calls_over_contacts_replicas_through_the_headless_service(
    base: list[dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    headless = by_kind(base, "Service")["contacts-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    pod_labels = by_kind(base, "Deployment")["contacts"]["spec"]["template"]["metadata"]["labels"]
    assert headless["selector"].items() <= pod_labels.items()
    assert [p["port"] for p in headless["ports"]] == [services["contacts"]["grpc"]]
    address = by_kind(base, "ConfigMap")["replies-config"]["data"]["REPLIES_CONTACTS_ADDRESS"]
    assert address == f"dns:///contacts-headless:{services['contacts']['grpc']}"


def _metric_names_in_code(repo: Path) -> set[str]:
    names: set[str] = set()
    for path in [*repo.glob("libs/kit/src/**/*.py"), *repo.glob("services/*/src/**/*.py")]:
        text = path.read_text()
        names |= set(re.findall(r'(?:Counter|Histogram|Gauge)\(\s*"([a-z_]+)"', text))
    return names


def _referenced_metrics(expr: str) -> set[str]:
    found = set(re.findall(r"\b((?:inbox|contacts|replies|routing|presence)_[a-z_]+)", expr))
    return {re.sub(r"_(bucket|sum|count|total)$", "", m) for m in found} | {
        m for m in found if m.endswith("_total")
    }


def test_alerts_and_dashboard_use_metrics_the_code_exports(repo: Path) -> None:
    exported = _metric_names_in_code(repo)
    exported |= {n.removesuffix("_total") for n in exported}
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads((MONITORING / "dashboards" / "inbox.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    unknown = {m for e in exprs for m in _referenced_metrics(e)} - exported
    assert not unknown, f"not exported by any service: {unknown}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_alert_rules_pass_promtool_unit_tests(promtool: Path, tmp_path: Path) -> None:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(Path(__file__).with_name("alerts_test.yaml"), tmp_path / "alerts_test.yaml")
    check = subprocess.run(
        [str(promtool), "check", "rules", "rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        [str(promtool), "test", "rules", "alerts_test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    tests = yaml.safe_load((tmp_path / "alerts_test.yaml").read_text())["tests"]
    covered = {c["alertname"] for t in tests for c in t.get("alert_rule_test", [])}
    assert covered == alerts, f"alerts without a promtool test: {alerts - covered}"
