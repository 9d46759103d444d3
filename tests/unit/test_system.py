"""Parsing of the container's memory limits and of the PostgreSQL majors the image ships."""

from __future__ import annotations

import pytest

from workload import system

GIB = 1024**3
MEMINFO = """\
MemTotal:        8039708 kB
MemFree:          123456 kB
MemAvailable:    4000000 kB
SwapTotal:             0 kB
"""
MEMINFO_BYTES = 8039708 * 1024


@pytest.mark.parametrize(
    ("cgroup", "meminfo", "expected"),
    [
        # A cgroup limit alone.
        ("2147483648\n", None, 2 * GIB),
        ("2147483648", "", 2 * GIB),
        ("  1073741824  \n", None, GIB),
        # No limit: the machine's total.
        ("max\n", MEMINFO, MEMINFO_BYTES),
        (None, MEMINFO, MEMINFO_BYTES),
        ("", MEMINFO, MEMINFO_BYTES),
        # Garbage in memory.max is ignored.
        ("lots", MEMINFO, MEMINFO_BYTES),
        ("-1", MEMINFO, MEMINFO_BYTES),
        ("1.5G", MEMINFO, MEMINFO_BYTES),
        # Both: the smaller one wins.
        ("2147483648\n", MEMINFO, 2 * GIB),
        (str(64 * GIB), MEMINFO, MEMINFO_BYTES),
    ],
)
def test_memory_limit_bytes(cgroup: str | None, meminfo: str | None, expected: int):
    assert system.memory_limit_bytes(cgroup, meminfo) == expected


@pytest.mark.parametrize(
    ("cgroup", "meminfo"),
    [
        (None, None),
        ("max", None),
        ("max", ""),
        ("garbage", "no such field here\n"),
        # MemTotal must be a line of its own, in kB.
        (None, "MemFree: 1000 kB\n"),
        (None, "MemTotal: 1000 MB\n"),
        (None, "XMemTotal: 1000 kB\n"),
    ],
)
def test_memory_limit_bytes_is_none_when_nothing_is_usable(
    cgroup: str | None, meminfo: str | None
):
    assert system.memory_limit_bytes(cgroup, meminfo) is None


def test_memory_limit_reads_memtotal_on_any_line():
    meminfo = "Foo: 1 kB\nMemTotal: 1024 kB\nBar: 2 kB\n"
    assert system.memory_limit_bytes(None, meminfo) == 1024 * 1024


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["14", "16", "15"], 16),
        (["16"], 16),
        (["9", "10"], 10),  # numeric, not lexical, order
        (["16", "lib", "share", "17beta"], 16),
        ([], None),
        (["lib", "share"], None),
    ],
)
def test_newest_major(entries: list[str], expected: int | None):
    assert system.newest_major(entries) == expected


@pytest.mark.parametrize("garbage", ["²", "1²", "١٢"])
def test_non_ascii_digits_are_garbage_not_a_crash(garbage: str):
    # str.isdigit() accepts "²", which int() refuses; such names must be ignored, not raise.
    assert system.memory_limit_bytes(garbage, None) is None
    assert system.newest_major(["16", garbage]) == 16
