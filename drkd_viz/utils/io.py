"""Atomic file writes: a reader never sees a half-written file, an interrupted writer leaves the old one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from drkd_viz.errors import UserError


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a temporary file in the target folder, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False) + "\n")


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder where the file should be, or a
    file where one of its parent folders should be. (Missing parent folders are fine: writers create them.)"""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the path of a file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot write {path}: {parent} is a file, not a folder; choose another path")
            if not os.access(parent, os.W_OK):
                raise UserError(f"cannot write {path}: {parent} is not writable; choose another path")
            break
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output folder that cannot be made: a file where the folder (or one of its
    parents) should be, or a parent that is not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file; give the path of a folder (new or existing)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot make {path}: {parent} is a file, not a folder; choose another path")
            if not path.exists() and not os.access(parent, os.W_OK):
                raise UserError(f"cannot make {path}: {parent} is not writable; choose another path")
            break
    return path
