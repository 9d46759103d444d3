"""The /v1 routes: each handler turns a Request into a Pebble envelope using the daemon's parts."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from substrate.pebble import checks, execs, files, multipart, notices, plan, services, timeutil
from substrate.pebble.server import ApiError, Request, Response, Upgrade, async_, sync
from substrate.pebble.websocket import WebSocket

if TYPE_CHECKING:
    from substrate.pebble.daemon import Daemon

Handler = Callable[[Request, "re.Match[str]"], "Response | Upgrade"]


class Api:
    """Routes requests to handlers, enforcing admin-only access where Pebble does."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        # (method, path pattern, handler, open to non-admin local users)
        self.routes: list[tuple[str, re.Pattern[str], Handler, bool]] = [
            ("GET", re.compile(r"/v1/system-info"), self.system_info, True),
            ("GET", re.compile(r"/v1/health"), self.health, True),
            ("GET", re.compile(r"/v1/warnings"), lambda r, m: sync([]), True),
            ("POST", re.compile(r"/v1/warnings"), lambda r, m: sync(0), False),
            ("GET", re.compile(r"/v1/changes"), self.get_changes, True),
            ("GET", re.compile(r"/v1/changes/(?P<id>[^/]+)"), self.get_change, True),
            ("POST", re.compile(r"/v1/changes/(?P<id>[^/]+)"), self.post_change, False),
            ("GET", re.compile(r"/v1/changes/(?P<id>[^/]+)/wait"), self.wait_change, True),
            (
                "GET",
                re.compile(r"/v1/tasks/(?P<task>[^/]+)/websocket/(?P<ws>[^/]+)"),
                self.task_websocket,
                False,
            ),
            ("GET", re.compile(r"/v1/services"), self.get_services, True),
            ("POST", re.compile(r"/v1/services"), self.post_services, False),
            ("GET", re.compile(r"/v1/plan"), self.get_plan, True),
            ("POST", re.compile(r"/v1/layers"), self.post_layers, False),
            ("GET", re.compile(r"/v1/checks"), self.get_checks, True),
            ("POST", re.compile(r"/v1/checks"), self.post_checks, False),
            ("POST", re.compile(r"/v1/checks/refresh"), self.refresh_check, False),
            ("GET", re.compile(r"/v1/files"), self.get_files, False),
            ("POST", re.compile(r"/v1/files"), self.post_files, False),
            ("POST", re.compile(r"/v1/exec"), self.post_exec, False),
            ("POST", re.compile(r"/v1/signals"), self.post_signals, False),
            ("GET", re.compile(r"/v1/logs"), self.get_logs, False),
            ("GET", re.compile(r"/v1/notices"), self.get_notices, True),
            ("POST", re.compile(r"/v1/notices"), self.post_notice, True),
            ("GET", re.compile(r"/v1/notices/(?P<id>[^/]+)"), self.get_notice, True),
            (
                "GET",
                re.compile(r"/v1/identities"),
                lambda r, m: sync(dict(self.d.identities)),
                False,
            ),
            ("POST", re.compile(r"/v1/identities"), self.post_identities, False),
        ]

    def __call__(self, request: Request) -> Response | Upgrade:
        """Find the route and call it."""
        allowed: list[str] = []
        for method, pattern, handler, public in self.routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            if not public and not request.admin:
                raise ApiError(403, "access denied", "login-required")
            return handler(request, match)
        if allowed:
            raise ApiError(405, f"method {request.method} not allowed")
        raise ApiError(404, "not found")

    # ---- system, changes ----------------------------------------------------------------

    def system_info(self, _r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/system-info."""
        return sync({"version": self.d.version, "boot-id": self.d.boot_id})

    def health(self, r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/health: 200 if no selected check is down, else 502."""
        level = r.arg("level")
        if level not in (None, "", "alive", "ready"):
            raise ApiError(400, f'level must be "alive" or "ready", not "{level}"')
        healthy = self.d.checks.healthy(level, r.args("names"))
        return sync({"healthy": healthy}, 200 if healthy else 502)

    def _change(self, change_id: str) -> Any:
        change = self.d.changes.get(change_id)
        if change is None:
            raise ApiError(404, f'cannot find change with id "{change_id}"')
        return change

    def get_changes(self, r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/changes."""
        select = r.arg("select") or "in-progress"
        if select not in ("all", "in-progress", "ready"):
            raise ApiError(400, f'select should be one of: all,in-progress,ready (got "{select}")')
        return sync([c.to_dict() for c in self.d.changes.select(select, r.arg("for"))])

    def get_change(self, _r: Request, m: re.Match[str]) -> Response:
        """GET /v1/changes/{id}."""
        return sync(self._change(m["id"]).to_dict())

    def post_change(self, r: Request, m: re.Match[str]) -> Response:
        """POST /v1/changes/{id} {"action": "abort"}: kills an exec; other changes just report."""
        change = self._change(m["id"])
        if r.json().get("action") != "abort":
            raise ApiError(400, "change action must be abort")
        if change.ready:
            raise ApiError(400, f"cannot abort change {change.id} with nothing pending")
        for task in change.tasks:
            session = self.d.execs.session(task.id)
            if session is not None:
                session.abort()
        return sync(change.to_dict())

    def wait_change(self, r: Request, m: re.Match[str]) -> Response:
        """GET /v1/changes/{id}/wait?timeout=: 504 if the change is not ready in time."""
        timeout = _duration(r.arg("timeout"))
        change = self.d.changes.wait(m["id"], timeout or None)
        if change is None:
            raise ApiError(404, f'cannot find change with id "{m["id"]}"')
        if not change.ready:
            raise ApiError(
                504, f"timed out waiting for change after {timeutil.format_duration(timeout)}"
            )
        return sync(change.to_dict())

    def task_websocket(self, _r: Request, m: re.Match[str]) -> Upgrade:
        """GET /v1/tasks/{task-id}/websocket/{id}: an exec's control/stdio/stderr stream."""
        session = self.d.execs.session(m["task"])
        if session is None:
            raise ApiError(404, f'cannot find task with id "{m["task"]}"')
        name = m["ws"]

        def serve(ws: WebSocket) -> None:
            if session.attach(name, ws):
                session.serve(name, ws)
            else:
                ws.close(1008)

        return Upgrade(serve)

    # ---- services, plan, checks ---------------------------------------------------------

    def get_services(self, r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/services?names=."""
        return sync(self.d.services.info(r.args("names") or None))

    def post_services(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/services: start|stop|restart|replan|autostart -> async change."""
        body = r.json()
        names = [str(n) for n in body.get("services") or []]
        action = str(body.get("action", ""))
        try:
            change = self.d.services_action(action, names)
        except services.ServiceError as e:
            kind = "no-default-services" if str(e) == "no default services" else ""
            raise ApiError(400, str(e), kind) from e
        return async_(change.id)

    def get_plan(self, r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/plan?format=yaml."""
        if r.arg("format") != "yaml":
            raise ApiError(400, 'invalid format "{}"'.format(r.arg("format") or ""))
        return sync(self.d.plan.to_yaml())

    def post_layers(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/layers {"action": "add", "label", "combine", "format": "yaml", "layer"}."""
        body = r.json()
        if body.get("action") != "add":
            raise ApiError(400, f'invalid action "{body.get("action")}"')
        if body.get("format") != "yaml":
            raise ApiError(400, f'invalid format "{body.get("format")}"')
        try:
            self.d.add_layer(
                str(body.get("label") or ""),
                str(body.get("layer") or ""),
                bool(body.get("combine")),
            )
        except plan.LayerError as e:
            raise ApiError(400, str(e)) from e
        return sync(True)

    def get_checks(self, r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/checks?level=&names=."""
        return sync(self.d.checks.info(r.arg("level"), r.args("names")))

    def post_checks(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/checks {"action": "start"|"stop", "checks": [...]}."""
        body = r.json()
        try:
            changed = self.d.checks.action(
                str(body.get("action")), [str(c) for c in body.get("checks") or []]
            )
        except checks.CheckError as e:
            raise ApiError(400, str(e)) from e
        return sync({"changed": changed})

    def refresh_check(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/checks/refresh {"name": ...}."""
        try:
            info, error = self.d.checks.refresh(str(r.json().get("name")))
        except checks.CheckError as e:
            raise ApiError(404, str(e)) from e
        return sync({"info": info, "error": error})

    # ---- files, exec, signals, logs -----------------------------------------------------

    def get_files(self, r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/files?action=list|read."""
        action = r.arg("action")
        try:
            if action == "list":
                return sync(
                    files.list_files(
                        r.arg("path") or "", r.arg("pattern"), r.arg("itself") == "true"
                    )
                )
            if action == "read":
                boundary = secrets.token_hex(16)
                stream = files.read_files(r.query.get("path", []), boundary)
                return Response(
                    200, stream=stream, content_type=f"multipart/form-data; boundary={boundary}"
                )
        except files.FilesError as e:
            raise ApiError(e.status, str(e), e.kind) from e
        raise ApiError(400, f'invalid action "{action}"')

    def post_files(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/files: multipart write, or JSON make-dirs / remove."""
        content_type = r.headers.get_content_type()
        try:
            if content_type == "multipart/form-data":
                boundary = r.headers.get_param("boundary")
                if not isinstance(boundary, str) or not boundary:
                    raise ApiError(400, "invalid boundary")
                return sync(
                    files.write_from_multipart(multipart.MultipartReader(r.body, boundary))
                )
            body = r.json()
            action = body.get("action")
            key = {"make-dirs": "dirs", "remove": "paths"}.get(str(action))
            if key is None:
                raise ApiError(400, f'invalid action "{action}"')
            return sync(files.apply_each(str(action), list(body.get(key) or [])))
        except files.FilesError as e:
            raise ApiError(e.status, str(e), e.kind) from e
        except multipart.MultipartError as e:
            raise ApiError(400, str(e)) from e

    def post_exec(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/exec -> async change, result {"task-id", "environment", "working-dir"}."""
        try:
            change, result = self.d.execs.start(r.json())
        except (execs.ExecError, timeutil.DurationError) as e:
            raise ApiError(400, str(e)) from e
        return async_(change.id, result)

    def post_signals(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/signals {"signal": "SIGHUP", "services": [...]}."""
        body = r.json()
        try:
            self.d.services.send_signal(
                str(body.get("signal")), [str(n) for n in body.get("services") or []]
            )
        except services.ServiceError as e:
            raise ApiError(400, str(e)) from e
        return sync(True)

    def get_logs(self, r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/logs?services=&n=&follow=: JSON lines, optionally followed."""
        names = r.args("services") or None
        try:
            n = int(r.arg("n") or 30)
        except ValueError as e:
            raise ApiError(400, f"n must be a valid integer: {e}") from e
        follow = r.arg("follow") == "true"
        return Response(
            200, stream=self._log_lines(names, n, follow), content_type="application/x-ndjson"
        )

    def _log_lines(self, names: list[str] | None, n: int, follow: bool) -> Iterator[bytes]:
        seq = self.d.logs.last_seq()
        for entry in self.d.logs.recent(names, n):
            seq = max(seq, entry.seq)
            yield json.dumps(entry.to_dict()).encode() + b"\n"
        while follow and not self.d.stopping:
            entries, seq = self.d.logs.follow(names, seq, timeout=1.0)
            for entry in entries:
                yield json.dumps(entry.to_dict()).encode() + b"\n"

    # ---- notices, identities ------------------------------------------------------------

    def post_notice(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/notices {"action": "add", "type": "custom", "key", "data", "repeat-after"}."""
        body = r.json()
        if body.get("action") != "add":
            raise ApiError(400, f'invalid action "{body.get("action")}"')
        if body.get("type") != "custom":
            raise ApiError(
                400, f'invalid type "{body.get("type")}" (can only add "custom" notices)'
            )
        key, data = str(body.get("key") or ""), body.get("data") or {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):  # pyright: ignore[reportUnknownVariableType]
            raise ApiError(400, "data must be a map of string to string")
        try:
            notices.validate_custom_key(key)
            repeat = (
                timeutil.parse_duration(body["repeat-after"]) if body.get("repeat-after") else None
            )
        except (notices.NoticeError, timeutil.DurationError) as e:
            raise ApiError(400, str(e)) from e
        notice_id = self.d.notices.add(
            r.uid, "custom", key, {str(k): v for k, v in data.items()}, repeat
        )  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        return sync({"id": notice_id})

    def get_notices(self, r: Request, _m: re.Match[str]) -> Response:
        """GET /v1/notices?users=&user-id=&types=&keys=&after=&timeout=."""
        users_all = r.arg("users") == "all"
        user_id = r.arg("user-id")
        if (users_all or user_id) and not r.admin:
            raise ApiError(403, "only admins may use the users or user-id filters")
        try:
            after = timeutil.parse_time(r.arg("after") or "") if r.arg("after") else None
            visible = notices.visible_to(r.uid, users_all, int(user_id) if user_id else None)
        except ValueError as e:
            raise ApiError(400, str(e)) from e
        filter_ = notices.Filter(
            user_ids=visible,
            types=notices.parse_types(r.query.get("types", [])),
            keys=frozenset(r.query.get("keys", [])),
            after=after,
        )
        found = self.d.notices.query(filter_, timeout=_duration(r.arg("timeout")))
        return sync([notice.to_dict() for notice in found])

    def get_notice(self, r: Request, m: re.Match[str]) -> Response:
        """GET /v1/notices/{id}."""
        notice = self.d.notices.get(m["id"])
        if notice is None or not (r.admin or notice.user_id in (None, r.uid)):
            raise ApiError(404, f'cannot find notice with ID "{m["id"]}"')
        return sync(notice.to_dict())

    def post_identities(self, r: Request, _m: re.Match[str]) -> Response:
        """POST /v1/identities: kept in memory only (access control is by UID here)."""
        body = r.json()
        for name, identity in (body.get("identities") or {}).items():
            if body.get("action") == "remove" or identity is None:
                self.d.identities.pop(name, None)
            else:
                self.d.identities[name] = identity
        return sync(None)


def _duration(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return timeutil.parse_duration(text)
    except timeutil.DurationError as e:
        raise ApiError(400, str(e)) from e
