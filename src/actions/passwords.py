"""get-password and set-password: the system users' passwords."""

from __future__ import annotations

import ops

from actions.params import PasswordParams, parse
from charms.postgresql_k8s.v0 import postgresql as pglib
from components import Io, system_users
from state import Snapshot
from workload import layout

_NOT_YET = "the system users do not exist yet: wait for the leader to create them"


def _user(event: ops.ActionEvent) -> layout.SystemUser | None:
    """The system user the action names (operator by default); fails the action if unknown."""
    params = parse(event, PasswordParams)
    return params.user if params is not None else None


def get_password(event: ops.ActionEvent, s: Snapshot, io: Io) -> None:
    """The password of a system user."""
    user = _user(event)
    if user is None:
        return
    if s.passwords is None:
        event.fail(_NOT_YET)
        return
    event.set_results({"password": s.passwords[user]})


def set_password(event: ops.ActionEvent, s: Snapshot, io: Io) -> Snapshot | None:  # noqa: PLR0911 (one return per refusal)
    """Leader: change a system password in PostgreSQL and the secret; the snapshot to apply.

    Every unit's Patroni configuration follows from the secret on the next reconcile.
    """
    user = _user(event)
    if user is None:
        return None
    if not s.is_leader:
        event.fail("set-password must run on the leader unit")
        return None
    params = parse(event, PasswordParams)
    password = (params.password if params else None) or system_users.generate_password()
    try:
        system_users.validate_password(password)
    except system_users.InvalidPasswordError as e:
        event.fail(str(e))
        return None
    r = s.ready
    if s.passwords is None or r is None:
        event.fail(_NOT_YET)
        return None
    if user.is_database_role:
        db = io.primary_db(s)
        if db is None:
            event.fail("no primary to change the password on: retry once the cluster is healthy")
            return None
        try:
            db.alter_user_password(user.value, password)
        except pglib.PostgreSQLError as e:
            event.fail(f"cannot change the password: {e}")
            return None
    after = system_users.set_passwords(s, io, {user.secret_key: password})
    event.set_results({"password": password})
    return after
