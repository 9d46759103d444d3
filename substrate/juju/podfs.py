"""A pod's workload filesystem for ops.testing's in-memory Pebble, kept from one hook to the next.

ops.testing wipes a container's simulated root whenever a hook opens the container (only
`Mount`s survive). A pod's filesystem, though, lives as long as the pod: what the charm wrote
in one hook is there in the next. The model therefore gives each unit's container its own root
directory and moves the previous contents back in after ops.testing has reset it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _merge(saved: Path, root: Path) -> None:
    """Move everything under `saved` into `root`, leaving alone what `root` already mounts."""
    for entry in os.scandir(saved):
        target = root / entry.name
        if entry.is_symlink():
            # A mount from the previous hook: ops.testing has just recreated the current ones.
            if not target.exists() and not target.is_symlink():
                os.symlink(os.readlink(entry.path), target)
        elif target.is_symlink():
            continue  # now a mount point: its content lives in the mounted storage
        elif entry.is_dir() and target.is_dir():
            _merge(Path(entry.path), target)
        else:
            os.replace(entry.path, target)


def preserving(root: Path, reset: Callable[[], T]) -> T:
    """Run `reset` (which empties `root` and recreates its mounts), then put the old content back."""
    saved = root.with_name(root.name + ".saved")
    if saved.exists():
        shutil.rmtree(saved)
    had_content = root.exists()
    if had_content:
        root.rename(saved)
    result = reset()
    if had_content:
        _merge(saved, root)
        shutil.rmtree(saved)
    return result


def seed(root: Path, image: Path | None) -> None:
    """A fresh pod filesystem: empty, or a copy of an image's root tree."""
    if root.exists():
        shutil.rmtree(root)
    if image is not None:
        shutil.copytree(image, root, symlinks=True)
    else:
        root.mkdir(parents=True)
