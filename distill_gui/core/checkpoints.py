"""Atomic checkpoint folders: written aside, marked complete, then renamed into place.

A checkpoint folder counts only when it holds the ``COMPLETE`` marker, which is written last; a
write interrupted at any point leaves at most a hidden ``.partial-*`` folder that nothing loads and
the next save sweeps away. The marker lists every file with its size and checksum, so a flipped
byte, a truncated or a missing file is found before a checkpoint is loaded (:func:`verify`,
:func:`latest_intact_checkpoint`). Removing a checkpoint renames it aside first (``.removed-*``), so a
kill never leaves a folder that says complete with files missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

from distill_gui.core.errors import UserError

COMPLETE_MARKER = "COMPLETE"
STEP_PATTERN = re.compile(r"^step-(\d+)$")
FINAL_NAME = "final"
HASH_NAME = "xxh3_128"
"""The checksum in the marker: fast (GB/s) and made to catch damage, not forgery."""
_CHUNK = 8 * 1024 * 1024


class CheckpointDamaged(UserError, ValueError):
    """A checkpoint's files do not match its ``COMPLETE`` marker; the message names the file and how."""


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def is_complete(path: str | Path) -> bool:
    """True when ``path`` is a checkpoint folder whose write finished."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def _hasher(name: str):
    if name == HASH_NAME:
        import xxhash

        return xxhash.xxh3_128()
    if name in ("sha256", "blake2b"):
        return hashlib.new(name)
    raise CheckpointDamaged(f"unknown checksum kind {name!r} in {COMPLETE_MARKER}")


def file_checksum(path: str | Path, kind: str = HASH_NAME, fsync: bool = False) -> str:
    """The checksum of a file's bytes (read in 8 MB pieces); ``fsync`` also flushes it to disk."""
    digest = _hasher(kind)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
        if fsync:
            os.fsync(fh.fileno())
    return digest.hexdigest()


def _manifest(folder: Path) -> dict[str, dict]:
    """{relative path: {size, checksum}} of every file under ``folder`` (fsynced as it is read)."""
    files = {}
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.name != COMPLETE_MARKER:
            files[file.relative_to(folder).as_posix()] = {"size": file.stat().st_size, "checksum": file_checksum(file, fsync=True)}
    return files


