#!/usr/bin/env python3
"""Juju-facing wiring of postgresql-k8s: the components, events to one reconcile, status, actions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import ops

import applier
import goal
import k8s
import peer_data
import peers
import state
from actions import backups as backup_actions
from actions import passwords, primary
from components import Component, Io
from components.backups import Backups
from components.clients import Clients
from components.kubernetes import Kubernetes
from components.metrics import Metrics
from components.metrics_endpoint import MetricsEndpoint
from components.postgresql import PostgreSQL, hand_over
from components.restore import Restore
from components.system_users import SystemUsers
from relations import database, metrics_endpoint
from relations import s3 as s3_relation
from workload import layout
from workload import patroni_client as rest

logger = logging.getLogger(__name__)

# How long a stopping primary waits for a staying member to become a synchronous standby:
# within Kubernetes' 30 s grace period (Patroni decides in a loop of 10 s).
HANDOVER_TIMEOUT = 25.0

# The concerns, in the order their parts of the goal are merged (pg_hba keeps this order) and
# their steps run. A new concern is a new module here.
COMPONENTS: tuple[Component, ...] = (
    SystemUsers(),
    Restore(),
    PostgreSQL(),
    Metrics(),
    MetricsEndpoint(),
    Kubernetes(),
    Backups(),
    Clients(),
)

Action = Callable[[ops.ActionEvent, state.Snapshot, Io], None]


class PostgresqlK8sCharm(ops.CharmBase):
    """PostgreSQL in high availability, run by Patroni in the `postgresql` container."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.container = self.unit.get_container(layout.CONTAINER)
        self.kubernetes = k8s.Kubernetes(self.app.name, self.model.name)
        self.s3 = s3_relation.requirer(self)
        self._snapshot: state.Snapshot | None = None
        on, s3_on = self.on, self.s3.on
        peer, db = on[peer_data.RELATION], on[database.RELATION]
        scrape = on[metrics_endpoint.RELATION]
        for event in (
            on.install, on.start, on.config_changed, on.upgrade_charm, on.update_status,
            on.leader_elected, on.secret_changed, on.pgdata_storage_attached,
            on.postgresql_pebble_ready, on.postgresql_pebble_custom_notice,
            on.postgresql_pebble_check_failed, on.postgresql_pebble_check_recovered,
            peer.relation_created, peer.relation_joined, peer.relation_changed,
            peer.relation_departed, db.relation_created, db.relation_changed,
            db.relation_departed, db.relation_broken, s3_on.storage_connection_info_changed,
            s3_on.storage_connection_info_gone, on[s3_relation.RELATION].relation_broken,
            scrape.relation_created,
        ):  # fmt: skip
            framework.observe(event, self._on_change)
        framework.observe(on.stop, self._on_stop)
        framework.observe(on.secret_remove, self._on_secret_remove)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(on.collect_app_status, self._on_collect_app_status)
        self._actions: dict[str, Action] = {
            "get-password": passwords.get_password,
            "set-password": self._set_password,
            "get-primary": primary.get_primary,
            "promote-to-primary": primary.promote_to_primary,
            "create-backup": backup_actions.create_backup,
            "list-backups": backup_actions.list_backups,
            "restore": self._restore,
        }
        for name in self._actions:
            framework.observe(on[name.replace("-", "_")].action, self._on_action)
        framework.observe(on.postgresql_pebble_custom_notice, self._on_notice)

    @property
    def io(self) -> Io:
        """What components and actions may act on."""
        relation = self.model.get_relation(peer_data.RELATION)
        return Io(
            container=self.container,
            workload=applier.Workload(self.container),
            model=self.model,
            peers=peers.PeerWriter(relation, self.app, self.unit),
            kubernetes=self.kubernetes,
        )

    def read(self) -> state.Snapshot:
        """This hook's snapshot (read on first use; replaced by what the hook writes)."""
        if self._snapshot is None:
            s3 = s3_relation.read(self.s3, self.model)
            self._snapshot = state.read(self.model, self.container, self.kubernetes, s3)
        return self._snapshot

    # -- reconcile ---------------------------------------------------------------------------

    def _on_change(self, _: ops.EventBase) -> None:
        self._snapshot = self.reconcile(self.read(), self.io)

    def reconcile(self, s: state.Snapshot, io: Io) -> state.Snapshot:
        """Bring this unit, and from the leader the cluster, to the goal; safe to run any time."""
        if s.is_leader:
            for component in COMPONENTS:
                s = component.prepare(s, io)
        r = s.ready
        if r is None:
            return s
        for component in COMPONENTS:
            s = component.unit_step(s, r, io)
        s, applied = self._converge(s, r, io, None)
        if not s.is_leader or s.unsafe_path:
            return s
        for component in COMPONENTS:
            after = component.leader_step(s, r, io)
            if after is not s:
                s, applied = self._converge(after, r, io, applied)
        return s

    def _converge(
        self, s: state.Snapshot, r: state.Ready, io: Io, applied: goal.UnitGoal | None
    ) -> tuple[state.Snapshot, goal.UnitGoal]:
        """Build the goal and apply what changed since `applied`: files, plan, acks, DCS."""
        contributions = [c.contribute(s, r) for c in COMPONENTS]
        cluster = goal.cluster_goal(contributions)
        unit = goal.unit_goal(contributions, cluster)
        if unit == applied:
            return s, unit
        try:
            applier.apply_unit(io.workload, unit)
        except applier.UnsafePathError as e:
            logger.error("not writing through the symbolic link %s", e)
            return dataclasses.replace(s, unsafe_path=str(e)), unit
        for key, value in unit.acks.items():
            s = io.peers.ack(s, key, value)
        leader = s.cluster.leader if s.cluster else None
        if s.is_leader and leader is not None:
            try:
                applier.apply_cluster(io.patroni(s), cluster)
            except rest.PatroniError as e:
                logger.warning("dynamic config not applied, retried on the next event: %s", e)
        return s, unit

    def _on_stop(self, _: ops.StopEvent) -> None:
        """A stopping primary hands over to a synchronous standby that stays, then lets go.

        Only what a departing unit needs, well inside Kubernetes' grace period: no rolling
        restart, no client admission.
        """
        s, io = self.read(), self.io
        r = s.ready
        if r is None:
            return
        s = self._converge(s, r, io, None)[0]  # a departing member tags itself nosync first
        status = s.cluster
        if status is None or status.leader is None or status.leader.name != s.member:
            return
        hand_over(io.patroni(s), status, s.planned_units, HANDOVER_TIMEOUT)

    def _on_secret_remove(self, event: ops.SecretRemoveEvent) -> None:
        """No unit uses this revision any more: a rotated password or a gone client's goes."""
        event.remove_revision()

    # -- status ------------------------------------------------------------------------------

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        s = self.read()
        for component in COMPONENTS:
            for status in component.unit_statuses(s):
                event.add_status(status)

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        s = self.read()
        for component in COMPONENTS:
            for status in component.app_statuses(s):
                event.add_status(status)
        event.add_status(ops.ActiveStatus())

    # -- actions -----------------------------------------------------------------------------

    def _on_action(self, event: ops.ActionEvent) -> None:
        name = event.handle.kind.removesuffix("_action").replace("_", "-")
        self._actions[name](event, self.read(), self.io)

    def _set_password(self, event: ops.ActionEvent, s: state.Snapshot, io: Io) -> None:
        after = passwords.set_password(event, s, io)
        if after is not None:
            self._snapshot = self.reconcile(after, io)

    def _restore(self, event: ops.ActionEvent, s: state.Snapshot, io: Io) -> None:
        after = backup_actions.restore(event, s, io)
        if after is not None:
            self._snapshot = self.reconcile(after, io)

    def _on_notice(self, event: ops.PebbleCustomNoticeEvent) -> None:
        after = backup_actions.scheduled_backup(event, self.read(), self.io)
        if after is not None:
            self._snapshot = after


if __name__ == "__main__":  # pragma: nocover
    ops.main(PostgresqlK8sCharm)
