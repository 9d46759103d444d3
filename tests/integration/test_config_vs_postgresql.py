"""Tier 2: what the charm's config validation accepts, the real PostgreSQL binary accepts, and back.

Every value goes to PostgreSQL the way it would in production: rendered by `config`, written by
Patroni's rule into postgresql.conf (`name = 'value'`, quotes and backslashes doubled) with the
charm's base parameters, then read by `postgres -C` on a scratch data directory, which runs every
parameter check and exits non-zero on any refusal (~20 ms a value). Rules PostgreSQL applies
only at start-up (WAL sizes against the segment size) are checked by a single-user start; names
looked up in the catalog, by `SET` in a session of a running scratch server. The image facts
are read from this host exactly as the charm must read them from the workload container.

A disagreement in either direction fails the test; the few values PostgreSQL accepts but the
charm refuses on purpose are listed in STRICTER, each with its reason, and checked as such.
This proves PostgreSQL 15 (the test machines'); the rock ships 16, whose parsers for these
settings are the same, and which adds the two options INTRODUCED_IN names.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import config
import config_options
from tests.integration import pg_server as pg
from tests.integration.pg_server import PgServer
from workload import guc, patroni

pytestmark = pytest.mark.integration

Value = bool | int | float | str
ACCOUNT = pwd.getpwnam(pg.OS_USER)
TIMEOUT = 60


# --- the real binary ----------------------------------------------------------------------------


def _quoted(value: str) -> str:
    return "'" + re.sub(r"(['\\])", r"\1\1", value) + "'"


def patroni_conf(parameters: Mapping[str, str]) -> str:
    """postgresql.conf as Patroni writes it: every value quoted, `'` and `\\` doubled."""
    return "".join(f"{name} = {_quoted(value)}\n" for name, value in parameters.items())


class Binary:
    """The postgres binary on a scratch data directory: never started as a server."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def _write(self, parameters: Mapping[str, str]) -> None:
        conf = self.data_dir / "postgresql.conf"
        conf.write_text(patroni_conf({**patroni.BASE_PARAMETERS, **parameters}))
        os.chown(conf, ACCOUNT.pw_uid, ACCOUNT.pw_gid)

    def _run(self, *argv: str) -> tuple[bool, str]:
        proc = subprocess.run(
            pg.as_postgres(str(pg.PG_BIN / "postgres"), *argv, "-D", str(self.data_dir)),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT,
            check=False,
        )
        return proc.returncode == 0, proc.stderr.strip()

    def reads(self, parameters: Mapping[str, str]) -> tuple[bool, str]:
        """Whether `postgres -C` accepts the configuration file (every parameter's check)."""
        self._write(parameters)
        return self._run("-C", next(iter(parameters), "wal_level"))

    def starts(self, parameters: Mapping[str, str]) -> tuple[bool, str]:
        """Whether a single-user start-up (control file and start-up rules included) succeeds."""
        self._write(parameters)
        return self._run("--single", "postgres")


