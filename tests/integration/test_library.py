"""The postgresql charm library against a real PostgreSQL 15 server."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from charms.postgresql_k8s.v0 import postgresql as lib
from tests.integration import pg_server as pg
from tests.integration.pg_server import PgServer, pg_server
from tests.integration.polling import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Generator[PgServer, None, None]:
    with pg_server() as running:
        yield running


@pytest.fixture
def db(server: PgServer) -> lib.PostgreSQL:
    return lib.PostgreSQL(
        primary_host=server.host,
        port=server.port,
        user=server.superuser,
        password=server.password,
        connect_timeout=5,
    )


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def _password() -> str:
    return secrets.token_urlsafe(18)


def _snapshot(server: PgServer) -> tuple[list[Any], list[Any]]:
    with server.connect() as conn:
        roles = [r for (r,) in conn.execute("SELECT rolname FROM pg_roles ORDER BY 1")]
        dbs = [d for (d,) in conn.execute("SELECT datname FROM pg_database ORDER BY 1")]
    return roles, dbs


def test_user_owns_database_and_others_cannot_connect(server: PgServer, db: lib.PostgreSQL):
    alice, bob = _name("alice"), _name("bob")
    alice_pw, bob_pw = _password(), _password()
    db.create_user(alice, alice_pw)
    db.create_user(bob, bob_pw)
    db.create_database(f"{alice}_db", alice)
    db.create_database(f"{bob}_db", bob)
    db.create_database(f"{alice}_db", alice)  # idempotent

    assert db.user_exists(alice) and db.database_exists(f"{alice}_db")
    assert {alice, bob} <= set(db.list_users())
    assert {f"{alice}_db", f"{bob}_db", "postgres"} <= set(db.list_databases())
    assert "template1" not in db.list_databases()
    assert "postgres" not in db.list_users()

    with server.connect(alice, alice_pw, f"{alice}_db") as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two')")
        assert conn.execute("SELECT body FROM notes ORDER BY id").fetchall() == [
            ("one",),
            ("two",),
        ]
        row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database"
                           " WHERE datname = current_database()").fetchone()  # fmt: skip
        assert row == (alice,)

    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        server.connect(alice, alice_pw, f"{bob}_db")
    alice_lib = lib.PostgreSQL(
        primary_host=server.host, port=server.port, user=alice, password=alice_pw
    )
    with pytest.raises(lib.PostgreSQLConnectionError, match="permission denied") as info:
        alice_lib.connect(f"{bob}_db")
    assert alice_pw not in str(info.value)

    # Another owner is refused, never silently swapped in.
    with pytest.raises(lib.PostgreSQLCreateDatabaseError, match="another owner"):
        db.create_database(f"{alice}_db", bob)
    # grant_connect opens the door, but the schema's objects stay private.
    db.grant_connect(f"{alice}_db", bob)
    with (
        server.connect(bob, bob_pw, f"{alice}_db") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT * FROM notes")


def test_stored_password_is_a_scram_verifier(server: PgServer, db: lib.PostgreSQL):
    user, password = _name("scram"), _password()
    db.create_user(user, password)
    with server.connect() as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,))
        stored = str((row.fetchone() or ("",))[0])
    assert stored.startswith("SCRAM-SHA-256$4096:")
    with server.connect(user, password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)
        assert conn.pgconn.used_password


@pytest.mark.parametrize(
    "password",
    [
        "caf\u00e9 \u00a0\ufb01\u00ad",  # SASLprep maps, removes and normalises
        "\u00e9\x07bell",  # SASLprep refuses it: raw bytes on both sides
        "\u0627a\u0627",  # bidi failure: raw bytes
        "x" * 1024,
    ],
    ids=["saslprep", "prohibited", "bidi", "longest"],
)
def test_non_ascii_passwords_log_in_through_libpq(
    server: PgServer, db: lib.PostgreSQL, password: str
):
    user = _name("utf8")
    db.create_user(user, password)
    with server.connect(user, password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)


def test_drop_user_reassigns_everything_and_keeps_data(server: PgServer, db: lib.PostgreSQL):
    carol, dave = _name("carol"), _name("dave")
    carol_pw, dave_pw = _password(), _password()
    db.create_user(carol, carol_pw)
    db.create_user(dave, dave_pw)
    db.create_database(f"{carol}_db", carol)
    db.create_database(f"{dave}_db", dave)
    db.grant_connect(f"{dave}_db", carol)
    with server.connect(dbname=f"{dave}_db") as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(carol)))
    with server.connect(dave, dave_pw, f"{dave}_db") as conn:
        conn.execute("CREATE TABLE shared (n int)")
        # An ACL entry that DROP OWNED must remove before the role can go.
        conn.execute(sql.SQL("GRANT SELECT ON shared TO {}").format(sql.Identifier(carol)))
    with server.connect(carol, carol_pw, f"{carol}_db") as conn:
        conn.execute("CREATE TABLE kept AS SELECT generate_series(1, 100) AS n")
    with server.connect(carol, carol_pw, f"{dave}_db") as conn:
        conn.execute("CREATE TABLE carols AS SELECT 'hello'::text AS greeting")

    db.drop_user(carol, reassign_owned_to=dave)
    db.drop_user(carol, reassign_owned_to=dave)  # idempotent

    assert not db.user_exists(carol)
    with server.connect(dave, dave_pw, f"{carol}_db") as conn:
        assert conn.execute("SELECT count(*), sum(n) FROM kept").fetchone() == (100, 5050)
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row == (dave,)
    with server.connect(dave, dave_pw, f"{dave}_db") as conn:
        assert conn.execute("SELECT greeting FROM carols").fetchone() == ("hello",)
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'carols'")
        assert owner.fetchone() == (dave,)


def test_drop_user_to_missing_heir_fails_typed(db: lib.PostgreSQL):
    user = _name("orphan")
    db.create_user(user, _password())
    with pytest.raises(lib.PostgreSQLDropUserError, match="does not exist"):
        db.drop_user(user, reassign_owned_to=_name("nobody"))
    assert db.user_exists(user)


def test_password_change(server: PgServer, db: lib.PostgreSQL):
    user, old, new = _name("rotate"), _password(), _password()
    db.create_user(user, old)
    assert db.password_matches(user, old)
    db.alter_user_password(user, new)
    assert db.password_matches(user, new)
    assert not db.password_matches(user, old)
    assert not db.password_matches(_name("ghost"), new)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        server.connect(user, old)
    with server.connect(user, new) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(lib.PostgreSQLUpdatePasswordError, match="does not exist") as info:
        db.alter_user_password(_name("ghost"), new)
    assert new not in str(info.value)


def test_create_user_is_an_upsert_with_roles(server: PgServer, db: lib.PostgreSQL):
    user, group, password = _name("member"), _name("group"), _password()
    db.create_user(group, login=False)
    assert not db.password_matches(group, password)  # no password at all
    db.create_user(user, password, in_roles=[group, "pg_monitor"], connection_limit=3)
    db.create_user(user, createdb=True)  # no password: the old one stays
    with server.connect() as conn:
        row = conn.execute(
            "SELECT rolcanlogin, rolcreatedb, rolconnlimit FROM pg_roles WHERE rolname = %s",
            (user,),
        ).fetchone()
        assert row == (True, True, -1)
        members = conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY 1",
            (user,),
        ).fetchall()
        assert sorted(members) == sorted([(group,), ("pg_monitor",)])
    with server.connect(user, password) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    db.revoke_roles(user, [group, "pg_monitor"])
    db.grant_roles(user, ["pg_read_all_data"])
    with server.connect() as conn:
        members = conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (user,),
        ).fetchall()
        assert members == [("pg_read_all_data",)]
    with pytest.raises(lib.PostgreSQLGrantError, match="does not exist"):
        db.grant_roles(user, [_name("missing")])
    db.create_user(user, connection_limit=0)  # zero means no sessions at all
    with pytest.raises(psycopg.OperationalError, match="too many connections"):
        server.connect(user, password)


def test_extensions_enable_disable_and_refuse_in_use(server: PgServer, db: lib.PostgreSQL):
    owner, owner_pw = _name("ext"), _password()
    database = f"{owner}_db"
    db.create_user(owner, owner_pw)
    db.create_database(database, owner)

    db.enable_extensions({"citext": True, "earthdistance": True})  # needs cube: CASCADE
    for name in (database, "template1", "postgres"):
        assert {"citext", "cube", "earthdistance"} <= set(db.list_enabled_extensions(name))
    later = f"{owner}_later"
    db.create_database(later, owner)  # inherits from template1
    assert {"citext", "earthdistance"} <= set(db.list_enabled_extensions(later))

    with server.connect(owner, owner_pw, database) as conn:
        conn.execute("CREATE TABLE people (email citext PRIMARY KEY)")
        conn.execute("INSERT INTO people VALUES ('Ann@Example.com')")

    # Dropping citext would drop the column: refused, and the whole database rolls back.
    with pytest.raises(lib.PostgreSQLExtensionInUseError, match=database):
        db.enable_extensions({"earthdistance": False, "citext": False}, databases=[database])
    assert {"citext", "earthdistance"} <= set(db.list_enabled_extensions(database))
    with server.connect(owner, owner_pw, database) as conn:
        row = conn.execute("SELECT email FROM people WHERE email = 'ann@example.COM'").fetchone()
        assert row == ("Ann@Example.com",)

    # Dependents are dropped first, whatever the order asked.
    db.enable_extensions({"cube": False, "earthdistance": False}, databases=[database, later])
    for name in (database, later):
        enabled = db.list_enabled_extensions(name)
        assert "cube" not in enabled and "earthdistance" not in enabled and "citext" in enabled
    db.enable_extensions({"cube": False}, databases=[database])  # already gone: no-op

    # cube alone is still required by earthdistance in template1.
    with pytest.raises(lib.PostgreSQLExtensionInUseError):
        db.enable_extensions({"cube": False}, databases=["template1"])

    before = db.list_enabled_extensions(database)
    with pytest.raises(lib.PostgreSQLExtensionError, match="not available"):
        db.enable_extensions(["hstore", "no_such_extension"])
    assert db.list_enabled_extensions(database) == before
    assert {"citext", "hstore", "cube"} <= set(db.available_extensions())


def test_plaintext_and_verifier_never_logged(server: PgServer, db: lib.PostgreSQL):
    user = _name("logged")
    first, second = f"first-{_password()}", f"second-{_password()}"
    marker = _name("marker")
    db.create_user(user, first)
    db.alter_user_password(user, second)
    with pytest.raises(lib.PostgreSQLUpdatePasswordError):
        db.alter_user_password(_name("ghost"), first)  # failing statements are not logged
    with server.connect(user, second) as conn:
        conn.execute(sql.SQL("SELECT {}").format(sql.Literal(marker)))
    with server.connect() as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,))
        stored = str((row.fetchone() or ("",))[0])

    log = server.log_text()
    assert f"SELECT '{marker}'" in log  # log_statement=all is really on
    assert first not in log
    assert second not in log
    assert stored.startswith("SCRAM-SHA-256$")
    assert stored not in log
    assert "SCRAM-SHA-256$" not in log


def test_server_state(server: PgServer, db: lib.PostgreSQL):
    assert db.get_server_version().startswith("15.")
    assert db.is_in_recovery() is False
    assert db.get_pending_restart_parameters() == []
    with server.connect() as conn:
        conn.execute("ALTER SYSTEM SET max_connections = 120")
        conn.execute("SELECT pg_reload_conf()")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not db.get_pending_restart_parameters():
            time.sleep(0.1)
        assert db.get_pending_restart_parameters() == ["max_connections"]
    finally:
        with server.connect() as conn:
            conn.execute("ALTER SYSTEM RESET max_connections")
            conn.execute("SELECT pg_reload_conf()")


def test_connection_failure_is_typed_and_redacted(server: PgServer):
    wrong = _password()
    bad = lib.PostgreSQL(
        primary_host=server.host, port=server.port, user="postgres", password=wrong
    )
    with pytest.raises(lib.PostgreSQLConnectionError, match="password authentication") as info:
        bad.get_server_version()
    assert wrong not in str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        'evil"; CREATE ROLE pwned SUPERUSER; --',
        "evil'; CREATE ROLE pwned; --",
        "evil; CREATE ROLE pwned",
        "x" * 64,
        "a\x00b",
        "",
        "with space",
        "naïve",
    ],
    ids=repr,
)
def test_hostile_names_create_nothing(server: PgServer, db: lib.PostgreSQL, name: str):
    before = _snapshot(server)
    log_size = len(server.log_text())
    for call in (
        lambda: db.create_user(name, _password()),
        lambda: db.create_database(name, "postgres"),
        lambda: db.create_database("fine_db", name),
        lambda: db.drop_user(name, reassign_owned_to="postgres"),
        lambda: db.grant_roles("postgres", [name]),
        lambda: db.grant_connect("postgres", name),
        lambda: db.enable_extensions([name]),
    ):
        with pytest.raises(lib.PostgreSQLInvalidNameError):
            call()
    assert server.log_text()[log_size:] == ""  # not even a connection was made
    assert _snapshot(server) == before
    assert "fine_db" not in before[1]


@pytest.mark.parametrize("name", ["postgres", "pg_evil", "PUBLIC", "current_user"])
def test_reserved_names_create_or_drop_nothing(server: PgServer, db: lib.PostgreSQL, name: str):
    before = _snapshot(server)
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="reserved"):
        db.create_user(name, _password(), superuser=True)
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="reserved"):
        db.drop_user(name, reassign_owned_to="postgres")
    assert _snapshot(server) == before
    with server.connect() as conn:  # the bootstrap superuser keeps its password
        assert conn.execute("SELECT 1").fetchone() == (1,)


# Function privileges: what the backup role needs instead of superuser

BACKUP_FUNCTIONS = [
    "pg_catalog.pg_backup_start(text, boolean)",
    "pg_catalog.pg_backup_stop(boolean)",
    "pg_catalog.pg_switch_wal()",
    "pg_catalog.pg_create_restore_point(text)",
]


def _can_execute(server: PgServer, user: str) -> list[bool]:
    with server.connect() as conn:
        return [
            bool(row[0])
            for function in BACKUP_FUNCTIONS
            for row in conn.execute(
                "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (user, function)
            )
        ]


def _catalog_rows(server: PgServer) -> list[Any]:
    """The pg_proc rows of the backup functions with their row versions (xmin) and ACLs."""
    with server.connect() as conn:
        return conn.execute(
            "SELECT oid, xmin::text, proacl FROM pg_proc WHERE oid = ANY(%s::regprocedure[])"
            " ORDER BY oid",
            (BACKUP_FUNCTIONS,),
        ).fetchall()


def test_backup_functions_granted_once_and_usable(server: PgServer, db: lib.PostgreSQL):
    user, password = _name("backup"), _password()
    db.create_user(user, password)
    assert _can_execute(server, user) == [False] * 4
    with (
        server.connect(user, password) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT pg_switch_wal()")

    assert db.grant_function_execute(user, BACKUP_FUNCTIONS) == BACKUP_FUNCTIONS
    assert _can_execute(server, user) == [True] * 4
    with server.connect(user, password) as conn:  # a non-superuser really runs them
        conn.execute("SELECT pg_backup_start('library test', true)")
        conn.execute("SELECT * FROM pg_backup_stop(false)")
        conn.execute("SELECT pg_create_restore_point('library test')")
        conn.execute("SELECT pg_switch_wal()")

    before = _catalog_rows(server)
    assert db.grant_function_execute(user, BACKUP_FUNCTIONS) == []
    assert _catalog_rows(server) == before  # no GRANT ran: the rows kept their versions

    with server.connect() as conn:
        conn.execute(
            sql.SQL("REVOKE EXECUTE ON FUNCTION pg_switch_wal() FROM {}").format(
                sql.Identifier(user)
            )
        )
    assert db.grant_function_execute(user, BACKUP_FUNCTIONS) == ["pg_catalog.pg_switch_wal()"]
    assert _can_execute(server, user) == [True] * 4


def test_function_grant_refuses_what_does_not_resolve(server: PgServer, db: lib.PostgreSQL):
    user = _name("backup")
    db.create_user(user, _password())
    before = _catalog_rows(server)
    for functions, message in [
        ([*BACKUP_FUNCTIONS, "pg_catalog.no_such_function()"], "does not exist"),
        ([*BACKUP_FUNCTIONS, "pg_catalog.pg_switch_wal(text)"], "does not exist"),
        ([f"DROP ROLE {user}; pg_catalog.pg_switch_wal()"], "syntax|name"),
    ]:
        with pytest.raises(lib.PostgreSQLGrantError, match=message):
            db.grant_function_execute(user, functions)
    with pytest.raises(lib.PostgreSQLGrantError, match="does not exist"):
        db.grant_function_execute(_name("nobody"), BACKUP_FUNCTIONS)
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="in parentheses"):
        db.grant_function_execute(user, [*BACKUP_FUNCTIONS, f"f(); DROP ROLE {user}; f()"])
    assert db.user_exists(user)
    assert _can_execute(server, user) == [False] * 4  # all or nothing
    assert _catalog_rows(server) == before


def test_function_grant_never_reaches_public(server: PgServer, db: lib.PostgreSQL):
    before = _catalog_rows(server)
    for grantee in ("public", "PUBLIC", "none"):
        with pytest.raises(lib.PostgreSQLInvalidNameError, match="reserved"):
            db.grant_function_execute(grantee, BACKUP_FUNCTIONS)
    assert _catalog_rows(server) == before
    assert _can_execute(server, "public") == [False] * 4
    # What PUBLIC may already run needs no grant, and gets none.
    user = _name("anyone")
    db.create_user(user, _password())
    assert db.grant_function_execute(user, ["pg_catalog.now()", "lower(text)"]) == []
    with server.connect() as conn:
        row = conn.execute("SELECT proacl FROM pg_proc WHERE oid = 'now()'::regprocedure")
        assert row.fetchone() == (None,)  # still the built-in default


# WAL archiving


@contextlib.contextmanager
def _postgres_dir(prefix: str) -> Generator[Path, None, None]:
    """A directory the postgres OS user owns, removed afterwards."""
    account = pwd.getpwnam(pg.OS_USER)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        os.chown(path, account.pw_uid, account.pw_gid)
        path.chmod(0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _switch_wal(server: PgServer) -> str:
    """Write something, close the WAL file, and return the closed file's name."""
    with server.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (n int)")
        conn.execute("INSERT INTO wal_filler SELECT generate_series(1, 1000)")
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    return str(row[0])


