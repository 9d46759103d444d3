"""The model's records: applications, units, relations, queued hooks and what tests read back."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import ops
from ops import testing

from substrate.juju.metadata import CharmMetadata, Endpoint


@dataclasses.dataclass(frozen=True)
class StatusRecord:
    """A workload status as `juju status` shows it."""

    name: str = "unknown"
    message: str = ""

    @classmethod
    def from_state(cls, status: Any) -> StatusRecord:
        """From an ops.testing status object."""
        return cls(str(status.name), str(status.message))

    def to_ops(self) -> ops.StatusBase:
        """The ops status to put into a State."""
        return ops.StatusBase.from_name(self.name, self.message)


@dataclasses.dataclass
class ContainerRecord:
    """A workload container of a unit: Pebble's in-memory state when no real Pebble is used."""

    name: str
    up: bool = False  # whether the in-memory Pebble answers
    layers: dict[str, ops.pebble.Layer] = dataclasses.field(
        default_factory=dict[str, ops.pebble.Layer]
    )
    service_statuses: dict[str, ops.pebble.ServiceStatus] = dataclasses.field(
        default_factory=dict[str, ops.pebble.ServiceStatus]
    )
    check_infos: frozenset[testing.CheckInfo] = frozenset()
    notices: list[testing.Notice] = dataclasses.field(default_factory=list[testing.Notice])

    def reset(self) -> None:
        """Forget everything: the container was recreated with its pod."""
        self.up = False
        self.layers, self.service_statuses = {}, {}
        self.check_infos, self.notices = frozenset(), []


@dataclasses.dataclass(frozen=True)
class StorageRecord:
    """One storage instance attached to a unit (`name/index`), backed by a host directory."""

    name: str
    index: int
    path: Path


@dataclasses.dataclass
class Hook:
    """A hook waiting in a unit's queue."""

    seq: int
    kind: str  # install, relation-joined, pebble-ready, action, ...
    relation_id: int | None = None
    remote: str | None = None  # remote unit name, or app name for an app-level relation-changed
    departing: str | None = None
    storage: str | None = None
    container: str | None = None
    secret_id: str | None = None
    revision: int | None = None
    notice_key: str | None = None
    check: str | None = None
    action: ActionRequest | None = None
    after: Callable[[], None] | None = None  # model changes once the hook succeeded

    def key(self) -> tuple[Any, ...]:
        """What makes two queued hooks the same (Juju runs a pending change only once)."""
        return (self.kind, self.relation_id, self.remote, self.departing, self.storage,
                self.container, self.secret_id, self.revision, self.notice_key, self.check)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ActionRequest:
    """An action queued on a unit, its params already validated and defaulted."""

    id: str
    name: str
    params: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ActionResult:
    """What `juju run` reports for an action."""

    id: str
    status: Literal["completed", "failed"]
    results: dict[str, Any]
    message: str
    logs: list[str]
    exception: BaseException | None = None


@dataclasses.dataclass(frozen=True)
class Dispatch:
    """One hook the model ran: which unit, which Juju hook, and how it went."""

    unit: str
    event: str  # Juju's hook name, e.g. `db-relation-joined`, `workload-pebble-ready`
    remote: str | None = None
    relation_id: int | None = None
    ok: bool = True
    error: BaseException | None = None


@dataclasses.dataclass
class Unit:
    """A unit: its pod's address, storage, containers, queue and what its hooks left behind."""

    name: str
    app: str
    number: int
    address: str
    storage: dict[str, StorageRecord]
    containers: dict[str, ContainerRecord]
    pod_root: Path
    alive: bool = True
    dying: bool = False
    status: StatusRecord = dataclasses.field(default_factory=StatusRecord)
    queue: collections.deque[Hook] = dataclasses.field(default_factory=collections.deque[Hook])
    error: Dispatch | None = None  # the failed hook at the head of the queue
    opened_ports: frozenset[testing.Port] = frozenset()
    stored_states: frozenset[testing.StoredState] = frozenset()
    deferred: list[testing.DeferredEvent] = dataclasses.field(
        default_factory=list[testing.DeferredEvent]
    )
    workload_version: str = ""

    @property
    def tag(self) -> str:
        """`app-N`: the unit's pod name."""
        return self.name.replace("/", "-")


@dataclasses.dataclass
class Application:
    """A deployed application."""

    name: str
    charm: type[ops.CharmBase]
    charm_root: Path
    metadata: CharmMetadata
    virtual_root: Path
    trust: bool
    config: dict[str, Any]  # what the user set; defaults come from the metadata
    images: dict[str, Path]
    execs: dict[str, frozenset[testing.Exec]]
    units: dict[str, Unit] = dataclasses.field(default_factory=dict[str, Unit])
    next_number: int = 0
    leader: str | None = None
    status: StatusRecord = dataclasses.field(default_factory=StatusRecord)

    def effective_config(self) -> dict[str, Any]:
        """What config-get returns: defaults overlaid with what was set."""
        return {**self.metadata.defaults(), **self.config}

    def live_units(self) -> list[Unit]:
        """Units that are neither dying nor dead, in unit-number order."""
        return [u for u in self.sorted_units() if u.alive and not u.dying]

    def sorted_units(self) -> list[Unit]:
        """All units, in unit-number order."""
        return sorted(self.units.values(), key=lambda u: u.number)


@dataclasses.dataclass
class RelationRecord:
    """A relation: its databags and, per unit, which remote units that unit has seen join."""

    id: int
    interface: str
    sides: dict[str, Endpoint]  # app name -> endpoint (one entry for a peer relation)
    app_data: dict[str, dict[str, str]]
    unit_data: dict[str, dict[str, str]] = dataclasses.field(
        default_factory=dict[str, dict[str, str]]
    )
    views: dict[str, list[str]] = dataclasses.field(default_factory=dict[str, list[str]])
    created: set[str] = dataclasses.field(
        default_factory=set[str]
    )  # units that ran relation-created
    dying: bool = False

    @property
    def is_peer(self) -> bool:
        """Whether this is a peer relation (one application)."""
        return len(self.sides) == 1

    def remote_app(self, app: str) -> str:
        """The application on the other side (the app itself for a peer relation)."""
        others = [a for a in self.sides if a != app]
        return others[0] if others else app
