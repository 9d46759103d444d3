"""What PostgreSQL accepts as the value of a setting: its date style and time zone grammars, and the facts of the workload image that decide the rest.

Every check returns None when PostgreSQL would accept the value, or a short reason. They agree
with PostgreSQL 15's own checks (the tier-2 test runs the real binary against them); where
PostgreSQL is more lenient than is wise (prefixes of keywords, quoted words, tabs in a date
style, any letters before a digit taken as a POSIX time zone), they refuse.

The facts come from the workload container, not the charm's: the image's time zone files, its
locales, the stack limit its processes get, and (once PostgreSQL runs) its catalog.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

# PostgreSQL's cap on backends: max_connections + autovacuum_max_workers + 1 +
# max_worker_processes + max_wal_senders must not exceed it (PostgreSQL 15 and 16).
MAX_BACKENDS = 262_143
# PostgreSQL keeps this much of the stack limit in reserve (STACK_DEPTH_SLOP).
STACK_DEPTH_SLOP_KB = 512
# PostgreSQL's longest time zone name (TZ_STRLEN_MAX).
MAX_TIME_ZONE_LENGTH = 255
# The tzdata tree holds a leap-second copy of every zone, which PostgreSQL refuses.
_LEAP_SECOND_TREE = "right/"
# Files of the tzdata tree that are not zones (tables, the source, the leap-second list).
_NOT_ZONES = frozenset({"leapseconds", "SECURITY"})

_STYLES = frozenset({"iso", "sql", "postgres", "german"})
_ORDERS = {
    "ymd": "ymd",
    "dmy": "dmy",
    "euro": "dmy",
    "european": "dmy",
    "mdy": "mdy",
    "us": "mdy",
    "noneuro": "mdy",
    "noneuropean": "mdy",
}
# glibc finds a UTF-8 locale under these spellings of its codeset (measured: not every one
# glibc's normalisation would suggest, e.g. `U-T-F-8` is refused).
_UTF8_SPELLINGS = frozenset({"utf8", "UTF8", "utf-8", "UTF-8"})

_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_HOURS = re.compile(r"[+-]?(?P<hours>[0-9]{1,3})(?:\.[0-9]{1,6})?")
# A POSIX TZ string's parts (what PostgreSQL's tzparse reads), stricter where POSIX is.
_ABBREVIATION = re.compile(r"[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>")
_OFFSET = re.compile(r"[+-]?(?P<hours>[0-9]{1,3})(?::[0-5][0-9](?::00)?)?")
_RULE = re.compile(
    r"J(?P<julian>[0-9]{1,3})|(?P<day>[0-9]{1,3})|M(?P<month>[0-9]{1,2})\.[1-5]\.[0-6]"
)
_MAX_OFFSET_HOURS = 167  # a week, less an hour


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """What the workload image and its container decide about setting values.

    `time_zones`: zone_names() of the image's tzdata listing. `locales`: locale_names() of
    `locale -a`. `stack_limit_kb`: the soft stack limit of the workload's processes, None when
    unlimited. `major`: PostgreSQL's major version. The catalog sets are read from the running
    server (`postgres` database) and are None until it runs: `text_search_configs` as
    `schema.name`, `table_access_methods` as names.
    """

    time_zones: frozenset[str]
    locales: frozenset[str]
    stack_limit_kb: int | None
    major: int
    text_search_configs: frozenset[str] | None = None
    table_access_methods: frozenset[str] | None = None


def zone_names(listing: Iterable[str]) -> frozenset[str]:
    r"""The zones PostgreSQL accepts, from the files under its tzdata directory.

    `listing`: one path per line relative to /usr/share/zoneinfo, following symbolic links, as
    `find -L /usr/share/zoneinfo -type f -printf '%P\n'` prints it in the workload container.
    """
    names = (line.strip() for line in listing)
    return frozenset(
        name
        for name in names
        if name
        and not name.startswith(_LEAP_SECOND_TREE)
        and "." not in name.rsplit("/", 1)[-1]
        and name.rsplit("/", 1)[-1] not in _NOT_ZONES
    )


def locale_names(listing: Iterable[str]) -> frozenset[str]:
    """The locales of `locale -a`'s output (one per line), with C and POSIX, which glibc builds in."""
    return frozenset({"C", "POSIX", *(line.strip() for line in listing if line.strip())})


# --- DateStyle ----------------------------------------------------------------------------------


def date_style_error(value: str) -> str | None:
    """Why PostgreSQL's DateStyle would refuse `value` (an output style, an input order, or both)."""
    if not re.fullmatch(r"[A-Za-z, ]+", value):
        return "letters, commas and spaces only"
    style: str | None = None
    order: str | None = None
    for word in (part.strip(" ").lower() for part in value.split(",")):
        if word in _STYLES:
            if style not in (None, word):
                return "two conflicting styles"
            style = word
        elif word in _ORDERS:
            if order not in (None, _ORDERS[word]):
                return "two conflicting orders"
            order = _ORDERS[word]
        else:
            return f"unknown word {word!r}" if word else "an empty word"
    return None


