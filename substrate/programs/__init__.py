"""What `python -m substrate <command>` runs: `demo`, `bench`, `bench-backup`, `bench-hooks`."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def report(figures: Mapping[str, Any], output: Path | None) -> None:
    """Print a benchmark's figures as one JSON line (the last of its output), and keep a copy."""
    text = json.dumps(figures, sort_keys=True)
    if output is not None:
        output.write_text(text + "\n")
    print(text)
    sys.stdout.flush()
