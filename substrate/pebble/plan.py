"""Pebble layers and the plan they combine into: parsing, override rules, validation, ordering.

Sections are kept as plain dicts in layer-specification spelling ("kill-delay", "user-id"), with
durations normalised as Go prints them, so the plan served back is what Pebble would serve.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from substrate.pebble import timeutil

Section = dict[str, dict[str, Any]]

_SERVICE_FIELDS = [
    "summary",
    "description",
    "startup",
    "override",
    "command",
    "after",
    "before",
    "requires",
    "environment",
    "user",
    "user-id",
    "group",
    "group-id",
    "working-dir",
    "on-success",
    "on-failure",
    "on-check-failure",
    "backoff-delay",
    "backoff-factor",
    "backoff-limit",
    "kill-delay",
]
_CHECK_FIELDS = [
    "override",
    "level",
    "startup",
    "period",
    "timeout",
    "threshold",
    "http",
    "tcp",
    "exec",
]
_LOG_TARGET_FIELDS = ["type", "location", "services", "labels", "override"]
_HTTP_FIELDS = ("url", "headers")
_TCP_FIELDS = ("port", "host")
_EXEC_FIELDS = [
    "command",
    "service-context",
    "environment",
    "user",
    "user-id",
    "group",
    "group-id",
    "working-dir",
]
_DURATIONS = {"backoff-delay", "backoff-limit", "kill-delay", "period", "timeout"}
_LISTS = {"after", "before", "requires", "services"}
_MAPS = {"environment", "on-check-failure", "headers", "labels"}
_ACTIONS = {"", "restart", "shutdown", "ignore", "success-shutdown", "failure-shutdown"}
_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$")


class LayerError(ValueError):
    """Raised when a layer cannot be parsed or the plan it would produce is invalid."""


@dataclasses.dataclass
class Layer:
    """One configuration layer: its label, its order in the stack, and its three sections."""

    label: str
    order: int
    summary: str = ""
    description: str = ""
    services: Section = dataclasses.field(default_factory=dict[str, dict[str, Any]])
    checks: Section = dataclasses.field(default_factory=dict[str, dict[str, Any]])
    log_targets: Section = dataclasses.field(default_factory=dict[str, dict[str, Any]])


@dataclasses.dataclass
class Plan:
    """The combined configuration of all layers."""

    services: Section = dataclasses.field(default_factory=dict[str, dict[str, Any]])
    checks: Section = dataclasses.field(default_factory=dict[str, dict[str, Any]])
    log_targets: Section = dataclasses.field(default_factory=dict[str, dict[str, Any]])

    def to_yaml(self) -> str:
        """The plan as GET /v1/plan?format=yaml serves it."""
        out: dict[str, Any] = {}
        for key, section, fields in (
            ("services", self.services, _SERVICE_FIELDS),
            ("checks", self.checks, _CHECK_FIELDS),
            ("log-targets", self.log_targets, _LOG_TARGET_FIELDS),
        ):
            if section:
                out[key] = {name: _ordered(entry, fields) for name, entry in section.items()}
        return yaml.safe_dump(out, sort_keys=False, default_flow_style=False) if out else "{}\n"


def _ordered(entry: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {field: entry[field] for field in fields if field in entry}


def _normalise_value(key: str, value: Any, where: str) -> Any:
    if key in _DURATIONS:
        try:
            return timeutil.format_duration(timeutil.parse_duration(value))
        except timeutil.DurationError as e:
            raise LayerError(f"{where}: invalid duration for {key!r}: {value!r}") from e
    if key in _LISTS:
        if not isinstance(value, list):
            raise LayerError(f"{where}: {key!r} must be a list")
        return [str(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    if key in _MAPS:
        if not isinstance(value, dict):
            raise LayerError(f"{where}: {key!r} must be a map")
        return {str(k): "" if v is None else str(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if key in ("user-id", "group-id", "threshold", "port"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise LayerError(f"{where}: {key!r} must be an integer")
        return value
    if key == "backoff-factor":
        return float(value)
    return "" if value is None else str(value)


def _normalise_entry(raw: Any, fields: Iterable[str], where: str) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise LayerError(f"{where} must be a map")
    allowed = set(fields)
    entry: dict[str, Any] = {}
    for key, value in raw.items():  # pyright: ignore[reportUnknownVariableType]
        if key not in allowed:
            raise LayerError(f"{where}: field {key!r} not known")
        if key in ("http", "tcp", "exec"):
            sub = {"http": _HTTP_FIELDS, "tcp": _TCP_FIELDS, "exec": _EXEC_FIELDS}[key]
            entry[key] = _normalise_entry(value, sub, f"{where} {key}")
        elif value is not None and value not in ("", [], {}):
            entry[str(key)] = _normalise_value(str(key), value, where)  # pyright: ignore[reportUnknownArgumentType]
    return entry


def _parse_section(raw: Any, kind: str, label: str, fields: Iterable[str]) -> Section:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LayerError(f"layer {label!r}: {kind}s must be a map")
    section: Section = {}
    for key, value in raw.items():  # pyright: ignore[reportUnknownVariableType]
        name = str(key)  # pyright: ignore[reportUnknownArgumentType]
        if not _NAME.match(name):
            raise LayerError(f"invalid {kind} name {name!r}")
        entry = _normalise_entry(value, fields, f"{kind} {name!r}")
        if entry.get("override") not in ("merge", "replace"):
            raise LayerError(f'layer "{label}" must define "override" for {kind} "{name}"')
        section[name] = entry
    return section


def parse_layer(label: str, text: str, order: int = 0) -> Layer:
    """Parse one layer's YAML; raises LayerError with Pebble's wording on bad input."""
    if not label:
        raise LayerError("label must be set")
    if label.startswith("pebble-"):
        raise LayerError('cannot use reserved label prefix "pebble-"')
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise LayerError(f"cannot parse layer {label!r}: {e}") from e
    if not isinstance(raw, dict):
        raise LayerError(f"cannot parse layer {label!r}: not a map")
    unknown = set(raw) - {"summary", "description", "services", "checks", "log-targets"}  # pyright: ignore[reportUnknownArgumentType]
    if unknown:
        raise LayerError(f"cannot parse layer {label!r}: unknown section {sorted(unknown)[0]!r}")
    return Layer(
        label=label,
        order=order,
        summary=str(raw.get("summary") or ""),  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
        description=str(raw.get("description") or ""),  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
        services=_parse_section(raw.get("services"), "service", label, _SERVICE_FIELDS),  # pyright: ignore[reportUnknownMemberType]
        checks=_parse_section(raw.get("checks"), "check", label, _CHECK_FIELDS),  # pyright: ignore[reportUnknownMemberType]
        log_targets=_parse_section(
            raw.get("log-targets"),  # pyright: ignore[reportUnknownMemberType]
            "log target",
            label,
            _LOG_TARGET_FIELDS,
        ),
    )


def _merge_entry(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `over` onto a copy of `base`: lists append, maps update, the rest replaces."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if key in _LISTS:
            merged[key] = [*merged.get(key, []), *value]
        elif key in _MAPS:
            merged[key] = {**merged.get(key, {}), **value}
        elif key in ("http", "tcp", "exec"):
            merged[key] = _merge_entry(merged.get(key, {}), value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _combine_section(base: Section, over: Section) -> Section:
    combined = dict(base)
    for name, entry in over.items():
        if entry.get("override") == "merge" and name in combined:
            combined[name] = _merge_entry(combined[name], entry)
        else:
            combined[name] = copy.deepcopy(entry)
    return combined


def combine_into(existing: Layer, new: Layer) -> Layer:
    """The layer `add_layer(combine=True)` leaves behind under an existing label."""
    return Layer(
        label=existing.label,
        order=existing.order,
        summary=new.summary or existing.summary,
        description=new.description or existing.description,
        services=_combine_section(existing.services, new.services),
        checks=_combine_section(existing.checks, new.checks),
        log_targets=_combine_section(existing.log_targets, new.log_targets),
    )


def combine(layers: Iterable[Layer]) -> Plan:
    """Combine layers in order into a validated plan."""
    plan = Plan()
    for layer in sorted(layers, key=lambda layer: layer.order):
        plan.services = _combine_section(plan.services, layer.services)
        plan.checks = _combine_section(plan.checks, layer.checks)
        plan.log_targets = _combine_section(plan.log_targets, layer.log_targets)
    validate(plan)
    return plan


def validate(plan: Plan) -> None:
    """Raise LayerError if the combined plan is not one Pebble would accept."""
    for name, service in plan.services.items():
        _validate_service(plan, name, service)
    for name, check in plan.checks.items():
        _validate_check(name, check)
    for name, target in plan.log_targets.items():
        if target.get("type") not in ("loki", "opentelemetry", "syslog"):
            raise LayerError(
                f'plan must define "type" ("loki" or "opentelemetry") for log target "{name}"'
            )
        if not target.get("location"):
            raise LayerError(f'plan must define "location" for log target "{name}"')
    start_order(plan, plan.services)  # detects before/after loops


def _validate_service(plan: Plan, name: str, service: Mapping[str, Any]) -> None:
    if not service.get("command"):
        raise LayerError(f'plan must define "command" for service "{name}"')
    try:
        command_argv(service["command"])
    except ValueError as e:
        raise LayerError(f'plan service "{name}" command invalid: {e}') from e
    if service.get("startup", "") not in ("", "enabled", "disabled"):
        raise LayerError(f'invalid "startup" value {service["startup"]!r} for service "{name}"')
    if service.get("backoff-factor", 2.0) < 1:
        raise LayerError(f'plan service "{name}" backoff-factor must be 1.0 or greater')
    _validate_actions(plan, name, service)
    for field in ("after", "before", "requires"):
        for other in service.get(field, []):
            if other not in plan.services:
                raise LayerError(f'service "{name}" {field} missing service "{other}"')


def _validate_actions(plan: Plan, name: str, service: Mapping[str, Any]) -> None:
    for field in ("on-success", "on-failure"):
        if service.get(field, "") not in _ACTIONS:
            raise LayerError(f'plan service "{name}" {field} action {service[field]!r} invalid')
    for check, action in service.get("on-check-failure", {}).items():
        if action not in _ACTIONS:
            raise LayerError(f'plan service "{name}" on-check-failure action {action!r} invalid')
        if check not in plan.checks:
            raise LayerError(
                f'plan check "{check}" specified in service "{name}" on-check-failure not defined'
            )


def _validate_check(name: str, check: Mapping[str, Any]) -> None:
    kinds = [kind for kind in ("http", "tcp", "exec") if kind in check]
    if len(kinds) != 1:
        raise LayerError(f'plan must specify one of "http", "tcp", or "exec" for check "{name}"')
    required = {"http": "url", "tcp": "port", "exec": "command"}[kinds[0]]
    if not check[kinds[0]].get(required):
        raise LayerError(f'plan must set "{required}" for {kinds[0]} check "{name}"')
    if check.get("level", "") not in ("", "alive", "ready"):
        raise LayerError(f'plan check "{name}" level must be "alive" or "ready"')
    if check.get("startup", "") not in ("", "enabled", "disabled"):
        raise LayerError(f'plan check "{name}" startup must be "enabled" or "disabled"')
    if check.get("threshold", 3) < 1:
        raise LayerError(f'plan check "{name}" threshold must be greater than zero')
    for field in ("period", "timeout"):
        if field in check and timeutil.parse_duration(check[field]) <= 0:
            raise LayerError(f'plan check "{name}" {field} must not be zero')


def command_argv(command: str, extra: Iterable[str] | None = None) -> list[str]:
    """Split a service command (no shell): "cmd -x [ --default args ]" -> argv."""
    words = shlex.split(command)
    if "[" in words:
        start = words.index("[")
        if words[-1] != "]" or words.count("[") != 1 or words.count("]") != 1:
            raise ValueError("cannot have any arguments after [ ... ] group")
        base, defaults = words[:start], words[start + 1 : -1]
        words = base + (list(extra) if extra is not None else defaults)
    elif "]" in words:
        raise ValueError("cannot have ] without [")
    if not words:
        raise ValueError("empty command")
    return words


def _edges(plan: Plan, names: set[str]) -> dict[str, set[str]]:
    """Predecessors of each service within `names`, from after/before."""
    preds: dict[str, set[str]] = {name: set() for name in names}
    for name in names:
        service = plan.services[name]
        preds[name].update(other for other in service.get("after", []) if other in names)
        for other in service.get("before", []):
            if other in names:
                preds[other].add(name)
    return preds


def _topological(preds: Mapping[str, set[str]]) -> list[str]:
    done: list[str] = []
    remaining = {name: set(before) for name, before in preds.items()}
    while remaining:
        ready = sorted(name for name, before in remaining.items() if not before)
        if not ready:
            raise LayerError(f"services in before/after loop: {', '.join(sorted(remaining))}")
        for name in ready:
            del remaining[name]
            for before in remaining.values():
                before.discard(name)
        done.extend(ready)
    return done


def _missing(plan: Plan, names: Iterable[str]) -> None:
    for name in names:
        if name not in plan.services:
            raise LayerError(f'service "{name}" does not exist')


def start_order(plan: Plan, names: Iterable[str]) -> tuple[list[str], dict[str, set[str]]]:
    """Services to start (with what they require) in order, and each one's predecessors."""
    names = list(names)
    _missing(plan, names)
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(plan.services[name].get("requires", []))
    preds = _edges(plan, wanted)
    return _topological(preds), preds


def stop_order(plan: Plan, names: Iterable[str]) -> tuple[list[str], dict[str, set[str]]]:
    """Services to stop (with those requiring them) in reverse start order, with predecessors."""
    names = list(names)
    _missing(plan, names)
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in wanted:
            continue
        wanted.add(name)
        pending.extend(
            other
            for other, service in plan.services.items()
            if name in service.get("requires", [])
        )
    starts = _edges(plan, wanted)
    reverse: dict[str, set[str]] = {name: set() for name in wanted}
    for name, before in starts.items():
        for other in before:
            reverse[other].add(name)
    return _topological(reverse), reverse
