"""charmcraft.yaml is what charmcraft accepts, and agrees with the config model and the workload layout."""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Callable
from typing import Any

import charmcraft.models.config
import charmcraft.models.metadata
import charmcraft.models.project
import charmcraft.parts
import pydantic
import pytest
import yaml
from craft_application import errors as craft_errors

import config
import config_options
from workload import layout

CHARMCRAFT_YAML = pathlib.Path(__file__).parents[2] / "charmcraft.yaml"

# charmcraft reads its own deprecated field while validating any project.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The 'charmhub' field is deprecated:DeprecationWarning"
)


@pytest.fixture(scope="module", autouse=True)
def _charmcraft_plugins() -> None:
    # What charmcraft does at start-up, so that parts are validated against its plugins.
    charmcraft.parts.setup_parts()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CHARMCRAFT_YAML.read_text())


def load_with_charmcraft(path: pathlib.Path) -> charmcraft.models.project.CharmcraftProject:
    """Load a project the way `charmcraft pack` does, and build the metadata.yaml it would ship."""
    project = charmcraft.models.project.CharmcraftProject.from_yaml_file(path)
    charmcraft.models.metadata.CharmMetadata.from_charm(project)
    charmcraft.models.config.JujuConfig.model_validate(project.config)
    return project


def test_charmcraft_accepts_the_file() -> None:
    project = load_with_charmcraft(CHARMCRAFT_YAML)

    assert project.name == "postgresql-k8s"
    assert project.type == "charm"
    assert project.base == "ubuntu@24.04"
    assert list(project.platforms) == ["amd64"]
    assert project.parts["charm"]["plugin"] == "uv"


def _rename_requires(data: dict[str, Any]) -> None:
    data["require"] = data.pop("requires")


def _unknown_base(data: dict[str, Any]) -> None:
    data["base"] = "ubuntu@23.10"


def _unknown_plugin(data: dict[str, Any]) -> None:
    data["parts"]["charm"]["plugin"] = "pip"


def _unknown_part_key(data: dict[str, Any]) -> None:
    data["parts"]["charm"]["sources"] = "."


def _no_platforms(data: dict[str, Any]) -> None:
    del data["platforms"]


def _bad_name(data: dict[str, Any]) -> None:
    data["name"] = "PostgreSQL K8s"


def _bad_option_type(data: dict[str, Any]) -> None:
    data["config"]["options"]["profile"]["type"] = "enum"


def _option_default_of_wrong_type(data: dict[str, Any]) -> None:
    data["config"]["options"]["profile-limit-memory"]["default"] = "0"


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (_rename_requires, "extra inputs are not permitted"),
        (_unknown_base, "ubuntu@24.04"),
        (_unknown_plugin, "plugin not registered"),
        (_unknown_part_key, "extra inputs are not permitted"),
        (_no_platforms, "'platforms' required"),
        (_bad_name, "invalid name"),
        (_bad_option_type, "does not match any of the expected tags"),
        (_option_default_of_wrong_type, "valid integer"),
    ],
)
def test_charmcraft_rejects_a_broken_copy(
    raw: dict[str, Any],
    tmp_path: pathlib.Path,
    break_it: Callable[[dict[str, Any]], None],
    reason: str,
) -> None:
    broken = copy.deepcopy(raw)
    break_it(broken)
    path = tmp_path / "charmcraft.yaml"
    path.write_text(yaml.safe_dump(broken))

    with pytest.raises(
        (craft_errors.CraftValidationError, pydantic.ValidationError), match=reason
    ):
        load_with_charmcraft(path)


def test_an_unbroken_copy_is_accepted(raw: dict[str, Any], tmp_path: pathlib.Path) -> None:
    # The negative tests above fail for what they break, not for how the copy is written.
    path = tmp_path / "charmcraft.yaml"
    path.write_text(yaml.safe_dump(raw))

    assert load_with_charmcraft(path).name == "postgresql-k8s"


def test_every_option_is_a_config_field_and_vice_versa(raw: dict[str, Any]) -> None:
    assert set(raw["config"]["options"]) == config.config_option_names()


_JUJU_TYPES = {
    config_options.Integer: "int",
    config_options.Real: "float",
    config_options.Boolean: "boolean",
    config_options.Choice: "string",
    config_options.Text: "string",
}


@pytest.mark.parametrize("option", sorted(config_options.PARAMETER_OPTIONS))
def test_parameter_option_declaration(raw: dict[str, Any], option: str) -> None:
    spec = config_options.PARAMETER_OPTIONS[option]
    declared = raw["config"]["options"][option]

    assert declared["type"] == _JUJU_TYPES[type(spec)]
    # Unset means PostgreSQL's own default: the charm sets only what the user set.
    assert "default" not in declared
    assert f"Sets {spec.parameter};" in declared["description"]


