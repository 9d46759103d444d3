"""The config model: what it accepts, what it refuses and why, and the PostgreSQL settings it yields."""

from __future__ import annotations

import dataclasses
import math

import pydantic
import pytest

import config
import config_options
from workload import guc

GIB = 1024**3
MIB = 1024**2
PAGES_PER_GIB = GIB // 8192


# --- loading ---------------------------------------------------------------------------------


def test_defaults_load() -> None:
    loaded = config.load_config({})

    assert loaded.profile == "production"
    assert loaded.profile_limit_memory == 0
    assert loaded.synchronous_node_count == "all"
    assert loaded.synchronous_mode_strict is True
    assert loaded.parameter_options() == {}
    assert config.enabled_extensions(loaded) == frozenset()


def test_unknown_options_are_ignored() -> None:
    loaded = config.load_config({"an-option-from-a-newer-revision": 3, "profile": "testing"})

    assert loaded.profile == "testing"
    assert "an-option-from-a-newer-revision" not in loaded.model_dump(by_alias=True)


def test_config_is_frozen() -> None:
    loaded = config.load_config({})

    with pytest.raises(pydantic.ValidationError):
        loaded.profile = "testing"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("option", "value", "parameter", "rendered"),
    [
        ("durability-synchronous-commit", "remote_apply", "synchronous_commit", "remote_apply"),
        ("durability-synchronous-commit", "off", "synchronous_commit", "off"),
        ("logging-log-connections", True, "log_connections", "on"),
        ("logging-log-connections", False, "log_connections", "off"),
        ("memory-work-mem", 65536, "work_mem", "65536"),
        ("connection-statement-timeout", 0, "statement_timeout", "0"),
        ("logging-log-min-duration-statement", -1, "log_min_duration_statement", "-1"),
        ("optimizer-cpu-tuple-cost", 0.02, "cpu_tuple_cost", "0.02"),
        ("optimizer-jit-above-cost", -1.0, "jit_above_cost", "-1.0"),
        # Juju may hand a whole number to a float option.
        ("vacuum-autovacuum-vacuum-cost-delay", 2, "autovacuum_vacuum_cost_delay", "2.0"),
        ("request-date-style", "ISO, DMY", "DateStyle", "ISO, DMY"),
        ("request-date-style", "German", "DateStyle", "German"),
        ("request-interval-style", "iso_8601", "IntervalStyle", "iso_8601"),
        ("request-time-zone", "Europe/Paris", "TimeZone", "Europe/Paris"),
        ("request-time-zone", "UTC", "TimeZone", "UTC"),
        (
            "request-default-transaction-isolation",
            "repeatable read",
            "default_transaction_isolation",
            "repeatable read",
        ),
        ("response-lc-monetary", "en_US.UTF-8", "lc_monetary", "en_US.UTF-8"),
        (
            "instance-default-text-search-config",
            "pg_catalog.english",
            "default_text_search_config",
            "pg_catalog.english",
        ),
        ("storage-default-table-access-method", "heap", "default_table_access_method", "heap"),
        ("vacuum-autovacuum-naptime", 2147483, "autovacuum_naptime", "2147483"),
        ("response-extra-float-digits", -15, "extra_float_digits", "-15"),
        ("cpu-wal-compression", "zstd", "wal_compression", "zstd"),
        ("connection-max-connections", 500, "max_connections", "500"),
    ],
)
def test_a_set_option_becomes_its_parameter(
    option: str, value: bool | int | float | str, parameter: str, rendered: str
) -> None:
    loaded = config.load_config({option: value})

    assert config.postgresql_parameters(loaded, None) == {parameter: rendered}


@pytest.mark.parametrize(
    "option",
    [
        name
        for name, spec in config_options.PARAMETER_OPTIONS.items()
        if isinstance(spec, config_options.Text | config_options.Choice)
    ],
)
def test_an_empty_string_means_unset(option: str) -> None:
    assert config.load_config({option: ""}).parameter_options() == {}


def _bounds(spec: config_options.ParameterOption) -> list[int | float]:
    if isinstance(spec, config_options.Integer | config_options.Real):
        return [spec.minimum, spec.maximum]
    return []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        (name, bound)
        for name, spec in sorted(config_options.PARAMETER_OPTIONS.items())
        for bound in _bounds(spec)
    ],
)
def test_range_bounds_are_accepted(option: str, value: float) -> None:
    assert config.load_config({option: value}).parameter_options() == {option: value}


