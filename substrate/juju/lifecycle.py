"""What Juju does to the model, and which hooks it queues, for each command or substrate event."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping

import ops
from ops import testing

from substrate.juju import podfs
from substrate.juju.errors import NotFoundError
from substrate.juju.records import (
    Application,
    ContainerRecord,
    Hook,
    RelationRecord,
    StorageRecord,
    Unit,
)
from substrate.juju.state_builder import juju_databag, now
from substrate.juju.world import World

AddressFactory = Callable[[str], str]
_RELATION_KINDS = ("relation-created", "relation-joined", "relation-changed")


def elect(world: World, app: Application) -> Unit | None:
    """Give a leaderless application the lowest live unit as leader, with leader-elected."""
    if app.leader is not None:
        return None
    candidates = app.live_units()
    if not candidates:
        return None
    leader = candidates[0]
    app.leader = leader.name
    world.enqueue(leader, "leader-elected")
    return leader


def _new_unit(world: World, app: Application, address_factory: AddressFactory) -> Unit:
    if app.metadata.containers:
        # A Kubernetes (sidecar) unit is its StatefulSet pod: its number is the pod's ordinal,
        # the lowest one free, since scaling down removes the highest.
        used = {u.number for u in app.units.values()}
        number = next(n for n in range(len(used) + 1) if n not in used)
    else:
        number = app.next_number
        app.next_number += 1
    name = f"{app.name}/{number}"
    tag = name.replace("/", "-")
    storage: dict[str, StorageRecord] = {}
    for store in app.metadata.storage:
        index = world.storage_counters.get(store, 0)
        world.storage_counters[store] = index + 1
        path = world.root / "storage" / tag / f"{store}-{index}"
        path.mkdir(parents=True, exist_ok=True)
        storage[store] = StorageRecord(store, index, path)
    unit = Unit(
        name=name,
        app=app.name,
        number=number,
        address=address_factory(name),
        storage=storage,
        containers={c: ContainerRecord(c) for c in app.metadata.containers},
        pod_root=world.root / "pods" / tag,
    )
    for container in unit.containers:
        podfs.seed(unit.pod_root / container, app.images.get(container))
    world.kube.add_pod(world.name, tag, app.name, unit.address)
    app.units[name] = unit
    return unit


def _join(world: World, relation: RelationRecord, unit: Unit, other: Unit) -> None:
    """Queue unit's relation-joined then relation-changed for the other unit."""
    world.enqueue(unit, "relation-joined", relation_id=relation.id, remote=other.name)
    world.enqueue(unit, "relation-changed", relation_id=relation.id, remote=other.name)


def _joins(world: World, relation: RelationRecord, new: list[Unit]) -> None:
    """Every pair of units across the relation (or among peers) that has not met yet meets."""
    units = [u for u in world.relation_units(relation) if not u.dying]
    for unit in new:
        for other in units:
            if other is unit or (not relation.is_peer and other.app == unit.app):
                continue
            if other in new and other.number < unit.number and other.app == unit.app:
                continue  # this pair was handled from the other side
            _join(world, relation, unit, other)
            _join(world, relation, other, unit)


def add_units(
    world: World, app: Application, count: int, address_factory: AddressFactory, auto_pebble: bool
) -> list[Unit]:
    """New units: setup hooks as Juju runs them on Kubernetes, then they join their relations."""
    units = [_new_unit(world, app, address_factory) for _ in range(count)]
    needs_leader = app.leader is None
    if needs_leader:
        app.leader = units[0].name
    relations = [r for r in world.relations_of(app.name) if not r.dying]
    for unit in units:
        for relation in relations:
            relation.unit_data[unit.name] = juju_databag(unit.address)
        for store in unit.storage:
            world.enqueue(unit, "storage-attached", storage=store)
        world.enqueue(unit, "install")
        for relation in relations:
            world.enqueue(unit, "relation-created", relation_id=relation.id)
        if app.leader == unit.name and needs_leader:
            world.enqueue(unit, "leader-elected")
        world.enqueue(unit, "config-changed")
        world.enqueue(unit, "start")
        if auto_pebble:
            for container in unit.containers:
                world.enqueue(unit, "pebble-ready", container=container)
    for relation in relations:
        _joins(world, relation, units)
    return units


