"""The charm's typed configuration, and what it means for PostgreSQL: parameters, extensions, replication."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

import pydantic

import client_options
import config_options
from workload import guc, scheduler

KIB = 1024
MIB = 1024 * KIB
PAGE_SIZE = 8 * KIB  # PostgreSQL's block size: the unit of shared_buffers and effective_cache_size

# The `testing` profile sizes PostgreSQL as if the unit had this much memory (shared_buffers 128MB).
TESTING_MEMORY = 512 * MIB
# Below this, a memory limit leaves PostgreSQL too little to start reliably.
MIN_LIMIT_MEMORY_MB = 128

OptionValue = bool | int | float | str


class InvalidConfigError(Exception):
    """Raised when options have values the charm will not apply.

    `options` names the options at fault, as spelled in charmcraft.yaml. The message is short enough
    for a status line: it says what is wrong with one option, or names all of them.
    """

    def __init__(self, options: Iterable[str], message: str | None = None) -> None:
        self.options: tuple[str, ...] = tuple(dict.fromkeys(options))
        self.message = message or _message(self.options)
        super().__init__(self.message)


def _message(options: tuple[str, ...]) -> str:
    if len(options) == 1:
        return f"invalid config: {options[0]} {_hint(options[0])}"
    return f"invalid config: {', '.join(options)}"


_CHARM_OPTION_HINTS: Mapping[str, str] = {
    "profile": "must be one of production, testing",
    "profile-limit-memory": f"must be 0 (no limit) or at least {MIN_LIMIT_MEMORY_MB}",
    "synchronous-node-count": "must be all, majority or a positive integer",
    "synchronous-mode-strict": "must be true or false",
    "client-privileges": "must list app/relation-id:privilege[+privilege] entries",
    "shared-databases": "must list database:app+app entries",
}


def _hint(option: str) -> str:
    """What a valid value of an option looks like."""
    if option in config_options.EXTENSION_OPTIONS:
        return "must be true or false"
    spec = config_options.PARAMETER_OPTIONS.get(option)
    if spec is not None:
        return spec.hint
    return _CHARM_OPTION_HINTS.get(option, "is not valid")


def _field_name(option: str) -> str:
    return option.replace("-", "_")


def _empty_is_unset(value: object) -> object:
    # `juju config app option=""` leaves an empty string rather than removing the option.
    return None if value == "" else value


def _one_of(choices: tuple[str, ...]) -> pydantic.AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"not one of {choices}")
        return value

    return pydantic.AfterValidator(check)


def _text(spec: config_options.Text) -> pydantic.AfterValidator:
    # Python's re on the whole value: pydantic's own pattern engine lets `\s` match Unicode
    # spaces, which PostgreSQL's parsers do not skip.
    pattern = re.compile(spec.pattern, re.ASCII)

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError("does not match the pattern")
        if spec.syntax is not None and (error := spec.syntax(value)):
            raise ValueError(error)
        return value

    return pydantic.AfterValidator(check)


def _annotation(spec: config_options.ParameterOption) -> Any:
    """Type of the model field for a PostgreSQL parameter option."""
    if isinstance(spec, config_options.Integer):
        value: Any = Annotated[int, pydantic.Field(strict=True, ge=spec.minimum, le=spec.maximum)]
    elif isinstance(spec, config_options.Real):
        value = Annotated[
            float,
            pydantic.Field(strict=True, ge=spec.minimum, le=spec.maximum, allow_inf_nan=False),
        ]
    elif isinstance(spec, config_options.Boolean):
        value = pydantic.StrictBool
    elif isinstance(spec, config_options.Choice):
        value = Annotated[pydantic.StrictStr, _one_of(spec.choices)]
    else:
        value = Annotated[pydantic.StrictStr, _text(spec)]
    return Annotated[value | None, pydantic.BeforeValidator(_empty_is_unset)]


def _generated_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        _field_name(option): (_annotation(spec), pydantic.Field(None, alias=option))
        for option, spec in config_options.PARAMETER_OPTIONS.items()
    }
    fields.update(
        (_field_name(option), (pydantic.StrictBool, pydantic.Field(False, alias=option)))
        for option in config_options.EXTENSION_OPTIONS
    )
    return fields


# Juju passes every option on every hook: unknown keys are ignored rather than refused, and
# options are only ever read by their charmcraft.yaml names.
_GeneratedOptions = pydantic.create_model(
    "_GeneratedOptions",
    __config__=pydantic.ConfigDict(
        frozen=True, extra="ignore", validate_by_alias=True, validate_by_name=False
    ),
    **_generated_fields(),
)


def _sync_node_count_from_string(value: object) -> object:
    # The option is a string so that it can hold a word or a number.
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


SyncNodeCount = Annotated[
    Literal["all", "majority"] | Annotated[int, pydantic.Field(strict=True, ge=1)],
    pydantic.BeforeValidator(_sync_node_count_from_string),
]


def _cron(value: str) -> str:
    """A cron schedule (5 fields, UTC), or empty for none."""
    value = value.strip()
    if value:
        error = scheduler.validate(value)
        if error:
            raise ValueError(error)
    return value


def _client_privileges(value: str) -> str:
    client_options.parse_client_privileges(value)
    return value


def _shared_databases(value: str) -> str:
    client_options.parse_shared_databases(value)
    return value


def _limit_memory(value: int) -> int:
    if 0 < value < MIN_LIMIT_MEMORY_MB:
        raise ValueError("too small")
    return value


class CharmConfig(_GeneratedOptions):
    """The charm's configuration, validated; fields are aliased to the charmcraft.yaml option names.

    Besides the fields below there is one field per PostgreSQL parameter option (None when unset)
    and one per extension toggle (False unless enabled), generated from `config_options`.
    """

    profile: Literal["production", "testing"] = "production"
    profile_limit_memory: Annotated[
        int, pydantic.Field(strict=True, ge=0, le=config_options.INT_MAX)
    ] = pydantic.Field(0, alias="profile-limit-memory")
    synchronous_node_count: SyncNodeCount = pydantic.Field("all", alias="synchronous-node-count")
    synchronous_mode_strict: pydantic.StrictBool = pydantic.Field(
        True, alias="synchronous-mode-strict"
    )
    client_privileges: Annotated[str, pydantic.AfterValidator(_client_privileges)] = (
        pydantic.Field("", alias="client-privileges")
    )
    shared_databases: Annotated[str, pydantic.AfterValidator(_shared_databases)] = pydantic.Field(
        "", alias="shared-databases"
    )

    backup_retention_full: Annotated[int, pydantic.Field(strict=True, ge=1, le=9999999)] = (
        pydantic.Field(30, alias="backup-retention-full")
    )
    backup_retention_type: Literal["days", "count"] = pydantic.Field(
        "days", alias="backup-retention-type"
    )
    backup_schedule_full: Annotated[str, pydantic.AfterValidator(_cron)] = pydantic.Field(
        "", alias="backup-schedule-full"
    )
    backup_schedule_incremental: Annotated[str, pydantic.AfterValidator(_cron)] = pydantic.Field(
        "", alias="backup-schedule-incremental"
    )
    backup_incremental_type: Literal["incr", "diff"] = pydantic.Field(
        "incr", alias="backup-incremental-type"
    )

    @property
    def privileges(self) -> dict[tuple[str, int], frozenset[str]]:
        """Elevated privileges the operator allowed, by (application, relation id)."""
        return client_options.parse_client_privileges(self.client_privileges)

    @property
    def sharing(self) -> dict[str, frozenset[str]]:
        """Applications allowed to share each database, by database."""
        return client_options.parse_shared_databases(self.shared_databases)

    @pydantic.field_validator("profile_limit_memory")
    @classmethod
    def _check_limit_memory(cls, value: int) -> int:
        return _limit_memory(value)

    def parameter_options(self) -> dict[str, OptionValue]:
        """The PostgreSQL parameter options the user set, keyed by option name."""
        values: dict[str, OptionValue] = {}
        for option in config_options.PARAMETER_OPTIONS:
            value = getattr(self, _field_name(option))
            if value is not None:
                values[option] = value
        return values


def load_config(raw: Mapping[str, OptionValue]) -> CharmConfig:
    """Validate Juju's config; raises InvalidConfigError naming every option at fault."""
    try:
        loaded = CharmConfig.model_validate(dict(raw))
    except pydantic.ValidationError as error:
        options = [str(e["loc"][0]) for e in error.errors() if e["loc"]]
        raise InvalidConfigError(options or ["config"]) from None
    _check_backends(loaded)
    return loaded


