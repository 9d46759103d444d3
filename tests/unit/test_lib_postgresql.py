"""Unit tests of the postgresql charm library: SCRAM verifiers, validation, error hygiene."""

from __future__ import annotations

import ast
import base64
import dataclasses
import datetime
import hashlib
import hmac
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any
from unittest.mock import MagicMock

import psycopg
import pytest

from charms.postgresql_k8s.v0 import postgresql as lib

PASSWORD = "s3cret-Pa55word!"


def _keys(verifier: str) -> tuple[int, bytes, bytes, bytes]:
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    assert match, verifier
    iterations, salt, stored, server = match.groups()
    return (
        int(iterations),
        base64.b64decode(salt, validate=True),
        base64.b64decode(stored, validate=True),
        base64.b64decode(server, validate=True),
    )


def _expected(password_bytes: bytes, salt: bytes, iterations: int = 4096) -> str:
    """An independent, minimal computation of the verifier over already-prepared bytes."""
    salted = hashlib.pbkdf2_hmac("sha256", password_bytes, salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    enc = [base64.b64encode(x).decode() for x in (salt, stored, server)]
    return f"SCRAM-SHA-256${iterations}:{enc[0]}${enc[1]}:{enc[2]}"


# SCRAM verifier


def test_verifier_matches_rfc7677_exchange():
    # RFC 7677 section 3: user "user", password "pencil", this salt, 4096 iterations.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    _, _, stored_key, server_key = _keys(lib.scram_sha256_verifier("pencil", salt=salt))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = (
        f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
    ).encode()
    # The server proves itself with ServerKey ...
    signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    # ... and checks the client's proof against StoredKey, as PostgreSQL does.
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_verifier_format_and_random_salt():
    first = lib.scram_sha256_verifier(PASSWORD)
    second = lib.scram_sha256_verifier(PASSWORD)
    assert first != second
    for verifier in (first, second):
        iterations, salt, stored, server = _keys(verifier)
        assert iterations == 4096
        assert len(salt) == 16
        assert len(stored) == len(server) == 32
        assert PASSWORD not in verifier
        assert verifier == _expected(PASSWORD.encode(), salt)


def test_verifier_iterations_and_salt():
    salt = b"0123456789abcdef"
    assert lib.scram_sha256_verifier("pw", salt, 1) == _expected(b"pw", salt, 1)
    for bad in (0, -1, True, "4096", 1.5):
        with pytest.raises(ValueError, match="iterations"):
            lib.scram_sha256_verifier("pw", salt, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="salt"):
        lib.scram_sha256_verifier("pw", b"")


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        pytest.param("plain ascii\x7f\x01", "plain ascii\x7f\x01", id="ascii-is-never-changed"),
        pytest.param("pass\u00a0w\u3000rd", "pass w rd", id="non-ascii-space-to-space"),
        pytest.param("a\u00adb\u200dc", "abc", id="mapped-to-nothing"),
        pytest.param("\u00e9\u200b", "\u00e9 ", id="zero-width-space-is-a-space"),
        pytest.param("\ufb01le\u2168", "fileIX", id="nfkc"),
        pytest.param("caf\u0065\u0301", "caf\u00e9", id="nfkc-compose"),
        pytest.param("\u0627\u0644\u0639", "\u0627\u0644\u0639", id="rtl-ok"),
    ],
)
def test_saslprep_normalises_like_libpq(password: str, prepared: str):
    salt = b"fixed-salt-16byt"
    assert lib.scram_sha256_verifier(password, salt) == _expected(prepared.encode(), salt)


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("\u00e9\x07", id="ascii-control-with-non-ascii"),
        pytest.param("\u0627a\u0627", id="bidi-mixed"),
        pytest.param("\u0627\u0644a", id="bidi-not-ending-rtl"),
        pytest.param("\u00ad\u200d\u00ad", id="maps-to-nothing-at-all"),
        pytest.param("x\ue000", id="private-use"),
        pytest.param("x\u0221", id="unassigned-in-unicode-3.2"),
    ],
)
def test_saslprep_failure_uses_raw_bytes(password: str):
    salt = b"fixed-salt-16byt"
    assert lib.scram_sha256_verifier(password, salt) == _expected(password.encode(), salt)


@pytest.mark.parametrize(
    "password",
    ["", "a\x00b", "\x00", "\ud800x", "x" * 1025, "\u00e9" * 513, None, b"bytes", 1234],
)
def test_invalid_password_rejected_without_echo(password: Any):
    with pytest.raises(lib.PostgreSQLInvalidPasswordError) as info:
        lib.scram_sha256_verifier(password)
    if isinstance(password, str) and password:
        assert password not in str(info.value)