def _invalid_value(spec: config_options.ParameterOption) -> bool | int | float | str:
    if isinstance(spec, config_options.Integer):
        return spec.maximum + 1
    if isinstance(spec, config_options.Real):
        return spec.minimum - 1.0
    if isinstance(spec, config_options.Boolean):
        return "yes"
    if isinstance(spec, config_options.Choice):
        return "bogus"
    return "x'; DROP TABLE t; --"


@pytest.mark.parametrize("option", sorted(config_options.PARAMETER_OPTIONS))
def test_every_parameter_option_refuses_a_bad_value_by_name(option: str) -> None:
    spec = config_options.PARAMETER_OPTIONS[option]

    with pytest.raises(config.InvalidConfigError) as caught:
        config.load_config({option: _invalid_value(spec)})

    assert caught.value.options == (option,)
    assert str(caught.value) == f"invalid config: {option} {spec.hint}"
    # Short enough for a status line.
    assert len(str(caught.value)) <= 140


_INTEGER_64 = "must be an integer from 64 to 2147483647"


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [
        (
            "durability-synchronous-commit",
            "always",
            "must be one of on, off, local, remote_write, remote_apply",
        ),
        ("memory-shared-buffers", 15, "must be an integer from 16 to 1073741823"),
        ("vacuum-autovacuum-naptime", 0, "must be an integer from 1 to 2147483"),
        ("connection-authentication-timeout", 601, "must be an integer from 1 to 600"),
        ("optimizer-geqo-selection-bias", 1.4, "must be a number from 1.5 to 2"),
        ("optimizer-cpu-tuple-cost", -0.5, "must be a number of at least 0"),
        ("optimizer-cpu-tuple-cost", math.inf, "must be a number of at least 0"),
        ("optimizer-cpu-tuple-cost", math.nan, "must be a number of at least 0"),
        ("logging-log-min-messages", "verbose", "must be a message level, debug5 to panic"),
        # Wrong types: Juju gives the declared type, so anything else is refused, not coerced.
        ("memory-work-mem", "4MB", _INTEGER_64),
        ("memory-work-mem", True, _INTEGER_64),
        ("memory-work-mem", 64.5, _INTEGER_64),
        ("logging-log-connections", 1, "must be true or false"),
        ("plugin-citext-enable", "yes", "must be true or false"),
        # Free-form values cannot smuggle a second setting into postgresql.conf.
        (
            "request-time-zone",
            "UTC\nlisten_addresses = '*'",
            "must be a time zone such as UTC or Europe/Paris",
        ),
        ("request-date-style", "ISO, MDY, DMY", "must be a DateStyle such as ISO, MDY"),
        ("response-lc-time", "en US", "must be a locale name such as C or en_US.UTF-8"),
        ("profile", "staging", "must be one of production, testing"),
        ("profile-limit-memory", 127, "must be 0 (no limit) or at least 128"),
        ("profile-limit-memory", -1, "must be 0 (no limit) or at least 128"),
        ("synchronous-mode-strict", "true", "must be true or false"),
    ],
)
def test_invalid_value_message(option: str, value: bool | int | float | str, hint: str) -> None:
    with pytest.raises(config.InvalidConfigError) as caught:
        config.load_config({option: value})

    assert caught.value.options == (option,)
    assert str(caught.value) == f"invalid config: {option} {hint}"


def test_several_bad_options_are_all_named() -> None:
    with pytest.raises(config.InvalidConfigError) as caught:
        config.load_config(
            {
                "memory-shared-buffers": 1,
                "vacuum-autovacuum-naptime": 0,
                "profile": "production",
                "synchronous-node-count": "none",
            }
        )

    assert set(caught.value.options) == {
        "memory-shared-buffers",
        "vacuum-autovacuum-naptime",
        "synchronous-node-count",
    }
    assert str(caught.value) == (
        "invalid config: memory-shared-buffers, vacuum-autovacuum-naptime, synchronous-node-count"
    )


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("all", "all"), ("majority", "majority"), ("1", 1), ("3", 3), (" 2 ", 2), ("10", 10)],
)
def test_synchronous_node_count_parses(raw: str, parsed: str | int) -> None:
    assert config.load_config({"synchronous-node-count": raw}).synchronous_node_count == parsed