def _set_archive_command(server: PgServer, command: str | None, expected: str) -> None:
    """Override (or, with None, restore) archive_command; wait until new sessions see it."""
    with server.connect() as conn:
        if command is None:
            conn.execute("ALTER SYSTEM RESET archive_command")
        else:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command))
            )
        conn.execute("SELECT pg_reload_conf()")

    def reloaded() -> bool:
        # A new session forks from a postmaster that has reloaded and signalled the archiver.
        with server.connect() as conn:
            row = conn.execute("SELECT current_setting('archive_command')").fetchone()
        return row == (expected,)

    eventually(reloaded, 10, f"archive_command {expected!r} loaded")


def test_archiver_status_follows_a_real_archive_command():
    with _postgres_dir("archive-") as archive:
        copy = f"test ! -f {archive}/%f && cp %p {archive}/%f"
        settings = {"archive_mode": "on", "wal_level": "replica", "archive_command": copy}
        with pg_server(settings=settings) as server:
            db = lib.PostgreSQL(
                primary_host=server.host,
                port=server.port,
                user=server.superuser,
                password=server.password,
            )
            start = db.get_archiver_status()
            assert start.wal_segment_size == 16 * 1024 * 1024
            assert start.last_archived_wal is None and start.last_archived_time is None
            assert start.current_wal is not None and start.segments_behind is None
            assert not start.failing

            for _ in range(3):
                closed = _switch_wal(server)
            archived = eventually(
                lambda: (s := db.get_archiver_status()).last_archived_wal == closed and s,
                30,
                f"{closed} archived",
            )
            assert (archive / closed).stat().st_size == archived.wal_segment_size
            assert archived.current_wal is not None and archived.current_wal > closed
            assert archived.segments_behind == 0
            assert archived.last_archived_time is not None and not archived.failing

            _set_archive_command(server, "exit 1", "exit 1")
            stuck = [_switch_wal(server), _switch_wal(server)]
            failing = eventually(
                lambda: (s := db.get_archiver_status()).failing and s, 30, "archiving failing"
            )
            assert failing.last_archived_wal == closed  # nothing archived since
            assert failing.last_failed_wal == stuck[0]  # the archiver keeps to the oldest file
            assert failing.segments_behind == 2
            assert not (archive / stuck[0]).exists()

            _set_archive_command(server, None, copy)  # back to the cp from postgresql.conf
            healed = eventually(
                lambda: (s := db.get_archiver_status()).last_archived_wal == stuck[1] and s,
                60,
                "archiving resumed",
            )
            assert not healed.failing and healed.segments_behind == 0
            assert (archive / stuck[0]).exists() and (archive / stuck[1]).exists()
            assert healed.last_failed_wal == stuck[0]  # the failure stays on record


