"""Go-compatible durations and RFC 3339 timestamps, the two time formats of Pebble's API."""

from __future__ import annotations

import datetime
import re
import time

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class DurationError(ValueError):
    """Raised when a string is not a Go duration such as "1m30s" or "500ms"."""


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Go duration string ("1h2m3.5s", "500ms", "0"); numbers are seconds."""
    if isinstance(text, bool):
        raise DurationError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    value = text.strip()
    sign = 1.0
    if value[:1] in "+-" and value:
        sign = -1.0 if value[0] == "-" else 1.0
        value = value[1:]
    if value == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise DurationError(f"invalid duration {text!r}")
    return sign * total


def _trim(number: float, decimals: int) -> str:
    text = f"{number:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_duration(seconds: float) -> str:
    """Format seconds as Go's time.Duration.String() does ("1m30s", "500ms", "0s")."""
    nanos = round(seconds * 1e9)
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos == 0:
        text = "0s"
    elif nanos < 1_000:
        text = f"{nanos}ns"
    elif nanos < 1_000_000:
        text = f"{_trim(nanos / 1e3, 3)}µs"
    elif nanos < 1_000_000_000:
        text = f"{_trim(nanos / 1e6, 6)}ms"
    else:
        hours, rest = divmod(nanos, 3_600 * 10**9)
        minutes, rest = divmod(rest, 60 * 10**9)
        text = f"{_trim(rest / 1e9, 9)}s"
        if hours or minutes:
            text = f"{minutes}m{text}"
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def now() -> datetime.datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.datetime.now(datetime.timezone.utc)


def format_time(moment: datetime.datetime | None = None) -> str:
    """RFC 3339 with fractional seconds, as Go's encoding/json writes time.Time values."""
    moment = moment or now()
    text = moment.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> datetime.datetime:
    """Parse an RFC 3339 timestamp with up to nanosecond precision (extra digits dropped)."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(\.\d+)?(Z|z|[+-]\d\d:\d\d)", text.strip())
    if not match:
        raise ValueError(f"invalid timestamp {text!r}")
    base, frac, zone = match.groups()
    frac = (frac or ".0")[:7]
    zone = "+00:00" if zone in ("Z", "z") else zone
    return datetime.datetime.fromisoformat(f"{base}{frac}{zone}")


def log_prefix(moment: datetime.datetime | None = None) -> str:
    """Timestamp in the millisecond form Pebble prints before log lines."""
    moment = (moment or now()).astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def task_log_line(level: str, message: str) -> str:
    """One entry of a task's log, as Pebble records them ("<time> ERROR <message>")."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"{stamp} {level} {message}"
