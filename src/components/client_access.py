"""What each client user holds in PostgreSQL: the SQL side of the clients component.

Creates and adjusts owner roles, databases and users; refuses to adopt an owner role someone
else made; takes back what is no longer allowed, sessions included; drops users whose relation
is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Mapping

import client_options
import config_options
from charms.postgresql_k8s.v0 import postgresql as pglib
from components import client_policy
from state import Snapshot
from workload import layout

logger = logging.getLogger(__name__)


def grant_digest(plan: client_policy.ClientPlan, password: str) -> str:
    """A digest of what a plan grants, so that unchanged grants are not re-applied each hook.

    The password is in it (a truncated hash of 190 random bits reveals nothing): a rotated one
    is applied.
    """
    text = json.dumps(
        [
            plan.database,
            plan.owner,
            plan.createdb,
            plan.createrole,
            plan.superuser,
            plan.roles,
            password,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure(
    db: pglib.PostgreSQL,
    plan: client_policy.ClientPlan,
    password: str,
    granted: str | None,
    existing: Collection[str],
    *,
    adopting: bool,
) -> str:
    """Owner role, database and user of one plan, with its attributes and roles; its digest.

    A user that exists with the grants and password applied last time is left alone without a
    query: an idle hook costs nothing per relation.
    """
    digest = grant_digest(plan, password)
    exists = plan.user in existing
    if exists and granted == digest:
        return digest
    matches = exists and db.password_matches(plan.user, password)
    if adopting:
        check_adoptable(db, plan.owner)
    db.create_user(plan.owner, None, login=False)
    db.create_database(plan.database, plan.owner)
    db.create_user(
        plan.user,
        None if matches else password,
        createdb=plan.createdb,
        createrole=plan.createrole,
        superuser=plan.superuser,
        in_roles=(plan.owner, *plan.roles),
    )
    if exists:  # roles the requirer no longer asks for
        db.revoke_roles(plan.user, sorted(client_policy.PREDEFINED_ROLES - set(plan.roles)))
    return digest


def stale_users(existing: Collection[str], keep: Collection[str]) -> list[str]:
    """Client users the charm made that no served request needs any more.

    Their relation is gone, or its request was refused (what is no longer allowed loses its
    access at once), or it changed into another one.
    """
    return [u for u in existing if client_policy.relation_of_user(u) is not None and u not in keep]


def drop_gone(
    db: pglib.PostgreSQL, s: Snapshot, keep: Collection[str], existing: Collection[str]
) -> None:
    """Drop the users no request needs; their objects go to the database's owner.

    Users of relations whose databag cannot be read now are kept: nothing says what they want.
    """
    databases = {user: db_name for db_name, user in s.peer_data.client_rules}
    unreadable = {p.relation_id for p in s.clients.problems}
    for user in sorted(stale_users(existing, keep)):
        if client_policy.relation_of_user(user) in unreadable:
            continue
        heir = (
            client_policy.owner_role(databases[user])
            if user in databases
            else layout.SystemUser.OPERATOR.value
        )
        logger.info("no longer served: dropping %s (its objects go to %s)", user, heir)
        try:
            db.drop_user(user, reassign_owned_to=heir)
        except pglib.PostgreSQLError as e:
            logger.warning("cannot drop %s yet: %s", user, e)


def reconcile_extensions(
    db: pglib.PostgreSQL, enabled: frozenset[str], applied: frozenset[str]
) -> tuple[frozenset[str], str]:
    """Create enabled extensions in every database (template1 too) and drop disabled ones.

    Only extensions the charm enabled are ever dropped, never with CASCADE: one with dependent
    objects stays, and the error names the option. Returns what is now applied and the error.
    """
    if enabled == applied:
        return applied, ""
    wanted = dict.fromkeys(enabled, True) | dict.fromkeys(applied - enabled, False)
    try:
        db.enable_extensions(wanted)
    except pglib.PostgreSQLExtensionInUseError as e:
        options = ", ".join(config_options.extension_option(n) for n in sorted(applied - enabled))
        return applied, f"cannot disable {options}: objects depend on it ({e})"
    except pglib.PostgreSQLExtensionError as e:
        options = ", ".join(config_options.extension_option(n) for n in sorted(enabled - applied))
        return applied, f"cannot enable {options}: {e}"
    return enabled, ""


def check_adoptable(db: pglib.PostgreSQL, owner: str) -> None:
    """Refuse an owner role the charm did not make: RequestRefusedError names who holds it.

    The charm's owner roles cannot log in and are held only by its client users, none with
    ADMIN OPTION. Anything else means another tenant (a CREATEROLE client on PostgreSQL 16
    gets ADMIN on what it creates) prepared the role to reach the data put under it.
    """
    info = db.describe_role(owner)
    if info is None:
        return
    foreign = [m for m in info.members if client_policy.relation_of_user(m) is None]
    if info.can_login or info.superuser or info.admins or foreign:
        holders = ", ".join([*info.admins, *foreign]) or "it can log in"
        raise client_policy.RequestRefusedError(
            f"role {owner} exists and was not made by this charm ({holders}):"
            " the database is not adopted"
        )


def take_back(db: pglib.PostgreSQL, user: str) -> None:
    """Remove every elevated privilege from a client user and end its sessions."""
    logger.info("taking elevated privileges back from %s", user)
    db.create_user(user, None, superuser=False, createrole=False, createdb=False)
    db.revoke_roles(
        user, sorted(client_policy.PREDEFINED_ROLES & client_options.ELEVATED_PRIVILEGES)
    )
    db.terminate_user_sessions(user)


def revoke_withdrawn(
    db: pglib.PostgreSQL,
    previously: Collection[str],
    now: Mapping[str, bool],
    existing: Collection[str],
) -> None:
    """Take back elevated privileges from users that held them and may no longer.

    `now` maps each served user to whether its plan is elevated; a user not in it (refused or
    gone) that held them loses them too, if it still exists.
    """
    for user in sorted(previously):
        if user in existing and not now.get(user, False):
            if user in now:  # served without them: ensure() changed the role already
                db.terminate_user_sessions(user)
            else:
                take_back(db, user)