# --- TimeZone -----------------------------------------------------------------------------------


def time_zone_syntax_error(value: str) -> str | None:
    """Why `value` is not shaped like a time zone PostgreSQL reads (a name, hours, a POSIX rule)."""
    if len(value) > MAX_TIME_ZONE_LENGTH:
        return "too long"
    if _hours_offset(value) or posix_time_zone(value) or _ZONE_NAME.fullmatch(value):
        return None
    return "not a zone name, a number of hours or a POSIX TZ string"


def time_zone_error(value: str, zones: frozenset[str]) -> str | None:
    """Why PostgreSQL would refuse `value` as TimeZone, with the image's `zones` (zone_names)."""
    if error := time_zone_syntax_error(value):
        return error
    if _hours_offset(value) or posix_time_zone(value) or value.upper() == "GMT":
        return None
    # PostgreSQL finds a zone file whatever the case of its name.
    if value.lower() in {zone.lower() for zone in zones}:
        return None
    return "no such time zone in the image"


def _hours_offset(value: str) -> bool:
    """A number of hours east of UTC, which PostgreSQL turns into a fixed offset."""
    match = _HOURS.fullmatch(value)
    return bool(match) and int(match["hours"]) <= _MAX_OFFSET_HOURS


def posix_time_zone(value: str) -> bool:
    """Whether `value` is a POSIX TZ string PostgreSQL accepts: `STD offset [DST [offset] [,start,end]]`.

    Offsets with seconds are refused unless whole minutes: PostgreSQL refuses a zone whose
    offset is not, as if it counted leap seconds.
    """
    scanner = _Scanner(value)
    if not (scanner.take(_ABBREVIATION) and scanner.offset()):
        return False
    if scanner.at_end():
        return True
    if not scanner.take(_ABBREVIATION):
        return False
    if not scanner.at_end() and not scanner.peek(",") and not scanner.offset():
        return False
    if scanner.at_end():
        return True
    return (
        scanner.literal(",")
        and scanner.rule()
        and scanner.literal(",")
        and scanner.rule()
        and (scanner.at_end())
    )


class _Scanner:
    """Reads a POSIX TZ string from left to right."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos == len(self.text)

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def literal(self, literal: str) -> bool:
        if not self.peek(literal):
            return False
        self.pos += len(literal)
        return True

    def take(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        match = pattern.match(self.text, self.pos)
        if match:
            self.pos = match.end()
        return match

    def offset(self) -> bool:
        match = self.take(_OFFSET)
        return bool(match) and int(match["hours"]) <= _MAX_OFFSET_HOURS

    def rule(self) -> bool:
        match = self.take(_RULE)
        if not match:
            return False
        julian, day, month = match["julian"], match["day"], match["month"]
        valid = (
            (julian is not None and 1 <= int(julian) <= 365)
            or (day is not None and int(day) <= 365)
            or (month is not None and 1 <= int(month) <= 12)
        )
        return valid and (not self.literal("/") or self.offset())


# --- locales, stack, catalog --------------------------------------------------------------------


def locale_error(value: str, locales: frozenset[str]) -> str | None:
    """Why PostgreSQL would refuse `value` as lc_messages, lc_monetary, lc_numeric or lc_time."""
    if value in locales:
        return None
    name, dot, rest = value.partition(".")
    codeset, at, modifier = rest.partition("@")
    if dot and codeset in _UTF8_SPELLINGS and f"{name}.utf8{at}{modifier}" in locales:
        return None
    return "no such locale in the image"


def stack_depth_error(kilobytes: int, stack_limit_kb: int | None) -> str | None:
    """Why PostgreSQL would refuse max_stack_depth under the workload's stack limit."""
    if stack_limit_kb is None or kilobytes <= stack_limit_kb - STACK_DEPTH_SLOP_KB:
        return None
    return f"exceeds the container's stack limit less {STACK_DEPTH_SLOP_KB}kB"


def text_search_config_error(value: str, configs: frozenset[str]) -> str | None:
    """Why sessions would fail to use `value` as default_text_search_config (`configs`: schema.name).

    An unqualified name is looked up as PostgreSQL's default search path would: in pg_catalog,
    then public. Unquoted names are folded to lower case, as PostgreSQL folds them.
    """
    name = value.lower()
    candidates = [name] if "." in name else [f"pg_catalog.{name}", f"public.{name}"]
    return None if any(c in configs for c in candidates) else "no such text search configuration"


def table_access_method_error(value: str, methods: frozenset[str]) -> str | None:
    """Why every CREATE TABLE would fail with `value` as default_table_access_method."""
    return None if value in methods else "no such table access method"