def read_marker(path: str | Path) -> dict:
    """The ``COMPLETE`` marker of a checkpoint; raises :class:`CheckpointDamaged` when it is unreadable."""
    marker = Path(path) / COMPLETE_MARKER
    try:
        data = json.loads(marker.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointDamaged(f"{Path(path).name}: no {COMPLETE_MARKER} marker (the write did not finish)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointDamaged(f"{Path(path).name}: the {COMPLETE_MARKER} marker is damaged (not a JSON record)") from None
    if not isinstance(data, dict):
        raise CheckpointDamaged(f"{Path(path).name}: the {COMPLETE_MARKER} marker is damaged (not a JSON object)")
    return data


def verify(path: str | Path) -> None:
    """Check every file of a checkpoint against the sizes and checksums in its marker.

    Raises :class:`CheckpointDamaged` naming the first file that is missing, has another size or
    another checksum. A marker written before checksums existed (no ``files``) passes: there is
    nothing to check against.
    """
    path = Path(path)
    marker = read_marker(path)
    files = marker.get("files")
    if files is None:
        return
    kind = marker.get("checksum", HASH_NAME)
    if not isinstance(files, dict) or not isinstance(kind, str):
        raise CheckpointDamaged(f"{path.name}: the {COMPLETE_MARKER} marker is damaged (no file list)")
    for name, entry in files.items():
        file = path / name
        if not isinstance(entry, dict) or not isinstance(entry.get("checksum"), str):
            raise CheckpointDamaged(f"{path.name}: the {COMPLETE_MARKER} marker is damaged (entry for {name})")
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise CheckpointDamaged(f"{path.name}: the {COMPLETE_MARKER} marker names a file outside the checkpoint ({name})")
        if not file.is_file():
            raise CheckpointDamaged(f"{path.name}: {name} is missing")
        size = file.stat().st_size
        if size != entry.get("size"):
            raise CheckpointDamaged(f"{path.name}: {name} has {size:,} bytes, {entry.get('size')!r} were written")
        if file_checksum(file, kind) != entry["checksum"]:
            raise CheckpointDamaged(f"{path.name}: {name} has changed since it was written (checksum differs)")


def damage(path: str | Path) -> str | None:
    """What :func:`verify` finds wrong with a checkpoint, or None when it is intact."""
    try:
        verify(path)
    except CheckpointDamaged as exc:
        return str(exc)
    except OSError as exc:
        return f"{Path(path).name}: cannot be read ({exc.strerror or exc})"
    return None


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
    marker = {"written_at": time.time(), **(info or {}), "checksum": HASH_NAME, "files": _manifest(staging)}
    with open(staging / COMPLETE_MARKER, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(marker))
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(staging)
    old = None
    if target.exists():
        old = _aside_name(target)
        target.rename(old)
    staging.rename(target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _aside_name(target: Path, prefix: str = ".old-") -> Path:
    return target.parent / f"{prefix}{target.name}-{time.monotonic_ns()}"


def remove_checkpoint(path: str | Path) -> None:
    """Delete a checkpoint folder atomically: renamed aside (``.removed-*``, which nothing loads), then deleted."""
    path = Path(path)
    aside = _aside_name(path, ".removed-")
    path.rename(aside)
    _fsync_dir(path.parent)
    shutil.rmtree(aside, ignore_errors=True)


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


_LEFTOVERS = (
    ("partial", re.compile(r"^\.partial-(.+)-\d+-\d+$")),  # staging_dir(): .partial-<name>-<pid>-<ns>
    ("partial", re.compile(r"^\.partial-(.+)-shared$")),  # staging_dir(shared=True)
    ("old", re.compile(r"^\.old-(.+)-\d+$")),  # _aside_name(): .old-<name>-<ns>
)


def _leftover_target(name: str) -> tuple[str, str] | None:
    """(kind, the checkpoint name it was for) of a leftover folder name, or None."""
    for kind, pattern in _LEFTOVERS:
        match = pattern.match(name)
        if match:
            return kind, match.group(1)
    return None


def sweep_partials(folder: str | Path) -> None:
    """Remove leftovers of interrupted writes and removals (``.partial-*``, ``.old-*``, ``.removed-*`` folders).

    A kill between moving an old checkpoint aside and renaming its replacement into place leaves the
    name empty: the intact replacement (or else the intact old one) is put back instead of deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    leftovers = sorted(child for child in folder.iterdir() if child.is_dir() and child.name.startswith((".partial-", ".old-", ".removed-")))
    for kind in ("partial", "old"):  # the newer write first, then what it was replacing
        for child in leftovers:
            parsed = _leftover_target(child.name)
            if parsed is None or parsed[0] != kind or not child.exists():
                continue
            target = folder / parsed[1]
            if not target.exists() and is_complete(child) and damage(child) is None:
                child.rename(target)
    for child in leftovers:
        if child.exists():
            shutil.rmtree(child, ignore_errors=True)
    _fsync_dir(folder)


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
    """The newest complete step checkpoint, or None (its files are not checked: see :func:`latest_intact_checkpoint`)."""
    found = complete_step_checkpoints(folder)
    return found[-1][1] if found else None


def latest_intact_checkpoint(folder: str | Path) -> tuple[Path | None, list[str]]:
    """The newest complete step checkpoint whose files match their checksums, and why newer ones were skipped.

    Returns ``(path or None, skipped)``; each ``skipped`` line names a checkpoint and its damage, e.g.
    ``"step-000008: model.safetensors has changed since it was written (checksum differs)"``.
    """
    skipped: list[str] = []
    for _, path in reversed(complete_step_checkpoints(folder)):
        problem = damage(path)
        if problem is None:
            return path, skipped
        skipped.append(problem)
    return None, skipped


def rotate_checkpoints(folder: str | Path, keep: int) -> list[Path]:
    """Delete the oldest complete step checkpoints beyond ``keep`` (each renamed aside first); returns what was removed."""
    found = complete_step_checkpoints(folder)
    removed = []
    for _, path in found[: max(0, len(found) - keep)]:
        remove_checkpoint(path)
        removed.append(path)
    return removed