@pytest.mark.parametrize("raw", ["0", "abc", "-1", "1.5", "", "ALL", "minority", "2 units"])
def test_synchronous_node_count_refuses(raw: str) -> None:
    with pytest.raises(config.InvalidConfigError) as caught:
        config.load_config({"synchronous-node-count": raw})

    assert caught.value.options == ("synchronous-node-count",)
    assert str(caught.value) == (
        "invalid config: synchronous-node-count must be all, majority or a positive integer"
    )


@pytest.mark.parametrize(
    ("setting", "planned_units", "expected"),
    [
        ("all", 0, 0),
        ("all", 1, 0),
        ("all", 2, 1),
        ("all", 3, 2),
        ("all", 5, 4),
        ("majority", 0, 0),
        ("majority", 1, 0),
        ("majority", 2, 1),
        ("majority", 3, 1),
        ("majority", 4, 2),
        ("majority", 5, 2),
        ("majority", 7, 3),
        ("1", 3, 1),
        ("2", 0, 0),
        ("2", 1, 0),
        ("2", 2, 1),
        ("2", 3, 2),
        ("2", 5, 2),
        ("9", 4, 3),
    ],
)
def test_synchronous_node_count_table(setting: str, planned_units: int, expected: int) -> None:
    loaded = config.load_config({"synchronous-node-count": setting})

    assert config.synchronous_node_count(loaded, planned_units) == expected


# --- memory and the profile ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "memory_bytes", "expected"),
    [
        # production: a quarter for shared_buffers, three quarters for effective_cache_size
        ({}, 4 * GIB, {"shared_buffers": "1024MB", "effective_cache_size": "3072MB"}),
        ({}, 10 * GIB, {"shared_buffers": "2560MB", "effective_cache_size": "7680MB"}),
        ({}, 1000 * MIB, {"shared_buffers": "250MB", "effective_cache_size": "750MB"}),
        # the memory limit, when smaller than the unit's memory, is what gets sized for
        (
            {"profile-limit-memory": 2048},
            4 * GIB,
            {"shared_buffers": "512MB", "effective_cache_size": "1536MB"},
        ),
        (
            {"profile-limit-memory": 8192},
            1 * GIB,
            {"shared_buffers": "256MB", "effective_cache_size": "768MB"},
        ),
        (
            {"profile-limit-memory": 1024},
            None,
            {"shared_buffers": "256MB", "effective_cache_size": "768MB"},
        ),
        # nothing known: PostgreSQL's defaults
        ({}, None, {}),
        ({}, 0, {}),
        # testing: small fixed sizes, smaller still on a smaller unit
        (
            {"profile": "testing"},
            4 * GIB,
            {"shared_buffers": "128MB", "effective_cache_size": "384MB"},
        ),
        (
            {"profile": "testing"},
            None,
            {"shared_buffers": "128MB", "effective_cache_size": "384MB"},
        ),
        (
            {"profile": "testing"},
            256 * MIB,
            {"shared_buffers": "64MB", "effective_cache_size": "192MB"},
        ),
        (
            {"profile": "testing", "profile-limit-memory": 256},
            4 * GIB,
            {"shared_buffers": "64MB", "effective_cache_size": "192MB"},
        ),
    ],
)
def test_profile_memory(
    settings: dict[str, int | str], memory_bytes: int | None, expected: dict[str, str]
) -> None:
    loaded = config.load_config(settings)

    assert config.postgresql_parameters(loaded, memory_bytes) == expected


@pytest.mark.parametrize("profile", ["production", "testing"])
def test_explicit_shared_buffers_wins(profile: str) -> None:
    loaded = config.load_config({"profile": profile, "memory-shared-buffers": PAGES_PER_GIB})

    parameters = config.postgresql_parameters(loaded, 4 * GIB)

    assert parameters["shared_buffers"] == str(PAGES_PER_GIB)
    assert parameters["effective_cache_size"] == ("3072MB" if profile == "production" else "384MB")


def test_explicit_effective_cache_size_wins() -> None:
    loaded = config.load_config({"memory-effective-cache-size": 262144})

    assert config.postgresql_parameters(loaded, 4 * GIB) == {
        "shared_buffers": "1024MB",
        "effective_cache_size": "262144",
    }