@pytest.mark.parametrize("option", sorted(config_options.EXTENSION_OPTIONS))
def test_extension_option_declaration(raw: dict[str, Any], option: str) -> None:
    declared = raw["config"]["options"][option]

    assert declared["type"] == "boolean"
    assert declared["default"] is False
    assert config_options.EXTENSION_OPTIONS[option] in declared["description"]


def test_declared_defaults_are_the_model_defaults(raw: dict[str, Any]) -> None:
    defaults = {
        name: option["default"]
        for name, option in raw["config"]["options"].items()
        if "default" in option
    }

    assert config.load_config(defaults) == config.load_config({})
    assert defaults["profile"] == "production"
    assert defaults["profile-limit-memory"] == 0
    assert defaults["synchronous-node-count"] == "all"
    assert defaults["synchronous-mode-strict"] is True


def test_workload_container_and_storage(raw: dict[str, Any]) -> None:
    container = raw["containers"][layout.CONTAINER]

    assert container["resource"] == "postgresql-image"
    assert raw["resources"]["postgresql-image"]["type"] == "oci-image"
    assert {m["storage"]: m["location"] for m in container["mounts"]} == {
        "pgdata": layout.DATA_MOUNT,
        "logs": layout.LOGS_MOUNT,
    }
    assert {name: s["type"] for name, s in raw["storage"].items()} == {
        "pgdata": "filesystem",
        "logs": "filesystem",
    }


def test_assumes_juju_and_kubernetes(raw: dict[str, Any]) -> None:
    assert raw["assumes"] == ["juju >= 3.6", "k8s-api"]


@pytest.mark.parametrize(
    ("section", "endpoint", "interface", "limit", "optional"),
    [
        ("peers", "database-peers", "postgresql_peers", None, None),
        ("provides", "database", "postgresql_client", None, True),
        ("provides", "metrics-endpoint", "prometheus_scrape", None, True),
        ("requires", "s3-parameters", "s3", 1, True),
    ],
)
def test_endpoint(
    raw: dict[str, Any],
    section: str,
    endpoint: str,
    interface: str,
    limit: int | None,
    optional: bool | None,
) -> None:
    declared = raw[section][endpoint]

    assert declared["interface"] == interface
    assert declared.get("limit") == limit
    assert declared.get("optional") == optional


def test_no_endpoints_beyond_the_known_ones(raw: dict[str, Any]) -> None:
    # Only what the charm serves: TLS, dashboards, logs and refresh are declared with
    # the code behind them, not before.
    assert {s: set(raw[s]) for s in ("peers", "provides", "requires")} == {
        "peers": {"database-peers"},
        "provides": {"database", "metrics-endpoint"},
        "requires": {"s3-parameters"},
    }


def test_actions(raw: dict[str, Any]) -> None:
    actions = raw["actions"]

    assert set(actions) == {
        "get-password",
        "set-password",
        "get-primary",
        "promote-to-primary",
        "create-backup",
        "list-backups",
        "restore",
    }
    for name, action in actions.items():
        assert action["description"].strip(), name
        assert action["additionalProperties"] is False, name
        for param_name, param in action.get("params", {}).items():
            assert param["type"] in {"string", "boolean", "integer", "number"}, param_name
            assert param["description"].strip(), param_name


@pytest.mark.parametrize("action", ["get-password", "set-password"])
def test_password_actions_take_a_system_user(raw: dict[str, Any], action: str) -> None:
    username = raw["actions"][action]["params"]["username"]

    assert username["default"] == layout.SystemUser.OPERATOR.value
    assert username["enum"] == [user.value for user in layout.SystemUser]
    assert "required" not in raw["actions"][action]


def test_set_password_generates_when_omitted(raw: dict[str, Any]) -> None:
    password = raw["actions"]["set-password"]["params"]["password"]

    assert password["type"] == "string"
    assert "default" not in password


def test_promote_to_primary_params(raw: dict[str, Any]) -> None:
    params = raw["actions"]["promote-to-primary"]["params"]

    assert params["scope"] == {
        "type": "string",
        "description": params["scope"]["description"],
        "default": "unit",
        "enum": ["unit"],
    }
    assert params["force"]["type"] == "boolean"
    assert params["force"]["default"] is False
    assert "params" not in raw["actions"]["get-primary"]