_BACKEND_OPTIONS: Mapping[str, int] = {
    "connection-max-connections": config_options.DEFAULT_MAX_CONNECTIONS,
    "vacuum-autovacuum-max-workers": config_options.DEFAULT_AUTOVACUUM_MAX_WORKERS,
    "cpu-max-worker-processes": config_options.DEFAULT_MAX_WORKER_PROCESSES,
}


def _check_backends(config: CharmConfig) -> None:
    """PostgreSQL refuses to start when these, 1 and max_wal_senders exceed guc.MAX_BACKENDS."""
    values = config.parameter_options()
    total = 1 + config_options.WAL_SENDERS
    total += sum(int(values.get(option, default)) for option, default in _BACKEND_OPTIONS.items())
    if total > guc.MAX_BACKENDS:
        raise InvalidConfigError(
            [option for option in _BACKEND_OPTIONS if option in values],
            f"invalid config: connections and workers exceed PostgreSQL's {guc.MAX_BACKENDS}",
        )


def _image_checks(facts: guc.ImageFacts) -> dict[str, Callable[[OptionValue], str | None]]:
    """Per option, what the image decides about its value (an error or None)."""
    checks: dict[str, Callable[[OptionValue], str | None]] = {
        "request-time-zone": lambda v: guc.time_zone_error(str(v), facts.time_zones),
        "memory-max-stack-depth": lambda v: guc.stack_depth_error(int(v), facts.stack_limit_kb),
    }
    for category in ("messages", "monetary", "numeric", "time"):
        checks[f"response-lc-{category}"] = lambda v: guc.locale_error(str(v), facts.locales)
    if (configs := facts.text_search_configs) is not None:
        checks["instance-default-text-search-config"] = lambda v: guc.text_search_config_error(
            str(v), configs
        )
    if (methods := facts.table_access_methods) is not None:
        checks["storage-default-table-access-method"] = lambda v: guc.table_access_method_error(
            str(v), methods
        )
    return checks