# Sessions of dropped roles


def _alive(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    try:
        return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def _listed(server: PgServer, pid: int) -> bool:
    with server.connect() as conn:
        return bool(
            conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        )


def test_primary_keeps_sessions_of_a_dropped_role_until_terminated(
    server: PgServer, db: lib.PostgreSQL
):
    gone, kept = _name("gone"), _name("kept")
    gone_pw, kept_pw = _password(), _password()
    db.create_user(gone, gone_pw)
    db.create_user(kept, kept_pw)
    with server.connect(gone, gone_pw) as orphan, server.connect(kept, kept_pw) as other:
        with server.connect() as conn:  # a plain DROP ROLE, as a replica replays it
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(gone)))
        assert _alive(orphan), "PostgreSQL 15 drops a role with open sessions and keeps them"

        assert db.terminate_orphaned_sessions() == 1
        eventually(lambda: not _listed(server, orphan.info.backend_pid), 10, "session ended")
        assert not _alive(orphan)
        assert _alive(other)
        assert db.terminate_orphaned_sessions() == 0


def test_drop_user_ends_its_sessions(server: PgServer, db: lib.PostgreSQL):
    user, password = _name("leaving"), _password()
    db.create_user(user, password)
    with server.connect(user, password) as session:
        db.drop_user(user, reassign_owned_to=server.superuser)
        eventually(lambda: not _listed(server, session.info.backend_pid), 10, "session ended")
        assert not _alive(session)


