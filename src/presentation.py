"""How the charm presents the cluster to Juju: unit statuses, unit names, action parameters."""

from __future__ import annotations

import ops

from workload import layout, patroni


def system_user(event: ops.ActionEvent) -> layout.SystemUser | None:
    """The system user an action names (operator by default); fails the action if unknown."""
    name = str(event.params.get("username", layout.SystemUser.OPERATOR.value))
    try:
        return layout.SystemUser(name)
    except ValueError:
        names = ", ".join(u.value for u in layout.SystemUser)
        event.fail(f"unknown username {name!r}: use one of {names}")
        return None


def unit_name(member: str) -> str:
    """The Juju unit name of a Patroni member: `app-0` -> `app/0`."""
    app, _, number = member.rpartition("-")
    return f"{app}/{number}"


def member_status(member: patroni.Member) -> ops.StatusBase:
    """A unit's status from its Patroni member: active with its role, else why not."""
    suffix = ", restart pending" if member.pending_restart else ""
    if member.is_leader and member.state == "running":
        return ops.ActiveStatus(f"primary{suffix}")
    if member.state == "streaming":
        role = "sync standby" if member.is_sync_standby else "replica"
        return ops.ActiveStatus(f"{role}{suffix}")
    return ops.WaitingStatus(f"PostgreSQL {member.state.replace('_', ' ')}")
