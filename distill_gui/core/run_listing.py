"""What the Runs page lists: a summary per run folder, re-read only when the folder changed.

Listing hundreds of runs must not cost seconds every few seconds: :class:`RunLister` keeps each run's
:class:`RunSummary` keyed by the modification times of the files it was made from (status, config,
checkpoints, final), so a refresh re-reads only the runs that changed, plus the liveness of runs that
say they are training (a process can die without touching its folder). It runs in a worker thread.

The list needs two fields of a run's config.yaml (``method.kind`` and ``student.path``): :func:`listed_fields`
reads just those lines (the app writes the file in block style) instead of parsing and validating the whole
config, which took ~0.2 s of interpreter time per run, time the window waited for while hundreds were listed.
A file it cannot read that way (hand-written flow style, damage) is loaded in full as before.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from distill_gui.core.runs import ACTIVE_STATES, RunDir, list_runs

_LISTED = {("method", "kind"), ("student", "path")}
CONFIG_SCAN_BYTES = 64 * 1024
"""config.yaml files larger than this (not the app's own) are loaded in full."""


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs list."""

    path: str
    name: str
    state: str
    step: int
    total_steps: int | None
    method: str
    student: str
    updated_at: float | None
    message: str
    resumable: bool
    detail: str
    """The folder and what it holds (the trained student, or the latest checkpoint)."""

    @property
    def updated(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.updated_at)) if self.updated_at else ""


def _stamp(path: Path) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _scalar(text: str) -> str | None:
    """A one-line YAML scalar as the app writes them: plain, 'single' or "double" quoted; None if unsure."""
    text = text.strip()
    if " #" in text and not text.startswith(("'", '"')):
        text = text.split(" #", 1)[0].rstrip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text.startswith(("'", '"', "[", "{", "&", "*", "!", "|", ">")):
        return None  # double quotes (escapes), flow collections, anchors, tags, block scalars: the full parse
    return text


def listed_fields(config_path: Path) -> tuple[str, str] | None:
    """(method.kind, student.path) read from the lines of a block-style config.yaml, without parsing the rest;
    None when the file cannot be read that way (then load it in full)."""
    try:
        with open(config_path, "rb") as fh:
            raw = fh.read(CONFIG_SCAN_BYTES + 1)
        if len(raw) > CONFIG_SCAN_BYTES:
            return None
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found: dict[tuple[str, str], str] = {}
    section = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            key, colon, rest = line.partition(":")
            section = key.strip() if colon and not rest.strip() else ""
            continue
        if section and line.startswith("  ") and not line.startswith("   "):
            key, colon, rest = line[2:].partition(":")
            if colon and (section, key) in _LISTED:
                value = _scalar(rest)
                if value is None:
                    return None
                found[(section, key)] = "" if value in ("null", "~") else value
                if len(found) == len(_LISTED):
                    break
    if len(found) != len(_LISTED):
        return None
    return found[("method", "kind")], found[("student", "path")]


def summarize(run: RunDir) -> RunSummary:
    """Read a run folder (defensively: a damaged run is summarised with what is wrong)."""
    status = run.status()
    method, student = "", ""
    fields = listed_fields(run.config_path)
    if fields is not None:
        method, student_path = fields
        student = Path(student_path).name or student_path
    else:
        try:
            config = run.load_config()
            method, student = config.method.kind, Path(config.student.path).name or config.student.path
        except Exception:  # noqa: BLE001 - a damaged config still lists the run (status says what is wrong)
            method = "?"
    state = str(status.get("state", "?"))
    step = status.get("step") if isinstance(status.get("step"), int) else 0
    total = status.get("total_steps") if isinstance(status.get("total_steps"), int) else None
    updated = status.get("updated_at") if isinstance(status.get("updated_at"), (int, float)) else None
    final, checkpoint = run.final_model(), run.latest_checkpoint()
    parts = [str(run.path)]
    if final is not None:
        parts.append(f"trained student: {final}")
    elif checkpoint is not None:
        parts.append(f"latest checkpoint: {checkpoint.name}")
    message = status.get("problem") or status.get("message") or ""
    return RunSummary(
        path=str(run.path),
        name=run.name,
        state=state,
        step=int(step or 0),
        total_steps=total,
        method=method,
        student=student,
        updated_at=updated,
        message=str(message),
        resumable=state not in (*ACTIVE_STATES, "finished") and run.can_resume(),
        detail=" — ".join(parts),
    )


class RunLister:
    """Summaries of the runs under a root, cached by the modification times of their files."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple, RunSummary]] = {}

    @staticmethod
    def _key(run: RunDir) -> tuple:
        return (_stamp(run.status_path), _stamp(run.config_path), _stamp(run.checkpoints_dir), _stamp(run.final_dir))

    def summaries(self, root: str | Path) -> list[RunSummary]:
        """Every run under ``root``, newest first (re-reading only what changed)."""
        found = []
        live = set()
        for run in list_runs(root):
            key = self._key(run)
            cached = self._cache.get(str(run.path))
            if cached is not None and cached[0] == key and cached[1].state not in ACTIVE_STATES:
                summary = cached[1]
            else:
                summary = summarize(run)
                self._cache[str(run.path)] = (key, summary)
            found.append(summary)
            live.add(str(run.path))
        for gone in set(self._cache) - live:
            del self._cache[gone]
        return found