def test_explicit_memory_settings_apply_without_a_memory_reading() -> None:
    loaded = config.load_config(
        {"memory-shared-buffers": 16384, "memory-effective-cache-size": 65536}
    )

    assert config.postgresql_parameters(loaded, None) == {
        "shared_buffers": "16384",
        "effective_cache_size": "65536",
    }


def test_shared_buffers_may_use_all_the_memory_but_no_more() -> None:
    fits = config.load_config({"memory-shared-buffers": 4 * PAGES_PER_GIB})
    too_big = config.load_config({"memory-shared-buffers": 4 * PAGES_PER_GIB + 1})

    assert config.postgresql_parameters(fits, 4 * GIB)["shared_buffers"] == "524288"
    with pytest.raises(config.InvalidConfigError) as caught:
        config.postgresql_parameters(too_big, 4 * GIB)
    assert caught.value.options == ("memory-shared-buffers",)
    assert (
        str(caught.value) == "invalid config: memory-shared-buffers exceeds the 4096MB available"
    )


def test_shared_buffers_is_checked_against_the_memory_limit() -> None:
    loaded = config.load_config(
        {"profile-limit-memory": 1024, "memory-shared-buffers": PAGES_PER_GIB + 1}
    )

    with pytest.raises(config.InvalidConfigError) as caught:
        config.postgresql_parameters(loaded, 4 * GIB)

    assert caught.value.options == ("memory-shared-buffers",)
    assert "1024MB" in str(caught.value)


def test_user_parameters_and_profile_together() -> None:
    loaded = config.load_config(
        {
            "memory-work-mem": 8192,
            "logging-log-connections": True,
            "request-time-zone": "Europe/Lisbon",
            "durability-synchronous-commit": "remote_write",
            "optimizer-random-page-cost": 1.1,
            "profile-limit-memory": 2048,
            "plugin-citext-enable": True,
        }
    )

    assert config.postgresql_parameters(loaded, 8 * GIB) == {
        "TimeZone": "Europe/Lisbon",
        "effective_cache_size": "1536MB",
        "log_connections": "on",
        "random_page_cost": "1.1",
        "shared_buffers": "512MB",
        "synchronous_commit": "remote_write",
        "work_mem": "8192",
    }


# --- extensions ------------------------------------------------------------------------------


def test_enabled_extensions() -> None:
    loaded = config.load_config(
        {
            "plugin-pg-trgm-enable": True,
            "plugin-uuid-ossp-enable": True,
            "plugin-vector-enable": True,
            "plugin-citext-enable": False,
            "plugin-postgis-enable": True,
        }
    )

    assert config.enabled_extensions(loaded) == frozenset(
        {"pg_trgm", "uuid-ossp", "vector", "postgis"}
    )


@pytest.mark.parametrize("extension", config_options.EXTENSIONS)
def test_each_toggle_enables_its_extension(extension: str) -> None:
    option = config_options.extension_option(extension)

    assert config.enabled_extensions(config.load_config({option: True})) == {extension}
    assert config.enabled_extensions(config.load_config({option: False})) == frozenset()


@pytest.mark.parametrize(
    ("extensions", "preload"),
    [
        (["citext", "hstore"], None),
        (["pgaudit"], "pgaudit"),
        (
            ["timescaledb", "pg_stat_statements", "pgaudit", "citext"],
            "pg_stat_statements,pgaudit,timescaledb",
        ),
    ],
)
def test_extensions_that_need_preloading(extensions: list[str], preload: str | None) -> None:
    loaded = config.load_config({config_options.extension_option(e): True for e in extensions})

    assert config.postgresql_parameters(loaded, None).get("shared_preload_libraries") == preload


def test_extension_option_names() -> None:
    assert config_options.extension_option("pg_trgm") == "plugin-pg-trgm-enable"
    assert config_options.extension_option("uuid-ossp") == "plugin-uuid-ossp-enable"
    assert len(config_options.EXTENSION_OPTIONS) == len(config_options.EXTENSIONS)


