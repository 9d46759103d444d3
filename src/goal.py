"""Pure: merges every component's contribution into this unit's goal and the cluster's goal.

A component never writes a shared output itself (patroni.yml, the Pebble plan, pg_hba, the
dynamic configuration); it says what it needs, here, and one applier writes the merged result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import ops

from workload import patroni

ServiceDict = ops.pebble.ServiceDict
CheckDict = ops.pebble.CheckDict


@dataclasses.dataclass(frozen=True)
class File:
    """A file the workload user owns in the container."""

    content: str
    mode: int = 0o600


@dataclasses.dataclass(frozen=True)
class Contribution:
    """One concern's part of the goal; every field is optional."""

    # Cluster-wide: PostgreSQL parameters and other Patroni settings the leader PATCHes.
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict[str, str])
    dynamic: Mapping[str, Any] = dataclasses.field(default_factory=dict[str, Any])
    # This member: a patroni.yml subtree, pg_hba rules (in order), Pebble services and checks,
    # files and directories.
    patroni: Mapping[str, Any] = dataclasses.field(default_factory=dict[str, Any])
    hba: Sequence[patroni.HbaRule] = ()
    # Every network rule (anyone's) admits only TLS connections (`hostssl`).
    hba_ssl_only: bool = False
    services: Mapping[str, ServiceDict] = dataclasses.field(default_factory=dict[str, ServiceDict])
    checks: Mapping[str, CheckDict] = dataclasses.field(default_factory=dict[str, CheckDict])
    files: Mapping[str, File] = dataclasses.field(default_factory=dict[str, File])
    # Files that must not exist: what a concern wrote while it was configured (keys, passwords).
    absent: Sequence[str] = ()
    dirs: Sequence[str] = ()
    # Keep the workload's plan as it is (and PostgreSQL stopped): a restore holds the unit.
    hold: bool = False
    # Start what the plan says even when it did not change (a hold was just released).
    replan: bool = False
    # What this unit tells the leader it has applied (its peer databag), key -> value.
    acks: Mapping[str, str] = dataclasses.field(default_factory=dict[str, str])


@dataclasses.dataclass(frozen=True)
class UnitGoal:
    """What this unit's container must hold."""

    files: Mapping[str, File]
    absent: tuple[str, ...]
    dirs: tuple[str, ...]
    layer: ops.pebble.LayerDict
    hold: bool
    replan: bool
    acks: Mapping[str, str]

    @property
    def patroni_yml(self) -> str:
        """patroni.yml's text."""
        return self.files[patroni.CONF_PATH].content


@dataclasses.dataclass(frozen=True)
class ClusterGoal:
    """Patroni's dynamic (DCS) configuration, which the leader PATCHes."""

    dynamic: Mapping[str, Any]


class ConflictError(ValueError):
    """Raised when two contributions set one value differently (a bug, not bad input)."""


def merge(base: Mapping[str, Any], extra: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge two trees; a leaf both set must be equal."""
    out = dict(base)
    for key, value in extra.items():
        here = f"{path}.{key}" if path else key
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = merge(
                cast("Mapping[str, Any]", current), cast("Mapping[str, Any]", value), here
            )
        elif key in out and current != value:
            raise ConflictError(f"two components set {here}: {current!r} and {value!r}")
        else:
            out[key] = value
    return out


def _merged(pieces: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for piece in pieces:
        out = merge(out, piece)
    return out


def cluster_goal(contributions: Sequence[Contribution]) -> ClusterGoal:
    """The dynamic configuration: every component's settings and parameters."""
    dynamic = _merged(c.dynamic for c in contributions)
    parameters = _merged(c.parameters for c in contributions)
    return ClusterGoal(merge(dynamic, {"postgresql": {"parameters": parameters}}))


def unit_goal(contributions: Sequence[Contribution], cluster: ClusterGoal) -> UnitGoal:
    """This unit's files (patroni.yml included), directories and Pebble layer."""
    config = _merged(c.patroni for c in contributions)
    hba = [rule for c in contributions for rule in c.hba]
    if any(c.hba_ssl_only for c in contributions):
        hba = [
            dataclasses.replace(rule, connection_type="hostssl")
            if rule.connection_type == "host"
            else rule
            for rule in hba
        ]
    config = merge(config, {"bootstrap": {"dcs": cluster.dynamic}})
    config = merge(config, {"postgresql": {"pg_hba": patroni.render_hba(hba)}})
    files: dict[str, File] = {}
    for c in contributions:
        for path, file in c.files.items():
            if files.setdefault(path, file) != file:
                raise ConflictError(f"two components write {path}")
    files[patroni.CONF_PATH] = File(patroni.dump(config))
    absent = tuple(dict.fromkeys(p for c in contributions for p in c.absent))
    if both := set(absent) & set(files):
        raise ConflictError(f"{sorted(both)} both written and removed")
    layer: ops.pebble.LayerDict = {
        "summary": "postgresql-k8s workload",
        "description": "Patroni-managed PostgreSQL and the services around it",
        "services": _merged(c.services for c in contributions),  # pyright: ignore[reportAssignmentType]
        "checks": _merged(c.checks for c in contributions),  # pyright: ignore[reportAssignmentType]
    }
    return UnitGoal(
        files=files,
        absent=absent,
        dirs=tuple(dict.fromkeys(d for c in contributions for d in c.dirs)),
        layer=layer,
        hold=any(c.hold for c in contributions),
        replan=any(c.replan for c in contributions),
        acks=_merged(c.acks for c in contributions),
    )
