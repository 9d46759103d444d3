#!/usr/bin/env python3
"""Juju-facing wiring of postgresql-k8s: events to one reconcile, status, and actions."""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Mapping

import ops

import backup_actions
import backups
import client_policy
import clients
import cluster
import config
import k8s
import presentation
import restore
import state as snapshot
import system_users
from charms.postgresql_k8s.v0 import postgresql as pglib
from relations import database
from relations import s3 as s3_relation
from workload import layout, patroni, pgbackrest

logger = logging.getLogger(__name__)

# How long a departing primary waits for a staying member to become a synchronous standby.
HANDOVER_TIMEOUT = 25.0  # within Kubernetes' 30 s grace period; Patroni decides in a loop (10 s)


class PostgresqlK8sCharm(ops.CharmBase):
    """PostgreSQL in high availability, run by Patroni in the `postgresql` container."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.container = self.unit.get_container(layout.CONTAINER)
        self.workload = cluster.Workload(self.container)
        self.kubernetes = k8s.Kubernetes(self.app.name, self.model.name)
        self.s3 = s3_relation.requirer(self)
        self.backup_actions = backup_actions.BackupActions(self)
        on, s3_on = self.on, self.s3.on
        peers, db = on[snapshot.PEER], on[database.RELATION]
        for event in (
            on.install, on.start, on.config_changed, on.upgrade_charm, on.update_status,
            on.leader_elected, on.secret_changed, on.pgdata_storage_attached,
            on.postgresql_pebble_ready, on.postgresql_pebble_custom_notice,
            on.postgresql_pebble_check_failed, on.postgresql_pebble_check_recovered,
            peers.relation_created, peers.relation_joined, peers.relation_changed,
            peers.relation_departed, db.relation_created, db.relation_changed,
            db.relation_departed, db.relation_broken, s3_on.storage_connection_info_changed,
            s3_on.storage_connection_info_gone, on[s3_relation.RELATION].relation_broken,
        ):  # fmt: skip
            framework.observe(event, self._reconcile)
        framework.observe(on.stop, self._on_stop)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(on.collect_app_status, self._on_collect_app_status)
        framework.observe(on.get_password_action, self._on_get_password)
        framework.observe(on.set_password_action, self._on_set_password)
        framework.observe(on.get_primary_action, self._on_get_primary)
        framework.observe(on.promote_to_primary_action, self._on_promote_to_primary)

    # -- snapshot and probes, each read at most once per hook -------------------------------

    @functools.cached_property
    def state(self) -> snapshot.State:
        """This hook's snapshot of Juju."""
        return snapshot.collect(self)

    @functools.cached_property
    def s3_state(self) -> s3_relation.S3State:
        """The S3 repository the relation points at, validated."""
        return s3_relation.read(self.s3, self.model)

    @functools.cached_property
    def config_error(self) -> config.InvalidConfigError | None:
        """Why the config cannot be applied, including limits that depend on the container."""
        st = self.state
        if st.config is None or not self.container.can_connect():
            return st.config_error
        try:
            config.postgresql_parameters(st.config, self.workload.memory_bytes())
        except config.InvalidConfigError as e:
            return e
        return None

    @functools.cached_property
    def missing_permissions(self) -> list[str]:
        """What the service account may not do; empty once `juju trust` was run."""
        try:
            return self.kubernetes.missing_permissions()
        except k8s.KubernetesError as e:
            logger.warning("RBAC probe failed: %s", e)
            return []

    def patroni_client(self, host: str | None = None) -> patroni.PatroniClient:
        """Patroni REST client for this unit's member (or another host's)."""
        passwords = self.state.passwords or {}
        auth = (layout.SystemUser.PATRONI.value, passwords.get(layout.SystemUser.PATRONI, ""))
        return patroni.PatroniClient(
            f"http://{host or self.state.pod_ip}:{layout.PORT_PATRONI}", auth
        )

    @functools.cached_property
    def cluster_status(self) -> patroni.ClusterStatus | None:
        """Patroni's view of the cluster from this member, or None while it does not answer."""
        if self.state.passwords is None or self.state.pod_ip is None:
            return None
        try:
            return self.patroni_client().cluster()
        except patroni.PatroniError as e:
            logger.info("Patroni not reachable: %s", e)
            return None

    def primary_db(self) -> pglib.PostgreSQL | None:
        """A library handle on the primary as the operator user, or None with no primary."""
        leader = self.cluster_status.leader if self.cluster_status else None
        if leader is None or self.state.passwords is None:
            return None
        password = self.state.passwords[layout.SystemUser.OPERATOR]
        return pglib.PostgreSQL(
            primary_host=leader.host, user=layout.SystemUser.OPERATOR.value, password=password
        )

    # -- reconcile ---------------------------------------------------------------------------

    def _reconcile(self, _: ops.EventBase) -> None:
        self.reconcile()

    def _forget(self) -> None:
        """Drop this hook's cached snapshot and probes after the charm changed what they read."""
        for name in ("state", "cluster_status", "config_error", "s3_state"):
            self.__dict__.pop(name, None)

    def reconcile(self) -> None:
        """Bring this unit, and from the leader the cluster, to the goal; safe to run any time."""
        if self.state.is_leader:
            self._reconcile_secret()
            if self.s3_state.related:
                tls_id = backups.ensure_tls(self.app, self.model, self.state)
                self._leader_save({"backup_tls_secret": tls_id})
            if self.state.peer_data.restore is not None and self.container.can_connect():
                step = restore.leader_step(self.container, self.state, self.cluster_status)
                self._leader_save({"restore": step})
        settings = self._reconcile_unit()
        if settings is None or not self.state.is_leader:
            return
        if self._leader_save(backups.reconcile_stanza(self.container, self.state, self.s3_state)):
            settings = self._reconcile_unit()  # archiving follows the stanza at once
        if settings is not None and self._reconcile_cluster(settings):
            self._forget()  # the leader changed the client rules: render them here at once
            self._reconcile_unit()

    def _leader_save(self, update: Mapping[str, object]) -> bool:
        """Leader: save changes to the peer application data; True if anything changed."""
        st = self.state
        data = st.peer_data.model_copy(update=update)
        if st.peers is None or data == st.peer_data:
            return False
        st.peers.save(data, self.app)
        self._forget()
        return True

    def start_restore(self, request: snapshot.RestoreState) -> None:
        """Leader: begin a restore (the restore action checked the target)."""
        self._leader_save({"restore": request})
        self.reconcile()

    def record_backup(self, kind: str, backup: pgbackrest.Backup) -> None:
        """Leader: remember when the last backup of a kind succeeded (for status)."""
        done = {**self.state.peer_data.backup_succeeded, kind: backup.stop.isoformat()}
        if self.state.is_leader:
            self._leader_save({"backup_succeeded": done})

    def record_fired(self, kind: str, at: str) -> None:
        """Leader: remember when a schedule last fired (for status)."""
        self._leader_save({"backup_fired": {**self.state.peer_data.backup_fired, kind: at}})

    def _reconcile_unit(self) -> patroni.PatroniSettings | None:
        """This unit's files, Pebble plan and acknowledgement of the client rules."""
        st = self.state
        if st.config is None or st.passwords is None or st.pod_ip is None:
            return None
        if not self.container.can_connect() or self.config_error or self.missing_permissions:
            return None
        try:
            self.kubernetes.label_pod(st.member)
            if st.is_leader:
                self.kubernetes.apply_services()
            settings = cluster.patroni_settings(
                st,
                self.workload.pg_major(),
                self.workload.memory_bytes(),
                archive_command=backups.archive_command(st, self.s3_state),
                restore_command=restore.bootstrap_command(st),
            )
        except (k8s.KubernetesError, cluster.WorkloadNotReadyError) as e:
            logger.warning("cannot configure the workload yet: %s", e)
            return None
        changed = cluster.reconcile_files(self.workload, settings)
        restore.unit_step(self.container, self.unit, st)
        if not restore.holds(st):
            tls = backups.read_tls(self.model, st.peer_data.backup_tls_secret)
            services, server = backups.services(self.workload, st, self.s3_state, tls)
            cluster.reconcile_layer(self.workload, st, changed, self._monitoring_ready(), services)
            if st.peer_data.restore is not None:  # released: start even if the plan is the same
                self.container.replan()
            self._ack(backups.SERVER_KEY, server)
        self._ack(clients.UNIT_DIGEST_KEY, client_policy.rules_digest(st.peer_data.client_rules))
        clients.close_orphaned_sessions(st, self.cluster_status)
        return settings

    def _ack(self, key: str, value: str) -> None:
        """Tell the leader, through this unit's peer databag, what this unit has applied."""
        st = self.state
        if st.peers is not None and st.peer_unit_data.get(key) != value:
            st.peers.data[self.unit][key] = value
            self._forget()  # the leader counts its own acknowledgement in this very hook

    def _reconcile_secret(self) -> None:
        """Leader: create the system users' secret once and publish its id to the peers."""
        st = self.state
        if st.peers is None or st.peer_data.system_users_secret:
            return
        secret = system_users.create(self.app)
        data = st.peer_data.model_copy(update={"system_users_secret": secret.id})
        st.peers.save(data, self.app)
        self._forget()  # re-read with the new secret

    def _reconcile_cluster(self, settings: patroni.PatroniSettings) -> bool:
        """Leader: cluster-wide config, system roles, restarts, databases; True if rules changed."""
        if self.cluster_status is None or self.cluster_status.leader is None:
            return False
        try:
            cluster.reconcile_dynamic_config(self.patroni_client(), settings)
            db = self.primary_db()
            if db is not None and self.state.passwords is not None:
                cluster.reconcile_system_roles(db, self.state.passwords)
            cluster.rolling_restart(self.patroni_client())
            if db is not None:
                return self._reconcile_databases(db)
        except (patroni.PatroniError, pglib.PostgreSQLError) as e:
            logger.warning("cluster reconcile incomplete, retried on the next event: %s", e)
        return False

    def _reconcile_databases(self, db: pglib.PostgreSQL) -> bool:
        """Leader: extensions from config, then client relations; True if the rules changed."""
        st, status = self.state, self.cluster_status
        assert st.config is not None and status is not None
        before = st.peer_data.client_rules
        self._leader_save(clients.reconcile_databases(self.model, st, db, status, st.config))
        return self.state.peer_data.client_rules != before

    def _monitoring_ready(self) -> bool:
        """The exporter starts once its user exists, i.e. once the cluster has a primary."""
        return self.cluster_status is not None and self.cluster_status.leader is not None

    def _on_stop(self, _: ops.StopEvent) -> None:
        """A departing primary hands over to a synchronous standby that stays, before it goes."""
        self.reconcile()  # a departing member tags itself nosync/nofailover first
        status = self.cluster_status
        if status is None or status.leader is None or status.leader.name != self.state.member:
            return
        cluster.hand_over(
            self.patroni_client(), status, self.state.planned_units, HANDOVER_TIMEOUT
        )

    # -- status ------------------------------------------------------------------------------

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        for status in self._unit_statuses():
            event.add_status(status)

    def _unit_statuses(self) -> list[ops.StatusBase]:  # noqa: PLR0911 (one return per cause)
        st = self.state
        if self.config_error is not None:
            return [ops.BlockedStatus(str(self.config_error))]
        if not self.container.can_connect():
            return [ops.MaintenanceStatus("waiting for Pebble in the postgresql container")]
        if self.missing_permissions:
            return [ops.BlockedStatus(f"run `juju trust {st.app_name} --scope=cluster`")]
        if st.passwords is None:
            return [ops.WaitingStatus("waiting for the leader to create the system users")]
        try:
            self.workload.pg_major()
        except cluster.WorkloadNotReadyError:
            return [ops.BlockedStatus(f"the image has no PostgreSQL under {layout.PG_BASE_DIR}")]
        if (restoring := presentation.restore_status(st.peer_data, unit=True)) is not None:
            return [restoring]
        member = self.cluster_status.member(st.member) if self.cluster_status else None
        if member is None:
            return [ops.MaintenanceStatus("starting PostgreSQL")]
        return [presentation.member_status(member)]

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        status, data = self.cluster_status, self.state.peer_data
        if status is not None and status.leader is None:
            event.add_status(ops.WaitingStatus("no primary: Patroni is electing one"))
        if data.extensions_error:
            event.add_status(ops.BlockedStatus(data.extensions_error))
        for relation_id, problem in sorted(data.client_problems.items()):
            event.add_status(ops.BlockedStatus(f"database relation {relation_id}: {problem}"))
        now = datetime.datetime.now(datetime.timezone.utc)
        for backup_status in presentation.backup_statuses(
            data, self.s3_state, self.state.config, now
        ):
            event.add_status(backup_status)
        event.add_status(ops.ActiveStatus(self._backup_summary()))

    def _backup_summary(self) -> str:
        """`last backup <time>, archive lag <n> WAL files` while a repository is in use."""
        if not backups.archiving(self.state, self.s3_state):
            return ""
        return presentation.backup_summary(self.state.peer_data, self.primary_db())

    # -- actions -----------------------------------------------------------------------------

    def _on_get_password(self, event: ops.ActionEvent) -> None:
        user = presentation.system_user(event)
        if user is None:
            return
        if self.state.passwords is None:
            event.fail("the system users do not exist yet: wait for the leader to create them")
            return
        event.set_results({"password": self.state.passwords[user]})

    def _on_set_password(self, event: ops.ActionEvent) -> None:
        user = presentation.system_user(event)
        if user is None:
            return
        if not self.state.is_leader:
            event.fail("set-password must run on the leader unit")
            return
        password = str(event.params.get("password") or system_users.generate_password())
        try:
            system_users.validate_password(password)
        except system_users.InvalidPasswordError as e:
            event.fail(str(e))
            return
        error = self._rotate_password(user, password)
        if error:
            event.fail(error)
            return
        event.set_results({"password": password})

    def _rotate_password(self, user: layout.SystemUser, password: str) -> str | None:
        """Change a system password in PostgreSQL, the secret and every unit's Patroni config."""
        st = self.state
        if st.passwords is None or st.peers is None:
            return "the system users do not exist yet: wait for the leader to create them"
        if user.is_database_role:
            db = self.primary_db()
            if db is None:
                return "no primary to change the password on: retry once the cluster is healthy"
            try:
                db.alter_user_password(user.value, password)
            except pglib.PostgreSQLError as e:
                return f"cannot change the password: {e}"
        secret = self.model.get_secret(id=st.peer_data.system_users_secret)
        secret.set_content(
            {**system_users.passwords_to_content(st.passwords), user.secret_key: password}
        )
        revision = st.peer_data.users_revision + 1
        st.peers.save(st.peer_data.model_copy(update={"users_revision": revision}), self.app)
        self._forget()
        self.reconcile()
        return None

    def _on_get_primary(self, event: ops.ActionEvent) -> None:
        leader = self.cluster_status.leader if self.cluster_status else None
        if leader is None:
            event.fail("no primary: the cluster has no leader or Patroni is not reachable")
            return
        event.set_results({"primary": presentation.unit_name(leader.name)})

    def _on_promote_to_primary(self, event: ops.ActionEvent) -> None:
        status, me = self.cluster_status, self.state.member
        if status is None or status.leader is None:
            event.fail("no primary, or Patroni is not reachable: nothing to switch over")
            return
        if status.leader.name == me:
            event.fail("this unit is already the primary")
            return
        member = status.member(me)
        if member is None or not member.is_sync_standby or not status.healthy:
            event.fail("only a healthy synchronous standby of a healthy cluster can be promoted")
            return
        try:
            self.patroni_client().switchover(status.leader.name, me)
        except patroni.PatroniError as e:
            event.fail(f"switchover refused: {e}")
            return
        event.set_results({"primary": self.unit.name})


if __name__ == "__main__":  # pragma: nocover
    ops.main(PostgresqlK8sCharm)