@pytest.fixture(scope="module")
def binary() -> Iterator[Binary]:
    base = Path(tempfile.mkdtemp(prefix="pgconf-", dir="/tmp"))
    try:
        os.chown(base, ACCOUNT.pw_uid, ACCOUNT.pw_gid)
        data_dir = base / "data"
        initdb = [str(pg.PG_BIN / "initdb"), f"--pgdata={data_dir}", "--auth=trust", "--no-sync"]
        # What the charm's bootstrap gives initdb (workload.patroni): the WAL segment size and
        # encoding that some checks depend on.
        initdb += ["--encoding=UTF8", "--locale=C.UTF-8"]
        subprocess.run(pg.as_postgres(*initdb), check=True, capture_output=True, timeout=TIMEOUT)
        yield Binary(data_dir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    with pg.pg_server() as running:
        yield running


def _as_postgres_output(*argv: str) -> str:
    return subprocess.run(
        pg.as_postgres(*argv), capture_output=True, text=True, check=True, timeout=TIMEOUT
    ).stdout


@pytest.fixture(scope="module")
def facts(server: PgServer) -> guc.ImageFacts:
    """The image facts, read the way the charm must read them in the workload container."""
    listing = _as_postgres_output(
        "find", "-L", "/usr/share/zoneinfo", "-type", "f", "-printf", r"%P\n"
    )
    locales = _as_postgres_output("locale", "-a")
    stack = _as_postgres_output("sh", "-c", "ulimit -s").strip()
    version = _as_postgres_output(str(pg.PG_BIN / "postgres"), "--version")
    with server.connect() as conn:
        configs = conn.execute(
            "SELECT n.nspname || '.' || c.cfgname FROM pg_ts_config c"
            " JOIN pg_namespace n ON n.oid = c.cfgnamespace"
        ).fetchall()
        methods = conn.execute("SELECT amname FROM pg_am WHERE amtype = 't'").fetchall()
    return guc.ImageFacts(
        time_zones=guc.zone_names(listing.splitlines()),
        locales=guc.locale_names(locales.splitlines()),
        stack_limit_kb=None if stack == "unlimited" else int(stack),
        major=int(re.findall(r"\(PostgreSQL\) (\d+)", version)[0]),
        text_search_configs=frozenset(str(row[0]) for row in configs),
        table_access_methods=frozenset(str(row[0]) for row in methods),
    )


# --- the two verdicts ---------------------------------------------------------------------------


def charm_accepts(options: Mapping[str, Value], facts: guc.ImageFacts) -> tuple[bool, str]:
    try:
        config.check_image(config.load_config(options), facts)
    except config.InvalidConfigError as refused:
        return False, refused.message
    return True, ""


def rendered(options: Mapping[str, Value]) -> dict[str, str]:
    """What PostgreSQL is given: what the charm sends, or for a value it refuses, that value."""
    with contextlib.suppress(config.InvalidConfigError):
        return config.postgresql_parameters(config.load_config(options), None)
    out: dict[str, str] = {}
    for option, value in options.items():
        parameter = config_options.PARAMETER_OPTIONS[option].parameter
        if isinstance(value, bool):
            out[parameter] = "on" if value else "off"
        else:
            out[parameter] = repr(value) if isinstance(value, float) else str(value)
    return out


# Rules PostgreSQL applies at start-up only, after `-C` has exited.
STARTUP_CHECKED = frozenset({"durability-min-wal-size", "durability-max-wal-size"})
# Names PostgreSQL looks up in the catalog when a session uses them, not at start-up.
SESSION_CHECKED = frozenset(
    {"instance-default-text-search-config", "storage-default-table-access-method"}
)


def postgresql_accepts(
    options: Mapping[str, Value], binary: Binary, server: PgServer
) -> tuple[bool, str]:
    parameters = rendered(options)
    accepted, why = binary.reads(parameters)
    if accepted and STARTUP_CHECKED & set(options):
        accepted, why = binary.starts(parameters)
    if accepted and SESSION_CHECKED & set(options):
        with server.connect() as conn:
            for name, value in parameters.items():
                try:
                    conn.execute(
                        sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
                    )
                except psycopg.Error as e:
                    return False, str(e)
    return accepted, why


# --- the battery --------------------------------------------------------------------------------

# Values of every string option: accepted ones, refused ones and hostile ones (line breaks,
# Unicode spaces, quotes, a second setting), all expected to get the same verdict.
_LOCALES = [
    *("C", "POSIX", "C.utf8", "C.UTF-8", "C.utf-8", "C.UTF8"),
    *("c", "C.U-T-F-8", "C.UTF-16", "xx_XX.UTF-8", "english", "C ", "C@foo", "../C.utf8"),
    *("/usr/lib/locale/C.utf8", "POSIX.utf8", "C.UTF-8\n", "C'"),
]
STRINGS: dict[str, list[str]] = {
    "request-date-style": [
        *("ISO, MDY", "iso,mdy", "MDY", "DMY, ISO", "ISO", "German", "German, YMD", "SQL, US"),
        *("Postgres, European", "ISO, MDY, ISO", " ISO , MDY ", "noneuropean", "Euro"),
        *("ISO, MDY\n", "ISO,\nMDY", "ISO,\u00a0MDY", "ISO,\u3000MDY", "ISO, DMY, MDY"),
        *("ISO, SQL", "ISO MDY", "ISO,", ",", "ISO;MDY", "ISO,,MDY", "ISO, MDY'", "ISO, MDY\\"),
        *("ISO,\x0bMDY", "ISO, MDY\x00", "ISO'\nlisten_addresses = '*", "ISO, \u039cDY"),
    ],
    "request-time-zone": [
        *("UTC", "utc", "Europe/Paris", "europe/paris", "EUROPE/PARIS", "posix/Europe/Paris"),
        *("posixrules", "Factory", "GMT", "gmt", "Etc/GMT+5", "Etc/GMT-14", "EST", "EST5EDT"),
        *("CET", "America/Argentina/Buenos_Aires", "US/Eastern", "Asia/Kolkata", "Etc/UTC"),
        *("FOOBAR0", "<+03>-3", "<+0330>-3:30", "XXX3:00:00", "XXX-167", "XXX24", "XXX3YYY"),
        *("XXX3YYY,M3.2.0,M11.1.0", "XXX3YYY,M3.2.0/2,M11.1.0/2", "XXX3YYY,J60,J300"),
        *("XXX3YYY,M3.2.0/-1,M11.1.0/167", "XXX3YYY,0,365", "XXX3YYY2", "xxx3"),
        *("EST5EDT,M3.2.0,M11.1.0", "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1", "5", "-5", "+5"),
        *("5.5", "5.01", "167", "167.99", "-167"),
        *("Europe/Nowhere", "Europe", "Europe/", "/Europe/Paris", "Europe//Paris", "./UTC"),
        *("Europe/../Europe/Paris", "right/Europe/Paris", "RIGHT/UTC", "zone.tab", "tzdata.zi"),
        *("leapseconds", "iso3166.tab", "PST", "XXX3:00:30", "XXX168", "XXX-168", "168", "-168"),
        *("XXX3YYY,366,1", "XXX3YYY,M13.1.0,M1.1.0", "XXX3YYY;M3.2.0,M11.1.0", "inf", "nan"),
        *("XXX3YYY2,M3.2.0,M11.1.0x", "UTC\t", "UTC ", "UTC\n", "Etc", "UTC'", "A" * 300 + "3"),
        *("UTC\nlisten_addresses = '*'", "Europe/Paris\u00a0", "interval '+02:00' hour"),
    ],
    "response-lc-messages": [*_LOCALES, "C\x00"],
    "response-lc-monetary": _LOCALES,
    "response-lc-numeric": _LOCALES,
    "response-lc-time": _LOCALES,
    "instance-default-text-search-config": [
        *("english", "pg_catalog.english", "English", "simple", "PG_CATALOG.SIMPLE", "yiddish"),
        *("nonexistent", "public.english", "a.b", "english\n", "english;"),
    ],
    "storage-default-table-access-method": ["heap", "heapx", "HEAP", "heap\n", "", " heap"],
}

# Accepted by PostgreSQL, refused by the charm on purpose.
STRICTER: dict[str, list[Value]] = {
    # Tabs and other control characters are refused everywhere; PostgreSQL skips some of them.
    # Quoted words, keyword prefixes (`EUROxyz`) and DEFAULT are obscure and easily a typo.
    "request-date-style": [
        *("ISO,\tMDY", "ISO,\rMDY", "ISO,\fMDY", '"ISO", MDY', "DEFAULT", "POSTGRESQL"),
        *("EUROxyz", "NONEUROPEANS"),
    ],
    # POSIX wants 3+ letters before the offset; PostgreSQL takes any text (`Europe/Nowhere5`,
    # a misspelt zone, becomes a fixed offset). Hours in other notations and spaces: refused.
    "request-time-zone": [
        *("Europe/Nowhere5", "F0", "FO0", "<>3", "<ab>3", "X Y3", "A:B3", ":UTC", "1e1"),
        *("0x10", " 5", "5 "),
    ],
    # glibc drops what it cannot find (`C_FOO.utf8` falls back to `C.utf8`) and what is not
    # alphanumeric in a codeset; a NUL cuts the value short, and an empty lc_monetary,
    # lc_numeric or lc_time means the server's environment: all refused.
    **{
        f"response-lc-{category}": [
            *("C.utf8@x", "C_FOO.utf8", "C.UTF-8\t", "C.utf8 ", "C.UTF-8\u00a0"),
            *([] if category == "messages" else ["C\x00"]),
        ]
        for category in ("messages", "monetary", "numeric", "time")
    },
    # A quoted identifier: PostgreSQL takes it; the charm takes names only.
    "instance-default-text-search-config": ['"english"'],
    # Enumerations: the documented spelling only; PostgreSQL ignores case.
    "durability-synchronous-commit": ["ON", "Local"],
    "request-default-transaction-isolation": ["REPEATABLE READ"],
}


def battery() -> dict[str, list[Value]]:
    """Every option's values: strings above, every choice, both booleans, numeric boundaries.

    Numbers beyond the boundaries are compared with PostgreSQL's declared ranges instead
    (test_numeric_ranges_are_postgresqls): its range check is what refuses them.
    """
    values: dict[str, list[Value]] = {option: list(v) for option, v in STRINGS.items()}
    for option, spec in config_options.PARAMETER_OPTIONS.items():
        if isinstance(spec, config_options.Choice):
            values[option] = [*spec.choices, "bogus", f"{spec.choices[0]}\n"]
        elif isinstance(spec, config_options.Boolean):
            values[option] = [True, False]
        elif isinstance(spec, config_options.Integer | config_options.Real):
            values[option] = [spec.minimum, spec.maximum]
    return values


BATTERY = battery()
# Checked one value at a time: their checks depend on each other or on more than the file.
_ALONE = (
    STARTUP_CHECKED
    | SESSION_CHECKED
    | {
        "connection-max-connections",
        "vacuum-autovacuum-max-workers",
        "cpu-max-worker-processes",
        "memory-max-stack-depth",
    }
)


def _batches(accepted: list[tuple[str, Value]]) -> list[list[tuple[str, Value]]]:
    """Values in groups with one value per parameter: a file PostgreSQL reads whole proves each."""
    batches: list[list[tuple[str, Value]]] = []
    for option, value in accepted:
        batch = next((b for b in batches if all(o != option for o, _ in b)), None)
        if batch is None:
            batches.append(batch := [])
        batch.append((option, value))
    return batches


@pytest.fixture(scope="module")
def verdicts(
    binary: Binary, server: PgServer, facts: guc.ImageFacts
) -> dict[tuple[str, str], tuple[bool, str, bool, str]]:
    """(option, repr(value)) -> the charm's verdict and reason, PostgreSQL's and its reason."""
    charm = {(o, v): charm_accepts({o: v}, facts) for o, values in BATTERY.items() for v in values}
    postgresql: dict[tuple[str, Value], tuple[bool, str]] = {}
    together = [k for k, (ok, _) in charm.items() if ok and k[0] not in _ALONE]
    for batch in _batches(together):
        options = dict(batch)
        if postgresql_accepts(options, binary, server)[0]:
            postgresql.update((item, (True, "")) for item in batch)
    for option, value in charm:
        if (option, value) not in postgresql:
            postgresql[option, value] = postgresql_accepts({option: value}, binary, server)
    return {(o, repr(v)): (*charm[o, v], *postgresql[o, v]) for o, v in charm}


def test_the_battery_covers_every_parameter_option():
    assert set(BATTERY) == set(config_options.PARAMETER_OPTIONS)
    assert sum(map(len, BATTERY.values())) > 500


@pytest.mark.parametrize("option", sorted(BATTERY))
def test_charm_and_postgresql_agree(
    option: str, verdicts: dict[tuple[str, str], tuple[bool, str, bool, str]]
):
    disagreements = [
        f"{value!r}: charm {charm} ({charm_why}), PostgreSQL {pg_why!r}"
        for value in BATTERY[option]
        for charm, charm_why, postgresql, pg_why in [verdicts[option, repr(value)]]
        if charm != postgresql
    ]
    assert not disagreements, "\n".join(disagreements)


@pytest.mark.parametrize(
    ("option", "value"), [(o, v) for o, values in STRICTER.items() for v in values]
)
def test_what_the_charm_refuses_on_purpose_postgresql_accepts(
    option: str, value: Value, binary: Binary, server: PgServer, facts: guc.ImageFacts
):
    assert not charm_accepts({option: value}, facts)[0]
    accepted, why = postgresql_accepts({option: value}, binary, server)
    assert accepted, why  # else it is no longer stricter: move it to the battery


# Where the charm's range is narrower than the one PostgreSQL declares, and why.
NARROWER_RANGES: dict[str, str] = {
    "connection-max-connections": "at least 10; and room for the workers (MAX_BACKENDS)",
    "cpu-max-worker-processes": "room for connections and autovacuum (MAX_BACKENDS)",
    "vacuum-autovacuum-max-workers": "room for connections and workers (MAX_BACKENDS)",
    "durability-min-wal-size": "two 16MB segments, which PostgreSQL needs to start",
    "durability-max-wal-size": "two 16MB segments, which PostgreSQL needs to start",
}


def _declared_ranges() -> dict[str, tuple[float, float]]:
    out = _as_postgres_output(str(pg.PG_BIN / "postgres"), "--describe-config")
    ranges: dict[str, tuple[float, float]] = {}
    for line in out.splitlines():
        name, _context, _group, kind, _reset, low, high, *_ = line.split("\t")
        if kind in ("INTEGER", "REAL"):
            ranges[name.lower()] = (float(low), float(high))
    return ranges


def test_numeric_ranges_are_postgresqls():
    # PostgreSQL's range check refuses anything outside what it declares, so the charm's range
    # must sit inside it; where it is narrower, NARROWER_RANGES says why (and the narrower
    # bound is proven by the battery, the combination and the start-up tests).
    declared = _declared_ranges()
    narrower: set[str] = set()
    for option, spec in config_options.PARAMETER_OPTIONS.items():
        if not isinstance(spec, config_options.Integer | config_options.Real):
            continue
        if option in config_options.INTRODUCED_IN and spec.parameter not in declared:
            continue  # not in this major: test_options_of_a_newer_major_are_refused_on_this_one
        low, high = declared[spec.parameter.lower()]
        assert low <= spec.minimum and spec.maximum <= high, option
        # FLOAT_MAX stands for PostgreSQL's DBL_MAX: not narrower in any way that matters.
        if spec.minimum != low or (
            spec.maximum != high and spec.maximum < config_options.FLOAT_MAX
        ):
            narrower.add(option)
    assert narrower == set(NARROWER_RANGES)


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        # With max_wal_senders 16 and 1: the sum may reach 262143 and no more.
        (
            {
                "connection-max-connections": 262_000,
                "vacuum-autovacuum-max-workers": 100,
                "cpu-max-worker-processes": 26,
            },
            True,
        ),
        (
            {
                "connection-max-connections": 262_000,
                "vacuum-autovacuum-max-workers": 100,
                "cpu-max-worker-processes": 27,
            },
            False,
        ),
        ({"connection-max-connections": 262_115, "cpu-max-worker-processes": 9}, False),
        ({"connection-max-connections": 262_116}, False),
    ],
)
def test_connections_and_workers_together(
    options: dict[str, Value],
    accepted: bool,
    binary: Binary,
    server: PgServer,
    facts: guc.ImageFacts,
):
    assert charm_accepts(options, facts)[0] is accepted
    assert postgresql_accepts(options, binary, server)[0] is accepted


