"""Tier 3: the charm's own hooks on the local substrate (pods, a real Pebble, Patroni on etcd)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from substrate.local import LocalBackend


@pytest.fixture(scope="module")
def juju() -> Iterator[LocalBackend]:
    """A fresh local model per test module; everything is torn down afterwards."""
    with LocalBackend() as backend:
        yield backend
