"""Manage PostgreSQL users, databases, privileges, extensions and sessions; read WAL archiving.

This is a Charmhub charm library. The PostgreSQL charm uses it for its own system users, and
other charms that act on the database (for example a PgBouncer charm) can use it too. Fetch it
with ``charmcraft fetch-lib charms.postgresql_k8s.v0.postgresql``, add ``psycopg[binary]`` to
the charm's requirements, and then::

    from charms.postgresql_k8s.v0.postgresql import PostgreSQL, PostgreSQLError

    db = PostgreSQL(primary_host="10.1.2.3", user="operator", password=secret)
    try:
        db.create_user("relation_7", password=generated, in_roles=["pg_read_all_data"])
        db.create_database("orders", owner="relation_7")
        db.enable_extensions({"citext": True, "hstore": False})
    except PostgreSQLError as e:
        ...  # each operation raises its own subclass; see the exception classes below

Security properties:

- Passwords never reach the server in clear: the library sends a SCRAM-SHA-256 verifier
  computed on the client (:func:`scram_sha256_verifier`). Connected as a superuser, the library
  also keeps the statement that carries the verifier out of the server log and of
  pg_stat_statements; other users cannot, so with ``log_statement`` covering DDL the log may
  show the verifier (never the plaintext).
- SQL is composed with ``psycopg.sql.Identifier`` and ``sql.Literal`` only. On top of that,
  names are restricted to ``[A-Za-z_][A-Za-z0-9_-]*`` (at most 63 bytes) because they also end up
  in pg_hba.conf, PgBouncer and Patroni files whose quoting rules differ; a bad name raises
  :class:`PostgreSQLInvalidNameError` before any connection is made.
- Reserved names: users named ``postgres``, ``public``, ``none``, ``current_user``,
  ``current_role``, ``session_user`` or starting with ``pg_`` cannot be created or dropped here
  (case-insensitively), and databases ``postgres``, ``template0`` and ``template1`` cannot be
  created. Changing the password of ``postgres`` is allowed so that operators can rotate it,
  and the predefined ``pg_*`` roles can be granted (``pg_monitor``, ``pg_read_all_data``...).
  Which roles a caller may grant is the caller's policy: validate requests from relations
  against an allow-list before calling :meth:`PostgreSQL.grant_roles`.
- Functions are named by their signature (``"pg_catalog.pg_switch_wal()"``), which the server
  resolves as a bound parameter; the GRANT that follows is composed from the catalog's own names.
- Exception messages never contain a password or a verifier.

Every method opens a short-lived connection to the primary, so an instance is cheap and holds
no state besides its connection parameters. Connection failures raise
:class:`PostgreSQLConnectionError` from every method.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Generator, Iterable, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql

if TYPE_CHECKING:  # psycopg < 3.3 has no such name at run time
    from psycopg.abc import QueryNoTemplate

LIBID = "2e0d189c57bd4e2eb0f60de99545b110"
LIBAPI = 0
LIBPATCH = 4
PYDEPS = ["psycopg[binary]>=3.2"]

Connection = psycopg.Connection[tuple[Any, ...]]

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by the server
_MAX_PASSWORD_BYTES = 1024  # libpq refuses to SASLprep longer passwords, so they cannot log in
_VERIFIER_RE = re.compile(
    r"SCRAM-SHA-256\$(?P<iterations>[1-9][0-9]{0,6}):(?P<salt>[A-Za-z0-9+/]+=*)\$[^:]+:.+"
)
_RESERVED_ROLES = frozenset(
    {"postgres", "public", "none", "current_user", "current_role", "session_user"}
)
_RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})
_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_FIRST_NORMAL_OID = 16384  # roles below this were made by initdb (predefined roles, bootstrap)
# A routine's signature as to_regprocedure reads it: a name, then one parenthesised type list.
_SIGNATURE_RE = re.compile(r"[^()\x00]+\([^()\x00]*\)")
_MAX_SIGNATURE_LENGTH = 1024
# A WAL segment file: timeline, then the segment number as two 32-bit halves; the last segment
# of a timeline is archived as ".partial" at a promotion. History files are not segments, nor are
# backup labels: named after the segment a backup started in, they can be archived after later
# segments.
_WAL_FILE_RE = re.compile(r"[0-9A-F]{8}(?P<high>[0-9A-F]{8})(?P<low>[0-9A-F]{8})(?:\.partial)?")


class PostgreSQLError(Exception):
    """Base class of every error raised by this library."""


class PostgreSQLConnectionError(PostgreSQLError):
    """Raised when the server cannot be reached or refuses the connection or credentials."""


class PostgreSQLInvalidNameError(PostgreSQLError):
    """Raised, before any SQL, when a user, role, database or extension name is not accepted."""


class PostgreSQLInvalidPasswordError(PostgreSQLError):
    """Raised, before any SQL, when a password is empty, has a NUL, is too long or not text."""


class PostgreSQLCreateUserError(PostgreSQLError):
    """Raised when creating or updating a user, or granting it its initial roles, fails."""


class PostgreSQLDropUserError(PostgreSQLError):
    """Raised when reassigning a user's objects, revoking its privileges or dropping it fails."""


