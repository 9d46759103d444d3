"""Builds the ops.testing State a unit's hook sees from the model, and the event to run."""

from __future__ import annotations

import datetime
from typing import Any, cast

import ops
from ops import testing

from substrate.juju.errors import NotFoundError
from substrate.juju.records import Application, Hook, RelationRecord, Unit
from substrate.juju.world import World, is_unit, unit_number

_SIMPLE = frozenset({"install", "start", "stop", "remove", "config-changed", "update-status",
                     "upgrade-charm", "leader-elected"})  # fmt: skip


def juju_databag(address: str) -> dict[str, str]:
    """The keys Juju puts in every unit's databag when it enters a relation."""
    return {
        "egress-subnets": f"{address}/32",
        "ingress-address": address,
        "private-address": address,
    }


def _relation(
    world: World, relation: RelationRecord, app: Application, unit: Unit
) -> testing.RelationBase:
    endpoint = relation.sides[app.name]
    seen = relation.views.get(unit.name, [])
    units = {unit_number(u): dict(relation.unit_data.get(u, {})) for u in seen}
    local_unit = dict(relation.unit_data.get(unit.name, {}))
    local_app = dict(relation.app_data[app.name])
    if relation.is_peer:
        return testing.PeerRelation(
            endpoint.name,
            endpoint.interface,
            id=relation.id,
            local_app_data=local_app,
            local_unit_data=local_unit,
            peers_data=units,
        )
    remote = relation.remote_app(app.name)
    return testing.Relation(
        endpoint.name,
        endpoint.interface,
        id=relation.id,
        remote_app_name=remote,
        local_app_data=local_app,
        local_unit_data=local_unit,
        remote_app_data=dict(relation.app_data[remote]),
        remote_units_data=units,
    )


def _real_container(name: str, client: ops.pebble.Client, hook: Hook) -> testing.Container:
    """A container backed by a real Pebble: can_connect is whether it answers."""
    try:
        client.get_system_info()
    except (ops.pebble.ConnectionError, ops.pebble.APIError, OSError):
        return testing.Container(name, can_connect=False)
    layers: dict[str, ops.pebble.Layer] = {}
    checks: list[testing.CheckInfo] = []
    notices: list[testing.Notice] = []
    if hook.container == name and hook.check is not None:
        # ops.testing insists that a check event's check is in the container's plan.
        plan = cast("ops.pebble.LayerDict", client.get_plan().to_dict())
        layers = {"plan": ops.pebble.Layer(plan)}
        checks = [_check_info(i) for i in client.get_checks(names=[hook.check])]
    if hook.container == name and hook.notice_key is not None:
        # Juju sees every user's notices (a workload's callback runs as its own user).
        found = client.get_notices(
            types=[ops.pebble.NoticeType.CUSTOM],
            keys=[hook.notice_key],
            users=ops.pebble.NoticesUsers.ALL,
        )
        notices = [_notice(n) for n in found[-1:]]
    return testing.Container(
        name, can_connect=True, layers=layers, check_infos=frozenset(checks), notices=notices
    )


def _check_info(info: ops.pebble.CheckInfo) -> testing.CheckInfo:
    return testing.CheckInfo(
        info.name,
        level=info.level,
        startup=info.startup,
        status=ops.pebble.CheckStatus(info.status),
        successes=info.successes,
        failures=info.failures,
        threshold=info.threshold,
        change_id=info.change_id,
    )


def _notice(notice: ops.pebble.Notice) -> testing.Notice:
    return testing.Notice(
        notice.key,
        id=notice.id,
        user_id=notice.user_id,
        type=notice.type,
        first_occurred=notice.first_occurred,
        last_occurred=notice.last_occurred,
        last_repeated=notice.last_repeated,
        occurrences=notice.occurrences,
        last_data=dict(notice.last_data),
    )


def _memory_container(app: Application, unit: Unit, name: str) -> testing.Container:
    """A container served by ops.testing's in-memory Pebble, with the unit's storage mounted."""
    record = unit.containers[name]
    mounts = {
        f"{m.storage}-{i}": testing.Mount(location=m.location, source=unit.storage[m.storage].path)
        for i, m in enumerate(app.metadata.containers[name])
        if m.storage in unit.storage
    }
    return testing.Container(
        name,
        can_connect=record.up,
        layers=record.layers,
        service_statuses=record.service_statuses,
        check_infos=record.check_infos,
        notices=record.notices,
        mounts=mounts,
        execs=app.execs.get(name, frozenset()),
    )


def _networks(app: Application, unit: Unit) -> list[testing.Network]:
    bindings = [*app.metadata.endpoints, *app.metadata.extra_bindings]
    address = testing.BindAddress([testing.Address(unit.address, cidr=f"{unit.address}/32")])
    return [
        testing.Network(
            name,
            [address],
            ingress_addresses=[unit.address],
            egress_subnets=[f"{unit.address}/32"],
        )
        for name in bindings
    ]


