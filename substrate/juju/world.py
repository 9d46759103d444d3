"""The model's state: applications, units, relations and secrets, and each unit's hook queue."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from substrate.juju.errors import NotFoundError
from substrate.juju.kube import FakeKube
from substrate.juju.records import Application, Dispatch, Hook, RelationRecord, Unit
from substrate.juju.secrets import SecretStore


def unit_number(name: str) -> int:
    """The number of `app/N`."""
    return int(name.rsplit("/", 1)[1])


def is_unit(name: str) -> bool:
    """Whether a name is a unit's (`app/N`) rather than an application's."""
    return "/" in name


@dataclasses.dataclass
class World:
    """Everything the model knows; hooks read it through their State and change it on commit."""

    name: str
    uuid: str
    root: Path
    kube: FakeKube
    apps: dict[str, Application] = dataclasses.field(default_factory=dict[str, Application])
    relations: dict[int, RelationRecord] = dataclasses.field(
        default_factory=dict[int, RelationRecord]
    )
    secrets: SecretStore = dataclasses.field(default_factory=SecretStore)
    log: list[Dispatch] = dataclasses.field(default_factory=list[Dispatch])
    running: dict[str, Hook] = dataclasses.field(
        default_factory=dict[str, Hook]
    )  # unit -> hook in progress
    next_relation_id: int = 0
    next_seq: int = 0
    next_action_id: int = 0
    storage_counters: dict[str, int] = dataclasses.field(default_factory=dict[str, int])

    # -- lookups ----------------------------------------------------------------------------

    def app(self, name: str) -> Application:
        """An application by name; NotFoundError if there is none."""
        try:
            return self.apps[name]
        except KeyError:
            raise NotFoundError(f"application {name!r} not found") from None

    def unit(self, name: str) -> Unit:
        """A unit by name; NotFoundError if there is none."""
        app = self.apps.get(name.split("/", 1)[0])
        if app is None or name not in app.units:
            raise NotFoundError(f"unit {name!r} not found")
        return app.units[name]

    def units(self) -> Iterator[Unit]:
        """Every unit of every application, in deploy then unit-number order."""
        for app in self.apps.values():
            yield from app.sorted_units()

    def live_units(self) -> dict[str, str]:
        """Units whose agent runs hooks (not dead), mapped to their application."""
        return {u.name: u.app for u in self.units() if u.alive}

    def relation(self, relation_id: int) -> RelationRecord:
        """A relation by id; NotFoundError if there is none."""
        try:
            return self.relations[relation_id]
        except KeyError:
            raise NotFoundError(f"relation {relation_id} not found") from None

    def relations_of(self, app: str) -> list[RelationRecord]:
        """The relations an application takes part in."""
        return [r for r in self.relations.values() if app in r.sides]

    def relation_units(self, relation: RelationRecord) -> list[Unit]:
        """The units of every application on the relation."""
        return [u for app in relation.sides for u in self.apps[app].sorted_units()]

    # -- queue ------------------------------------------------------------------------------

    def enqueue(self, unit: Unit, kind: str, **fields: Any) -> Hook | None:
        """Queue a hook on a unit, unless the same hook is already waiting there."""
        hook = Hook(seq=self.next_seq, kind=kind, **fields)
        running = self.running.get(unit.name)
        if kind != "action" and any(
            h.key() == hook.key() and h is not running for h in unit.queue
        ):
            return None
        self.next_seq += 1
        unit.queue.append(hook)
        return hook

    def purge(self, unit: Unit, keep: Callable[[Hook], bool]) -> None:
        """Drop the queued hooks of a unit for which `keep(hook)` is false (never the running one)."""
        running = self.running.get(unit.name)
        unit.queue = type(unit.queue)(h for h in unit.queue if h is running or keep(h))
