"""PostgreSQL run by Patroni: the member's configuration, the cluster's, and restarts one at a time."""

from __future__ import annotations

import logging

import ops

import config
import goal
from components import Component, Io
from state import Ready, Snapshot
from workload import layout, patroni, pebble
from workload import patroni_client as rest

logger = logging.getLogger(__name__)

# How long the leader waits for a restarted member to stream again before the next one.
RESTART_SETTLE_TIMEOUT = 120.0


def settings(s: Snapshot, r: Ready) -> patroni.PatroniSettings:
    """This member's Patroni settings."""
    return patroni.PatroniSettings(
        scope=s.app_name,
        member=s.member,
        connect_host=r.pod_ip,
        pg_major=r.pg_major,
        passwords=r.passwords,
        parameters=r.parameters,
        synchronous_node_count=config.synchronous_node_count(r.config, s.planned_units),
        # Alone, a strict primary would wait forever for a standby that cannot exist.
        synchronous_mode_strict=r.config.synchronous_mode_strict and s.planned_units > 1,
        # Kubernetes scales down by removing the highest ordinals.
        departing=s.departing,
    )


ADDRESS_KEY = "address"


def member_addresses(s: Snapshot, r: Ready) -> list[str]:
    """Every unit's pod address as its peer databag says (this unit's from the snapshot).

    A unit says its address before Patroni starts on it; the members it clones from admit it
    once their next hook has reloaded their rules (Patroni retries the clone meanwhile). A pod
    recreated with a new address says the new one the same way.
    """
    addresses = {bag[ADDRESS_KEY] for bag in s.unit_data.values() if bag.get(ADDRESS_KEY)}
    return sorted(addresses | {r.pod_ip})


class PostgreSQL(Component):
    """Patroni's configuration and service; rolling restarts from the leader."""

    def contribute(self, s: Snapshot, r: Ready) -> goal.Contribution:
        """patroni.yml's member part, the cluster's settings, the system rules and the service."""
        member = settings(s, r)
        environment = patroni.dcs_environment(s.app_name, s.namespace, r.pod_ip)
        return goal.Contribution(
            parameters=patroni.cluster_parameters(member),
            dynamic=patroni.dynamic_settings(member),
            patroni=patroni.member_config(member),
            hba=patroni.system_hba(member_addresses(s, r)),
            services={layout.SERVICE_POSTGRESQL: pebble.patroni_service(environment)},
            checks=pebble.patroni_checks(),
            files={layout.ROLE_CHANGE_SCRIPT: goal.File(patroni.role_change_script(), 0o755)},
            dirs=layout.WORKLOAD_DIRS,
            # Every member's rules admit replication and pg_rewind from this unit's address.
            acks={ADDRESS_KEY: r.pod_ip},
        )

    def leader_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Restart the members PostgreSQL asks to restart, replicas first, primary last."""
        if s.cluster is None or s.cluster.leader is None:
            return s
        try:
            rolling_restart(io.patroni(s))
        except rest.PatroniError as e:
            logger.warning("rolling restart incomplete, retried on the next event: %s", e)
        return s

    def unit_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """Why the unit cannot be configured, or its member's role."""
        if (problem := _setup_problem(s)) is not None:
            return [problem]
        if s.passwords is None:
            return []  # the system users' status says what the unit waits for
        member = s.cluster.member(s.member) if s.cluster else None
        if member is None:
            return [ops.MaintenanceStatus("starting PostgreSQL")]
        return [member_status(member)]

    def app_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """Waiting while the cluster has no primary."""
        if s.cluster is not None and s.cluster.leader is None:
            return [ops.WaitingStatus("no primary: Patroni is electing one")]
        return []


def _setup_problem(s: Snapshot) -> ops.StatusBase | None:
    """What keeps the unit from being configured at all, if anything."""
    if s.config_error is not None:
        return ops.BlockedStatus(str(s.config_error))
    if not s.container.can_connect:
        return ops.MaintenanceStatus("waiting for Pebble in the postgresql container")
    if s.container.pg_major is None:
        return ops.BlockedStatus(f"the image has no PostgreSQL under {layout.PG_BASE_DIR}")
    if s.unsafe_path:
        return ops.BlockedStatus(
            f"{s.unsafe_path} is a symbolic link: replace it with a directory"
        )
    return None


def member_status(member: rest.Member) -> ops.StatusBase:
    """A unit's status from its Patroni member: active with its role, else why not."""
    suffix = ", restart pending" if member.pending_restart else ""
    if member.is_leader and member.state == "running":
        return ops.ActiveStatus(f"primary{suffix}")
    if member.state == "streaming":
        role = "sync standby" if member.is_sync_standby else "replica"
        return ops.ActiveStatus(f"{role}{suffix}")
    return ops.WaitingStatus(f"PostgreSQL {member.state.replace('_', ' ')}")


def rolling_restart(
    client: rest.PatroniClient, settle_timeout: float = RESTART_SETTLE_TIMEOUT
) -> list[str]:
    """Restart members whose PostgreSQL reports pending_restart: replicas first, primary last.

    One member at a time, each back to healthy before the next; nothing happens while the
    cluster is unhealthy. Returns the members restarted.
    """
    status = client.cluster()
    pending = [m for m in status.members if m.pending_restart]
    if not pending or not status.healthy:
        return []
    restarted: list[str] = []
    for member in sorted(pending, key=lambda m: m.is_leader):
        logger.info("restarting %s for pending parameters", member.name)
        client.for_member(member.api_url).restart(pending_only=True)
        restarted.append(member.name)
        name = member.name

        def back(c: rest.ClusterStatus, name: str = name) -> bool:
            found = c.member(name)
            return found is not None and found.is_healthy and not found.pending_restart

        client.wait_for(back, timeout=settle_timeout)
    return restarted


def hand_over(
    client: rest.PatroniClient, status: rest.ClusterStatus, staying: int, timeout: float
) -> None:
    """This primary is stopping: switch over to a synchronous standby that stays.

    On scale-down Kubernetes removes the highest ordinals, so a standby numbered at or above
    the new scale is leaving too and is not a candidate. Right after a switchover Patroni may
    not have made any staying member synchronous yet: wait (bounded) for one, since only a
    synchronous standby may take over without losing acknowledged writes.
    """
    assert status.leader is not None
    leaving = status.leader.name

    def stays(member: rest.Member) -> bool:
        return int(member.name.rsplit("-", 1)[1]) < staying

    def candidate(c: rest.ClusterStatus) -> rest.Member | None:
        return next((m for m in c.sync_standbys if m.is_healthy and stays(m)), None)

    if not any(stays(m) for m in status.members if not m.is_leader):
        return  # nobody stays to take over (scale to one, or to zero)
    try:
        status = client.wait_for(lambda c: candidate(c) is not None, timeout=timeout)
        chosen = candidate(status)
        assert chosen is not None
        client.switchover(leaving, chosen.name)
    except rest.PatroniError as e:
        logger.warning("switchover before stop failed: %s", e)
