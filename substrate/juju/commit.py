"""Records a successful hook's output State in the model and queues the hooks it causes."""

from __future__ import annotations

from ops import testing

from substrate.juju.errors import ModelInvariantError
from substrate.juju.records import Application, RelationRecord, StatusRecord, Unit
from substrate.juju.seams import HookSeams
from substrate.juju.world import World


class HookCommit:
    """What one unit's hook changed: statuses, ports, Pebble state, databags and secrets."""

    def __init__(self, world: World, app: Application, unit: Unit, seams: HookSeams):
        self.world, self.app, self.unit, self.seams = world, app, unit, seams

    def apply(self, before: testing.State, out: testing.State) -> None:
        """Diff the output State against the input one and record the differences."""
        unit = self.unit
        unit.status = StatusRecord.from_state(out.unit_status)
        if self.app.leader == unit.name:  # collect-app-status runs on the leader only
            self.app.status = StatusRecord.from_state(out.app_status)
        unit.opened_ports = frozenset(out.opened_ports)
        unit.stored_states = frozenset(out.stored_states)
        unit.deferred = list(out.deferred)
        unit.workload_version = out.workload_version
        self._containers(out)
        for after in out.relations:
            relation = self.world.relations.get(after.id)
            if relation is not None and not relation.dying:
                self._relation(relation, before.get_relation(after.id), after)
        self._secrets(before, out)

    def _containers(self, out: testing.State) -> None:
        """Keep the in-memory Pebble's plan, services, checks and notices for the next hook."""
        for container in out.containers:
            record = self.unit.containers.get(container.name)
            if record is None or self.seams.pebble_clients.get(container.name) is not None:
                continue
            record.layers = dict(container.layers)
            record.service_statuses = dict(container.service_statuses)
            record.check_infos = frozenset(container.check_infos)
            record.notices = list(container.notices)

    def _relation(
        self, relation: RelationRecord, before: testing.RelationBase, after: testing.RelationBase
    ) -> None:
        """Databag writes, and relation-changed for every unit that sees the writer."""
        world, app, unit = self.world, self.app, self.unit
        if dict(after.local_unit_data) != dict(before.local_unit_data):
            relation.unit_data[unit.name] = dict(after.local_unit_data)
            for other in world.relation_units(relation):
                if other is not unit and unit.name in relation.views.get(other.name, ()):
                    world.enqueue(
                        other, "relation-changed", relation_id=relation.id, remote=unit.name
                    )
        if dict(after.local_app_data) != dict(before.local_app_data):
            if app.leader != unit.name:
                raise ModelInvariantError(
                    f"{unit.name} is not the leader but wrote {app.name}'s data"
                )
            relation.app_data[app.name] = dict(after.local_app_data)
            for other in world.apps[relation.remote_app(app.name)].sorted_units():
                if other is not unit and other.name in relation.created:
                    world.enqueue(
                        other, "relation-changed", relation_id=relation.id, remote=app.name
                    )

    def _secrets(self, before: testing.State, out: testing.State) -> None:
        """Secret changes, then secret-changed for consumers and secret-remove for owners."""
        world, store = self.world, self.world.secrets
        changed = store.commit(
            self.unit.name, self.app.name, before.secrets, out.secrets, self.seams.secrets
        )
        touched = {s.id for s in out.secrets} | {s.id for s in before.secrets}
        live = world.live_units()
        events = store.changed_events(changed, live, world.relations)
        events += store.obsolete_events(touched, live, world.relations)
        for event in events:
            target = event.unit or world.apps[event.app].leader
            if target is not None and target in live:
                world.enqueue(
                    world.unit(target),
                    event.kind,
                    secret_id=event.secret_id,
                    revision=event.revision,
                )
