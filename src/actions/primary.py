"""get-primary and promote-to-primary: which unit is the primary, and a switchover to this one."""

from __future__ import annotations

import ops

from actions.params import PromoteParams, parse
from components import Io
from state import Snapshot
from workload import patroni_client as rest


def unit_name(member: str) -> str:
    """The Juju unit name of a Patroni member: `app-0` -> `app/0`."""
    app, _, number = member.rpartition("-")
    return f"{app}/{number}"


def get_primary(event: ops.ActionEvent, s: Snapshot, io: Io) -> None:
    """The unit whose member holds the leader lock."""
    leader = s.cluster.leader if s.cluster else None
    if leader is None:
        event.fail("no primary: the cluster has no leader or Patroni is not reachable")
        return
    event.set_results({"primary": unit_name(leader.name)})


def promote_to_primary(event: ops.ActionEvent, s: Snapshot, io: Io) -> None:
    """Switch over to this unit, a synchronous standby of a healthy cluster (or, forced, fail over).

    A forced promotion is a failover for a cluster without a healthy primary.
    """
    params = parse(event, PromoteParams)
    if params is None:
        return
    if params.force:
        _force(event, s, io)
        return
    status, me = s.cluster, s.member
    if status is None or status.leader is None:
        event.fail(
            "no primary, or Patroni is not reachable: nothing to switch over (force=true fails"
            " over to this unit)"
        )
        return
    if status.leader.name == me:
        event.fail("this unit is already the primary")
        return
    member = status.member(me)
    if member is None or not member.is_sync_standby or not status.healthy:
        event.fail("only a healthy synchronous standby of a healthy cluster can be promoted")
        return
    try:
        io.patroni(s).switchover(status.leader.name, me)
    except rest.PatroniError as e:
        event.fail(f"switchover refused: {e}")
        return
    event.set_results({"primary": unit_name(me)})


def _force(event: ops.ActionEvent, s: Snapshot, io: Io) -> None:
    """A failover to this unit, refused while a healthy primary exists."""
    status, me = s.cluster, s.member
    leader = status.leader if status else None
    if leader is not None and leader.is_healthy:
        event.fail(
            f"{unit_name(leader.name)} is a healthy primary: run promote-to-primary without"
            " force (a switchover loses nothing)"
        )
        return
    try:
        io.patroni(s).failover(me)
    except rest.PatroniError as e:
        event.fail(f"failover refused: {e}")
        return
    event.set_results(
        {
            "primary": unit_name(me),
            "warning": "forced: transactions this unit had not received are lost",
        }
    )
