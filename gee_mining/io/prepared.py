"""A folder's ``prepared.json``: what the work in the folder was made from, written last, so a rerun with the
same parameters reuses the folder (an evaluation's simulated worlds resume where an interrupted run stopped)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gee_mining.errors import InputError
from gee_mining.io.files import write_json

MARKER = "prepared.json"


def refuse_links(folder: str | os.PathLike) -> None:
    """Refuse a work folder that is, or holds, a link: the work is redone in place, so through a link it would
    rewrite another run's folder (one evaluation rebuilt another's worlds this way)."""
    folder = Path(folder)
    link = folder if folder.is_symlink() else _first_link(folder)
    if link is not None:
        target = link.resolve()
        raise InputError(
            f"{link} is a link to {target}: this run rebuilds and rewrites what is in {folder}, so through the link "
            f"it would rewrite another run's files. Remove the link (rm {link}) and this run builds its own there."
        )


def _first_link(folder: Path) -> Path | None:
    """The first link found under ``folder`` (not followed), or None."""
    if not folder.is_dir():
        return None
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_symlink():
                    return Path(e.path)
                if e.is_dir():
                    stack.append(Path(e.path))
    return None


def read_prepared(folder: str | os.PathLike, key: dict[str, Any]) -> dict[str, Any] | None:
    """What :func:`write_prepared` saved in ``folder`` when it was made from ``key`` (JSON-compared); else None."""
    marker = Path(folder) / MARKER
    if not marker.exists():
        return None
    saved = json.loads(marker.read_text())
    return saved.get("saved", {}) if saved.get("key") == json.loads(json.dumps(key)) else None


def forget_prepared(folder: str | os.PathLike) -> None:
    """Remove the marker before the folder's work is redone (a half-redone folder is never reused)."""
    (Path(folder) / MARKER).unlink(missing_ok=True)


def write_prepared(folder: str | os.PathLike, key: dict[str, Any], saved: dict[str, Any] | None = None) -> None:
    """Mark ``folder`` as made from ``key`` (with what a reuse needs, ``saved``), atomically, once its work is
    complete."""
    write_json(Path(folder) / MARKER, {"key": key, "saved": saved or {}}, indent=None)
