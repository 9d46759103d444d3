"""The system users: their passwords in one application-owned Juju secret, their roles in PostgreSQL."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import string
from collections.abc import Mapping

import ops

from charms.postgresql_k8s.v0 import postgresql as pglib
from components import Component, Io
from state import USERS_SECRET_LABEL, Ready, Snapshot
from workload import layout

logger = logging.getLogger(__name__)

PASSWORD_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits
# What set-password accepts: printable ASCII without whitespace or quotes, so a password survives
# every config format it travels through (patroni.yml, pgpass, libpq connection strings).
_ALLOWED = frozenset(string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~")
MIN_PASSWORD_LENGTH = 8
SECRET_LABEL = USERS_SECRET_LABEL
MAX_PASSWORD_LENGTH = 256

# Roles the charm creates itself (Patroni creates the superuser, replication and rewind users):
# the exporter's, and pgBackRest's, which is no superuser.
ROLES = {
    layout.SystemUser.MONITORING: ["pg_monitor"],
    layout.SystemUser.BACKUP: ["pg_read_all_settings", "pg_checkpoint"],
}
# What pgBackRest needs beyond its roles to back up from a primary or a standby.
BACKUP_FUNCTIONS = (
    "pg_catalog.pg_backup_start(text, boolean)",
    "pg_catalog.pg_backup_stop(boolean)",
    "pg_catalog.pg_switch_wal()",
    "pg_catalog.pg_create_restore_point(text)",
)


class InvalidPasswordError(ValueError):
    """Raised when a password a user supplied cannot be accepted; the message says why."""


def generate_password() -> str:
    """A random password from a URL- and config-safe alphabet."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


def validate_password(password: str) -> None:
    """Raise InvalidPasswordError unless the password is safe to use everywhere it goes."""
    if not password:
        raise InvalidPasswordError("the password must not be empty")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidPasswordError(
            f"the password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    if any(c not in _ALLOWED for c in password):
        raise InvalidPasswordError(
            "the password may only contain letters, digits and punctuation other than quotes,"
            " backslash and whitespace"
        )


def initial_content() -> dict[str, str]:
    """Fresh passwords for every system user, keyed as the secret stores them."""
    return {user.secret_key: generate_password() for user in layout.SystemUser}


def passwords_to_content(passwords: dict[layout.SystemUser, str]) -> dict[str, str]:
    """The secret content holding these passwords."""
    return {user.secret_key: password for user, password in passwords.items()}


def _secret(io: Io, s: Snapshot) -> ops.Secret | None:
    try:
        if s.peer_data.system_users_secret:
            return io.model.get_secret(id=s.peer_data.system_users_secret)
        return io.model.get_secret(label=SECRET_LABEL)
    except (ops.SecretNotFoundError, ops.ModelError):
        return None


def set_passwords(s: Snapshot, io: Io, changes: dict[str, str]) -> Snapshot:
    """Leader: change keys of the secret and tell every unit to re-read it."""
    secret = _secret(io, s)
    assert secret is not None and s.users_secret is not None
    content = {**s.users_secret, **changes}
    secret.set_content(content)
    s = dataclasses.replace(s, users_secret=content)
    return io.peers.save(s, {"users_revision": s.peer_data.users_revision + 1})


class SystemUsers(Component):
    """The secret (leader), every user's role and password in PostgreSQL (leader)."""

    def prepare(self, s: Snapshot, io: Io) -> Snapshot:
        """Create the secret once, or add a user a newer revision of the charm introduced."""
        if not s.peers_related:
            return s
        secret = _secret(io, s)
        if secret is None:
            content = initial_content()
            secret = io.model.app.add_secret(
                content, label=SECRET_LABEL, description="postgresql-k8s system users"
            )
            s = dataclasses.replace(s, users_secret=content)
        elif s.users_secret is not None:
            missing = {
                user.secret_key: generate_password()
                for user in layout.SystemUser
                if not s.users_secret.get(user.secret_key)
            }
            if missing:
                logger.info("adding system users to the secret: %s", sorted(missing))
                s = set_passwords(s, io, missing)
        return io.peers.save(s, {"system_users_secret": secret.id})

    def leader_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Create the monitoring and backup roles or fix their passwords."""
        db = io.primary_db(s)
        if db is None:
            return s
        try:
            ensure_roles(db, r.passwords)
        except pglib.PostgreSQLError as e:
            logger.warning("system roles incomplete, retried on the next event: %s", e)
        return s

    def unit_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """Waiting until the leader made the passwords."""
        if s.passwords is None:
            return [ops.WaitingStatus("waiting for the leader to create the system users")]
        return []


def ensure_roles(db: pglib.PostgreSQL, passwords: Mapping[layout.SystemUser, str]) -> None:
    """Create the roles the charm owns, or fix their passwords; grant pgBackRest's functions."""
    for user, in_roles in ROLES.items():
        password = passwords[user]
        if not db.user_exists(user.value):
            db.create_user(user.value, password, in_roles=in_roles)
        elif not db.password_matches(user.value, password):
            db.alter_user_password(user.value, password)
    db.grant_function_execute(layout.SystemUser.BACKUP.value, BACKUP_FUNCTIONS)