class PostgreSQLUpdatePasswordError(PostgreSQLError):
    """Raised when the server refuses a password change (for example, the user is missing)."""


class PostgreSQLGrantError(PostgreSQLError):
    """Raised when granting or revoking role memberships or database privileges fails."""


class PostgreSQLCreateDatabaseError(PostgreSQLError):
    """Raised when creating a database or setting its privileges fails, or it has another owner."""


class PostgreSQLExtensionError(PostgreSQLError):
    """Raised when an extension is unavailable or cannot be created or dropped."""


class PostgreSQLExtensionInUseError(PostgreSQLExtensionError):
    """Raised when an extension cannot be disabled because database objects depend on it."""


class PostgreSQLGetVersionError(PostgreSQLError):
    """Raised when the server version cannot be read."""


class PostgreSQLQueryError(PostgreSQLError):
    """Raised when a read-only query (users, databases, extensions, settings, recovery) fails."""


class PostgreSQLTerminateSessionsError(PostgreSQLError):
    """Raised when the server refuses to list or end sessions (for example, missing rights)."""


def _check_name(name: object, kind: str) -> str:
    """Return ``name`` if it is a name this library accepts, else raise."""
    if not isinstance(name, str):
        raise PostgreSQLInvalidNameError(f"{kind} name must be a string")
    shown = repr(name[:70])
    if not name:
        raise PostgreSQLInvalidNameError(f"{kind} name must not be empty")
    if "\x00" in name:
        raise PostgreSQLInvalidNameError(f"{kind} name {shown} contains a NUL character")
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        raise PostgreSQLInvalidNameError(f"{kind} name {shown} is longer than 63 bytes")
    if not _NAME_RE.fullmatch(name):
        raise PostgreSQLInvalidNameError(
            f"{kind} name {shown} must start with a letter or '_' and contain only "
            "letters, digits, '_' and '-'"
        )
    return name


def _check_new_role(name: object) -> str:
    """Return ``name`` if the library may create or drop a role with it, else raise."""
    role = _check_name(name, "user")
    if role.lower() in _RESERVED_ROLES or role.lower().startswith("pg_"):
        raise PostgreSQLInvalidNameError(f"user name {role!r} is reserved")
    return role


