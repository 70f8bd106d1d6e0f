"""One folder per run, written the same way by the CLI and the GUI.

Layout::

    <runs root>/<YYYYmmdd-HHMMSS>-<name>/
        config.yaml       fully resolved configuration
        status.json       state, step, pid, message (rewritten atomically)
        metrics.jsonl     one StepLogged / EvalLogged record a line
        samples.jsonl     one SamplesGenerated record a line
        events.jsonl      every event, in order
        train.log         human-readable log
        checkpoints/step-NNNNNN/, checkpoints/final/

Everything a GUI needs to rebuild a run's plots and generations is in these files.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import RunConfig, config_from_dict, save_config
from distill_gui.core.events import (
    CheckpointSaved,
    EvalLogged,
    Event,
    LogMessage,
    RunCreated,
    RunFailed,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStopped,
    SamplesGenerated,
    StepLogged,
    event_from_dict,
)

import yaml

STATES = ("created", "running", "paused", "stopped", "finished", "failed", "diverged")
ACTIVE_STATES = ("running", "paused")


def default_runs_root() -> Path:
    """The user's runs folder (platformdirs user data dir), overridable with DISTILL_GUI_RUNS_DIR."""
    env = os.environ.get("DISTILL_GUI_RUNS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("distill-gui", appauthor=False)) / "runs"


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug[:40] or "run"


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _read_jsonl(path: Path) -> Iterator[dict]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


@dataclass
class RunDir:
    """A run folder on disk."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # ---- Creation
    @classmethod
    def create(cls, root: str | Path, config: RunConfig) -> "RunDir":
        """Make a new, uniquely named run folder under ``root`` and write its config and status."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{_slug(config.name)}"
        for n in range(1000):
            candidate = root / (base if n == 0 else f"{base}-{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            run = cls(candidate)
            run.checkpoints_dir.mkdir()
            save_config(config, run.config_path)
            run.write_status("created", step=0)
            return run
        raise RuntimeError(f"could not create a run folder under {root}")

    # ---- Paths
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def samples_path(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final_dir(self) -> Path:
        return self.checkpoints_dir / ckpt.FINAL_NAME

    def is_run(self) -> bool:
        return self.config_path.is_file()

    # ---- Reading
    def load_config(self) -> RunConfig:
        data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        return config_from_dict(data)

    def status(self) -> dict[str, Any]:
        """The status record; a run marked running whose process is gone reads as failed (killed)."""
        try:
            data = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {"state": "created", "step": 0}
        if data.get("state") in ACTIVE_STATES and data.get("pid") and not pid_alive(data.get("pid")):
            data = {**data, "state": "failed", "message": "the training process ended without saying why (killed?)"}
        return data

    def metrics(self) -> list[dict]:
        return list(_read_jsonl(self.metrics_path))

    def samples(self) -> list[dict]:
        return list(_read_jsonl(self.samples_path))

    def events(self) -> list[Event]:
        out = []
        for record in _read_jsonl(self.events_path):
            try:
                out.append(event_from_dict(record))
            except (TypeError, ValueError):
                continue
        return out

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete step checkpoints, oldest first (incomplete ones are never offered)."""
        return ckpt.complete_step_checkpoints(self.checkpoints_dir)

    def latest_checkpoint(self) -> Path | None:
        return ckpt.latest_checkpoint(self.checkpoints_dir)

    def final_model(self) -> Path | None:
        """The trained student, if the run finished."""
        return self.final_dir if ckpt.is_complete(self.final_dir) else None

    def can_resume(self) -> bool:
        return self.final_model() is None and self.latest_checkpoint() is not None

    # ---- Writing
    def write_status(self, state: str, **fields: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        try:
            previous = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = {}
        data = {**previous, **fields, "state": state, "updated_at": time.time()}
        _write_json_atomic(self.status_path, data)

    def append(self, path: Path, record: dict) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()

    def log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {text}\n")


def model_path_for(path: str | Path) -> Path:
    """A model folder for ``path``: the path itself, or for a run folder its final checkpoint.

    A run that has not finished gives its latest complete checkpoint.
    """
    path = Path(path)
    run = RunDir(path)
    if not run.is_run():
        return path
    final = run.final_model()
    if final is not None:
        return final
    latest = run.latest_checkpoint()
    if latest is not None:
        return latest
    raise FileNotFoundError(f"{path}: this run has no complete checkpoint yet")


def list_runs(root: str | Path | None = None) -> list[RunDir]:
    """Every run folder under ``root``, newest first."""
    root = Path(root) if root is not None else default_runs_root()
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda r: r.name, reverse=True)


def describe_event(event: Event) -> str:
    """One human-readable line for an event (the log and the CLI use it)."""
    if isinstance(event, RunCreated):
        return f"run folder: {event.run_dir}"
    if isinstance(event, StepLogged):
        parts = [f"step {event.step}/{event.total_steps}", f"loss {event.loss:.4f}"]
        if event.kd_loss is not None:
            parts.append(f"kd {event.kd_loss:.4f}")
        if event.ce_loss is not None:
            parts.append(f"ce {event.ce_loss:.4f}")
        parts.append(f"lr {event.learning_rate:.2e}")
        if event.grad_norm is not None:
            parts.append(f"grad {event.grad_norm:.3f}")
        parts.append(f"{event.tokens_per_s:.0f} tok/s")
        return "  ".join(parts)
    if isinstance(event, RunStarted):
        verb = "resumed at step %d" % event.start_step if event.start_step else "started"
        return f"run {verb}: {event.method}, {event.total_steps} steps on {event.device}, {event.trainable_params:,} trainable parameters"
    if isinstance(event, EvalLogged):
        return f"eval at step {event.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
    if isinstance(event, SamplesGenerated):
        return f"samples at step {event.step}: {len(event.samples)} prompts"
    if isinstance(event, CheckpointSaved):
        return f"checkpoint saved: {event.path}"
    if isinstance(event, RunPaused):
        return f"paused at step {event.step}"
    if isinstance(event, RunResumed):
        return f"resumed at step {event.step}"
    if isinstance(event, LogMessage):
        return f"{event.level}: {event.text}" if event.level != "info" else event.text
    if isinstance(event, RunFinished):
        return f"finished at step {event.step} in {event.elapsed_s:.0f}s; model in {event.final_path}"
    if isinstance(event, RunStopped):
        return f"stopped at step {event.step}; checkpoint {event.checkpoint}"
    if isinstance(event, RunFailed):
        return f"{event.kind} at step {event.step}: {event.reason}"
    return type(event).__name__


class RunRecorder:
    """Writes every event of a run into its folder (status, metrics, samples, events, log)."""

    def __init__(self, run: RunDir):
        self.run = run

    def __call__(self, event: Event) -> None:
        run = self.run
        record = event.to_dict()
        run.append(run.events_path, record)
        if isinstance(event, (StepLogged, EvalLogged)):
            run.append(run.metrics_path, record)
        if isinstance(event, SamplesGenerated):
            run.append(run.samples_path, record)
        if not isinstance(event, SamplesGenerated):
            run.log(describe_event(event))
        if isinstance(event, RunStarted):
            run.write_status("running", pid=os.getpid(), step=event.start_step, total_steps=event.total_steps, started_at=event.time, message="")
        elif isinstance(event, StepLogged):
            run.write_status("running", step=event.step, total_steps=event.total_steps)
        elif isinstance(event, RunPaused):
            run.write_status("paused", step=event.step)
        elif isinstance(event, RunResumed):
            run.write_status("running", step=event.step)
        elif isinstance(event, RunFinished):
            run.write_status("finished", step=event.step, final_path=event.final_path, message="finished")
        elif isinstance(event, RunStopped):
            run.write_status("stopped", step=event.step, message="stopped on request")
        elif isinstance(event, RunFailed):
            state = "diverged" if event.kind == "diverged" else "failed"
            run.write_status(state, step=event.step, message=event.reason)