def test_verifier_matches():
    verifier = lib.scram_sha256_verifier(PASSWORD)
    assert lib.verifier_matches(verifier, PASSWORD)
    assert not lib.verifier_matches(verifier, PASSWORD + "x")
    assert lib.verifier_matches(lib.scram_sha256_verifier("pw", iterations=7), "pw")
    # RFC 7677's user, with the verifier computed independently.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    assert lib.verifier_matches(_expected(b"pencil", salt), "pencil")
    for stored in (
        None,
        "",
        "md5" + "0" * 32,
        verifier.replace("SCRAM-SHA-256$4096", "SCRAM-SHA-256$0"),
        verifier.replace("4096:", "4096:@@@"),
        "SCRAM-SHA-256$4096:abc$x:y",  # salt with bad padding
        "SCRAM-SHA-256$99999999:c2FsdA==$x:y",  # absurd iteration count
    ):
        assert not lib.verifier_matches(stored, PASSWORD)


def test_longest_password_accepted():
    assert lib.scram_sha256_verifier("x" * 1024).startswith("SCRAM-SHA-256$4096:")


# Names and input validation: nothing reaches the server


HOSTILE_NAMES = [
    "",
    "a\x00b",
    "\x00",
    "x" * 64,
    "é" * 32,
    'a"b',
    "a'b",
    'x"; DROP ROLE postgres; --',
    "x'; DROP DATABASE postgres; --",
    "a;b",
    "a b",
    " leading",
    "trailing\n",
    "tab\tname",
    "back\\slash",
    "1starts_with_digit",
    "-dash-first",
    "$dollar",
    "dot.name",
    "@include",
    "+group",
    "naïve",
    "semi;colon",
    "a/b",
    "*",
]


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> MagicMock:
    """Replace psycopg.connect; the mock connection records every statement."""
    conn = MagicMock(name="connection")
    conn.__enter__.return_value = conn
    mock = MagicMock(name="psycopg.connect", return_value=conn)
    monkeypatch.setattr(lib.psycopg, "connect", mock)
    return mock


@pytest.fixture
def db() -> lib.PostgreSQL:
    return lib.PostgreSQL(primary_host="10.0.0.1", user="operator", password="admin-password")


def _operations(name: str) -> list[Callable[[lib.PostgreSQL], object]]:
    return [
        lambda db: db.create_user(name, PASSWORD),
        lambda db: db.create_user("app", PASSWORD, in_roles=[name]),
        lambda db: db.alter_user_password(name, PASSWORD),
        lambda db: db.drop_user(name, reassign_owned_to="operator"),
        lambda db: db.drop_user("app", reassign_owned_to=name),
        lambda db: db.user_exists(name),
        lambda db: db.grant_roles(name, ["pg_monitor"]),
        lambda db: db.grant_roles("app", [name]),
        lambda db: db.revoke_roles("app", ["ok", name]),
        lambda db: db.create_database(name, "app"),
        lambda db: db.create_database("appdb", name),
        lambda db: db.database_exists(name),
        lambda db: db.grant_connect(name, "app"),
        lambda db: db.grant_connect("appdb", name),
        lambda db: db.enable_extensions([name]),
        lambda db: db.enable_extensions({name: False}),
        lambda db: db.enable_extensions(["citext"], databases=[name]),
        lambda db: db.list_enabled_extensions(name),
        lambda db: db.password_matches(name, PASSWORD),
        lambda db: db.grant_function_execute(name, ["pg_catalog.pg_switch_wal()"]),
    ]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_names_rejected_before_any_sql(name: str, db: lib.PostgreSQL, connect: MagicMock):
    for operation in _operations(name):
        with pytest.raises(lib.PostgreSQLInvalidNameError):
            operation(db)
    connect.assert_not_called()


@pytest.mark.parametrize(
    "name",
    ["postgres", "Postgres", "PUBLIC", "public", "none", "current_user", "session_user",
     "current_role", "pg_monitor", "pg_anything", "PG_upper"],
)  # fmt: skip
def test_reserved_role_names_cannot_be_created_or_dropped(
    name: str, db: lib.PostgreSQL, connect: MagicMock
):
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="reserved"):
        db.create_user(name, PASSWORD)
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="reserved"):
        db.drop_user(name, reassign_owned_to="operator")
    connect.assert_not_called()


@pytest.mark.parametrize("name", ["postgres", "template0", "template1", "Template1"])
def test_reserved_databases_cannot_be_created(name: str, db: lib.PostgreSQL, connect: MagicMock):
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="reserved"):
        db.create_database(name, "app")
    connect.assert_not_called()