def _natural(value: object, what: str, error: type[Exception] = ValueError) -> int:
    """Return ``value`` if it is a non-negative integer (not a bool), else raise ``error``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise error(f"{what} must be a non-negative integer")
    return value


def _check_names(names: Iterable[str], kind: str) -> list[str]:
    if isinstance(names, (str, bytes)):
        raise PostgreSQLInvalidNameError(f"{kind} names must be a collection, not a string")
    return [_check_name(name, kind) for name in names]


def _check_grantee(name: object) -> str:
    """Return ``name`` if privileges may be granted to it, else raise.

    A quoted "public" still means PUBLIC (every role) to the server's grammar, so the
    pseudo-role names are refused; ``postgres`` and predefined roles are not.
    """
    role = _check_name(name, "user")
    if role.lower() in _RESERVED_ROLES - {"postgres"}:
        raise PostgreSQLInvalidNameError(f"user name {role!r} is reserved")
    return role


def _check_signatures(functions: Iterable[str]) -> list[str]:
    """Return routine signatures that look like ``name(type, ...)``, else raise.

    Only the shape is checked here: the server resolves the names and types.
    """
    if isinstance(functions, (str, bytes)):
        raise PostgreSQLInvalidNameError("function signatures must be a collection, not a string")
    checked: list[str] = []
    for function in cast("Iterable[object]", functions):
        if not isinstance(function, str):
            raise PostgreSQLInvalidNameError("function signature must be a string")
        if len(function) > _MAX_SIGNATURE_LENGTH or not _SIGNATURE_RE.fullmatch(function):
            raise PostgreSQLInvalidNameError(
                f"function signature {function[:70]!r} must be a name and a list of argument"
                " types in parentheses, such as 'pg_catalog.pg_switch_wal()'"
            )
        checked.append(function)
    return checked


def _check_password(password: object) -> bytes:
    """Return the SASLprep-ed UTF-8 bytes of ``password``, or raise without echoing it."""
    if not isinstance(password, str):
        raise PostgreSQLInvalidPasswordError("password must be a string")
    if not password:
        raise PostgreSQLInvalidPasswordError("password must not be empty")
    if "\x00" in password:
        raise PostgreSQLInvalidPasswordError("password must not contain NUL characters")
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:
        raise PostgreSQLInvalidPasswordError("password is not valid Unicode text") from None
    if len(raw) > _MAX_PASSWORD_BYTES:
        raise PostgreSQLInvalidPasswordError("password must be at most 1024 bytes")
    return _saslprep(password, raw)


def _saslprep(password: str, raw: bytes) -> bytes:
    """Normalise a password as libpq and the server do before SCRAM (RFC 4013).

    Like PostgreSQL, a password that SASLprep rejects is used as its raw UTF-8 bytes instead
    of being refused, so every password libpq can send also works with our verifier.
    """
    if password.isascii():
        return raw
    mapped = [
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password
        if stringprep.in_table_c12(ch) or not stringprep.in_table_b1(ch)
    ]
    if not mapped:
        return raw
    checks = (
        stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
        stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
        stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
        stringprep.in_table_a1,
    )  # fmt: skip
    # PostgreSQL runs the prohibition and bidi checks on the mapped, not the normalised, text.
    if any(check(ch) for ch in mapped for check in checks):
        return raw
    if any(stringprep.in_table_d1(ch) for ch in mapped) and (
        any(stringprep.in_table_d2(ch) for ch in mapped)
        or not stringprep.in_table_d1(mapped[0])
        or not stringprep.in_table_d1(mapped[-1])
    ):
        return raw
    return unicodedata.normalize("NFKC", "".join(mapped)).encode("utf-8")


def scram_sha256_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """Return the SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677).

    Args:
        password: the plaintext password; it never leaves this process.
        salt: the salt, 16 random bytes when not given (tests pass a fixed one).
        iterations: the PBKDF2 iteration count, 4096 like PostgreSQL's default.

    Raises:
        PostgreSQLInvalidPasswordError: the password is empty, has a NUL or is too long.
        ValueError: ``iterations`` is not a positive integer or ``salt`` is empty.
    """
    prepared = _check_password(password)
    if _natural(iterations, "iterations") < 1:
        raise ValueError("iterations must be a positive integer")
    salt = secrets.token_bytes(16) if salt is None else salt
    if not salt:
        raise ValueError("salt must not be empty")
    salted = hashlib.pbkdf2_hmac("sha256", prepared, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def verifier_matches(verifier: str | None, password: str) -> bool:
    """Return whether a stored SCRAM-SHA-256 ``verifier`` was made from ``password``.

    False for None, MD5 hashes and anything else that is not a SCRAM-SHA-256 verifier.
    """
    match = _VERIFIER_RE.fullmatch(verifier or "")
    if match is None:
        return False
    try:
        salt = base64.b64decode(match["salt"], validate=True)
    except ValueError:
        return False
    iterations = int(match["iterations"])
    expected = scram_sha256_verifier(password, salt=salt, iterations=iterations)
    return hmac.compare_digest(expected.encode(), (verifier or "").encode())


def _describe(action: str, error: psycopg.Error, hidden: Iterable[str]) -> str:
    """Describe a psycopg error for an exception message, with secrets redacted."""
    detail = error.diag.message_primary or str(error) or type(error).__name__
    sqlstate = f" [{error.sqlstate}]" if error.sqlstate else ""
    message = f"{action}: {detail}{sqlstate}"
    for secret in hidden:
        if secret:
            message = message.replace(secret, "<redacted>")
    return message


@contextmanager
def _translate(
    error: type[PostgreSQLError], action: str, hidden: tuple[str, ...] = ()
) -> Generator[None, None, None]:
    """Turn psycopg errors raised inside the block into ``error``; keep ours unchanged."""
    try:
        yield
    except psycopg.Error as e:
        in_use = isinstance(e, psycopg.errors.DependentObjectsStillExist)
        if in_use and error is PostgreSQLExtensionError:
            error = PostgreSQLExtensionInUseError
        # Not chained: the original may quote statement text that holds a verifier.
        raise error(_describe(action, e, hidden)) from None


def _quiet_logging(conn: Connection) -> None:
    """Keep the next statements of this transaction out of the server's logs and statistics.

    Only a superuser may change these settings; other users rely on the server's logging
    configuration (the statement then carries a verifier, never the plaintext).
    """
    row = conn.execute("SELECT current_setting('is_superuser')").fetchone()
    if row is None or row[0] != "on":
        return
    conn.execute(
        "SELECT set_config('log_statement', 'none', true),"
        " set_config('log_min_error_statement', 'panic', true),"
        " set_config('log_min_duration_statement', '-1', true),"
        " set_config('pg_stat_statements.track_utility', 'off', true)"
    )


def _drop_order(requires: Mapping[str, set[str]], names: Iterable[str]) -> list[str]:
    """Order extensions so that each is dropped before the extensions it requires."""
    remaining = set(names)
    ordered: list[str] = []
    while remaining:
        needed = {req for name in remaining for req in requires.get(name, ())}
        ready = sorted(remaining - needed) or sorted(remaining)  # a cycle cannot happen
        ordered.extend(ready)
        remaining.difference_update(ready)
    return ordered


def _terminate_sessions(conn: Connection, condition: sql.Composable) -> int:
    """End the other sessions that ``condition`` selects in pg_stat_activity ``a``; count them.

    The server only signals them: a session can stay listed for a moment after.
    """
    statement = sql.SQL(
        "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a"
        " WHERE a.pid <> pg_backend_pid() AND ({})"
    ).format(condition)
    return sum(1 for (ended,) in conn.execute(statement).fetchall() if ended)


# A role dropped while its sessions run leaves them open, with a role OID that no longer exists.
# A standby always sees this: DROP ROLE reaches it through replication, which ends no session.
_ORPHANED_SESSIONS = sql.SQL(
    "a.backend_type = 'client backend' AND a.usesysid IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = a.usesysid)"
)

# The insert position, never the write position: right after a WAL switch the latter sits on
# the segment boundary, which pg_walfile_name() names after the file just closed. Both raise on
# a standby, hence the CASE (evaluated lazily, as the function is volatile).
_ARCHIVER_STATUS = (
    "SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time,"
    " CASE WHEN pg_is_in_recovery() THEN NULL"
    " ELSE pg_walfile_name(pg_current_wal_insert_lsn()) END,"
    " (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')"
    " FROM pg_stat_archiver"
)

# The routine a signature names, its argument types as catalog names, and whether the role
# can already execute it (directly, through a role or through PUBLIC). No row: no such routine.
_RESOLVE_ROUTINE = (
    "SELECT n.nspname, p.proname,"
    " array(SELECT tn.nspname::text FROM unnest(p.proargtypes) WITH ORDINALITY a(t, i)"
    "  JOIN pg_type ty ON ty.oid = a.t JOIN pg_namespace tn ON tn.oid = ty.typnamespace"
    "  ORDER BY a.i),"
    " array(SELECT ty.typname::text FROM unnest(p.proargtypes) WITH ORDINALITY a(t, i)"
    "  JOIN pg_type ty ON ty.oid = a.t ORDER BY a.i),"
    " has_function_privilege(%s, p.oid, 'EXECUTE')"
    " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE p.oid = to_regprocedure(%s)"
)


def _wal_segment_number(wal_file: str, segment_size: int) -> int | None:
    """The position of a WAL segment file in the WAL stream (timeline ignored), else None."""
    match = _WAL_FILE_RE.fullmatch(wal_file)
    if match is None or segment_size <= 0:
        return None
    per_high = 0x100000000 // segment_size
    low = int(match["low"], 16)
    return int(match["high"], 16) * per_high + low if low < per_high else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RoleInfo:
    """A role's attributes and the roles that hold it.

    Attributes:
        can_login: whether the role itself can log in.
        superuser: whether it is a superuser.
        members: the roles granted it, sorted.
        admins: those of ``members`` that may grant it on (ADMIN OPTION), sorted.
    """

    can_login: bool
    superuser: bool
    members: tuple[str, ...]
    admins: tuple[str, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ArchiverStatus:
    """WAL archiving as one server's pg_stat_archiver shows it, with the WAL file it writes.

    Attributes:
        last_archived_wal: the last file archive_command archived, None before the first.
        last_archived_time: when it did.
        last_failed_wal: the last file archive_command failed on, None if it never failed.
        last_failed_time: when it did.
        current_wal: the WAL file new records go into; None on a standby, which writes none.
        wal_segment_size: the size of a WAL segment file, in bytes.
    """

    last_archived_wal: str | None
    last_archived_time: datetime.datetime | None
    last_failed_wal: str | None
    last_failed_time: datetime.datetime | None
    current_wal: str | None
    wal_segment_size: int

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed: a failure more recent than the last success."""
        if self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time

    @property
    def segments_behind(self) -> int | None:
        """How many complete WAL files wait for archiving, the one being written left out.

        None when there is nothing to compare: nothing archived yet, a standby, or the last
        file archived is not a segment (a timeline history file or a backup label). Timelines
        are ignored because segment numbers carry on across a promotion.
        """
        if self.last_archived_wal is None or self.current_wal is None:
            return None
        last = _wal_segment_number(self.last_archived_wal, self.wal_segment_size)
        current = _wal_segment_number(self.current_wal, self.wal_segment_size)
        if last is None or current is None:
            return None
        return max(current - last - 1, 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PostgreSQL:
    """Client for the administrative operations of a PostgreSQL cluster's primary.

    Only connection parameters are kept; ``password`` is left out of ``repr()``.
    """

    primary_host: str
    user: str
    password: str = dataclasses.field(repr=False)
    port: int = 5432
    database: str = "postgres"
    sslmode: str | None = None
    sslrootcert: str | None = None
    connect_timeout: int = 10
    application_name: str = "postgresql-charm-lib"

    def __post_init__(self) -> None:
        if self.sslmode is not None and self.sslmode not in _SSLMODES:
            raise ValueError(f"sslmode must be one of {sorted(_SSLMODES)}")

    def connect(self, database: str | None = None) -> Connection:
        """Open an autocommit connection; use it as a context manager to close it.

        Raises:
            PostgreSQLConnectionError: the server is unreachable or refused the connection.
        """
        dbname = self.database if database is None else database
        if not dbname or "\x00" in dbname:
            raise PostgreSQLInvalidNameError("database name must be non-empty without NUL")
        try:
            return psycopg.connect(
                host=self.primary_host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=dbname,
                connect_timeout=self.connect_timeout,
                sslmode=self.sslmode,  # None values are left out of the connection string
                sslrootcert=self.sslrootcert,
                application_name=self.application_name,
                autocommit=True,
            )
        except psycopg.Error as e:
            action = f"cannot connect to {dbname!r} on {self.primary_host}:{self.port}"
            raise PostgreSQLConnectionError(_describe(action, e, [self.password])) from None

    def _rows(
        self,
        query: QueryNoTemplate,
        params: tuple[Any, ...] = (),
        *,
        database: str | None = None,
        error: type[PostgreSQLError] = PostgreSQLQueryError,
    ) -> list[tuple[Any, ...]]:
        """Run one read-only query and return all its rows."""
        with _translate(error, "query failed"), self.connect(database) as conn:
            return conn.execute(query, params).fetchall()

    # Users and roles

    def create_user(
        self,
        user: str,
        password: str | None = None,
        *,
        login: bool = True,
        superuser: bool = False,
        createdb: bool = False,
        createrole: bool = False,
        in_roles: Iterable[str] = (),
        connection_limit: int | None = None,
    ) -> None:
        """Create ``user``, or bring an existing one to these attributes, and grant ``in_roles``.

        A ``password`` of None creates the user without one and leaves an existing one as is.
        """
        user = _check_new_role(user)
        roles = _check_names(in_roles, "role")
        if connection_limit is not None:
            _natural(connection_limit, "connection_limit", PostgreSQLCreateUserError)
        verifier = None if password is None else scram_sha256_verifier(password)
        flags = [
            sql.SQL("LOGIN" if login else "NOLOGIN"),
            sql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"),
            sql.SQL("CREATEDB" if createdb else "NOCREATEDB"),
            sql.SQL("CREATEROLE" if createrole else "NOCREATEROLE"),
            sql.SQL("CONNECTION LIMIT {}").format(
                sql.Literal(-1 if connection_limit is None else connection_limit)
            ),
        ]
        if verifier is not None:
            flags.append(sql.SQL("PASSWORD {}").format(sql.Literal(verifier)))
        hidden = (password or "", verifier or "")
        action = f"cannot create user {user!r}"
        with (
            _translate(PostgreSQLCreateUserError, action, hidden),
            self.connect() as conn,
            conn.transaction(),
        ):
            _quiet_logging(conn)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            verb = sql.SQL("ALTER" if exists.fetchone() else "CREATE")
            options = sql.SQL(" ").join(flags)
            conn.execute(sql.SQL("{} ROLE {} WITH {}").format(verb, sql.Identifier(user), options))
            if roles:
                conn.execute(_grant_roles_sql(user, roles))

    def alter_user_password(self, user: str, password: str) -> None:
        """Set the password of an existing ``user`` (``postgres`` included)."""
        user = _check_name(user, "user")
        if user.lower().startswith("pg_"):
            raise PostgreSQLInvalidNameError(f"user name {user!r} is reserved")
        verifier = scram_sha256_verifier(password)
        action = f"cannot change the password of {user!r}"
        statement = sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(verifier)
        )
        with (
            _translate(PostgreSQLUpdatePasswordError, action, (password, verifier)),
            self.connect() as conn,
            conn.transaction(),
        ):
            _quiet_logging(conn)
            conn.execute(statement)

    def password_matches(self, user: str, password: str) -> bool:
        """Return whether ``password`` is ``user``'s current password (False without one).

        Compares against the stored verifier locally, so a caller can skip a needless change;
        the password is never sent. Reading pg_authid needs a superuser connection.
        """
        user = _check_name(user, "user")
        _check_password(password)
        rows = self._rows("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,))
        return bool(rows) and verifier_matches(rows[0][0], password)

    def drop_user(self, user: str, *, reassign_owned_to: str) -> None:
        """Close ``user``'s sessions, give its objects to ``reassign_owned_to``, drop it.

        Ownership is reassigned and privileges dropped in every database where the user has
        any, so its data stays. Sessions are ended before (they could hold locks on what is
        reassigned) and again after the drop, for any that logged in meanwhile. Standbys keep
        theirs: run :meth:`terminate_orphaned_sessions` on each. Does nothing if the user does
        not exist.
        """
        user = _check_new_role(user)
        heir = _check_name(reassign_owned_to, "role")
        if heir == user:
            raise PostgreSQLInvalidNameError("reassign_owned_to must be another role")
        action = f"cannot drop user {user!r}"
        with _translate(PostgreSQLDropUserError, action), self.connect() as conn:
            row = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            if row is None:
                return
            sessions = sql.SQL("a.usesysid = {}::oid").format(sql.Literal(row[0]))
            _terminate_sessions(conn, sessions)
            rows = conn.execute(
                "SELECT DISTINCT d.datname FROM pg_shdepend s"
                " JOIN pg_database d ON d.oid = s.dbid"
                " WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = %s",
                (row[0],),
            ).fetchall()
            # The main database handles shared objects (databases owned, grants on them).
            databases = {str(name) for (name,) in rows} | {self.database}
            for database in sorted(databases):
                with self.connect(database) as other, other.transaction():
                    other.execute(
                        sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                            sql.Identifier(user), sql.Identifier(heir)
                        )
                    )
                    other.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
            _terminate_sessions(conn, sessions)

    def terminate_orphaned_sessions(self) -> int:
        """End the client sessions, on the server connected to, of roles that no longer exist.

        Connect to each member in turn, standbys included: a standby learns of a DROP ROLE
        through replication, which ends none of its sessions. Returns how many sessions were
        signalled; they may stay listed in pg_stat_activity for a moment. Needs a superuser
        or a member of ``pg_signal_backend``.

        Raises:
            PostgreSQLTerminateSessionsError: the sessions could not be listed or signalled.
        """
        action = "cannot end the sessions of dropped roles"
        with _translate(PostgreSQLTerminateSessionsError, action), self.connect() as conn:
            return _terminate_sessions(conn, _ORPHANED_SESSIONS)

    def terminate_user_sessions(self, user: str) -> int:
        """End ``user``'s client sessions on the server connected to; return how many.

        For a privilege taken back: a session keeps what it already holds (open cursors,
        a role it SET) until it ends.

        Raises:
            PostgreSQLTerminateSessionsError: the sessions could not be listed or signalled.
        """
        user = _check_name(user, "user")
        condition = sql.SQL("a.usename = {}").format(sql.Literal(user))
        action = f"cannot end the sessions of {user!r}"
        with _translate(PostgreSQLTerminateSessionsError, action), self.connect() as conn:
            return _terminate_sessions(conn, condition)

    def describe_role(self, role: str) -> RoleInfo | None:
        """What ``role`` can do and who holds it (members, with their admin option); None if absent.

        On PostgreSQL 16 a role created by a non-superuser with CREATEROLE is granted to its
        creator WITH ADMIN OPTION: that shows here as an admin member.
        """
        role = _check_name(role, "role")
        rows = self._rows(
            "SELECT r.rolcanlogin, r.rolsuper,"
            " coalesce(array_agg(m.rolname ORDER BY m.rolname)"
            "  FILTER (WHERE m.rolname IS NOT NULL), '{}'),"
            " coalesce(array_agg(m.rolname ORDER BY m.rolname)"
            "  FILTER (WHERE am.admin_option), '{}')"
            " FROM pg_roles r"
            " LEFT JOIN pg_auth_members am ON am.roleid = r.oid"
            " LEFT JOIN pg_roles m ON m.oid = am.member"
            " WHERE r.rolname = %s GROUP BY r.rolcanlogin, r.rolsuper",
            (role,),
        )
        if not rows:
            return None
        can_login, superuser, members, admins = rows[0]
        return RoleInfo(
            can_login=bool(can_login),
            superuser=bool(superuser),
            members=tuple(str(m) for m in members),
            admins=tuple(str(m) for m in admins),
        )

    def user_exists(self, user: str) -> bool:
        """Return whether a role named ``user`` exists."""
        user = _check_name(user, "user")
        return bool(self._rows("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)))

    def list_users(self) -> list[str]:
        """Return the roles created after initdb (no predefined ``pg_*`` or bootstrap role)."""
        rows = self._rows(
            "SELECT rolname FROM pg_roles WHERE oid >= %s AND rolname !~ '^pg_' ORDER BY 1",
            (_FIRST_NORMAL_OID,),
        )
        return [str(name) for (name,) in rows]

    def grant_roles(self, user: str, roles: Iterable[str]) -> None:
        """Make ``user`` a member of each of ``roles``."""
        user = _check_name(user, "user")
        names = _check_names(roles, "role")
        if names:
            self._execute(_grant_roles_sql(user, names), f"cannot grant roles to {user!r}")

    def revoke_roles(self, user: str, roles: Iterable[str]) -> None:
        """Remove ``user`` from each of ``roles`` (no error if it was not a member)."""
        user = _check_name(user, "user")
        names = _check_names(roles, "role")
        if names:
            statement = sql.SQL("REVOKE {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(user)
            )
            self._execute(statement, f"cannot revoke roles from {user!r}")

    def grant_function_execute(self, user: str, functions: Iterable[str]) -> list[str]:
        """Let ``user`` execute each of ``functions`` where it cannot yet; return those granted.

        Each function is named by its signature, such as
        ``"pg_catalog.pg_backup_start(text, boolean)"``, resolved by the server as
        ``to_regprocedure`` reads it (an unqualified name follows the search path). A role that
        can already execute one (directly, through a role it inherits or through PUBLIC) is
        left as is: a GRANT would rewrite the catalog row even when nothing changes. Every
        signature is resolved before anything is granted, and the grants apply together.

        Raises:
            PostgreSQLInvalidNameError: a bad user name or signature; nothing was sent.
            PostgreSQLGrantError: a function or the user does not exist, or a GRANT failed;
                nothing was granted.
        """
        user = _check_grantee(user)
        signatures = _check_signatures(functions)
        action = f"cannot grant execute on functions to {user!r}"
        with (
            _translate(PostgreSQLGrantError, action),
            self.connect() as conn,
            conn.transaction(),
        ):
            missing: dict[str, sql.Composed] = {}
            for signature in signatures:
                row = conn.execute(_RESOLVE_ROUTINE, (user, signature)).fetchone()
                if row is None:
                    raise PostgreSQLGrantError(f"{action}: function {signature!r} does not exist")
                schema, name, type_schemas, type_names, allowed = row
                if not allowed:
                    types = map(sql.Identifier, type_schemas, type_names)
                    routine = sql.SQL("{}({})").format(
                        sql.Identifier(schema, name), sql.SQL(", ").join(types)
                    )
                    missing[signature] = routine
            for routine in missing.values():
                conn.execute(
                    sql.SQL("GRANT EXECUTE ON ROUTINE {} TO {}").format(
                        routine, sql.Identifier(user)
                    )
                )
        return list(missing)

    def _execute(self, statement: sql.Composed, action: str) -> None:
        """Run one privilege statement (GRANT or REVOKE) in the main database."""
        with _translate(PostgreSQLGrantError, action), self.connect() as conn:
            conn.execute(statement)

    # Databases

    def create_database(
        self, database: str, owner: str, *, revoke_public_connect: bool = True
    ) -> None:
        """Create ``database`` owned by ``owner`` if missing, then set least privileges on it.

        With ``revoke_public_connect``, PUBLIC loses CONNECT and TEMP, so only the owner, the
        users given :meth:`grant_connect` and superusers can connect. The owner gets every right
        on the database and on its ``public`` schema; PUBLIC cannot create in that schema.

        Raises:
            PostgreSQLCreateDatabaseError: the statements failed or the database exists with
                another owner (ownership is never moved silently).
        """
        database = _check_name(database, "database")
        if database.lower() in _RESERVED_DATABASES:
            raise PostgreSQLInvalidNameError(f"database name {database!r} is reserved")
        owner = _check_name(owner, "role")
        db, role = sql.Identifier(database), sql.Identifier(owner)
        action = f"cannot create database {database!r}"
        with _translate(PostgreSQLCreateDatabaseError, action), self.connect() as conn:
            row = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if row is None:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
            elif row[0] != owner:
                raise PostgreSQLCreateDatabaseError(f"{action}: it exists with another owner")
            if revoke_public_connect:
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(db, role))
        with (
            _translate(PostgreSQLCreateDatabaseError, action),
            self.connect(database) as conn,
            conn.transaction(),
        ):
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'public'").fetchone():
                conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
                conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(role))

    def database_exists(self, database: str) -> bool:
        """Return whether ``database`` exists."""
        database = _check_name(database, "database")
        return bool(self._rows("SELECT 1 FROM pg_database WHERE datname = %s", (database,)))

    def list_databases(self) -> list[str]:
        """Return the names of the databases that are not templates."""
        rows = self._rows("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
        return [str(name) for (name,) in rows]

    def grant_connect(self, database: str, user: str) -> None:
        """Allow ``user`` to connect to ``database``."""
        database = _check_name(database, "database")
        user = _check_name(user, "user")
        statement = sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(database), sql.Identifier(user)
        )
        self._execute(statement, f"cannot grant connect on {database!r} to {user!r}")

    # Extensions

    def enable_extensions(
        self,
        extensions: Mapping[str, bool] | Iterable[str],
        databases: Iterable[str] | None = None,
    ) -> None:
        """Enable (True) or disable (False) extensions in ``databases``.

        Without ``databases``, acts on every database that accepts connections, template1
        included so that databases created later inherit the enabled extensions. Each
        database changes in one transaction: all of its changes apply or none does.
        Extensions are created with CASCADE, so their requirements come too; they are dropped
        without CASCADE, dependents first, so nothing that uses them is ever removed.

        Raises:
            PostgreSQLExtensionInUseError: an object still depends on an extension to disable.
            PostgreSQLExtensionError: an extension is not available or a statement failed.
        """
        wanted = _check_extensions(extensions)
        targets = None if databases is None else _check_names(databases, "database")
        if not wanted:
            return
        enable = [name for name, on in wanted.items() if on]
        available = self.available_extensions() if enable else {}
        missing = sorted(name for name in enable if name not in available)
        if missing:
            raise PostgreSQLExtensionError(f"extensions not available: {', '.join(missing)}")
        if targets is None:
            rows = self._rows("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")
            targets = [str(name) for (name,) in rows]
        for database in targets:
            self._apply_extensions(database, wanted)

    def _apply_extensions(self, database: str, wanted: Mapping[str, bool]) -> None:
        action = f"cannot change extensions in {database!r}"
        with (
            _translate(PostgreSQLExtensionError, action),
            self.connect(database) as conn,
            conn.transaction(),
        ):
            requires: dict[str, set[str]] = {}
            for name, required in conn.execute(
                "SELECT e.extname, r.extname FROM pg_extension e"
                " LEFT JOIN pg_depend d ON d.classid = 'pg_extension'::regclass"
                " AND d.objid = e.oid AND d.refclassid = 'pg_extension'::regclass"
                " LEFT JOIN pg_extension r ON r.oid = d.refobjid"
            ).fetchall():
                requires.setdefault(str(name), set()).update([str(required)] if required else [])
            drop = [name for name, on in wanted.items() if not on and name in requires]
            for name in _drop_order(requires, drop):
                conn.execute(sql.SQL("DROP EXTENSION {}").format(sql.Identifier(name)))
            for name in (name for name, on in wanted.items() if on and name not in requires):
                conn.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {} CASCADE").format(
                        sql.Identifier(name)
                    )
                )

    def list_enabled_extensions(self, database: str) -> dict[str, str]:
        """Return the extensions installed in ``database`` with their versions."""
        database = _check_name(database, "database")
        rows = self._rows("SELECT extname, extversion FROM pg_extension", database=database)
        return {str(name): str(version) for name, version in rows}

    def available_extensions(self) -> dict[str, str]:
        """Return the extensions the server can install, with their default versions."""
        rows = self._rows(
            "SELECT name, coalesce(default_version, '') FROM pg_available_extensions"
        )
        return {str(name): str(version) for name, version in rows}

    # Server state

    def get_server_version(self) -> str:
        """Return the server's version, such as ``15.14``."""
        rows = self._rows("SHOW server_version", error=PostgreSQLGetVersionError)
        return str(rows[0][0]).split()[0]

    def is_in_recovery(self) -> bool:
        """Return whether the server is a standby (or still replaying WAL)."""
        return bool(self._rows("SELECT pg_is_in_recovery()")[0][0])

    def get_archiver_status(self) -> ArchiverStatus:
        """Return the WAL archiver's progress on the server connected to (see ArchiverStatus)."""
        rows = self._rows(_ARCHIVER_STATUS)
        archived, archived_at, failed, failed_at, current, segment_size = rows[0]
        return ArchiverStatus(
            last_archived_wal=archived,
            last_archived_time=archived_at,
            last_failed_wal=failed,
            last_failed_time=failed_at,
            current_wal=current,
            wal_segment_size=int(segment_size),
        )

    def get_pending_restart_parameters(self) -> list[str]:
        """Return the settings changed in configuration that wait for a restart to apply."""
        rows = self._rows("SELECT name FROM pg_settings WHERE pending_restart ORDER BY 1")
        return [str(name) for (name,) in rows]


def _grant_roles_sql(user: str, roles: list[str]) -> sql.Composed:
    return sql.SQL("GRANT {} TO {}").format(
        sql.SQL(", ").join(map(sql.Identifier, roles)), sql.Identifier(user)
    )


def _check_extensions(extensions: Mapping[str, bool] | Iterable[str]) -> dict[str, bool]:
    """Return extension names mapped to whether they should be enabled, or raise."""
    if isinstance(extensions, Mapping):
        pairs = list(cast("Mapping[object, object]", extensions).items())
    else:
        pairs = [(name, True) for name in _check_names(extensions, "extension")]
    wanted: dict[str, bool] = {}
    for name, enabled in pairs:
        checked = _check_name(name, "extension")
        if not isinstance(enabled, bool):
            raise PostgreSQLExtensionError(f"extension {checked!r}: expected True or False")
        wanted[checked] = enabled
    return wanted
