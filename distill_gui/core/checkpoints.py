"""Atomic checkpoint folders: written aside, marked complete, then renamed into place.

A checkpoint folder counts only when it holds the ``COMPLETE`` marker, which is written last; a
write interrupted at any point leaves at most a hidden ``.partial-*`` folder that nothing loads and
the next save sweeps away.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

COMPLETE_MARKER = "COMPLETE"
STEP_PATTERN = re.compile(r"^step-(\d+)$")
FINAL_NAME = "final"


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def is_complete(path: str | Path) -> bool:
    """True when ``path`` is a checkpoint folder whose write finished."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def staging_dir(target: str | Path, shared: bool = False) -> Path:
    """The hidden folder a checkpoint for ``target`` is written into before :func:`commit`.

    ``shared=True`` gives a name every process of a distributed run agrees on.
    """
    target = Path(target)
    suffix = "shared" if shared else f"{os.getpid()}-{time.monotonic_ns()}"
    return target.parent / f".partial-{target.name}-{suffix}"


def commit(staging: str | Path, target: str | Path, info: dict | None = None) -> Path:
    """Flush ``staging``, write the completion marker last, and rename it to ``target``.

    An existing ``target`` is replaced only once the new checkpoint is complete.
    """
    staging, target = Path(staging), Path(target)
    for file in staging.rglob("*"):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    marker = {"written_at": time.time(), **(info or {})}
    (staging / COMPLETE_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    _fsync_dir(staging)
    old = None
    if target.exists():
        old = target.parent / f".old-{target.name}-{time.monotonic_ns()}"
        target.rename(old)
    staging.rename(target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


@contextlib.contextmanager
def atomic_checkpoint(target: str | Path, info: dict | None = None) -> Iterator[Path]:
    """Yield a staging folder; on success mark it complete and rename it to ``target``.

    An existing complete ``target`` is replaced only after the new one is complete. On an exception
    the staging folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(target)
    staging.mkdir()
    try:
        yield staging
        commit(staging, target, info)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def sweep_partials(folder: str | Path) -> None:
    """Remove leftovers of interrupted writes (``.partial-*`` and ``.old-*`` folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir() and (child.name.startswith(".partial-") or child.name.startswith(".old-")):
            shutil.rmtree(child, ignore_errors=True)


def complete_step_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """Complete ``step-NNNNNN`` checkpoints in ``folder`` as (step, path), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = STEP_PATTERN.match(child.name)
        if match and child.is_dir() and is_complete(child):
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete step checkpoint, or None."""
    found = complete_step_checkpoints(folder)
    return found[-1][1] if found else None


def rotate_checkpoints(folder: str | Path, keep: int) -> list[Path]:
    """Delete the oldest complete step checkpoints beyond ``keep``; returns what was removed."""
    found = complete_step_checkpoints(folder)
    removed = []
    for _, path in found[: max(0, len(found) - keep)]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
