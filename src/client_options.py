"""What an operator decides for client applications: elevated privileges and shared databases."""

from __future__ import annotations

import re

# What only an operator may grant a client (`client-privileges`): each can read or change what
# other tenants own, or the server itself.
ELEVATED_PRIVILEGES = frozenset(
    {
        "superuser",
        "createrole",
        "pg_read_all_data",
        "pg_write_all_data",
        "pg_monitor",
        "pg_read_all_stats",
    }
)
_APP = r"[a-z][a-z0-9-]{0,62}"
_GRANT = re.compile(rf"({_APP})/([0-9]{{1,9}}):([a-z_]+(?:\+[a-z_]+)*)", re.ASCII)
_SHARE = re.compile(rf"([A-Za-z_][A-Za-z0-9_-]{{0,62}}):({_APP}(?:\+{_APP})+)", re.ASCII)


def _entries(value: str) -> list[str]:
    return [part for part in re.split(r"[ ,]+", value.strip(" ")) if part]


def parse_client_privileges(value: str) -> dict[tuple[str, int], frozenset[str]]:
    """`app/relation-id:privilege+privilege, ...`; ValueError naming the entry at fault.

    A decision names the relation as well as the application: a new relation (even of an
    application with the same name) needs a new one.
    """
    out: dict[tuple[str, int], frozenset[str]] = {}
    for entry in _entries(value):
        match = _GRANT.fullmatch(entry)
        if match is None:
            raise ValueError(f"{entry[:40]!r} is not app/relation-id:privilege[+privilege]")
        privileges = frozenset(match.group(3).split("+"))
        if unknown := privileges - ELEVATED_PRIVILEGES:
            raise ValueError(f"unknown privilege {sorted(unknown)[0]!r}")
        key = (match.group(1), int(match.group(2)))
        out[key] = out.get(key, frozenset()) | privileges
    return out


def parse_shared_databases(value: str) -> dict[str, frozenset[str]]:
    """`database:app+app, ...`; ValueError naming the entry at fault."""
    out: dict[str, frozenset[str]] = {}
    for entry in _entries(value):
        match = _SHARE.fullmatch(entry)
        if match is None:
            raise ValueError(f"{entry[:40]!r} is not database:app+app")
        out[match.group(1)] = out.get(match.group(1), frozenset()) | set(match.group(2).split("+"))
    return out
