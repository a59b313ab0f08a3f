"""docs/configuration.md is generated from the settings classes and names real variables."""

from __future__ import annotations

from typer.testing import CliRunner

from shared.cli import app as cli
from shared.settings import ServiceSettings
from shared.settings_doc import (
    CONFIGURATION_PATH,
    PER_SERVICE,
    collect_rows,
    env_name,
    render_configuration,
    settings_class,
)
from tests.deploy.helpers import SERVICES, settings_under


def test_the_committed_configuration_table_matches_the_settings() -> None:
    assert CONFIGURATION_PATH.read_text() == render_configuration(), (
        "docs/configuration.md is stale: run `community settings doc --write`"
    )


def test_the_cli_prints_the_table() -> None:
    result = CliRunner().invoke(cli, ["settings", "doc"])
    assert result.exit_code == 0, result.output
    assert result.output == render_configuration()


def test_every_field_of_every_service_is_in_the_table() -> None:
    variables = {row.variable for row in collect_rows()}
    for service in SERVICES:
        cls = settings_class(service)
        for name, info in cls.model_fields.items():
            concrete = env_name(cls, name, info)
            shared = f"{PER_SERVICE}_{name.upper()}"
            assert concrete in variables or shared in variables, (service, name)


def test_every_shared_setting_says_what_it_means() -> None:
    assert [n for n, info in ServiceSettings.model_fields.items() if not info.description] == []


def test_the_table_names_the_variables_the_services_read() -> None:
    # Integer fields are changed through the documented name and must take effect.
    for service in SERVICES:
        cls = settings_class(service)
        for name, info in cls.model_fields.items():
            if info.annotation is not int:
                continue
            variable = env_name(cls, name, info)
            value = (info.default or 0) + 7
            loaded = settings_under(service, {variable: str(value)})
            assert getattr(loaded, name) == value, (service, variable)