@pytest.mark.parametrize("option", sorted(STARTUP_CHECKED))
def test_wal_sizes_below_two_segments_stop_postgresql_from_starting(
    option: str, binary: Binary, server: PgServer, facts: guc.ImageFacts
):
    low: Value = config_options.PARAMETER_OPTIONS[option].minimum  # type: ignore[union-attr]
    assert charm_accepts({option: low}, facts)[0]
    assert postgresql_accepts({option: low}, binary, server)[0]
    assert not charm_accepts({option: low - 1}, facts)[0]
    parameters = rendered({option: low - 1})
    assert binary.reads(parameters)[0]  # the parameter itself allows it...
    started, why = binary.starts(parameters)
    assert not started and "must be at least twice" in why  # ...start-up does not


def test_stack_depth_up_to_the_containers_limit(
    binary: Binary, server: PgServer, facts: guc.ImageFacts
):
    assert facts.stack_limit_kb is not None, "this host's stack is unlimited: nothing to prove"
    edge = facts.stack_limit_kb - guc.STACK_DEPTH_SLOP_KB
    for value, accepted in ((edge, True), (edge + 1, False)):
        options: dict[str, Value] = {"memory-max-stack-depth": value}
        assert charm_accepts(options, facts)[0] is accepted, value
        assert postgresql_accepts(options, binary, server)[0] is accepted, value


def test_the_zone_names_are_postgresqls(server: PgServer, facts: guc.ImageFacts):
    # What the charm accepts by name is exactly what PostgreSQL lists (it reads the same files).
    with server.connect() as conn:
        listed = {str(row[0]) for row in conn.execute("SELECT name FROM pg_timezone_names")}
    assert facts.time_zones == listed
    assert all(guc.time_zone_error(name, facts.time_zones) is None for name in listed)


def test_options_of_a_newer_major_are_refused_on_this_one(
    binary: Binary, server: PgServer, facts: guc.ImageFacts
):
    assert facts.major == 15
    for option, since in config_options.INTRODUCED_IN.items():
        value: Value = True if option.startswith("optimizer-enable") else 1
        accepted, why = charm_accepts({option: value}, facts)
        assert (accepted, why) == (False, f"invalid config: {option}: needs PostgreSQL {since}")
        assert not postgresql_accepts({option: value}, binary, server)[0]