def integrate(world: World, relation: RelationRecord) -> None:
    """A new relation: created on every unit of both sides, then every pair joins."""
    world.relations[relation.id] = relation
    units = [u for u in world.relation_units(relation) if not u.dying]
    for unit in units:
        relation.unit_data[unit.name] = juju_databag(unit.address)
        world.enqueue(unit, "relation-created", relation_id=relation.id)
    for unit in units:
        for other in units:
            if other.app != unit.app:
                _join(world, relation, unit, other)


def _leave(world: World, relation: RelationRecord, unit: Unit, departing_is_remote: bool) -> None:
    """Queue a unit's departed hooks for every unit it has seen, then broken."""
    running = world.running.get(unit.name)
    created_pending = any(
        h.kind == "relation-created" and h.relation_id == relation.id and h is not running
        for h in unit.queue
    )
    # What has not happened yet never will: no created, joined or changed after departing.
    world.purge(unit, lambda h: not (h.relation_id == relation.id and h.kind in _RELATION_KINDS))
    if created_pending and unit.name not in relation.created:
        return  # the unit never saw the relation
    for remote in list(relation.views.get(unit.name, [])):
        departing = remote if departing_is_remote else unit.name
        world.enqueue(
            unit, "relation-departed", relation_id=relation.id, remote=remote, departing=departing
        )
    world.enqueue(unit, "relation-broken", relation_id=relation.id)


def remove_relation(world: World, relation: RelationRecord) -> None:
    """Every unit on both sides sees the others depart, then the relation break."""
    relation.dying = True
    world.secrets.revoke_relation(relation.id)
    for unit in world.relation_units(relation):
        if unit.alive:
            _leave(world, relation, unit, departing_is_remote=True)
        else:  # no agent to run hooks: it will find the relation gone
            world.purge(unit, lambda h: h.relation_id != relation.id)
            relation.created.discard(unit.name)
    if not relation.created and not any(
        h.relation_id == relation.id for u in world.relation_units(relation) for h in u.queue
    ):
        del world.relations[relation.id]


def _depart(world: World, relation: RelationRecord, unit: Unit) -> None:
    """The other units of a relation see the unit depart (if they ever saw it join)."""

    def about_unit(h: Hook) -> bool:
        return h.relation_id == relation.id and h.remote == unit.name and h.kind in _RELATION_KINDS

    for other in world.relation_units(relation):
        if other is unit:
            continue
        world.purge(other, lambda h: not about_unit(h))  # it will never have joined
        if unit.name in relation.views.get(other.name, ()):
            world.enqueue(
                other, "relation-departed", relation_id=relation.id, remote=unit.name,
                departing=unit.name,
            )  # fmt: skip


def remove_unit(world: World, unit: Unit, destroy_storage: bool) -> None:
    """Scale down: the others see the unit depart; it leaves its relations, then stops and goes."""
    unit.dying = True
    for relation in world.relations_of(unit.app):
        if relation.dying:
            continue  # already being torn down: its departed and broken hooks are queued
        _depart(world, relation, unit)
        if unit.alive:
            _leave(world, relation, unit, departing_is_remote=False)
    if not unit.alive:  # no agent to run its hooks: it just goes
        finish_removal(world, unit, destroy_storage)
        return
    for store in unit.storage:
        world.enqueue(unit, "storage-detaching", storage=store)
    world.enqueue(unit, "stop")
    world.enqueue(unit, "remove", after=lambda: finish_removal(world, unit, destroy_storage))