# --- tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "parameter"),
    [
        ("memory-shared-buffers", "shared_buffers"),
        ("vacuum-autovacuum-naptime", "autovacuum_naptime"),
        ("vacuum-vacuum-cost-limit", "vacuum_cost_limit"),
        ("cpu-max-worker-processes", "max_worker_processes"),
        ("request-date-style", "DateStyle"),
        ("request-time-zone", "TimeZone"),
        ("optimizer-enable-seqscan", "enable_seqscan"),
        ("session-idle-in-transaction-session-timeout", "idle_in_transaction_session_timeout"),
    ],
)
def test_option_to_parameter(option: str, parameter: str) -> None:
    assert config_options.PARAMETER_OPTIONS[option].parameter == parameter


def test_every_option_sets_a_distinct_parameter() -> None:
    parameters = [spec.parameter for spec in config_options.PARAMETER_OPTIONS.values()]

    assert len(parameters) == len(set(parameters))


def test_option_names() -> None:
    names = config.config_option_names()

    assert {
        "profile",
        "profile-limit-memory",
        "synchronous-node-count",
        "synchronous-mode-strict",
        "client-privileges",
        "shared-databases",
        "backup-retention-full",
        "backup-retention-type",
        "backup-schedule-full",
        "backup-schedule-incremental",
        "backup-incremental-type",
    } <= names
    assert set(config_options.PARAMETER_OPTIONS) <= names
    assert set(config_options.EXTENSION_OPTIONS) <= names
    assert len(names) == 11 + len(config_options.PARAMETER_OPTIONS) + len(
        config_options.EXTENSIONS
    )


@pytest.mark.parametrize(
    ("value", "privileges"),
    [
        ("", {}),
        ("pgbouncer-k8s/7:superuser", {("pgbouncer-k8s", 7): {"superuser"}}),
        (
            "a/1:createrole+pg_monitor, b-2/30:pg_read_all_data a/1:superuser",
            {
                ("a", 1): {"createrole", "pg_monitor", "superuser"},
                ("b-2", 30): {"pg_read_all_data"},
            },
        ),
    ],
)
def test_client_privileges(value: str, privileges: dict[tuple[str, int], set[str]]) -> None:
    assert config.load_config({"client-privileges": value}).privileges == privileges


@pytest.mark.parametrize(
    "value",
    [
        "pgbouncer",  # an alias alone is no decision
        "pgbouncer:superuser",
        "pgbouncer/x:superuser",
        "pgbouncer/7",
        "pgbouncer/7:createdb",  # not elevated: nobody needs to allow it
        "pgbouncer/7:pg_execute_server_program",
        "pgbouncer/7:superuser\n",
        "pgbouncer/7:superuser;drop",
        "PGB/7:superuser",
        "a/7:superuser+",
    ],
)
def test_client_privileges_rejects_junk(value: str) -> None:
    with pytest.raises(config.InvalidConfigError, match="client-privileges"):
        config.load_config({"client-privileges": value})


def test_shared_databases() -> None:
    cfg = config.load_config({"shared-databases": "orders:shop+reporting, logs:a+b+c"})
    assert cfg.sharing == {"orders": {"shop", "reporting"}, "logs": {"a", "b", "c"}}


@pytest.mark.parametrize(
    "value", ["orders", "orders:shop", "orders:shop+", "or ders:a+b", "o:A+b"]
)
def test_shared_databases_rejects_junk(value: str) -> None:
    with pytest.raises(config.InvalidConfigError, match="shared-databases"):
        config.load_config({"shared-databases": value})


@pytest.mark.parametrize("option", ["backup-schedule-full", "backup-schedule-incremental"])
@pytest.mark.parametrize("value", ["* * *", "61 * * * *", "bad", "0 0 31 2 *"])
def test_backup_schedules_are_cron(option: str, value: str) -> None:
    with pytest.raises(config.InvalidConfigError, match=option):
        config.load_config({option: value})


def test_backup_options() -> None:
    cfg = config.load_config(
        {
            "backup-schedule-full": "0 2 * * 0",
            "backup-schedule-incremental": " 0 * * * * ",
            "backup-retention-full": 3,
            "backup-retention-type": "count",
            "backup-incremental-type": "diff",
        }
    )
    assert (cfg.backup_schedule_full, cfg.backup_schedule_incremental) == (
        "0 2 * * 0",
        "0 * * * *",
    )
    assert (cfg.backup_retention_full, cfg.backup_retention_type) == (3, "count")
    with pytest.raises(config.InvalidConfigError, match="backup-retention-full"):
        config.load_config({"backup-retention-full": 0})
    with pytest.raises(config.InvalidConfigError, match="backup-retention-type"):
        config.load_config({"backup-retention-type": "weeks"})


