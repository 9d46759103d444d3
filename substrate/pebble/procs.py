"""Child processes: credentials, environment, spawning in a process group, and reaping.

Each child is waited for by its own thread (waitpid on its PID), so the daemon never steals
another thread's child. When the daemon is a child subreaper (as Pebble is the container's
init), `sweep_orphans` reaps the zombies of orphaned grandchildren, and only those.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import grp
import os
import pwd
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_CHILD_SUBREAPER = 36


class IdentityError(ValueError):
    """Raised when user/group settings are unknown or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Who a child runs as; all None means the daemon's own identity."""

    uid: int | None = None
    gid: int | None = None
    user: str | None = None
    home: str | None = None
    groups: tuple[int, ...] | None = None


def _lookup_user(user: str | None, user_id: int | None) -> pwd.struct_passwd | None:
    entry: pwd.struct_passwd | None = None
    if user:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise IdentityError(f"user: unknown user {user}") from None
        if user_id is not None and entry.pw_uid != user_id:
            raise IdentityError(
                f'user "{user}" UID ({entry.pw_uid}) does not match user-id ({user_id})'
            )
    elif user_id is not None:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwuid(user_id)
    return entry


def _lookup_group(group: str | None, group_id: int | None) -> int | None:
    if not group:
        return group_id
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise IdentityError(f"group: unknown group {group}") from None
    if group_id is not None and gid != group_id:
        raise IdentityError(f'group "{group}" GID ({gid}) does not match group-id ({group_id})')
    return gid


def resolve(
    user: str | None = None,
    user_id: int | None = None,
    group: str | None = None,
    group_id: int | None = None,
) -> Credentials:
    """Resolve Pebble's user/user-id/group/group-id settings into credentials.

    A group needs a user; a user without a group runs with the user's primary group, and with
    the user's supplementary groups (initgroups).
    """
    entry = _lookup_user(user, user_id)
    uid = entry.pw_uid if entry else user_id
    gid = _lookup_group(group, group_id)
    if uid is None and gid is None:
        return Credentials()
    if uid is None:
        raise IdentityError("must specify user, not just group")
    if gid is None:
        if entry is None:
            raise IdentityError(f"cannot find primary group of user ID {uid}")
        gid = entry.pw_gid
    if entry is None:
        return Credentials(uid=uid, gid=gid, groups=(gid,))
    groups = tuple(os.getgrouplist(entry.pw_name, gid))
    return Credentials(uid, gid, entry.pw_name, entry.pw_dir, groups)


def child_environment(
    base: Mapping[str, str], creds: Credentials, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The daemon's environment, HOME/USER of the target user, then the configured variables."""
    env = dict(base)
    if creds.user is not None:
        env["USER"] = creds.user
        env["HOME"] = creds.home or "/"
        if "LOGNAME" in env:
            env["LOGNAME"] = creds.user
    env.update(overrides)
    return env


def exit_code(status: int) -> int:
    """Exit code of a wait status the way a shell reports it (128 + signal if killed)."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def signal_group(pgid: int, sig: int) -> bool:
    """Send a signal to a process group; False if no process was left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies included) is still in the group."""
    return signal_group(pgid, 0)


ExitCallback = Callable[[subprocess.Popen[bytes], int], None]


class ProcessTable:
    """Spawns children in their own process group and reports each exit exactly once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(
        self,
        argv: Sequence[str],
        *,
        creds: Credentials,
        env: Mapping[str, str],
        cwd: str | None,
        on_exit: ExitCallback,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = subprocess.PIPE,
        stderr: int | IO[bytes] | None = subprocess.STDOUT,
    ) -> subprocess.Popen[bytes]:
        """Start argv; on_exit(proc, wait_status) runs in a waiter thread when it ends."""
        with self._lock:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd or None,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                process_group=0,
                close_fds=True,
                user=creds.uid,
                group=creds.gid,
                extra_groups=list(creds.groups or (creds.gid,)) if creds.gid is not None else None,
            )
            self._children[proc.pid] = proc
        thread = threading.Thread(
            target=self._wait, args=(proc, on_exit), name=f"wait-{proc.pid}", daemon=True
        )
        thread.start()
        return proc

    def _wait(self, proc: subprocess.Popen[bytes], on_exit: ExitCallback) -> None:
        while True:
            try:
                _, status = os.waitpid(proc.pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                status = 255 << 8
                break
        proc.returncode = os.waitstatus_to_exitcode(status)
        with self._lock:
            self._children.pop(proc.pid, None)
        on_exit(proc, status)

    def sweep_orphans(self) -> int:
        """Reap zombie children this table did not spawn (orphans re-parented to us)."""
        reaped = 0
        with self._lock:
            for pid, state in _children(os.getpid()):
                if state != "Z" or pid in self._children:
                    continue
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        reaped += 1
        return reaped

    def end_orphans(self, grace: float = 2.0) -> None:
        """SIGTERM the orphans we inherited, SIGKILL them after `grace`, and reap them.

        This is what a container's end does to processes that outlived their service, such
        as a postmaster whose Patroni was killed.
        """
        with self._lock:
            orphans = [
                pid
                for pid, state in _children(os.getpid())
                if state != "Z" and pid not in self._children
            ]
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while orphans and time.monotonic() < deadline:
            self.sweep_orphans()
            live = {pid for pid, state in _children(os.getpid()) if state != "Z"}
            orphans = [pid for pid in orphans if pid in live]
            time.sleep(0.05)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
        self.sweep_orphans()


def _children(parent: int) -> list[tuple[int, str]]:
    """(pid, state letter) of each process whose parent is `parent`."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == parent:
            found.append((int(entry.name), fields[0]))
    return found


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def signal_number(name: str) -> int:
    """Signal number from a name such as "SIGHUP" (Pebble's API spelling)."""
    try:
        return int(signal.Signals[name.upper()])
    except KeyError:
        raise ValueError(f"invalid signal name {name!r}") from None
