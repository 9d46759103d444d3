"""Notices: custom and change-update occurrences keyed by (user, type, key), kept on disk."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from substrate.pebble import timeutil

DEFAULT_EXPIRE_AFTER = 7 * 24 * 3600.0
_CUSTOM_KEY = re.compile(
    r"^[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)+(?:/[\w.+~%-]+)+$"
)
_MAX_KEY = 256
# Each change (every exec, every check transition) adds a change-update notice, and the store is
# saved whole on each add: keep the newest ones only, so a long run stays cheap.
MAX_CHANGE_UPDATES = 1000


class NoticeError(ValueError):
    """Raised when a notice to add has an invalid type, key or option."""


@dataclasses.dataclass
class Notice:
    """One (user, type, key) notice and its occurrence history."""

    id: str
    user_id: int | None
    type: str
    key: str
    first_occurred: datetime.datetime
    last_occurred: datetime.datetime
    last_repeated: datetime.datetime
    occurrences: int = 1
    last_data: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    repeat_after: float | None = None
    expire_after: float = DEFAULT_EXPIRE_AFTER

    def to_dict(self) -> dict[str, Any]:
        """The notice as the API serialises it."""
        out: dict[str, Any] = {
            "id": self.id,
            "user-id": self.user_id,
            "type": self.type,
            "key": self.key,
            "first-occurred": timeutil.format_time(self.first_occurred),
            "last-occurred": timeutil.format_time(self.last_occurred),
            "last-repeated": timeutil.format_time(self.last_repeated),
            "occurrences": self.occurrences,
            "expire-after": timeutil.format_duration(self.expire_after),
        }
        if self.last_data:
            out["last-data"] = dict(self.last_data)
        if self.repeat_after is not None:
            out["repeat-after"] = timeutil.format_duration(self.repeat_after)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Notice:
        """Inverse of to_dict, for reloading the state file."""
        return cls(
            id=raw["id"],
            user_id=raw.get("user-id"),
            type=raw["type"],
            key=raw["key"],
            first_occurred=timeutil.parse_time(raw["first-occurred"]),
            last_occurred=timeutil.parse_time(raw["last-occurred"]),
            last_repeated=timeutil.parse_time(raw["last-repeated"]),
            occurrences=raw["occurrences"],
            last_data=raw.get("last-data") or {},
            repeat_after=timeutil.parse_duration(raw["repeat-after"])
            if "repeat-after" in raw
            else None,
            expire_after=timeutil.parse_duration(raw.get("expire-after", "168h")),
        )


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which notices a query wants; user_ids None means every user (admin "users=all")."""

    user_ids: frozenset[int | None] | None = None
    types: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    after: datetime.datetime | None = None

    def matches(self, notice: Notice) -> bool:
        """Whether a notice passes every filter."""
        return (
            (self.user_ids is None or notice.user_id in self.user_ids)
            and (not self.types or notice.type in self.types)
            and (not self.keys or notice.key in self.keys)
            and (self.after is None or notice.last_repeated > self.after)
        )


def validate_custom_key(key: str) -> None:
    """Custom notice keys look like "example.com/path"."""
    if len(key) > _MAX_KEY:
        raise NoticeError(f"key must be {_MAX_KEY} bytes or less")
    if not _CUSTOM_KEY.match(key):
        raise NoticeError('invalid key: custom notice key must be in the format "domain.com/key"')


class NoticeStore:
    """Every notice, saved to a JSON file after each change when a path is given."""

    def __init__(self, path: Path | None = None) -> None:
        self._cond = threading.Condition()
        self._path = path
        self._notices: dict[tuple[int | None, str, str], Notice] = {}
        self._last_id = 0
        if path is not None and path.exists():
            for raw in json.loads(path.read_text()):
                notice = Notice.from_dict(raw)
                self._notices[(notice.user_id, notice.type, notice.key)] = notice
                self._last_id = max(self._last_id, int(notice.id))

    def add(
        self,
        user_id: int | None,
        type_: str,
        key: str,
        data: dict[str, str] | None = None,
        repeat_after: float | None = None,
    ) -> str:
        """Record an occurrence; returns the notice's ID."""
        now = timeutil.now()
        with self._cond:
            notice = self._notices.get((user_id, type_, key))
            if notice is None:
                self._last_id += 1
                notice = Notice(str(self._last_id), user_id, type_, key, now, now, now)
                self._notices[(user_id, type_, key)] = notice
            else:
                notice.occurrences += 1
                notice.last_occurred = now
                elapsed = (now - notice.last_repeated).total_seconds()
                if repeat_after is None or elapsed >= repeat_after:
                    notice.last_repeated = now
            notice.last_data = dict(data or {})
            notice.repeat_after = repeat_after
            if type_ == "change-update":
                self._trim_change_updates()
            self._save()
            self._cond.notify_all()
            return notice.id

    def _trim_change_updates(self) -> None:
        updates = [(ident, n) for ident, n in self._notices.items() if n.type == "change-update"]
        updates.sort(key=lambda item: (item[1].last_repeated, int(item[1].id)))
        for ident, _ in updates[: max(0, len(updates) - MAX_CHANGE_UPDATES)]:
            del self._notices[ident]

    def _expire(self) -> None:
        now = timeutil.now()
        for ident, notice in list(self._notices.items()):
            if (now - notice.last_occurred).total_seconds() > notice.expire_after:
                del self._notices[ident]

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps([n.to_dict() for n in self._notices.values()]))
        os.replace(tmp, self._path)

    def query(self, filter_: Filter, timeout: float = 0.0) -> list[Notice]:
        """Matching notices by last-repeated time, waiting up to `timeout` for a first one."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._select(filter_)), timeout=timeout)
            return self._select(filter_)

    def _select(self, filter_: Filter) -> list[Notice]:
        self._expire()
        found = [n for n in self._notices.values() if filter_.matches(n)]
        return sorted(found, key=lambda n: (n.last_repeated, int(n.id)))

    def get(self, notice_id: str) -> Notice | None:
        """The notice with this ID."""
        with self._cond:
            return next((n for n in self._notices.values() if n.id == notice_id), None)

    def wake(self) -> None:
        """Wake long-polling queries (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()


def visible_to(uid: int, users_all: bool, user_id: int | None) -> frozenset[int | None] | None:
    """The user IDs a request may see, following Pebble's rules for users/user-id filters."""
    if users_all:
        return None
    if user_id is not None:
        return frozenset({user_id, None})
    return frozenset({uid, None})


def parse_types(values: Iterable[str]) -> frozenset[str]:
    """Types from repeated or comma-separated query parameters."""
    return frozenset(part for value in values for part in value.split(",") if part)
