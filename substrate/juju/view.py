"""Reading the local Juju model: status, units, databags, secrets, Pebble state, the hook log."""

from __future__ import annotations

from pathlib import Path

import ops
from ops import testing

from substrate.juju import lifecycle, status
from substrate.juju.errors import NotFoundError
from substrate.juju.records import ActionResult, ContainerRecord, Dispatch
from substrate.juju.scheduler import Scheduler
from substrate.juju.secrets import SecretRecord
from substrate.juju.world import World


class ModelView:
    """What tests (and `juju status`) read from a model."""

    _world: World
    _scheduler: Scheduler
    _actions: dict[str, ActionResult]

    @property
    def name(self) -> str:
        """The model's name: the Kubernetes namespace."""
        return self._world.name

    @property
    def uuid(self) -> str:
        """The model's UUID."""
        return self._world.uuid

    @property
    def root(self) -> Path:
        """Where the model keeps storage, pod filesystems and charm roots on the host."""
        return self._world.root

    @property
    def log(self) -> list[Dispatch]:
        """Every hook run so far, in order."""
        return self._world.log

    @property
    def failures(self) -> list[Dispatch]:
        """Every hook that failed (not actions), in order."""
        return self._scheduler.failures

    def relation_id(self, app1: str, app2: str | None = None) -> int:
        """The id of the live relation between two applications (or the peer relation `app:ep`)."""
        a, _, ea = app1.partition(":")
        b, _, eb = (app2 or app1).partition(":")
        for relation in self._world.relations.values():
            if relation.dying or a not in relation.sides or b not in relation.sides:
                continue
            matches = (not ea or relation.sides[a].name == ea) and (
                not eb or relation.sides[b].name == eb
            )
            if matches and (app2 is not None or relation.is_peer):
                return relation.id
        raise NotFoundError(f"no relation between {app1} and {app2 or app1}")

    def relation_data(self, relation_id: int, owner: str) -> dict[str, str]:
        """A copy of one databag of a relation: an application's (`app`) or a unit's (`app/N`)."""
        relation = self._world.relation(relation_id)
        bags = relation.unit_data if "/" in owner else relation.app_data
        if owner not in bags:
            raise NotFoundError(f"{owner} has no databag in relation {relation_id}")
        return dict(bags[owner])

    def _container(self, unit: str, container: str) -> ContainerRecord:
        record = self._world.unit(unit).containers.get(container)
        if record is None:
            raise NotFoundError(f"{unit} has no container {container!r}")
        return record

    def status(self) -> status.ModelStatus:
        """`juju status`: applications and units with workload status, leader and address."""
        return status.build(self._world)

    def units(self, app: str) -> list[str]:
        """The application's units, in number order (dying ones included until removed)."""
        return [u.name for u in self._world.app(app).sorted_units()]

    def leader(self, app: str) -> str | None:
        """The application's leader unit."""
        return self._world.app(app).leader

    def address(self, unit: str) -> str:
        """The unit's pod IP."""
        return self._world.unit(unit).address

    def storage_path(self, unit: str, storage: str) -> Path:
        """The host directory backing one of the unit's storage instances."""
        return self._world.unit(unit).storage[storage].path

    def container_root(self, unit: str, container: str) -> Path:
        """The host directory holding the container's filesystem (in-memory Pebble only)."""
        self._container(unit, container)
        return self._world.unit(unit).pod_root / container

    def plan(self, unit: str, container: str) -> ops.pebble.Plan:
        """The in-memory Pebble plan of a container: its layers combined."""
        record = self._container(unit, container)
        return testing.Container(container, layers=record.layers).plan

    def services(self, unit: str, container: str) -> dict[str, ops.pebble.ServiceStatus]:
        """The in-memory Pebble service statuses of a container."""
        return dict(self._container(unit, container).service_statuses)

    def secret(self, secret_id: str) -> SecretRecord:
        """A secret's record (owner, revisions, tracking, grants)."""
        try:
            return self._world.secrets.get(secret_id)
        except KeyError:
            raise NotFoundError(f"secret {secret_id!r} not found") from None

    def secrets(self, owner: str | None = None) -> list[SecretRecord]:
        """Every secret, or those owned by one application or unit."""
        return [
            s for s in self._world.secrets.secrets.values()
            if owner is None or owner in (s.owner_app if s.owner_unit is None else s.owner_unit,)
        ]  # fmt: skip

    def events(self, unit: str | None = None) -> list[str]:
        """The hooks run so far (Juju names), for one unit or all as `unit hook`."""
        if unit is not None:
            return [d.event for d in self._world.log if d.unit == unit]
        return [f"{d.unit} {d.event}" for d in self._world.log]

    def error(self, unit: str) -> BaseException | None:
        """The exception of the unit's failed hook, while it is in error."""
        failed = self._world.unit(unit).error
        return failed.error if failed else None

    def action_result(self, action_id: str) -> ActionResult:
        """The result of an action run earlier."""
        return self._actions[action_id]

    def pending(self) -> list[tuple[str, str]]:
        """Queued hooks, as (unit, hook kind)."""
        return [(u, h.kind) for u, h in lifecycle.hooks_pending(self._world)]