def test_valid_edge_names_reach_the_server(db: lib.PostgreSQL, connect: MagicMock):
    db.alter_user_password("postgres", PASSWORD)  # rotation of the bootstrap superuser
    db.grant_roles("relation-7", ["pg_monitor", "pg_read_all_data"])
    db.create_user("_" + "a" * 62, PASSWORD)
    assert connect.call_count == 3


@pytest.mark.parametrize("password", ["", "pw\x00", None])
def test_invalid_password_runs_no_sql(password: Any, db: lib.PostgreSQL, connect: MagicMock):
    with pytest.raises(lib.PostgreSQLInvalidPasswordError):
        db.alter_user_password("app", password)
    if password is not None:
        with pytest.raises(lib.PostgreSQLInvalidPasswordError):
            db.create_user("app", password)
    connect.assert_not_called()


def test_string_where_collection_expected(db: lib.PostgreSQL, connect: MagicMock):
    calls: list[Callable[[], object]] = [
        lambda: db.create_user("app", in_roles="pg_monitor"),
        lambda: db.grant_roles("app", "pg_monitor"),
        lambda: db.enable_extensions("citext"),
        lambda: db.enable_extensions(["citext"], databases="appdb"),
        lambda: db.drop_user("app", reassign_owned_to="app"),
    ]
    for call in calls:
        with pytest.raises(lib.PostgreSQLInvalidNameError):
            call()
    connect.assert_not_called()


@pytest.mark.parametrize("limit", [-1, True, "5", 2.0])
def test_connection_limit_validated(limit: Any, db: lib.PostgreSQL, connect: MagicMock):
    with pytest.raises(lib.PostgreSQLCreateUserError, match="connection_limit"):
        db.create_user("app", PASSWORD, connection_limit=limit)
    connect.assert_not_called()


@pytest.mark.parametrize("value", [1, "yes", None])
def test_extension_flags_must_be_bool(value: Any, db: lib.PostgreSQL, connect: MagicMock):
    with pytest.raises(lib.PostgreSQLExtensionError):
        db.enable_extensions({"citext": value})
    connect.assert_not_called()


def test_sslmode_validated():
    with pytest.raises(ValueError, match="sslmode"):
        lib.PostgreSQL(primary_host="h", user="u", password="p", sslmode="sometimes")


# Function privileges: signatures go to the server as parameters, GRANTs use catalog names


@pytest.mark.parametrize(
    "grantee", ["public", "PUBLIC", "none", "current_user", "session_user", "current_role"]
)
def test_function_grant_refuses_pseudo_roles(grantee: str, db: lib.PostgreSQL, connect: MagicMock):
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="reserved"):
        db.grant_function_execute(grantee, ["pg_catalog.pg_switch_wal()"])
    connect.assert_not_called()


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "pg_switch_wal",
        "pg_switch_wal(",
        "pg_switch_wal)",
        "()",
        "pg_switch_wal())",
        "f(a)(b)",
        "f(); DROP ROLE backup; --",
        "f(); DROP ROLE backup; f()",
        "f(text\x00)",
        "f(" + "x" * 1024 + ")",
        None,
        b"pg_switch_wal()",
    ],
    ids=repr,
)
def test_function_signatures_validated(signature: Any, db: lib.PostgreSQL, connect: MagicMock):
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="signature"):
        db.grant_function_execute("backup", ["pg_catalog.pg_switch_wal()", signature])
    with pytest.raises(lib.PostgreSQLInvalidNameError, match="collection"):
        db.grant_function_execute("backup", "pg_catalog.pg_switch_wal()")
    connect.assert_not_called()


def _catalog(rows: dict[str, tuple[Any, ...] | None], seen: list[tuple[str, Any]]) -> Any:
    """A fake connection's execute: resolves signatures from `rows`, records everything."""

    def execute(statement: Any, params: Any = None) -> MagicMock:
        text = statement if isinstance(statement, str) else statement.as_string(None)
        seen.append((text, params))
        result = MagicMock()
        result.fetchone.return_value = rows[params[1]] if "to_regprocedure" in text else None
        return result

    return execute


