"""The postgresql charm library against a real PostgreSQL 15 server."""

from __future__ import annotations

import secrets
import time
from collections.abc import Generator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from charms.postgresql_k8s.v0 import postgresql as lib
from tests.integration.pg_server import PgServer, pg_server

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
