"""What the Runs page lists: a summary per run folder, re-read only when the folder changed.

Listing hundreds of runs must not cost seconds every few seconds: :class:`RunLister` keeps each run's
:class:`RunSummary` keyed by the modification times of the files it was made from (status, config,
checkpoints, final), so a refresh re-reads only the runs that changed, plus the liveness of runs that
say they are training (a process can die without touching its folder). It runs in a worker thread.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from distill_gui.core.runs import ACTIVE_STATES, RunDir, list_runs


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


def summarize(run: RunDir) -> RunSummary:
    """Read a run folder (defensively: a damaged run is summarised with what is wrong)."""
    status = run.status()
    method, student = "", ""
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
