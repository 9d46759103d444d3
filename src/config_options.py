"""The tables behind the charm's PostgreSQL tuning and extension options: what each option sets and allows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from workload import guc, patroni

# PostgreSQL's usual upper bound for integer settings.
INT_MAX = 2_147_483_647
# Any finite float: the planner cost settings have no upper bound of their own.
FLOAT_MAX = 1.79e308


@dataclasses.dataclass(frozen=True)
class Integer:
    """An integer parameter.

    `unit` is PostgreSQL's own base unit for the parameter ("8kB" pages, "kB", "MB", "B", "ms", "s",
    "min", "us"). Options take values in that same unit, so a value passes to PostgreSQL unchanged
    and means exactly what PostgreSQL's documentation says a unitless value means.
    """

    minimum: int
    maximum: int
    unit: str = ""
    parameter: str = ""

    @property
    def hint(self) -> str:
        """What a valid value looks like."""
        return f"must be an integer from {self.minimum} to {self.maximum}"


@dataclasses.dataclass(frozen=True)
class Real:
    """A floating-point parameter (in the parameter's base unit, like `Integer`)."""

    minimum: float
    maximum: float = FLOAT_MAX
    unit: str = ""
    parameter: str = ""

    @property
    def hint(self) -> str:
        """What a valid value looks like."""
        if self.maximum >= FLOAT_MAX:
            return f"must be a number of at least {self.minimum:g}"
        return f"must be a number from {self.minimum:g} to {self.maximum:g}"


@dataclasses.dataclass(frozen=True)
class Boolean:
    """An on/off parameter."""

    parameter: str = ""

    @property
    def hint(self) -> str:
        """What a valid value looks like."""
        return "must be true or false"


@dataclasses.dataclass(frozen=True)
class Choice:
    """An enumerated parameter; `choices` are spelled as PostgreSQL documents them.

    `label` names a long list of choices in error messages, to keep them short.
    """

    choices: tuple[str, ...]
    parameter: str = ""
    label: str = ""

    @property
    def hint(self) -> str:
        """What a valid value looks like."""
        return f"must be {self.label or 'one of ' + ', '.join(self.choices)}"


@dataclasses.dataclass(frozen=True)
class Text:
    """A free-form parameter: `pattern` must match the whole value, then `syntax` (if any) must pass.

    The pattern is ASCII and keeps quotes, backslashes, line breaks and other control characters
    out of postgresql.conf. `syntax` is PostgreSQL's own grammar for the value (workload.guc);
    what depends on the image (time zones, locales) is checked against its facts later.
    """

    pattern: str
    hint: str
    parameter: str = ""
    syntax: Callable[[str], str | None] | None = None


ParameterOption = Integer | Real | Boolean | Choice | Text

# Server log levels, least to most severe in the order PostgreSQL documents them.
_SERVER_LOG_LEVEL = Choice(
    (
        *("debug5", "debug4", "debug3", "debug2", "debug1"),
        *("info", "notice", "warning", "error", "log", "fatal", "panic"),
    ),
    label="a message level, debug5 to panic",
)
_LOCALE = Text(r"[A-Za-z0-9_.@-]{1,64}", "must be a locale name such as C or en_US.UTF-8")
# PostgreSQL refuses max_connections, autovacuum_max_workers or max_worker_processes when
# they, 1 and max_wal_senders add up to more than guc.MAX_BACKENDS. Each option's own maximum
# leaves room for the others at PostgreSQL's defaults; config checks the sum of what is set.
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_AUTOVACUUM_MAX_WORKERS = 3
DEFAULT_MAX_WORKER_PROCESSES = 8
WAL_SENDERS = int(patroni.BASE_PARAMETERS["max_wal_senders"])
_BACKENDS_LEFT = guc.MAX_BACKENDS - 1 - WAL_SENDERS
# With 16MB WAL segments (initdb's default, which the charm keeps), PostgreSQL refuses to start
# with min_wal_size or max_wal_size under two segments, although the parameters allow 2MB.
_MIN_WAL_MB = 32

# Option name (without its group prefix) -> what it sets. The PostgreSQL parameter is the name with
# hyphens turned into underscores unless `parameter` says otherwise.
_GROUPS: Mapping[str, Mapping[str, ParameterOption]] = {
    "connection": {
        "authentication-timeout": Integer(1, 600, "s"),
        "client-connection-check-interval": Integer(0, INT_MAX, "ms"),
        "max-connections": Integer(
            10, _BACKENDS_LEFT - DEFAULT_AUTOVACUUM_MAX_WORKERS - DEFAULT_MAX_WORKER_PROCESSES
        ),
        "statement-timeout": Integer(0, INT_MAX, "ms"),
        "tcp-keepalives-count": Integer(0, INT_MAX),
        "tcp-keepalives-idle": Integer(0, INT_MAX, "s"),
        "tcp-keepalives-interval": Integer(0, INT_MAX, "s"),
        "tcp-user-timeout": Integer(0, INT_MAX, "ms"),
    },
    "cpu": {
        "max-logical-replication-workers": Integer(0, 262_143),
        "max-parallel-apply-workers-per-subscription": Integer(0, 1024),
        "max-parallel-maintenance-workers": Integer(0, 1024),
        "max-parallel-workers": Integer(0, 1024),
        "max-parallel-workers-per-gather": Integer(0, 1024),
        "max-sync-workers-per-subscription": Integer(0, 262_143),
        "max-worker-processes": Integer(
            0, _BACKENDS_LEFT - DEFAULT_MAX_CONNECTIONS - DEFAULT_AUTOVACUUM_MAX_WORKERS
        ),
        "parallel-leader-participation": Boolean(),
        "wal-compression": Choice(("off", "on", "pglz", "lz4", "zstd")),
    },
    "durability": {
        "checkpoint-completion-target": Real(0.0, 1.0),
        "checkpoint-timeout": Integer(30, 86_400, "s"),
        "commit-delay": Integer(0, 100_000, "us"),
        "commit-siblings": Integer(0, 1000),
        "max-slot-wal-keep-size": Integer(-1, INT_MAX, "MB"),
        "max-wal-size": Integer(_MIN_WAL_MB, INT_MAX, "MB"),
        "min-wal-size": Integer(_MIN_WAL_MB, INT_MAX, "MB"),
        "synchronous-commit": Choice(("on", "off", "local", "remote_write", "remote_apply")),
        "wal-buffers": Integer(-1, 262_143, "8kB"),
        "wal-keep-size": Integer(0, INT_MAX, "MB"),
        "wal-sender-timeout": Integer(0, INT_MAX, "ms"),
        "wal-writer-delay": Integer(1, 10_000, "ms"),
        "wal-writer-flush-after": Integer(0, INT_MAX, "8kB"),
    },
    "instance": {
        "default-text-search-config": Text(
            r"([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}",
            "must be a text search configuration such as pg_catalog.english",
        ),
        "max-locks-per-transaction": Integer(10, INT_MAX),
        "max-pred-locks-per-transaction": Integer(10, INT_MAX),
        "synchronize-seqscans": Boolean(),
    },
    "logging": {
        "client-min-messages": Choice(
            ("debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error")
        ),
        "log-autovacuum-min-duration": Integer(-1, INT_MAX, "ms"),
        "log-checkpoints": Boolean(),
        "log-connections": Boolean(),
        "log-disconnections": Boolean(),
        "log-error-verbosity": Choice(("terse", "default", "verbose")),
        "log-lock-waits": Boolean(),
        "log-min-duration-sample": Integer(-1, INT_MAX, "ms"),
        "log-min-duration-statement": Integer(-1, INT_MAX, "ms"),
        "log-min-error-statement": _SERVER_LOG_LEVEL,
        "log-min-messages": _SERVER_LOG_LEVEL,
        "log-parameter-max-length": Integer(-1, 1_073_741_823, "B"),
        "log-parameter-max-length-on-error": Integer(-1, 1_073_741_823, "B"),
        "log-recovery-conflict-waits": Boolean(),
        "log-replication-commands": Boolean(),
        "log-statement": Choice(("none", "ddl", "mod", "all")),
        "log-statement-sample-rate": Real(0.0, 1.0),
        "log-temp-files": Integer(-1, INT_MAX, "kB"),
        "log-transaction-sample-rate": Real(0.0, 1.0),
        "track-functions": Choice(("none", "pl", "all")),
        "track-io-timing": Boolean(),
        "track-wal-io-timing": Boolean(),
    },
    "memory": {
        "autovacuum-work-mem": Integer(-1, INT_MAX, "kB"),
        "effective-cache-size": Integer(1, INT_MAX, "8kB"),
        "hash-mem-multiplier": Real(1.0, 1000.0),
        "huge-pages": Choice(("try", "on", "off")),
        "logical-decoding-work-mem": Integer(64, INT_MAX, "kB"),
        "maintenance-work-mem": Integer(1024, INT_MAX, "kB"),
        "max-prepared-transactions": Integer(0, 262_143),
        "max-stack-depth": Integer(100, INT_MAX, "kB"),
        "shared-buffers": Integer(16, 1_073_741_823, "8kB"),
        "temp-buffers": Integer(100, 1_073_741_823, "8kB"),
        "work-mem": Integer(64, INT_MAX, "kB"),
    },
    "optimizer": {
        "constraint-exclusion": Choice(("on", "off", "partition")),
        "cpu-index-tuple-cost": Real(0.0),
        "cpu-operator-cost": Real(0.0),
        "cpu-tuple-cost": Real(0.0),
        "cursor-tuple-fraction": Real(0.0, 1.0),
        "default-statistics-target": Integer(1, 10_000),
        "enable-async-append": Boolean(),
        "enable-bitmapscan": Boolean(),
        "enable-gathermerge": Boolean(),
        "enable-hashagg": Boolean(),
        "enable-hashjoin": Boolean(),
        "enable-incremental-sort": Boolean(),
        "enable-indexonlyscan": Boolean(),
        "enable-indexscan": Boolean(),
        "enable-material": Boolean(),
        "enable-memoize": Boolean(),
        "enable-mergejoin": Boolean(),
        "enable-nestloop": Boolean(),
        "enable-parallel-append": Boolean(),
        "enable-parallel-hash": Boolean(),
        "enable-partition-pruning": Boolean(),
        "enable-partitionwise-aggregate": Boolean(),
        "enable-partitionwise-join": Boolean(),
        "enable-presorted-aggregate": Boolean(),
        "enable-seqscan": Boolean(),
        "enable-sort": Boolean(),
        "enable-tidscan": Boolean(),
        "from-collapse-limit": Integer(1, INT_MAX),
        "geqo": Boolean(),
        "geqo-effort": Integer(1, 10),
        "geqo-generations": Integer(0, INT_MAX),
        "geqo-pool-size": Integer(0, INT_MAX),
        "geqo-seed": Real(0.0, 1.0),
        "geqo-selection-bias": Real(1.5, 2.0),
        "geqo-threshold": Integer(2, INT_MAX),
        "jit": Boolean(),
        "jit-above-cost": Real(-1.0),
        "jit-inline-above-cost": Real(-1.0),
        "jit-optimize-above-cost": Real(-1.0),
        "join-collapse-limit": Integer(1, INT_MAX),
        "min-parallel-index-scan-size": Integer(0, 715_827_882, "8kB"),
        "min-parallel-table-scan-size": Integer(0, 715_827_882, "8kB"),
        "parallel-setup-cost": Real(0.0),
        "parallel-tuple-cost": Real(0.0),
        "plan-cache-mode": Choice(("auto", "force_generic_plan", "force_custom_plan")),
        "random-page-cost": Real(0.0),
        "recursive-worktable-factor": Real(0.001, 1_000_000.0),
        "seq-page-cost": Real(0.0),
    },
    "request": {
        "array-nulls": Boolean(),
        "backslash-quote": Choice(("safe_encoding", "on", "off")),
        "date-style": Text(
            r"[A-Za-z, ]{1,64}",
            "must be a DateStyle such as ISO, MDY",
            parameter="DateStyle",
            syntax=guc.date_style_error,
        ),
        "deadlock-timeout": Integer(1, INT_MAX, "ms"),
        "default-transaction-deferrable": Boolean(),
        "default-transaction-isolation": Choice(
            ("serializable", "repeatable read", "read committed", "read uncommitted")
        ),
        "default-transaction-read-only": Boolean(),
        "escape-string-warning": Boolean(),
        "interval-style": Choice(
            ("postgres", "postgres_verbose", "sql_standard", "iso_8601"), parameter="IntervalStyle"
        ),
        "lock-timeout": Integer(0, INT_MAX, "ms"),
        "standard-conforming-strings": Boolean(),
        "time-zone": Text(
            r"[A-Za-z0-9_+\-/:.,<>]{1,255}",
            "must be a time zone such as UTC or Europe/Paris",
            parameter="TimeZone",
            syntax=guc.time_zone_syntax_error,
        ),
        "track-activity-query-size": Integer(100, 1_048_576, "B"),
        "transform-null-equals": Boolean(),
        "xmlbinary": Choice(("base64", "hex")),
        "xmloption": Choice(("content", "document")),
    },
    "response": {
        "bytea-output": Choice(("hex", "escape")),
        "exit-on-error": Boolean(),
        "extra-float-digits": Integer(-15, 3),
        "gin-fuzzy-search-limit": Integer(0, INT_MAX),
        "lc-messages": _LOCALE,
        "lc-monetary": _LOCALE,
        "lc-numeric": _LOCALE,
        "lc-time": _LOCALE,
    },
    "session": {
        "idle-in-transaction-session-timeout": Integer(0, INT_MAX, "ms"),
        "idle-session-timeout": Integer(0, INT_MAX, "ms"),
    },
    "storage": {
        "backend-flush-after": Integer(0, 256, "8kB"),
        "bgwriter-delay": Integer(10, 10_000, "ms"),
        "bgwriter-flush-after": Integer(0, 256, "8kB"),
        "bgwriter-lru-maxpages": Integer(0, 1_073_741_823),
        "bgwriter-lru-multiplier": Real(0.0, 10.0),
        "checkpoint-flush-after": Integer(0, 256, "8kB"),
        "default-table-access-method": Text(
            r"[a-z_][a-z0-9_]{0,62}", "must be an access method name such as heap"
        ),
        "default-toast-compression": Choice(("pglz", "lz4")),
        "effective-io-concurrency": Integer(0, 1000),
        "gin-pending-list-limit": Integer(64, INT_MAX, "kB"),
        "maintenance-io-concurrency": Integer(0, 1000),
        "old-snapshot-threshold": Integer(-1, 86_400, "min"),
        "temp-file-limit": Integer(-1, INT_MAX, "kB"),
    },
    "vacuum": {
        "autovacuum-analyze-scale-factor": Real(0.0, 100.0),
        "autovacuum-analyze-threshold": Integer(0, INT_MAX),
        "autovacuum-freeze-max-age": Integer(100_000, 2_000_000_000),
        "autovacuum-max-workers": Integer(
            1, _BACKENDS_LEFT - DEFAULT_MAX_CONNECTIONS - DEFAULT_MAX_WORKER_PROCESSES
        ),
        "autovacuum-multixact-freeze-max-age": Integer(10_000, 2_000_000_000),
        "autovacuum-naptime": Integer(1, 2_147_483, "s"),
        "autovacuum-vacuum-cost-delay": Real(-1.0, 100.0, "ms"),
        "autovacuum-vacuum-cost-limit": Integer(-1, 10_000),
        "autovacuum-vacuum-insert-scale-factor": Real(0.0, 100.0),
        "autovacuum-vacuum-insert-threshold": Integer(-1, INT_MAX),
        "autovacuum-vacuum-scale-factor": Real(0.0, 100.0),
        "autovacuum-vacuum-threshold": Integer(0, INT_MAX),
        "vacuum-cost-delay": Real(0.0, 100.0, "ms"),
        "vacuum-cost-limit": Integer(1, 10_000),
        "vacuum-cost-page-dirty": Integer(0, 10_000),
        "vacuum-cost-page-hit": Integer(0, 10_000),
        "vacuum-cost-page-miss": Integer(0, 10_000),
        "vacuum-failsafe-age": Integer(0, 2_100_000_000),
        "vacuum-freeze-min-age": Integer(0, 1_000_000_000),
        "vacuum-freeze-table-age": Integer(0, 2_000_000_000),
        "vacuum-multixact-failsafe-age": Integer(0, 2_100_000_000),
        "vacuum-multixact-freeze-min-age": Integer(0, 1_000_000_000),
        "vacuum-multixact-freeze-table-age": Integer(0, 2_000_000_000),
    },
}


# Options whose parameter PostgreSQL has only from this major on. On an older server Patroni
# drops the parameter with a warning: the option would silently do nothing.
INTRODUCED_IN: Mapping[str, int] = {
    "cpu-max-parallel-apply-workers-per-subscription": 16,
    "optimizer-enable-presorted-aggregate": 16,
}


def _with_parameter(name: str, spec: ParameterOption) -> ParameterOption:
    return spec if spec.parameter else dataclasses.replace(spec, parameter=name.replace("-", "_"))


# Option name (as in charmcraft.yaml) -> what it sets.
PARAMETER_OPTIONS: Mapping[str, ParameterOption] = {
    f"{group}-{name}": _with_parameter(name, spec)
    for group, options in _GROUPS.items()
    for name, spec in options.items()
}

# Extensions a `plugin-<name>-enable` option can create in every database. PostgreSQL's own
# contrib modules first, then extensions packaged separately for the workload image.
EXTENSIONS: tuple[str, ...] = (
    # contrib
    "amcheck",
    "autoinc",
    "bloom",
    "bool_plperl",
    "btree_gin",
    "btree_gist",
    "citext",
    "cube",
    "dblink",
    "dict_int",
    "dict_xsyn",
    "earthdistance",
    "fuzzystrmatch",
    "hstore",
    "hstore_plperl",
    "hstore_plpython3u",
    "insert_username",
    "intagg",
    "intarray",
    "isn",
    "jsonb_plperl",
    "jsonb_plpython3u",
    "lo",
    "ltree",
    "ltree_plpython3u",
    "moddatetime",
    "old_snapshot",
    "pageinspect",
    "pg_buffercache",
    "pg_freespacemap",
    "pg_prewarm",
    "pg_stat_statements",
    "pg_surgery",
    "pg_trgm",
    "pg_visibility",
    "pg_walinspect",
    "pgcrypto",
    "pgrowlocks",
    "pgstattuple",
    "plperl",
    "plpython3u",
    "pltcl",
    "postgres_fdw",
    "refint",
    "seg",
    "sslinfo",
    "tablefunc",
    "tcn",
    "tsm_system_rows",
    "tsm_system_time",
    "unaccent",
    "uuid-ossp",
    "xml2",
    # packaged separately
    "address_standardizer",
    "address_standardizer_data_us",
    "hll",
    "hypopg",
    "icu_ext",
    "ip4r",
    "orafce",
    "pg_similarity",
    "pgaudit",
    "postgis",
    "postgis_raster",
    "postgis_tiger_geocoder",
    "postgis_topology",
    "prefix",
    "rdkit",
    "tds_fdw",
    "timescaledb",
    "vector",
)

# Extensions that only work once their library is in shared_preload_libraries (a restart).
PRELOAD_LIBRARIES: Mapping[str, str] = {
    "pg_stat_statements": "pg_stat_statements",
    "pgaudit": "pgaudit",
    "timescaledb": "timescaledb",
}


def extension_option(extension: str) -> str:
    """Name of the option that enables an extension: `pg_trgm` -> `plugin-pg-trgm-enable`."""
    return f"plugin-{extension.replace('_', '-')}-enable"


EXTENSION_OPTIONS: Mapping[str, str] = {extension_option(e): e for e in EXTENSIONS}
