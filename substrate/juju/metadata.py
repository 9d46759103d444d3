"""A charm's metadata read from its charmcraft.yaml: endpoints, containers, storage, config, actions."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from substrate.juju import schema
from substrate.juju.errors import InvalidActionError, InvalidConfigError

Role = Literal["peer", "provides", "requires"]
# Keys of charmcraft.yaml that are not part of metadata.yaml (build or packing settings).
_NOT_METADATA = frozenset({"config", "actions", "type", "base", "bases", "build-base",
                           "platforms", "parts", "charmhub", "links"})  # fmt: skip
_SECRET_URI = re.compile(r"^secret:[0-9a-z]{20}$")
_TRUE = frozenset({"true", "t", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off"})


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One relation endpoint of the charm."""

    name: str
    interface: str
    role: Role
    limit: int | None = None


@dataclasses.dataclass(frozen=True)
class ContainerMount:
    """A storage mounted into a workload container."""

    storage: str
    location: str


@dataclasses.dataclass(frozen=True)
class CharmMetadata:
    """Everything the model needs to know about a charm, from its one metadata file."""

    name: str
    meta: dict[str, Any]
    config: dict[str, Any]
    actions: dict[str, Any]
    endpoints: dict[str, Endpoint]
    containers: dict[str, tuple[ContainerMount, ...]]
    storage: tuple[str, ...]
    extra_bindings: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CharmMetadata:
        """Build from a charmcraft.yaml document."""
        endpoints: dict[str, Endpoint] = {}
        for key, role in (("peers", "peer"), ("provides", "provides"), ("requires", "requires")):
            for name, raw in _section(data, key).items():
                spec = cast("Mapping[str, Any]", raw or {})
                endpoints[name] = Endpoint(
                    name, str(spec.get("interface", "")), cast("Role", role), spec.get("limit")
                )
        containers: dict[str, tuple[ContainerMount, ...]] = {}
        for name, raw in _section(data, "containers").items():
            spec = cast("Mapping[str, Any]", raw or {})
            mounts = cast("list[dict[str, str]]", spec.get("mounts", []))
            containers[name] = tuple(ContainerMount(m["storage"], m["location"]) for m in mounts)
        return cls(
            name=str(data["name"]),
            meta={k: v for k, v in data.items() if k not in _NOT_METADATA},
            config=dict(data.get("config") or {}),
            actions=dict(data.get("actions") or {}),
            endpoints=endpoints,
            containers=containers,
            storage=tuple(data.get("storage") or ()),
            extra_bindings=tuple(data.get("extra-bindings") or ()),
        )

    @property
    def options(self) -> dict[str, dict[str, Any]]:
        """The config options and their specs."""
        return dict(self.config.get("options") or {})

    @property
    def peers(self) -> list[Endpoint]:
        """The peer endpoints, created when the application is deployed."""
        return [e for e in self.endpoints.values() if e.role == "peer"]

    def defaults(self) -> dict[str, Any]:
        """Option values when nothing was set: only options that have a default."""
        return {
            name: _coerce_default(spec.get("type", "string"), spec["default"])
            for name, spec in self.options.items()
            if spec.get("default") is not None
        }

    def validate_config(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The values coerced to their option types (None resets); InvalidConfigError if any is refused."""
        options, problems, out = self.options, list[str](), dict[str, Any]()
        for name, value in values.items():
            if name not in options:
                problems.append(f"unknown option {name!r}")
                continue
            if value is None:
                out[name] = None
                continue
            kind = str(options[name].get("type", "string"))
            try:
                out[name] = coerce_option(kind, value)
            except ValueError as e:
                problems.append(f"option {name!r}: {e}")
        if problems:
            raise InvalidConfigError(problems)
        return out

    def action_params(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The params with defaults filled in; InvalidActionError where Juju would refuse them."""
        if action not in self.actions:
            raise InvalidActionError([f"action {action!r} not defined by the charm"])
        spec = cast("Mapping[str, Any]", self.actions[action] or {})
        problems = schema.validate(dict(params), schema.action_schema(spec))
        if problems:
            raise InvalidActionError(problems)
        return schema.fill_defaults(params, spec)


def _string(value: Any) -> Any:
    return value if isinstance(value, str) else None


def _int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    return None


def _float(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    return None


def _secret(value: Any) -> Any:
    return value if isinstance(value, str) and _SECRET_URI.match(value) else None


_COERCE = {"string": _string, "int": _int, "float": _float, "boolean": _boolean, "secret": _secret}


def coerce_option(kind: str, value: Any) -> Any:
    """A config value as its option type wants it; ValueError when Juju would refuse it.

    Native Python values of the right type are accepted, and so are strings that `juju config
    key=value` would parse (`"5"` for an int, `"true"` for a boolean). A string option takes
    strings only: a number given for it is more likely a mistake than meant as text.
    """
    if kind not in _COERCE:
        raise ValueError(f"unknown option type {kind!r}")
    coerced = _COERCE[kind](value)
    if coerced is None:
        raise ValueError(f"{value!r} is not a valid {kind}")
    return coerced


def _section(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    return cast("dict[str, Any]", data.get(key) or {})


def _coerce_default(kind: str, value: Any) -> Any:
    return float(value) if kind == "float" and isinstance(value, int) else value


@functools.lru_cache(maxsize=16)
def _load(path: Path, mtime_ns: int) -> CharmMetadata:
    return CharmMetadata.from_dict(yaml.safe_load(path.read_text()))


def load(charm_root: Path) -> CharmMetadata:
    """The metadata in `<charm_root>/charmcraft.yaml` (parsed once per file version)."""
    path = Path(charm_root, "charmcraft.yaml").resolve()
    return _load(path, path.stat().st_mtime_ns)