def test_function_grant_composes_from_catalog_names(db: lib.PostgreSQL, connect: MagicMock):
    rows: dict[str, tuple[Any, ...] | None] = {
        "pg_backup_start(text, boolean)": (
            "pg_catalog", "pg_backup_start", ["pg_catalog", "pg_catalog"], ["text", "bool"], False
        ),
        "pg_switch_wal()": ("pg_catalog", "pg_switch_wal", [], [], True),
        'odd"schema.f(int4[])': ('odd"schema', 'f"; --', ["pg_catalog"], ["_int4"], False),
    }  # fmt: skip
    seen: list[tuple[str, Any]] = []
    connect.return_value.execute.side_effect = _catalog(rows, seen)

    assert db.grant_function_execute("backup", list(rows)) == [
        "pg_backup_start(text, boolean)",
        'odd"schema.f(int4[])',
    ]
    grants = [text for text, _ in seen if text.startswith("GRANT")]
    assert grants == [
        'GRANT EXECUTE ON ROUTINE "pg_catalog"."pg_backup_start"'
        '("pg_catalog"."text", "pg_catalog"."bool") TO "backup"',
        'GRANT EXECUTE ON ROUTINE "odd""schema"."f""; --"("pg_catalog"."_int4") TO "backup"',
    ]
    resolved = [params for text, params in seen if "to_regprocedure" in text]
    assert resolved == [("backup", signature) for signature in rows]
    assert not any(signature in text for text, _ in seen for signature in rows)


def test_function_grant_resolves_everything_before_granting(
    db: lib.PostgreSQL, connect: MagicMock
):
    rows: dict[str, tuple[Any, ...] | None] = {
        "pg_switch_wal()": ("pg_catalog", "pg_switch_wal", [], [], False),
        "pg_catalog.pg_start_backup(text)": None,  # the PostgreSQL 14 name: gone
    }
    seen: list[tuple[str, Any]] = []
    connect.return_value.execute.side_effect = _catalog(rows, seen)
    with pytest.raises(lib.PostgreSQLGrantError, match=r"pg_start_backup\(text\)' does not exist"):
        db.grant_function_execute("backup", list(rows))
    assert not [text for text, _ in seen if text.startswith("GRANT")]


# Archiver status: which WAL files wait, from pg_stat_archiver's names

MB = 1024 * 1024
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def _status(last: str | None, current: str | None, size: int = 16 * MB) -> lib.ArchiverStatus:
    return lib.ArchiverStatus(
        last_archived_wal=last,
        last_archived_time=T0 if last else None,
        last_failed_wal=None,
        last_failed_time=None,
        current_wal=current,
        wal_segment_size=size,
    )


@pytest.mark.parametrize(
    ("last", "current", "size", "behind"),
    [
        ("000000010000000000000003", "000000010000000000000004", 16 * MB, 0),
        ("000000010000000000000003", "000000010000000000000009", 16 * MB, 5),
        ("000000010000000000000003", "000000010000000000000003", 16 * MB, 0),
        ("0000000100000000000000FF", "000000010000000100000000", 16 * MB, 0),  # next high half
        ("0000000100000000000000FE", "000000010000000100000001", 16 * MB, 2),
        ("000000010000000000000FFF", "000000010000000100000001", 1 * MB, 1),  # 4096 per half
        ("000000010000000000000001", "000000010000000100000000", 1024 * MB, 2),  # 4 per half
        ("000000010000000000000007", "000000020000000000000009", 16 * MB, 1),  # promotion
        ("000000010000000000000007.partial", "000000020000000000000008", 16 * MB, 0),
        ("00000002.history", "000000020000000000000008", 16 * MB, None),
        ("000000010000000000000003.00000028.backup", "000000010000000000000005", 16 * MB, None),
        ("000000010000000000000100", "000000010000000100000000", 16 * MB, None),  # no such file
        ("000000010000000000000003", None, 16 * MB, None),  # a standby
        (None, "000000010000000000000003", 16 * MB, None),  # nothing archived yet
        ("0000000100000000000000ab", "000000010000000000000003", 16 * MB, None),  # lower case
    ],
)
def test_segments_behind(last: str | None, current: str | None, size: int, behind: int | None):
    assert _status(last, current, size).segments_behind == behind


@pytest.mark.parametrize(
    ("archived", "failed", "failing"),
    [
        (None, None, False),
        (T0, None, False),
        (None, T0, True),
        (T0, T0 + datetime.timedelta(seconds=1), True),
        (T0 + datetime.timedelta(seconds=1), T0, False),
    ],
)
def test_archiving_failing_when_the_last_failure_is_newer(
    archived: datetime.datetime | None, failed: datetime.datetime | None, failing: bool
):
    status = dataclasses.replace(
        _status("000000010000000000000003", "000000010000000000000004"),
        last_archived_time=archived,
        last_failed_time=failed,
    )
    assert status.failing is failing