def build(
    world: World,
    app: Application,
    unit: Unit,
    clients: dict[str, ops.pebble.Client | None],
    hook: Hook,
) -> testing.State:
    """The unit's view of the model for one hook."""
    relations = [
        _relation(world, r, app, unit)
        for r in world.relations_of(app.name)
        if unit.name in r.created
    ]
    containers = [
        _real_container(name, client, hook)
        if client is not None
        else _memory_container(app, unit, name)
        for name, client in clients.items()
    ]
    return testing.State(
        config=app.effective_config(),
        relations=relations,
        networks=_networks(app, unit),
        containers=containers,
        storages=[testing.Storage(s.name, index=s.index) for s in unit.storage.values()],
        opened_ports=unit.opened_ports,
        leader=app.leader == unit.name,
        model=testing.Model(world.name, uuid=world.uuid, type="kubernetes"),
        secrets=world.secrets.view(unit.name, app.name, world.relations),
        # The application's scale: a unit whose agent died (its node is lost) still counts,
        # as on Kubernetes; only units being removed do not.
        planned_units=len([u for u in app.sorted_units() if not u.dying]),
        deferred=unit.deferred,
        stored_states=unit.stored_states,
        app_status=app.status.to_ops(),
        unit_status=unit.status.to_ops(),
        workload_version=unit.workload_version,
    )


def _relation_event(
    ctx: testing.Context[Any], state: testing.State, hook: Hook
) -> tuple[Any, dict[str, str | None]]:
    assert hook.relation_id is not None
    relation = state.get_relation(hook.relation_id)
    on, env = ctx.on, dict[str, str | None]()
    if hook.kind == "relation-created":
        return on.relation_created(relation), env
    if hook.kind == "relation-broken":
        return on.relation_broken(relation), env
    if hook.remote is None or not is_unit(hook.remote):
        # App-level change: ops.testing always names a remote unit; Juju sets it empty.
        env["JUJU_REMOTE_UNIT"] = ""
        return on.relation_changed(relation, remote_unit=0), env
    number = unit_number(hook.remote)
    if hook.kind == "relation-joined":
        return on.relation_joined(relation, remote_unit=number), env
    if hook.kind == "relation-changed":
        return on.relation_changed(relation, remote_unit=number), env
    env["JUJU_DEPARTING_UNIT"] = hook.departing
    return on.relation_departed(relation, remote_unit=number), env


def _workload_event(ctx: testing.Context[Any], state: testing.State, hook: Hook) -> Any:
    assert hook.container is not None
    container = state.get_container(hook.container)
    if hook.kind == "pebble-ready":
        return ctx.on.pebble_ready(container)
    if hook.kind == "pebble-custom-notice":
        notices = [n for n in container.notices if n.key == hook.notice_key]
        if not notices:
            raise NotFoundError(f"Pebble in {container.name!r} has no notice {hook.notice_key!r}")
        return ctx.on.pebble_custom_notice(container, notices[-1])
    infos = [i for i in container.check_infos if i.name == hook.check]
    if not infos:
        raise NotFoundError(f"Pebble in {container.name!r} has no check {hook.check!r}")
    info = infos[0]
    if hook.kind == "pebble-check-failed":
        return ctx.on.pebble_check_failed(container, info)
    return ctx.on.pebble_check_recovered(container, info)


def _storage_event(ctx: testing.Context[Any], state: testing.State, hook: Hook) -> Any:
    storage = next(s for s in state.storages if s.name == hook.storage)
    if hook.kind == "storage-attached":
        return ctx.on.storage_attached(storage)
    return ctx.on.storage_detaching(storage)


def _secret_event(ctx: testing.Context[Any], state: testing.State, hook: Hook) -> Any:
    secret = state.get_secret(id=hook.secret_id)
    if hook.kind == "secret-changed":
        return ctx.on.secret_changed(secret)
    return ctx.on.secret_remove(secret, revision=hook.revision or 0)


def event(
    ctx: testing.Context[Any], state: testing.State, hook: Hook
) -> tuple[Any, dict[str, str | None]]:
    """The ops.testing event for the hook, and hook environment variables to override."""
    if hook.relation_id is not None:
        return _relation_event(ctx, state, hook)
    if hook.kind in _SIMPLE:
        built = getattr(ctx.on, hook.kind.replace("-", "_"))()
    elif hook.storage is not None:
        built = _storage_event(ctx, state, hook)
    elif hook.container is not None:
        built = _workload_event(ctx, state, hook)
    elif hook.secret_id is not None:
        built = _secret_event(ctx, state, hook)
    elif hook.action is not None:
        built = ctx.on.action(hook.action.name, params=dict(hook.action.params), id=hook.action.id)
    else:
        raise ValueError(f"cannot build an event for hook {hook.kind!r}")
    return built, {}


def now() -> datetime.datetime:
    """The time notices are stamped with."""
    return datetime.datetime.now(datetime.timezone.utc)
