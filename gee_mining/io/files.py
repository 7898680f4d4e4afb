"""Result files written whole or not at all: a run that stops half-way leaves the previous file (or none),
never a truncated one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | os.PathLike, doc: Any, indent: int | None = 1) -> Path:
    """``doc`` as JSON at ``path``, through a ``.partial-`` file renamed into place; values JSON cannot hold
    (paths, dates) are written as their ``str``. If encoding fails, ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".partial-{path.name}")
    try:
        tmp.write_text(json.dumps(doc, indent=indent, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