def test_terminated_sessions_count_only_those_signalled(db: lib.PostgreSQL, connect: MagicMock):
    result = connect.return_value.execute.return_value
    result.fetchall.return_value = [(True,), (False,), (True,)]  # one exited meanwhile
    assert db.terminate_orphaned_sessions() == 2
    connect.return_value.execute.side_effect = psycopg.errors.InsufficientPrivilege("denied")
    with pytest.raises(lib.PostgreSQLTerminateSessionsError, match="denied"):
        db.terminate_orphaned_sessions()


# Secrets never leak into messages, reprs or exception chains


def test_repr_hides_password(db: lib.PostgreSQL):
    assert "admin-password" not in repr(db)
    assert "10.0.0.1" in repr(db)


def test_connection_error_redacts_password(db: lib.PostgreSQL, monkeypatch: pytest.MonkeyPatch):
    def refuse(**kwargs: Any) -> None:
        raise psycopg.OperationalError(f"could not connect with {kwargs['password']}")

    monkeypatch.setattr(lib.psycopg, "connect", refuse)
    with pytest.raises(lib.PostgreSQLConnectionError) as info:
        db.list_users()
    assert "admin-password" not in str(info.value)
    assert "<redacted>" in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_statement_error_redacts_password_and_verifier(db: lib.PostgreSQL, connect: MagicMock):
    conn = connect.return_value
    seen: list[str] = []

    def execute(statement: Any, params: Any = None) -> MagicMock:
        text = repr(statement)
        seen.append(text)
        if "PASSWORD" in text:
            verifier = re.search(r"SCRAM-SHA-256\$[^'\"]+", text)
            assert verifier
            raise psycopg.errors.InsufficientPrivilege(f"denied: {verifier.group(0)} / {PASSWORD}")
        result = MagicMock()
        result.fetchone.return_value = ("on",)
        return result

    conn.execute.side_effect = execute
    for operation in (
        lambda: db.alter_user_password("app", PASSWORD),
        lambda: db.create_user("app", PASSWORD),
    ):
        with pytest.raises(lib.PostgreSQLError) as info:
            operation()
        message = str(info.value)
        assert PASSWORD not in message
        assert "SCRAM-SHA-256$" not in message
        assert message.count("<redacted>") == 2
        assert info.value.__cause__ is None
    assert isinstance(info.value, lib.PostgreSQLCreateUserError)
    assert any("log_statement" in text for text in seen), "logging is silenced for superusers"
    assert not any(PASSWORD in text for text in seen), "plaintext never sent"


def test_extension_in_use_is_typed(db: lib.PostgreSQL, connect: MagicMock):
    conn = connect.return_value

    def execute(statement: Any, params: Any = None) -> MagicMock:
        if "DROP EXTENSION" in repr(statement):
            raise psycopg.errors.DependentObjectsStillExist("column depends on type citext")
        result = MagicMock()
        result.fetchall.return_value = [("citext", None), ("plpgsql", None)]
        return result

    conn.execute.side_effect = execute
    with pytest.raises(lib.PostgreSQLExtensionInUseError, match="depends"):
        db.enable_extensions({"citext": False}, databases=["appdb"])


def test_drop_order_puts_dependents_first():
    requires: dict[str, set[str]] = {"earthdistance": {"cube"}, "cube": set(), "citext": set()}
    order = lib._drop_order(requires, ["cube", "citext", "earthdistance"])  # pyright: ignore[reportPrivateUsage]
    assert order == ["citext", "earthdistance", "cube"]


# Library format


def test_charm_library_metadata():
    assert re.fullmatch(r"[0-9a-f]{32}", lib.LIBID)
    assert lib.LIBAPI == 0
    assert isinstance(lib.LIBPATCH, int) and lib.LIBPATCH >= 1
    assert lib.PYDEPS == ["psycopg[binary]>=3.2"]
    assert lib.__doc__ and "PostgreSQL(" in lib.__doc__


def test_library_imports_only_stdlib_and_psycopg():
    tree = ast.parse(inspect.getsource(lib))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - sys.stdlib_module_names == {"psycopg"}


def test_exceptions_are_typed_and_documented():
    errors = [
        obj
        for name, obj in vars(lib).items()
        if name.startswith("PostgreSQL") and isinstance(obj, type) and issubclass(obj, Exception)
    ]
    assert len(errors) >= 12
    for error in errors:
        assert issubclass(error, lib.PostgreSQLError)
        if error is not lib.PostgreSQLError:
            assert (error.__doc__ or "").startswith("Raised"), error
    assert issubclass(lib.PostgreSQLExtensionInUseError, lib.PostgreSQLExtensionError)
