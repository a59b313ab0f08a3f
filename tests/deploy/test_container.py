"""The image (Dockerfile) and the compose stack, checked structurally: Docker does not run here."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from importlib import resources

import jsonschema
import pytest

from shared.app import shutdown_budget
from shared.cli import app as cli
from shared.settings import service_url_settings
from tests.deploy.helpers import (
    POD_HOST,
    ROOT,
    SECRET_VALUE,
    SERVICES,
    Obj,
    load_compose,
    settings_under,
)

INFRA = ("kafka", "postgres", "redis", "migrate")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


def stages() -> list[list[str]]:
    """The Dockerfile's instructions per stage (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    found: list[list[str]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            found.append([])
        if found:
            found[-1].append(line)
    return found


def instruction(stage: list[str], name: str) -> list[str]:
    return [line[len(name) + 1 :] for line in stage if line.upper().startswith(f"{name} ")]


def command_names() -> set[str]:
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in cli.registered_commands}
    return names | {g.name or "" for g in cli.registered_groups}


def compose_env(service: Obj) -> dict[str, str]:
    """A compose service's environment with ``${VAR:?...}`` filled as the shell would."""
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    return {k: INTERPOLATION.sub(SECRET_VALUE, v) for k, v in env.items()}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def test_the_image_is_multi_stage_slim_and_runs_as_a_user() -> None:
    builder, final = stages()
    assert "slim" in instruction(final, "FROM")[0]
    assert instruction(final, "COPY")[0].startswith("--from=")
    # Build tools (pip's compilers, apt) stay in the builder stage.
    assert not [line for line in final if re.search(r"\b(apt-get|gcc|build-essential|pip)\b", line)]
    (user,) = instruction(final, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    (healthcheck,) = instruction(final, "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert instruction(builder, "RUN")


def test_the_image_runs_the_project_command_for_any_service() -> None:
    final = stages()[-1]
    assert instruction(final, "ENTRYPOINT") == ['["community"]']
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["community"] == "shared.cli:app"
    assert {"serve", "migrate"} <= command_names()
    (cmd,) = instruction(final, "CMD")
    verb, service = re.findall(r'"([^"]+)"', cmd)
    assert verb == "serve"
    assert service in SERVICES


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instruction(stages()[-1], "ENV"):
        env.update(pair.split("=", 1) for pair in line.split())
    return env


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_in_the_image_listens_where_the_healthcheck_looks(service: str) -> None:
    settings = settings_under(service, image_env())
    assert (settings.host, settings.port) == (POD_HOST, 8000)
    (healthcheck,) = instruction(stages()[-1], "HEALTHCHECK")
    assert f"127.0.0.1:{settings.port}/healthz" in healthcheck
    assert instruction(stages()[-1], "EXPOSE") == [str(settings.port)]


def test_the_image_user_is_the_user_kubernetes_runs_as() -> None:
    (user,) = instruction(stages()[-1], "USER")
    patch = (ROOT / "deploy" / "k8s" / "base" / "patches" / "deployment-defaults.yaml").read_text()
    assert f"runAsUser: {user.split(':')[0]}" in patch


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data", "tests", ".env"} <= ignored
    # setuptools needs them to build the package.
    assert not {"README.md", "LICENSE", "pyproject.toml"} & ignored


def compose_spec_errors(compose: Obj) -> list[str]:
    """Errors against the Compose Specification schema (vendored by check-jsonschema)."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendored.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert compose_spec_errors(load_compose()) == []
    broken = copy.deepcopy(load_compose())
    broken["services"]["members"]["depends_on"]["kafka"]["condition"] = "service_ready"
    assert compose_spec_errors(broken)


def test_compose_runs_every_service_from_one_image() -> None:
    services = load_compose()["services"]
    apps = {name: s for name, s in services.items() if name not in INFRA}
    assert sorted(apps) == sorted(SERVICES)
    assert len({s["image"] for name, s in services.items() if name in (*SERVICES, "migrate")}) == 1
    for name, service in apps.items():
        assert service["command"] == ["serve", name]
    assert services["migrate"]["command"] == ["migrate", "all"]
    assert services["migrate"]["restart"] == "no"


def test_compose_uses_kafka_in_kraft_mode_with_idempotent_producers() -> None:
    services = load_compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [name for name in services if "zookeeper" in name]
    for name in SERVICES:
        assert compose_env(services[name])["KAFKA_ENABLE_IDEMPOTENCE"] == "true"
        assert compose_env(services[name])["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_compose_gives_each_service_its_own_postgres_database() -> None:
    services = load_compose()["services"]
    init = (ROOT / "deploy" / "compose" / "init-databases.sql").read_text()
    assert sorted(re.findall(r"CREATE DATABASE (\w+);", init)) == sorted(SERVICES)
    for name in SERVICES:
        url = compose_env(services[name])[f"{name.upper()}_DATABASE_URL"]
        assert url == f"postgresql+asyncpg://postgres:postgres@postgres:5432/{name}"
        assert compose_env(services["migrate"])[f"{name.upper()}_DATABASE_URL"] == url


def test_compose_starts_services_after_healthy_dependencies_and_the_migration() -> None:
    services = load_compose()["services"]
    for name in ("kafka", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        # Their health check is the image's HEALTHCHECK on /healthz.
        assert "healthcheck" not in services[name], name
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert compose_env(services["gateway"])["GATEWAY_REDIS_URL"].startswith("redis://redis:")


def test_compose_keeps_state_in_named_volumes() -> None:
    compose = load_compose()
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared
    assert {"kafka", "postgres"} <= {
        name
        for name, s in compose["services"].items()
        if any(m.split(":")[0] in declared for m in s.get("volumes", []))
    }


def test_compose_publishes_only_the_gateway_on_one_port() -> None:
    services = load_compose()["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert published == {"gateway": ["8000:8000"]}
    upstreams = compose_env(services["gateway"])
    for name in SERVICES:
        if name != "gateway":
            assert upstreams[f"GATEWAY_{name.upper()}_URL"] == f"http://{name}:8000"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_settings_load_in_production(service: str) -> None:
    services = load_compose()["services"]
    settings = settings_under(service, compose_env(services[service]))
    assert settings.profile == "production"
    assert (settings.host, settings.port) == (POD_HOST, 8000)
    assert settings.migrate_on_start is False
    # `community migrate all` in the migrate service loads every service's settings.
    assert settings_under(service, compose_env(services["migrate"])).profile == "production"
    drain_s, stop_s = shutdown_budget(settings)
    assert drain_s + stop_s < seconds(services[service]["stop_grace_period"])


def test_compose_wires_every_service_to_service_call_to_the_callee() -> None:
    services = load_compose()["services"]
    for name, url in service_url_settings(lambda callee: f"http://{callee}:8000").items():
        caller = name.split("_", 1)[0].lower()
        assert compose_env(services[caller]).get(name) == url, name