@contextlib.contextmanager
def _standby(primary: PgServer) -> Generator[PgServer, None, None]:
    """A hot standby streaming from `primary`, made with pg_basebackup."""
    account = pwd.getpwnam(pg.OS_USER)
    with _postgres_dir("standby-") as base:
        passfile = base / "pgpass"
        passfile.write_text(f"*:*:*:{primary.superuser}:{primary.password}\n")
        os.chown(passfile, account.pw_uid, account.pw_gid)
        passfile.chmod(0o600)
        data_dir = base / "data"
        subprocess.run(
            pg.as_postgres(
                *("env", f"PGPASSFILE={passfile}", str(pg.PG_BIN / "pg_basebackup")),
                *(f"--pgdata={data_dir}", f"--host={primary.host}", f"--port={primary.port}"),
                *(f"--username={primary.superuser}", "--checkpoint=fast", "--no-sync"),
                "--write-recovery-conf",
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        conninfo = f"host={primary.host} port={primary.port} user={primary.superuser}"
        settings = {"primary_conninfo": f"{conninfo} passfile={passfile}"}
        with pg.run_data_dir(data_dir, primary.superuser, primary.password, settings) as standby:
            yield standby


def test_standby_sessions_of_a_role_dropped_on_the_primary(server: PgServer, db: lib.PostgreSQL):
    user, password = _name("replicated"), _password()
    with _standby(server) as standby:
        replica = lib.PostgreSQL(
            primary_host=standby.host,
            port=standby.port,
            user=standby.superuser,
            password=standby.password,
        )
        assert replica.is_in_recovery()
        status = replica.get_archiver_status()
        assert status.current_wal is None and status.segments_behind is None

        db.create_user(user, password)
        eventually(lambda: replica.user_exists(user), 30, "role replicated")
        with standby.connect(user, password) as session:
            db.drop_user(user, reassign_owned_to=server.superuser)
            eventually(lambda: not replica.user_exists(user), 30, "DROP ROLE replayed")
            assert _alive(session), "replaying DROP ROLE ends no session on the standby"

            assert replica.terminate_orphaned_sessions() == 1
            pid = session.info.backend_pid
            eventually(lambda: not _listed(standby, pid), 10, "standby session ended")
            assert not _alive(session)
