"""Facts read off the workload image and the container's cgroup, parsed without side effects."""

from __future__ import annotations

import re

_MEMINFO_TOTAL = re.compile(r"^MemTotal:\s+(\d+)\s+kB", re.MULTILINE)


def _is_number(text: str) -> bool:
    """Whether int() parses the text: ASCII digits only (isdigit() alone accepts "²")."""
    return text.isascii() and text.isdigit()


def memory_limit_bytes(cgroup_memory_max: str | None, meminfo: str | None) -> int | None:
    """The memory the workload may use: the cgroup v2 limit, else the machine's total.

    `cgroup_memory_max` is the content of /sys/fs/cgroup/memory.max ("max" when unlimited);
    `meminfo` the content of /proc/meminfo. Returns None when neither says anything usable.
    """
    total: int | None = None
    if meminfo:
        match = _MEMINFO_TOTAL.search(meminfo)
        total = int(match.group(1)) * 1024 if match else None
    limit: int | None = None
    if cgroup_memory_max and _is_number(cgroup_memory_max.strip()):
        limit = int(cgroup_memory_max.strip())
    if limit is not None and total is not None:
        return min(limit, total)
    return limit if limit is not None else total


def newest_major(entries: list[str]) -> int | None:
    """The highest PostgreSQL major version among the names under /usr/lib/postgresql."""
    majors = [int(name) for name in entries if _is_number(name)]
    return max(majors) if majors else None