def check_image(config: CharmConfig, facts: guc.ImageFacts) -> None:
    """Raise InvalidConfigError naming the options the image's PostgreSQL would refuse.

    Time zones and locales that do not exist in the image, a stack depth over the container's
    limit, options of a newer PostgreSQL major, and (once the catalog is known) text search
    configurations and table access methods that do not exist. Nothing here is known from the
    charm's own container: `facts` are read from the workload's.
    """
    checks = _image_checks(facts)
    refused: dict[str, str] = {}
    for option, value in config.parameter_options().items():
        since = config_options.INTRODUCED_IN.get(option, 0)
        if facts.major < since:
            refused[option] = f"needs PostgreSQL {since}"
        elif option in checks and (error := checks[option](value)):
            refused[option] = error
    if refused:
        option, why = next(iter(refused.items()))
        message = f"invalid config: {option}: {why}" if len(refused) == 1 else None
        raise InvalidConfigError(refused, message)


def config_option_names() -> frozenset[str]:
    """Every option CharmConfig reads: the option names charmcraft.yaml must declare."""
    return frozenset(field.alias or name for name, field in CharmConfig.model_fields.items())


def enabled_extensions(config: CharmConfig) -> frozenset[str]:
    """PostgreSQL extensions whose `plugin-*-enable` option is true."""
    return frozenset(
        extension
        for option, extension in config_options.EXTENSION_OPTIONS.items()
        if getattr(config, _field_name(option))
    )


