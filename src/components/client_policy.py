"""What a client request may get: names, role attributes and extensions checked before any SQL."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Collection, Iterable

import config_options
from relations.database import ClientRequest

# Database names the charm hands out: what the shared library accepts, minus what would be
# confusing or dangerous to give a client. Checked here first so that nothing reaches SQL.
_DATABASE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_MAX_NAME_BYTES = 63
_RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})
_EXTENSION_RE = re.compile(r"[a-z0-9_-]+")
_USER_RE = re.compile(r"relation_(\d+)(?:_[0-9a-f]{8})?")

ATTRIBUTES = frozenset({"createdb", "createrole"})
SUPERUSER = "superuser"
# Predefined roles that make sense for an application; never the ones that read or run
# things on the server's filesystem (pg_read_server_files, pg_execute_server_program, ...).
PREDEFINED_ROLES = frozenset(
    {
        "pg_monitor",
        "pg_read_all_data",
        "pg_write_all_data",
        "pg_read_all_settings",
        "pg_read_all_stats",
        "pg_stat_scan_tables",
    }
)


class RequestRefusedError(ValueError):
    """Raised when a request cannot be served as sent; the message tells the operator why."""


@dataclasses.dataclass(frozen=True)
class ClientPlan:
    """A request that passed every check: who gets what."""

    request: ClientRequest
    user: str
    database: str
    owner: str  # the NOLOGIN role owning the database, so data outlives any one client user
    createdb: bool = False
    createrole: bool = False
    superuser: bool = False
    roles: tuple[str, ...] = ()


def user_name(request: ClientRequest) -> str:
    """The client user of a request: `relation_<id>` (V0) or with a short hash of its id (V1)."""
    if request.version == "v0":
        return f"relation_{request.relation_id}"
    digest = hashlib.sha256((request.request_id or request.salt).encode()).hexdigest()[:8]
    return f"relation_{request.relation_id}_{digest}"


def relation_of_user(user: str) -> int | None:
    """The relation id a client user was made for, or None if the charm did not make it."""
    match = _USER_RE.fullmatch(user)
    return int(match.group(1)) if match else None


def owner_role(database: str) -> str:
    """The role owning a client database (names stay within PostgreSQL's 63 bytes)."""
    name = f"{database}_owner"
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]
    return f"{database[:46]}_{digest}_owner"


def check_database(name: str) -> str:
    """The database name if the charm may create it for a client, else RequestRefusedError."""
    shown = repr(name)[:80]
    if not name:
        raise RequestRefusedError("no database name was requested")
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise RequestRefusedError(f"database name {shown} is longer than 63 bytes")
    if not _DATABASE_RE.fullmatch(name):
        raise RequestRefusedError(
            f"database name {shown} is not allowed: use letters, digits, _ and -,"
            " not starting with a digit or -"
        )
    if name.lower() in _RESERVED_DATABASES or name.lower().startswith("pg_"):
        raise RequestRefusedError(f"database name {shown} is reserved")
    return name


def _split(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def check_roles(
    raw: str | None, app: str, superuser_apps: Collection[str]
) -> tuple[frozenset[str], tuple[str, ...]]:
    """Attributes and predefined roles of `extra-user-roles`, or RequestRefusedError."""
    attributes: set[str] = set()
    roles: list[str] = []
    for part in _split(raw):
        shown = repr(part)[:64]
        value = part.lower()
        if value in ATTRIBUTES:
            attributes.add(value)
        elif value == SUPERUSER:
            if app not in superuser_apps:
                raise RequestRefusedError(
                    f"{app} may not request SUPERUSER: only the applications in the"
                    " superuser-clients option may (a PgBouncer charm needs it)"
                )
            attributes.add(value)
        elif value in PREDEFINED_ROLES:
            roles.append(value)
        else:
            allowed = ", ".join(sorted({*ATTRIBUTES, SUPERUSER, *PREDEFINED_ROLES}))
            raise RequestRefusedError(
                f"extra-user-roles {shown} is not allowed: use any of {allowed}"
            )
    return frozenset(attributes), tuple(sorted(set(roles)))


def check_extensions(raw: str | None, enabled: Collection[str], provider: str) -> None:
    """Refuse a request for extensions the operator has not enabled through config."""
    # Extension names as PostgreSQL spells them (uuid-ossp), keyed by an underscore spelling
    # so that a requirer may write either.
    known = {e.replace("-", "_"): e for e in config_options.EXTENSION_OPTIONS.values()}
    missing: list[str] = []
    for part in _split(raw):
        name = part.split(":", 1)[0].strip()
        canonical = known.get(name.replace("-", "_"))
        if not _EXTENSION_RE.fullmatch(name) or canonical is None:
            raise RequestRefusedError(f"extension {repr(name)[:64]} is not available")
        if canonical not in enabled:
            missing.append(canonical)
    if missing:
        options = " ".join(
            f"{config_options.extension_option(name)}=true" for name in sorted(missing)
        )
        raise RequestRefusedError(
            f"requested extensions are not enabled: {', '.join(sorted(missing))}"
            f" (an operator can run `juju config {provider} {options}`)"
        )


def plan(
    request: ClientRequest,
    enabled_extensions: Collection[str],
    superuser_apps: Collection[str],
    provider: str = "postgresql-k8s",
) -> ClientPlan:
    """Everything the charm will create for a request, or RequestRefusedError saying why not."""
    database = check_database(request.database)
    attributes, roles = check_roles(request.extra_user_roles, request.app, superuser_apps)
    check_extensions(request.extensions, enabled_extensions, provider)
    return ClientPlan(
        request=request,
        user=user_name(request),
        database=database,
        owner=owner_role(database),
        createdb="createdb" in attributes,
        createrole="createrole" in attributes,
        superuser=SUPERUSER in attributes,
        roles=roles,
    )


def rules_digest(rules: Iterable[tuple[str, str]]) -> str:
    """A short digest of a set of (database, user) rules, to compare what units have applied."""
    text = "\n".join(f"{db}\t{user}" for db, user in sorted(set(rules)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
