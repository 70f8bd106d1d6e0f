"""JSON-lines files that a crash cannot break: each line written whole, damaged lines skipped.

A writer appends each record with a single ``os.write`` of the complete line to a file opened with
``O_APPEND``, so a kill leaves at most one torn line, at the end. The next append starts with a
newline when the file does not end with one, so a new record is never glued to a torn one. Readers
skip lines that are not valid UTF-8 JSON objects and say how many and where.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from distill_gui.core import atomic_files

MAX_LINE_BYTES = 16 * 1024 * 1024
"""A longer line is not read (a run writes lines of a few KB; samples stay well under this)."""


@dataclass
class ReadResult:
    """Records read from a JSON-lines file and the lines that were skipped (1-based numbers)."""

    records: list[dict] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def problem(self, name: str) -> str | None:
        """One line naming the skipped lines, or None when every line was read."""
        if not self.skipped:
            return None
        first = ", ".join(f"line {n} ({why})" for n, why in self.skipped[:3])
        more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
        return f"{name}: {len(self.skipped)} unreadable line(s) skipped: {first}{more}"


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return True
    return os.pread(fd, 1, size - 1) == b"\n"


def append_line(path: str | Path, record: dict) -> None:
    """Append ``record`` as one JSON line, written whole with one ``os.write`` (never glued to a torn line)."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if not _ends_with_newline(fd):
            data = b"\n" + data
        view = memoryview(data)
        while view:  # a regular file takes it in one call; loop only for the rare short write
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def read_lines(path: str | Path, valid: Callable[[dict], str | None] | None = None) -> ReadResult:
    """Every JSON object line of ``path``; torn, non-UTF-8, non-object or over-long lines are skipped.

    ``valid(record)`` may return a reason to skip a well-formed record that the caller cannot use.
    A missing file reads as empty.
    """
    result = ReadResult()
    path = Path(path)
    try:
        fh = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        return result
    except OSError as exc:
        result.skipped.append((0, f"cannot be read: {exc.strerror or exc}"))
        return result
    with fh:
        number = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the over-long line
                    raw = fh.readline(MAX_LINE_BYTES)
                result.skipped.append((number, "line too long"))
                continue
            if not raw.strip():
                continue
            reason = _parse(raw)
            if isinstance(reason, str):
                result.skipped.append((number, reason))
                continue
            why = valid(reason) if valid is not None else None
            if why:
                result.skipped.append((number, why))
                continue
            result.records.append(reason)
    return result


def _parse(raw: bytes) -> dict | str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError:
        return "torn or invalid JSON"
    except RecursionError:
        return "nested too deeply"
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    return value


def rewrite_lines(path: str | Path, records: list[dict]) -> None:
    """Replace the file with ``records`` atomically (written aside, then renamed over it)."""
    atomic_files.write_jsonl(path, records)