def preload_libraries(config: CharmConfig) -> tuple[str, ...]:
    """Libraries the enabled extensions need in shared_preload_libraries, sorted."""
    extensions = enabled_extensions(config)
    return tuple(
        sorted(
            library
            for extension, library in config_options.PRELOAD_LIBRARIES.items()
            if extension in extensions
        )
    )


def synchronous_node_count(config: CharmConfig, planned_units: int) -> int:
    """How many replicas Patroni keeps synchronous in an application of `planned_units` units."""
    replicas = max(planned_units - 1, 0)
    wanted = config.synchronous_node_count
    if wanted == "all":
        return replicas
    if wanted == "majority":
        return min(max(planned_units, 0) // 2, replicas)
    return min(wanted, replicas)


def available_memory(config: CharmConfig, memory_bytes: int | None) -> int | None:
    """Memory PostgreSQL may use: the unit's, capped by `profile-limit-memory` when that is set.

    None when neither is known.
    """
    candidates = [memory_bytes] if memory_bytes and memory_bytes > 0 else []
    if config.profile_limit_memory > 0:
        candidates.append(config.profile_limit_memory * MIB)
    return min(candidates) if candidates else None


def postgresql_parameters(config: CharmConfig, memory_bytes: int | None) -> dict[str, str]:
    """The cluster-wide PostgreSQL parameters to give Patroni, as strings in PostgreSQL's syntax.

    Only what the user set, plus the profile's memory sizing where the user did not set it, plus
    shared_preload_libraries when an enabled extension needs it. `memory_bytes` is the unit's
    memory (its container limit), or None if unknown. `production` gives shared_buffers a quarter
    of the available memory and effective_cache_size three quarters; `testing` sizes as if the
    unit had TESTING_MEMORY (or less, if it has less). Integer options pass through unitless, in
    the parameter's own base unit (8kB pages for shared_buffers). Raises InvalidConfigError if an
    explicit memory-shared-buffers does not fit in the available memory.
    """
    parameters = {
        config_options.PARAMETER_OPTIONS[option].parameter: _render(value)
        for option, value in config.parameter_options().items()
    }
    parameters.update(_memory_parameters(config, available_memory(config, memory_bytes)))
    if libraries := preload_libraries(config):
        parameters["shared_preload_libraries"] = ",".join(libraries)
    return dict(sorted(parameters.items()))


def _memory_parameters(config: CharmConfig, available: int | None) -> dict[str, str]:
    explicit = config.parameter_options()
    shared_pages = explicit.get("memory-shared-buffers")
    if isinstance(shared_pages, int) and available and shared_pages * PAGE_SIZE > available:
        raise InvalidConfigError(
            ["memory-shared-buffers"],
            f"invalid config: memory-shared-buffers exceeds the {available // MIB}MB available",
        )
    sizing = available
    if config.profile == "testing":
        sizing = min(available or TESTING_MEMORY, TESTING_MEMORY)
    if sizing is None:
        return {}  # nothing known: PostgreSQL's defaults apply
    derived: dict[str, str] = {}
    if not isinstance(shared_pages, int):
        derived["shared_buffers"] = f"{max(sizing // 4 // MIB, 1)}MB"
    if "memory-effective-cache-size" not in explicit:
        # The planner's estimate of all cache, shared buffers included: not reduced by them.
        derived["effective_cache_size"] = f"{max(sizing * 3 // 4 // MIB, 1)}MB"
    return derived


def _render(value: OptionValue) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return repr(value)
    return str(value)
