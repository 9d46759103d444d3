"""Polling for tier-2 tests: wait for a database or cluster fact without fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import pytest

T = TypeVar("T")


def eventually(
    probe: Callable[[], T], timeout: float = 30.0, what: str = "", interval: float = 0.25
) -> T:
    """The first truthy result of probe(), polled; database errors count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := probe():
                return result
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        time.sleep(interval)
