"""The Kustomize overlays render offline, validate against the schemas and follow our rules."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from shared.app import shutdown_budget
from shared.events.topics import DOMAIN_TOPICS, dlq_topic
from shared.settings import ServiceSettings, service_url_settings
from tests.deploy.helpers import (
    K8S,
    OVERLAYS,
    POD_HOST,
    ROOT,
    SERVICES,
    Obj,
    app_paths,
    configmap,
    has_consumers,
    of_kind,
    pod_env,
    render,
    settings_under,
)

# The oldest Kubernetes we support and the newest the schema package ships.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CRD_SCHEMAS = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopic-kafka-v1beta2.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
}
IMAGE = "community-platform"
SECRET_NAME = "community-secrets"
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$|DATABASE_URL|REDIS_URL")
DAY_MS = 86_400_000

overlays = pytest.mark.parametrize("overlay", OVERLAYS)


def schema_errors(obj: Obj) -> list[str]:
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        schema = json.loads((K8S / "schemas" / crd).read_text())
        validator = jsonschema.Draft202012Validator(schema)
        return [
            f"{name}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)
        ]
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{name} ({version}): {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{name}: no schema: {e.message}")
    return errors


def containers(obj: Obj) -> list[Obj]:
    spec: Obj = obj["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@overlays
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    objects = render(overlay)
    assert objects
    assert [e for obj in objects for e in schema_errors(obj)] == []


def test_the_schema_check_catches_typos_and_wrong_types() -> None:
    objects = render("dev")
    deployment = copy.deepcopy(of_kind(objects, "Deployment")["members"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    topic = copy.deepcopy(next(iter(of_kind(objects, "KafkaTopic").values())))
    topic["spec"]["partitions"] = "six"
    monitor = copy.deepcopy(next(iter(of_kind(objects, "ServiceMonitor").values())))
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    for broken in (deployment, topic, monitor):
        assert schema_errors(broken), broken["kind"]


@overlays
def test_every_service_has_a_deployment_service_autoscaler_and_disruption_budget(
    overlay: str,
) -> None:
    objects = render(overlay)
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert sorted(of_kind(objects, kind)) == sorted(SERVICES), kind
    for name, deployment in of_kind(objects, "Deployment").items():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        assert of_kind(objects, "Service")[name]["spec"]["selector"].items() <= pod_labels.items()
        pdb = of_kind(objects, "PodDisruptionBudget")[name]["spec"]["selector"]["matchLabels"]
        assert pdb.items() <= pod_labels.items()
        target = of_kind(objects, "HorizontalPodAutoscaler")[name]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        # The autoscaler owns the replica count; a fixed one would fight it on every apply.
        assert "replicas" not in deployment["spec"]


@overlays
def test_deployments_probe_limit_and_lock_down_their_pods(overlay: str) -> None:
    for name, deployment in of_kind(render(overlay), "Deployment").items():
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        (app,) = pod["containers"]
        assert app["args"] == ["serve", name]
        assert app["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert app["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert [p["name"] for p in app["ports"]] == ["http"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= app["resources"][bound].keys(), (name, bound)
        security = app["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("service", SERVICES)
def test_probes_and_scrapes_point_at_routes_the_app_serves(service: str) -> None:
    assert {"/healthz", "/readyz", "/metrics"} <= app_paths(service)


@overlays
def test_the_shutdown_budget_fits_the_termination_grace_period(overlay: str) -> None:
    objects = render(overlay)
    for name, deployment in of_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        settings = settings_under(name, pod_env(objects, pod))
        drain_s, stop_s = shutdown_budget(settings)
        pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        # preStop runs first, then SIGTERM; Kubernetes kills at terminationGracePeriodSeconds.
        assert int(pre_stop[1]) + drain_s + stop_s < pod["terminationGracePeriodSeconds"], name


@overlays
def test_every_pod_gets_settings_that_load_in_production(overlay: str) -> None:
    objects = render(overlay)
    for name, deployment in of_kind(objects, "Deployment").items():
        settings = settings_under(name, pod_env(objects, deployment["spec"]["template"]["spec"]))
        assert settings.profile == "production"
        assert (settings.host, settings.port) == (POD_HOST, 8000)
        assert settings.database_url.startswith("s3cret"), f"{name} has no database secret"
        assert settings.kafka_enable_idempotence is True
        assert settings.migrate_on_start is False
    job = of_kind(objects, "Job")["community-migrate"]
    job_env = pod_env(objects, job["spec"]["template"]["spec"])
    for name in SERVICES:
        # `community migrate all` loads every service's settings, so each must validate.
        assert settings_under(name, job_env).database_url.startswith("s3cret"), name


@overlays
def test_only_the_gateway_is_exposed_through_an_ingress(overlay: str) -> None:
    objects = render(overlay)
    (ingress,) = of_kind(objects, "Ingress").values()
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"gateway"}
    assert {s["spec"]["type"] for s in of_kind(objects, "Service").values()} == {"ClusterIP"}


@overlays
def test_secrets_are_referenced_never_defined(overlay: str) -> None:
    objects = render(overlay)
    assert of_kind(objects, "Secret") == {}
    assert [k for k in configmap(objects) if SECRET_LIKE.search(k)] == []
    referenced = set()
    for obj in objects:
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(obj):
            for var in container.get("env", []):
                assert "value" not in var or not SECRET_LIKE.search(var["name"]), var
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == SECRET_NAME
                    referenced.add(ref["key"])
    # The operator creates the Secret by hand: the README must name every key.
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert [key for key in sorted(referenced) if f"{key}=" not in readme] == []


def test_no_secret_manifest_is_in_the_repository() -> None:
    for path in (ROOT / "deploy").rglob("*.y*ml"):
        assert not re.search(r"^kind:\s*Secret\s*$", path.read_text(), re.M), path


@overlays
def test_the_migration_job_migrates_every_service_once_before_the_rollout(overlay: str) -> None:
    objects = render(overlay)
    job = of_kind(objects, "Job")["community-migrate"]
    pod = job["spec"]["template"]["spec"]
    (migrate,) = pod["containers"]
    assert migrate["args"] == ["migrate", "all"]
    assert pod["restartPolicy"] == "Never"
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True
    images = {c["image"] for d in of_kind(objects, "Deployment").values() for c in containers(d)}
    assert images == {migrate["image"]}
    # Pods never run migrations themselves (init containers would race across replicas).
    assert all(
        "initContainers" not in d["spec"]["template"]["spec"]
        for d in of_kind(objects, "Deployment").values()
    )
    config = configmap(objects)
    assert [s for s in SERVICES if config.get(f"{s.upper()}_MIGRATE_ON_START") != "false"] == []


@overlays
def test_kafka_topics_match_the_topics_the_code_publishes_and_consumes(overlay: str) -> None:
    objects = render(overlay)
    config = configmap(objects)
    topics = {t["spec"]["topicName"]: t for t in of_kind(objects, "KafkaTopic").values()}
    dlqs = {dlq_topic(s) for s in SERVICES if has_consumers(s)}
    assert set(topics) == {t.name for t in DOMAIN_TOPICS} | dlqs
    cluster = config["KAFKA_BOOTSTRAP_SERVERS"].split("-kafka-bootstrap")[0]
    for topic in DOMAIN_TOPICS:
        spec = topics[topic.name]["spec"]
        # The services create topics with these settings too; both must agree.
        assert spec["partitions"] == int(config["KAFKA_TOPIC_PARTITIONS"])
        assert spec["replicas"] == int(config["KAFKA_REPLICATION_FACTOR"])
        assert spec["config"]["retention.ms"] == topic.retention_days * DAY_MS
    for resource in topics.values():
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert resource["spec"]["config"]["min.insync.replicas"] < resource["spec"]["replicas"]


def test_the_topic_partitions_in_the_manifests_are_the_settings_default() -> None:
    default: Any = ServiceSettings.model_fields["kafka_topic_partitions"].default
    assert int(configmap(render("prod"))["KAFKA_TOPIC_PARTITIONS"]) == default


@overlays
def test_the_service_monitor_scrapes_every_service(overlay: str) -> None:
    objects = render(overlay)
    (monitor,) = of_kind(objects, "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    for name, service in of_kind(objects, "Service").items():
        assert selector.items() <= service["metadata"]["labels"].items(), name
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}, name


def test_overlays_pin_their_image_tags_and_prod_keeps_three_gateways() -> None:
    for overlay, tag in (("dev", "dev"), ("prod", "0.1.0")):
        objects = render(overlay)
        images = {
            c["image"]
            for obj in objects
            if obj["kind"] in ("Deployment", "Job")
            for c in containers(obj)
        }
        assert images == {f"{IMAGE}:{tag}"}
    prod = render("prod")
    assert of_kind(prod, "HorizontalPodAutoscaler")["gateway"]["spec"]["minReplicas"] >= 3
    for pdb in of_kind(render("dev"), "PodDisruptionBudget").values():
        # One replica in dev: minAvailable 1 would block every node drain.
        assert pdb["spec"] == pdb["spec"] | {"maxUnavailable": 1}


@overlays
def test_every_service_to_service_call_is_wired_to_the_callee(overlay: str) -> None:
    wanted = service_url_settings(lambda callee: f"http://{callee}:8000")
    config = configmap(render(overlay))
    assert {name: config.get(name) for name in wanted} == wanted