# --- values PostgreSQL's parsers and the image decide -------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        # pydantic's pattern engine let `\s` match these; PostgreSQL's parser does not skip them.
        ("request-date-style", "ISO,\nMDY"),
        ("request-date-style", "ISO,\u00a0MDY"),
        ("request-date-style", "ISO,\u3000MDY"),
        ("request-date-style", "ISO, SQL"),
        ("request-time-zone", "UTC\n"),
        ("request-time-zone", "Europe/Paris\u00a0"),
        ("request-time-zone", "XXX3YYY;M3.2.0,M11.1.0"),
        ("response-lc-time", "C.UTF-8\n"),
        ("response-lc-time", "C.ÜTF-8"),
        ("instance-default-text-search-config", "english\n"),
        ("storage-default-table-access-method", "heap\n"),
        ("durability-min-wal-size", 31),
        ("durability-max-wal-size", 2),
    ],
)
def test_values_postgresql_would_refuse_are_refused_by_name(option: str, value: str) -> None:
    with pytest.raises(config.InvalidConfigError) as caught:
        config.load_config({option: value})

    assert caught.value.options == (option,)


def test_connections_and_workers_may_not_exceed_postgresqls_backends() -> None:
    at_limit = {
        "connection-max-connections": 262_000,
        "vacuum-autovacuum-max-workers": 100,
        "cpu-max-worker-processes": 26,
    }
    assert config.load_config(at_limit).parameter_options() == at_limit

    with pytest.raises(config.InvalidConfigError) as caught:
        config.load_config({**at_limit, "cpu-max-worker-processes": 27})

    assert caught.value.options == tuple(at_limit)
    assert (
        str(caught.value) == "invalid config: connections and workers exceed PostgreSQL's 262143"
    )


FACTS = guc.ImageFacts(
    time_zones=frozenset({"UTC", "Europe/Paris"}),
    locales=frozenset({"C", "POSIX", "C.utf8"}),
    stack_limit_kb=8192,
    major=16,
    text_search_configs=frozenset({"pg_catalog.english"}),
    table_access_methods=frozenset({"heap"}),
)


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("request-time-zone", "Europe/Nowhere", "no such time zone in the image"),
        ("response-lc-messages", "fr_FR.UTF-8", "no such locale in the image"),
        ("response-lc-numeric", "en_US.UTF-8", "no such locale in the image"),
        ("memory-max-stack-depth", 7681, "exceeds the container's stack limit less 512kB"),
        (
            "instance-default-text-search-config",
            "klingon",
            "no such text search configuration",
        ),
        ("storage-default-table-access-method", "columnar", "no such table access method"),
    ],
)
def test_what_the_image_lacks_is_refused_by_name(option: str, value: str | int, why: str) -> None:
    loaded = config.load_config({option: value})  # the shape is right

    with pytest.raises(config.InvalidConfigError) as caught:
        config.check_image(loaded, FACTS)

    assert caught.value.options == (option,)
    assert str(caught.value) == f"invalid config: {option}: {why}"


def test_what_the_image_has_passes() -> None:
    loaded = config.load_config(
        {
            "request-time-zone": "europe/paris",
            "response-lc-messages": "C.UTF-8",
            "response-lc-time": "POSIX",
            "memory-max-stack-depth": 7680,
            "instance-default-text-search-config": "English",
            "storage-default-table-access-method": "heap",
            "optimizer-enable-presorted-aggregate": True,
        }
    )
    config.check_image(loaded, FACTS)


def test_catalog_names_are_not_checked_until_the_catalog_is_known() -> None:
    loaded = config.load_config({"storage-default-table-access-method": "columnar"})
    config.check_image(loaded, dataclasses.replace(FACTS, table_access_methods=None))


def test_options_of_a_newer_major_and_several_faults_are_all_named() -> None:
    loaded = config.load_config(
        {"optimizer-enable-presorted-aggregate": True, "request-time-zone": "Mars/Olympus"}
    )

    with pytest.raises(config.InvalidConfigError) as caught:
        config.check_image(loaded, dataclasses.replace(FACTS, major=15))

    assert set(caught.value.options) == {
        "optimizer-enable-presorted-aggregate",
        "request-time-zone",
    }
    assert str(caught.value).startswith("invalid config: ")