def finish_removal(world: World, unit: Unit, destroy_storage: bool) -> None:
    """The unit's pod is gone: forget it everywhere and elect a new leader if it led."""
    app = world.apps[unit.app]
    app.units.pop(unit.name, None)
    for relation in world.relations_of(app.name):
        relation.unit_data.pop(unit.name, None)
        relation.views.pop(unit.name, None)
        relation.created.discard(unit.name)
        for seen in relation.views.values():
            if unit.name in seen:
                seen.remove(unit.name)
    world.secrets.forget_unit(unit.name)
    world.kube.remove_pod(world.name, unit.tag)
    shutil.rmtree(unit.pod_root, ignore_errors=True)
    if destroy_storage:
        for store in unit.storage.values():
            shutil.rmtree(store.path, ignore_errors=True)
    if app.leader == unit.name:
        app.leader = None
        elect(world, app)


def set_alive(world: World, unit: Unit, alive: bool) -> None:
    """The unit's agent died (its hooks wait, leadership moves) or came back."""
    app = world.apps[unit.app]
    unit.alive = alive
    if not alive and app.leader == unit.name:
        app.leader = None
    elect(world, app)


def restart_pod(world: World, unit: Unit, address: str | None, auto_pebble: bool) -> None:
    """The pod is recreated: stop on the old one; a fresh filesystem, same storage, on the new."""
    app = world.apps[unit.app]

    def pod_replaced() -> None:
        for name, container in unit.containers.items():
            container.reset()
            podfs.seed(unit.pod_root / name, app.images.get(name))
        # ops keeps StoredState and deferred events in the charm container's local state,
        # which does not outlive the pod.
        unit.stored_states, unit.deferred = frozenset(), []
        if address is not None and address != unit.address:
            readdress(world, unit, address)

    world.enqueue(unit, "stop", after=pod_replaced)
    world.enqueue(unit, "upgrade-charm")
    world.enqueue(unit, "config-changed")
    world.enqueue(unit, "start")
    if auto_pebble:
        for container in unit.containers:
            world.enqueue(unit, "pebble-ready", container=container)


def readdress(world: World, unit: Unit, address: str) -> None:
    """The unit's pod has a new IP: Juju rewrites its ingress address in every relation."""
    unit.address = address
    world.kube.add_pod(world.name, unit.tag, unit.app, address)
    for relation in world.relations_of(unit.app):
        if unit.name not in relation.unit_data:
            continue
        relation.unit_data[unit.name].update(juju_databag(address))
        for other in world.relation_units(relation):
            if other is not unit and unit.name in relation.views.get(other.name, ()):
                world.enqueue(other, "relation-changed", relation_id=relation.id, remote=unit.name)


def hooks_pending(world: World) -> list[tuple[str, Hook]]:
    """Every queued hook, by unit."""
    return [(u.name, h) for u in world.units() for h in u.queue]


def record_notice(record: ContainerRecord, key: str, data: Mapping[str, str] | None) -> None:
    """Record a custom notice in an in-memory container (a repeat bumps its occurrences)."""
    previous = [n for n in record.notices if n.key == key]
    occurrences = previous[-1].occurrences + 1 if previous else 1
    first = previous[-1].first_occurred if previous else now()
    notice = testing.Notice(
        key,
        id=previous[-1].id if previous else str(len(record.notices) + 1),
        first_occurred=first,
        last_occurred=now(),
        last_repeated=now(),
        occurrences=occurrences,
        last_data=dict(data or {}),
    )
    record.notices = [n for n in record.notices if n.key != key] + [notice]


def set_check(record: ContainerRecord, check: str, status_: ops.pebble.CheckStatus) -> None:
    """Mark an in-memory container's check up or down (it must be in the plan)."""
    infos = {i.name: i for i in record.check_infos}
    if check not in infos:
        raise NotFoundError(f"container {record.name!r} has no check {check!r} in its plan")
    info = infos[check]
    down = status_ == ops.pebble.CheckStatus.DOWN
    infos[check] = testing.CheckInfo(
        check,
        level=info.level,
        startup=info.startup,
        status=status_,
        successes=info.successes if down else (info.successes or 0) + 1,
        failures=info.threshold if down else 0,
        threshold=info.threshold,
        change_id=info.change_id,
    )
    record.check_infos = frozenset(infos.values())
