"""The concerns the charm is made of: each contributes to one goal and acts only through `Io`.

A component is a room: it reads the snapshot, says what it needs of the shared outputs
(`contribute`, pure), and may act where a goal cannot express it: `prepare` (leader, before the
goal: what the goal depends on, such as secrets), `unit_step` (this unit, before its goal is
applied), `leader_step` (leader, after the goal: cluster-wide work such as SQL). It reports its
own statuses, computed from the snapshot without I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import ops

import applier
import goal
import k8s
import peers
from charms.postgresql_k8s.v0 import postgresql as pglib
from state import Ready, Snapshot, patroni_client
from workload import layout
from workload import patroni_client as rest


@dataclasses.dataclass(frozen=True)
class Io:
    """What a component may act on: the container, Juju (through the model), Kubernetes, peers."""

    container: ops.Container
    workload: applier.Workload
    model: ops.Model
    peers: peers.PeerWriter
    kubernetes: k8s.Kubernetes

    def patroni(self, s: Snapshot) -> rest.PatroniClient:
        """This unit's Patroni REST API; PatroniUnreachableError before it has an address."""
        if s.pod_ip is None or s.passwords is None:
            raise rest.PatroniUnreachableError("this unit has no address or credentials yet")
        return patroni_client(s.pod_ip, s.passwords)

    def primary_db(self, s: Snapshot) -> pglib.PostgreSQL | None:
        """The library on the primary as the operator user, or None while there is none."""
        leader = s.cluster.leader if s.cluster else None
        if leader is None or s.passwords is None:
            return None
        return self.db(leader.host, s.passwords)

    def db(self, host: str, passwords: Mapping[layout.SystemUser, str]) -> pglib.PostgreSQL:
        """The library on one member as the operator user."""
        return pglib.PostgreSQL(
            primary_host=host,
            user=layout.SystemUser.OPERATOR.value,
            password=passwords[layout.SystemUser.OPERATOR],
        )


class Component:
    """One concern; every method is optional (the defaults do nothing)."""

    def prepare(self, s: Snapshot, io: Io) -> Snapshot:
        """Leader, before the goal: create what the goal depends on; the resulting snapshot."""
        return s

    def unit_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """This unit, before its goal is applied: what no file or plan can express."""
        return s

    def contribute(self, s: Snapshot, r: Ready) -> goal.Contribution:
        """This concern's part of the goal (pure)."""
        return goal.Contribution()

    def leader_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Leader, after the goal was applied: cluster-wide work; the resulting snapshot."""
        return s

    def unit_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """What this concern says about the unit (the highest priority wins)."""
        return []

    def app_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """What this concern says about the application (the highest priority wins)."""
        return []
