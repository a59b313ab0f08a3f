"""The configuration table of every service, generated from the settings classes.

``community settings doc --write`` refreshes the committed copy in
``docs/configuration.md``; a test fails when the two drift apart. Services are
found by folder (``services/<name>/settings.py``), so shared code names none.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
SERVICES_DIR = ROOT / "services"
CONFIGURATION_PATH = ROOT / "docs" / "configuration.md"
PER_SERVICE = "<SERVICE>"

# Settings say their unit in the name (STYLE.md); the table spells it out.
UNITS = (
    ("_per_min", "per minute"),
    ("_days", "days"),
    ("_min", "minutes"),
    ("_ms", "milliseconds"),
    ("_s", "seconds"),
    ("_h", "hours"),
)

HEADER = """# Configuration

Generated from the settings classes (`shared/settings.py`, `services/<name>/settings.py`) by
`community settings doc --write`; a test fails when this file and the code drift apart.

Every value is an environment variable. Platform-wide values have one fixed name, so one
ConfigMap serves every service. Per-service values carry the service's prefix: `<SERVICE>_PORT`
stands for `MEMBERS_PORT`, `GATEWAY_PORT`, ... (services: {services}).
Secrets come from a Secret or the shell, never from the repository; the development defaults
of secrets are refused outside `COMMUNITY_PROFILE=local`.

| Variable | Services | Default | Unit | Meaning |
|---|---|---|---|---|
"""


@dataclass
class Row:
    variable: str
    default: str
    description: str
    services: list[str] = field(default_factory=list)

    def unit(self) -> str:
        name = self.variable.lower()
        return next((unit for suffix, unit in UNITS if name.endswith(suffix)), "")


def service_names() -> list[str]:
    return sorted(
        p.name
        for p in SERVICES_DIR.iterdir()
        if (p / "__init__.py").exists() and (p / "settings.py").exists()
    )


def settings_class(service: str) -> type[ServiceSettings]:
    """The ``ServiceSettings`` subclass defined in ``services/<service>/settings.py``."""
    module = importlib.import_module(f"services.{service}.settings")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, ServiceSettings)
        and obj is not ServiceSettings
        and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise LookupError(f"services/{service}/settings.py defines {len(found)} settings classes")
    return found[0]


def env_name(cls: type[ServiceSettings], name: str, info: FieldInfo) -> str:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0]).upper()
    if isinstance(alias, str):
        return alias.upper()
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def render_default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "*(computed)*"
    value: Any = info.default
    if isinstance(value, SecretStr):
        return "*(development value)*"
    if value is None:
        return "*(unset)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _is_shared_per_service(cls: type[ServiceSettings], name: str, info: FieldInfo) -> bool:
    """A prefixed field inherited unchanged from ``ServiceSettings``."""
    base = ServiceSettings.model_fields.get(name)
    return (
        base is not None
        and info.validation_alias is None
        and base.default == info.default
        and base.description == info.description
    )


def collect_rows() -> list[Row]:
    names = service_names()
    rows: dict[str, Row] = {}
    for service in names:
        cls = settings_class(service)
        for name, info in cls.model_fields.items():
            if _is_shared_per_service(cls, name, info):
                variable = f"{PER_SERVICE}_{name.upper()}"
            else:
                variable = env_name(cls, name, info)
            row = rows.setdefault(
                variable, Row(variable, render_default(info), info.description or "")
            )
            row.services.append(service)
    platform = [r for r in rows.values() if r.services == names and PER_SERVICE not in r.variable]
    shared = [r for r in rows.values() if PER_SERVICE in r.variable]
    specific = sorted(
        (r for r in rows.values() if r not in platform and r not in shared),
        key=lambda r: (r.services, r.variable),
    )
    return [*platform, *shared, *specific]


def undocumented() -> list[str]:
    """Variables whose field has no ``description`` (the table shows a dash for them)."""
    return [row.variable for row in collect_rows() if not row.description]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_configuration() -> str:
    names = service_names()
    lines = [HEADER.format(services=", ".join(f"`{n}`" for n in names))]
    for row in collect_rows():
        services = "all" if row.services == names else ", ".join(row.services)
        cells = [
            f"`{row.variable}`",
            services,
            row.default,
            row.unit(),
            row.description or "—",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |\n")
    return "".join(lines)
