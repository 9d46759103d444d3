"""`juju status` for the local model: applications, units, their statuses, leaders, addresses."""

from __future__ import annotations

import dataclasses

from substrate.juju.records import Application, StatusRecord, Unit
from substrate.juju.world import World

# Juju derives an application's status from its units' when the leader set none: worst first.
_SEVERITY = ("error", "blocked", "maintenance", "waiting", "active", "unknown")


@dataclasses.dataclass(frozen=True)
class UnitStatus:
    """One unit's line in `juju status`."""

    name: str
    workload_status: str
    message: str
    agent_status: str  # idle | executing | error | lost
    leader: bool
    address: str
    opened_ports: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AppStatus:
    """One application's line in `juju status`, with its units."""

    name: str
    charm: str
    scale: int
    status: str
    message: str
    trust: bool
    units: dict[str, UnitStatus]
    relations: dict[str, list[str]]  # endpoint -> related applications


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    """`juju status` of the whole model."""

    model: str
    apps: dict[str, AppStatus]

    def unit(self, name: str) -> UnitStatus:
        """One unit's status."""
        return self.apps[name.split("/", 1)[0]].units[name]

    @property
    def units(self) -> dict[str, UnitStatus]:
        """Every unit's status, by name."""
        return {n: u for app in self.apps.values() for n, u in app.units.items()}


def _unit_status(world: World, app: Application, unit: Unit) -> UnitStatus:
    if unit.error is not None:
        workload = StatusRecord("error", f'hook failed: "{unit.error.event}"')
        agent = "error"
    else:
        workload = unit.status
        agent = "lost" if not unit.alive else ("executing" if unit.queue else "idle")
    ports = tuple(
        sorted(f"{p.port}/{p.protocol}" if p.port else p.protocol for p in unit.opened_ports)
    )
    return UnitStatus(
        unit.name, workload.name, workload.message, agent, app.leader == unit.name,
        unit.address, ports,
    )  # fmt: skip


def _app_status(units: dict[str, UnitStatus], app: Application) -> StatusRecord:
    if app.status.name != "unknown":
        return app.status
    for name in _SEVERITY:
        for unit in units.values():
            if unit.workload_status == name:
                return StatusRecord(name, unit.message)
    return StatusRecord()


def build(world: World) -> ModelStatus:
    """The model's status now."""
    apps: dict[str, AppStatus] = {}
    for app in world.apps.values():
        units = {u.name: _unit_status(world, app, u) for u in app.sorted_units()}
        relations: dict[str, list[str]] = {}
        for relation in world.relations_of(app.name):
            relations.setdefault(relation.sides[app.name].name, []).append(
                relation.remote_app(app.name)
            )
        status = _app_status(units, app)
        apps[app.name] = AppStatus(
            app.name, app.metadata.name, len(app.live_units()), status.name, status.message,
            app.trust, units, relations,
        )  # fmt: skip
    return ModelStatus(world.name, apps)
