"""What a client request may get: names, role attributes and extensions checked before any SQL."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence

import client_options
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

    @property
    def elevated(self) -> bool:
        """Whether the plan grants anything only an operator may allow."""
        granted = {*self.roles, *(("superuser",) if self.superuser else ())}
        granted |= {"createrole"} if self.createrole else set()
        return bool(granted & client_options.ELEVATED_PRIVILEGES)


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


# Before 16, CREATEROLE may grant any non-superuser role (pg_execute_server_program, then
# COPY ... FROM PROGRAM as the server's OS user) and change any non-superuser's password.
CREATEROLE_SINCE = 16


def check_roles(
    raw: str | None,
    request: ClientRequest,
    allowed: Collection[str],
    provider: str,
    server_major: int,
) -> tuple[frozenset[str], tuple[str, ...]]:
    """Attributes and predefined roles of `extra-user-roles`, or RequestRefusedError.

    An elevated privilege (client_options.ELEVATED_PRIVILEGES) is granted only where the operator
    allowed it for this very relation (`allowed`); CREATEROLE never before PostgreSQL 16.
    """
    attributes: set[str] = set()
    roles: list[str] = []
    for part in _split(raw):
        shown = repr(part)[:64]
        value = part.lower()
        if value == "createrole" and server_major < CREATEROLE_SINCE:
            raise RequestRefusedError(
                f"createrole is not offered on PostgreSQL {server_major}: it could grant itself"
                " pg_execute_server_program and change other roles' passwords"
            )
        if value in client_options.ELEVATED_PRIVILEGES and value not in allowed:
            entry = f"{request.app}/{request.relation_id}:{value}"
            raise RequestRefusedError(
                f"{value} needs an operator's decision: `juju config {provider}"
                f" client-privileges={entry}` (added to the entries already there)"
            )
        if value in ATTRIBUTES or value == SUPERUSER:
            attributes.add(value)
        elif value in PREDEFINED_ROLES:
            roles.append(value)
        else:
            allowed_names = ", ".join(sorted({*ATTRIBUTES, SUPERUSER, *PREDEFINED_ROLES}))
            raise RequestRefusedError(
                f"extra-user-roles {shown} is not allowed: use any of {allowed_names}"
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
    privileges: Mapping[tuple[str, int], Collection[str]],
    provider: str = "postgresql-k8s",
    server_major: int = CREATEROLE_SINCE,
) -> ClientPlan:
    """Everything the charm will create for a request, or RequestRefusedError saying why not."""
    database = check_database(request.database)
    allowed = privileges.get((request.app, request.relation_id), frozenset[str]())
    attributes, roles = check_roles(
        request.extra_user_roles, request, allowed, provider, server_major
    )
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


# Requests one relation may make: each is a user, a database and a login probe on every member,
# so an unbounded list could make one hook run for minutes.
MAX_REQUESTS_PER_RELATION = 16


def bounded(requests: Sequence[ClientRequest], problems: dict[str, str]) -> list[ClientRequest]:
    """The first MAX_REQUESTS_PER_RELATION requests of each relation; the rest refused."""
    kept: list[ClientRequest] = []
    counts: dict[int, int] = {}
    for request in requests:
        counts[request.relation_id] = counts.get(request.relation_id, 0) + 1
        if counts[request.relation_id] <= MAX_REQUESTS_PER_RELATION:
            kept.append(request)
    for relation_id, count in counts.items():
        if count > MAX_REQUESTS_PER_RELATION:
            app = next(r.app for r in requests if r.relation_id == relation_id)
            problems[str(relation_id)] = (
                f"{app}: {count} requests on one relation, at most"
                f" {MAX_REQUESTS_PER_RELATION} are served"
            )
    return kept


def claim(
    plans: Sequence[ClientPlan],
    owners: Mapping[str, str],
    sharing: Mapping[str, Collection[str]],
    problems: dict[str, str],
    provider: str,
) -> tuple[list[ClientPlan], dict[str, str]]:
    """Plans whose database belongs to their application (or is shared with it), and the owners.

    A database belongs to the first application that asked for it (relations in the order
    Juju numbered them) and stays its own after its relations are gone, data included.
    """
    owners = dict(owners)
    kept: list[ClientPlan] = []
    for plan in sorted(plans, key=lambda p: p.request.relation_id):
        app, database = plan.request.app, plan.database
        owner = owners.setdefault(database, app)
        if owner == app or {owner, app} <= set(sharing.get(database, ())):
            kept.append(plan)
            continue
        theirs = sorted(
            {
                p.request.relation_id
                for p in plans
                if p.request.app == owner and p.database == database
            }
        )
        where = f" (relation {', '.join(map(str, theirs))})" if theirs else ""
        problems[str(plan.request.relation_id)] = (
            f"{app}: database {database} belongs to {owner}{where}; to share it:"
            f" `juju config {provider} shared-databases={database}:{owner}+{app}`"
        )
    return kept, owners
