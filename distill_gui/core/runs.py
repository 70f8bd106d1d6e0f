"""One folder per run, written the same way by the CLI and the GUI.

Layout::

    <runs root>/<YYYYmmdd-HHMMSS>-<name>/
        config.yaml       fully resolved configuration
        status.json       state, step, pid, message (rewritten atomically)
        metrics.jsonl     one StepLogged / EvalLogged record a line
        samples.jsonl     one SamplesGenerated record a line
        events.jsonl      every event, in order
        train.log         human-readable log
        run.lock          held by the training process while it writes the folder (filelock)
        owner.json        who holds run.lock: pid, process start time, host
        checkpoints/step-NNNNNN/, checkpoints/final/

Everything a GUI needs to rebuild a run's plots and generations is in these files. Every file is read
defensively: a damaged file never raises out of a reader; the run is listed with what is wrong
(:attr:`RunDir.problem`). A run's process is known by its pid, start time and host
(:mod:`distill_gui.core.process_identity`) and by the lock it holds, never by its pid alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from distill_gui.core import atomic_files, jsonl
from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import ConfigError, RunConfig, config_from_dict, save_config
from distill_gui.core.errors import UserError
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
    SamplesScored,
    StepLogged,
    event_from_dict,
)
from distill_gui.core.process_identity import IdentityMismatch, ProcessIdentity, signal_process, valid_pid

STATES = ("created", "running", "paused", "stopped", "interrupted", "finished", "failed", "diverged", "damaged")
"""``interrupted``: the process ended without saying so (killed); ``damaged``: status.json is unreadable."""
ACTIVE_STATES = ("running", "paused")
LOCK_NAME = "run.lock"
OWNER_NAME = "owner.json"
LOCK_TIMEOUT_S = 2.0
"""How long :meth:`RunDir.lock` waits: long enough to outlast a reader probing the lock, no longer."""


class RunLockedError(UserError, RuntimeError):
    """Another process holds the run folder's lock; the message names it."""


class RunOwnerError(IdentityMismatch):
    """The run's process cannot be signalled: none holds the run, or its identity does not match."""


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
    atomic_files.write_json(path, data)


def pid_alive(pid: Any) -> bool:
    """Whether a process with this pid exists. Only a positive whole number is looked at (never 0 or -1,
    which address process groups); a live pid may belong to another process than the one recorded:
    use :meth:`RunDir.owner_alive` to know whether a run's own process lives."""
    pid = valid_pid(pid)
    if pid is None:
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


# ---- Reading status.json and the JSON-lines files defensively ---------------------------------


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


_STATUS_FIELDS = {
    "state": (lambda v: isinstance(v, str) and v in STATES, f"not one of {', '.join(STATES)}"),
    "step": (_is_count, "not a whole number of steps"),
    "total_steps": (_is_count, "not a whole number of steps"),
    "pid": (lambda v: valid_pid(v) is not None, "not a process id (1 .. 2**31-1)"),
    "pid_started_at": (lambda v: _is_time(v) and v > 0, "not a time"),
    "host": (lambda v: isinstance(v, str), "not a host name"),
    "message": (lambda v: isinstance(v, str), "not text"),
    "final_path": (lambda v: isinstance(v, str), "not a path"),
    "started_at": (_is_time, "not a time"),
    "updated_at": (_is_time, "not a time"),
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_status_file(path: Path) -> tuple[dict[str, Any], list[str], bool]:
    """(the valid fields of status.json, what is wrong with it, whether it could be read at all).

    Fields with a wrong type or value are dropped and named in the problems; the file being binary,
    cut short, or not a JSON object makes it unreadable.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, ["status.json is missing"], False
    except OSError as exc:
        return {}, [f"status.json cannot be read ({exc.strerror or exc})"], False
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {}, ["status.json is not text (binary bytes)"], False
    except (json.JSONDecodeError, RecursionError):
        return {}, ["status.json is not valid JSON (cut short or overwritten)"], False
    if not isinstance(data, dict):
        return {}, [f"status.json holds a JSON {type(data).__name__}, not an object"], False
    clean, problems = {}, []
    for key, value in data.items():
        check = _STATUS_FIELDS.get(key)
        if check is None:
            continue  # a field a newer version added: kept out, not an error
        ok, why = check
        if ok(value):
            clean[key] = value
        else:
            problems.append(f"status.json {key} {_short(value)} is {why}")
    if "state" not in clean and "state" not in data:
        problems.append("status.json has no state")
    return clean, problems, True


def _finite_or_none(value: Any) -> bool:
    return value is None or value in ("inf", "-inf") or (isinstance(value, (int, float)) and not isinstance(value, bool))


_STEP_FIELDS = ("loss", "kd_loss", "ce_loss", "learning_rate", "grad_norm", "tokens_per_s", "eta_s", "elapsed_s", "epoch")


def _metrics_record_problem(record: dict) -> str | None:
    kind = record.get("event")
    if kind not in ("StepLogged", "EvalLogged"):
        return f"not a metrics record (event {_short(kind)})"
    if not _is_count(record.get("step")):
        return f"step {_short(record.get('step'))} is not a whole number"
    if kind == "StepLogged":
        bad = [k for k in _STEP_FIELDS if not _finite_or_none(record.get(k))]
        step_metrics = record.get("metrics", {})
        if not isinstance(step_metrics, dict) or not all(isinstance(k, str) and _finite_or_none(v) for k, v in step_metrics.items()):
            bad.append("metrics")
        return f"{', '.join(bad)} not a number" if bad else None
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and _finite_or_none(v) for k, v in metrics.items()):
        return "metrics is not a mapping of names to numbers"
    return None


def _samples_record_problem(record: dict) -> str | None:
    if record.get("event") != "SamplesGenerated":
        return f"not a samples record (event {_short(record.get('event'))})"
    if not _is_count(record.get("step")):
        return f"step {_short(record.get('step'))} is not a whole number"
    samples = record.get("samples")
    if not isinstance(samples, list):
        return "samples is not a list"
    for sample in samples:
        if not isinstance(sample, dict) or set(sample) - {"prompt", "student", "teacher", "reference"}:
            return "a sample is not {prompt, student, teacher, reference}"
        if not isinstance(sample.get("prompt"), str) or not isinstance(sample.get("student"), str):
            return "a sample has no prompt or student text"
        if any(sample.get(k) is not None and not isinstance(sample.get(k), str) for k in ("teacher", "reference")):
            return "a sample's teacher or reference is not text"
    return None


def latest_per_step(records: list[dict]) -> list[dict]:
    """One record per (event, step), the latest written, ordered by step (a resumed run's repeated steps
    replace the earlier attempt's)."""
    latest: dict[tuple, int] = {}
    for index, record in enumerate(records):
        latest[(record.get("event"), record.get("step"))] = index
    keep = sorted(latest.values(), key=lambda i: (records[i].get("step"), i))
    return [records[i] for i in keep]


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
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def owner_path(self) -> Path:
        return self.path / OWNER_NAME

    @property
    def final_dir(self) -> Path:
        return self.checkpoints_dir / ckpt.FINAL_NAME

    def is_run(self) -> bool:
        return self.config_path.is_file()

    # ---- Reading
    def load_config(self) -> RunConfig:
        """The run's resolved config; a damaged config.yaml raises ConfigError naming the line or key."""
        name = f"{self.name}/config.yaml"
        try:
            raw = self.config_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot be read ({exc.strerror or exc})") from None
        try:
            data = yaml.safe_load(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(f"{name} line {line}: not UTF-8 text (damaged bytes)") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{name}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{name}: a value cannot be read ({str(exc).split(';')[0] or type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{name}: holds {'nothing' if data is None else 'a ' + type(data).__name__}, not a configuration")
        try:
            return config_from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        except (TypeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def config_problem(self) -> str | None:
        """What is wrong with config.yaml (one line naming the line or key), or None."""
        if not self.config_path.is_file():
            return "config.yaml is missing"
        try:
            self.load_config()
        except ConfigError as exc:
            return str(exc).removeprefix(f"{self.name}/")
        return None

    def status(self) -> dict[str, Any]:
        """The status record, checked field by field, and what readers should believe.

        A run marked running or paused whose process is gone reads as ``interrupted`` (resumable); a run
        whose ``final/`` checkpoint is complete reads as ``finished`` whatever status.json says; an
        unreadable status.json reads as ``damaged``. Invalid fields are dropped; ``problem`` says
        what was wrong. ``step`` falls back to the latest checkpoint's step.
        """
        data, problems, readable = read_status_file(self.status_path)
        if not readable and self.status_path.exists():
            data["state"] = "damaged"
        data.setdefault("state", "created")
        if "step" not in data:
            found = self.checkpoints()
            data["step"] = found[-1][0] if found else 0
        final = self.final_model()
        if final is not None and data["state"] != "finished":
            data.update(
                state="finished",
                final_path=str(final),
                message="finished (the final model was written; the process ended before saying so)",
            )
        elif data["state"] in ACTIVE_STATES and not self.owner_alive():
            data.update(
                state="interrupted",
                message="the training process ended without saying why (killed?); resume continues from the last checkpoint",
            )
        if problems:
            data["problem"] = "; ".join(problems)
        return data

    @property
    def problem(self) -> str | None:
        """What is damaged in this run folder (status.json, config.yaml), in one line; None when nothing is."""
        problems = []
        _, status_problems, _ = read_status_file(self.status_path)
        problems += status_problems
        config = self.config_problem()
        if config:
            problems.append(config)
        return "; ".join(problems) or None

    def describe(self) -> str:
        """One line for listings: folder, state, step, and what is damaged."""
        status = self.status()
        total = status.get("total_steps", "?")
        line = f"{self.path}  {status['state']:11s} step {status['step']}/{total}"
        problem = self.problem
        return f"{line}  damaged: {problem}" if problem else line

    def metrics(self) -> list[dict]:
        """StepLogged / EvalLogged records, one per step (the latest written), torn or invalid lines skipped."""
        return latest_per_step(jsonl.read_lines(self.metrics_path, _metrics_record_problem).records)

    def samples(self) -> list[dict]:
        """SamplesGenerated records, one per step (the latest written), torn or invalid lines skipped."""
        return latest_per_step(jsonl.read_lines(self.samples_path, _samples_record_problem).records)

    def file_problems(self) -> list[str]:
        """Lines skipped in metrics.jsonl, samples.jsonl and events.jsonl (a torn last line after a kill, or damage)."""
        out = []
        for path, check in (
            (self.metrics_path, _metrics_record_problem),
            (self.samples_path, _samples_record_problem),
            (self.events_path, None),
        ):
            problem = jsonl.read_lines(path, check).problem(path.name)
            if problem:
                out.append(problem)
        return out

    def events(self) -> list[Event]:
        """Every readable event in order; a step's StepLogged / EvalLogged / SamplesGenerated only once (the latest)."""
        out: list[Event] = []
        for record in jsonl.read_lines(self.events_path).records:
            try:
                out.append(event_from_dict(record))
            except (TypeError, ValueError, AttributeError):
                continue
        stepped = (StepLogged, EvalLogged, SamplesGenerated)
        last = {(type(e).__name__, e.step): i for i, e in enumerate(out) if isinstance(e, stepped)}
        return [e for i, e in enumerate(out) if not isinstance(e, stepped) or last[(type(e).__name__, e.step)] == i]

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete step checkpoints, oldest first (incomplete ones are never offered)."""
        return ckpt.complete_step_checkpoints(self.checkpoints_dir)

    def latest_checkpoint(self) -> Path | None:
        return ckpt.latest_checkpoint(self.checkpoints_dir)

    def final_model(self) -> Path | None:
        """The trained student, if the run finished (for a run of stages: its last stage's)."""
        if ckpt.is_complete(self.final_dir):
            return self.final_dir
        stages = self.path / "stages"
        if stages.is_dir() and read_status_file(self.status_path)[0].get("state") == "finished":
            last = sorted((RunDir(p) for p in stages.iterdir() if (p / "config.yaml").is_file()), key=lambda r: r.name)
            for run in reversed(last):
                final = run.final_model()
                if final is not None:
                    return final
        return None

    def can_resume(self) -> bool:
        """Not finished and has its config: resume continues from the last checkpoint, or starts over at step 0."""
        return self.final_model() is None and self.config_path.is_file()

    # ---- The process that owns the run
    def _lock_state(self) -> str:
        """``held`` (a live process holds run.lock), ``free``, ``none`` (no lock file) or ``unknown``."""
        if not self.lock_path.exists():
            return "none"
        from filelock import FileLock, Timeout

        probe = FileLock(str(self.lock_path))
        try:
            probe.acquire(blocking=False)
        except Timeout:
            return "held"
        except (OSError, RuntimeError):
            return "unknown"
        probe.release()
        return "free"

    def _recorded_owner(self) -> ProcessIdentity | None:
        """Who wrote owner.json when taking the lock (None when absent or damaged)."""
        try:
            record = json.loads(self.owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        return ProcessIdentity.from_record(record)

    def owner(self) -> ProcessIdentity | None:
        """The live process that trains in this folder, verified by pid, start time and host; else None.

        The holder of run.lock (named in owner.json) comes first; a run from before locks is known by
        the identity its status.json records.
        """
        if self._lock_state() == "held":
            holder = self._recorded_owner()
            if holder is not None and holder.is_alive():
                return holder
        data, _, _ = read_status_file(self.status_path)
        identity = ProcessIdentity.from_record(data)
        return identity if identity is not None and identity.is_alive() else None

    def owner_alive(self) -> bool:
        """Whether a process is training in this folder: one holds run.lock, or the process status.json
        names (pid, start time, host) still runs. A pid that now belongs to another process does not count."""
        return self._lock_state() == "held" or self.owner() is not None

    def signal_owner(self, sig: int) -> ProcessIdentity:
        """Send ``sig`` to the run's own process; returns whom it was sent to.

        Raises :class:`RunOwnerError` (nothing sent) when no verified process owns the run: its pid is
        gone, reused by another process, on another host, or not a positive number.
        """
        owner = self.owner()
        if owner is None:
            raise RunOwnerError(
                f"{self.path}: no process of this run is running (its recorded pid is gone or now "
                "belongs to another process); no signal sent"
            )
        try:
            signal_process(owner, sig)
        except IdentityMismatch as exc:
            raise RunOwnerError(f"{self.path}: {exc}") from None
        return owner

    @contextlib.contextmanager
    def lock(self, timeout: float = LOCK_TIMEOUT_S) -> Iterator[ProcessIdentity]:
        """Hold the run folder for the calling process (the training process, for all it writes here).

        ``with run.lock(): ...`` raises :class:`RunLockedError`, naming the process that holds it, when
        another process has the folder. owner.json records who holds it until the block ends; a killed
        holder's lock is freed by the operating system.
        """
        from filelock import FileLock, Timeout

        me = ProcessIdentity.current()
        held = FileLock(str(self.lock_path))
        try:
            held.acquire(timeout=timeout)
        except Timeout:
            holder = self._recorded_owner()
            who = holder.describe() if holder is not None else "another process"
            raise RunLockedError(f"{self.path}: the run is in use by {who}; wait for it to end or stop it first") from None
        try:
            _write_json_atomic(self.owner_path, me.to_record())
            yield me
        finally:
            with contextlib.suppress(OSError):
                if self._recorded_owner() == me:
                    self.owner_path.unlink()
            held.release()

    # ---- Writing
    def write_status(self, state: str, **fields: Any) -> None:
        """Update status.json atomically; fields already there (checked) are kept unless given."""
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        previous, _, _ = read_status_file(self.status_path)
        previous.pop("problem", None)
        data = {**previous, **fields, "state": state, "updated_at": time.time()}
        _write_json_atomic(self.status_path, data)

    def append(self, path: Path, record: dict) -> None:
        """Append one JSON line, written whole (never glued to a line a crash cut short)."""
        jsonl.append_line(path, record)

    def drop_records_after(self, step: int) -> None:
        """Remove metrics and samples records past ``step`` (a resumed run logs those steps again)."""
        for path in (self.metrics_path, self.samples_path):
            if not path.is_file():
                continue
            read = jsonl.read_lines(path)
            kept = [r for r in read.records if not (_is_count(r.get("step")) and r["step"] > step)]
            if len(kept) != len(read.records) or read.skipped:
                jsonl.rewrite_lines(path, kept)

    def log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} {text}\n"
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8", errors="replace"))
        finally:
            os.close(fd)


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
    """Every run folder under ``root`` (one with config.yaml or status.json), newest first; never raises
    for what it finds (a damaged run is listed; see :attr:`RunDir.problem`)."""
    root = Path(root) if root is not None else default_runs_root()
    try:
        children = list(root.iterdir())
    except OSError:
        return []
    runs = []
    for child in children:
        try:
            if child.is_dir() and ((child / "config.yaml").is_file() or (child / "status.json").is_file()):
                runs.append(RunDir(child))
        except OSError:
            continue
    return sorted(runs, key=lambda r: r.name, reverse=True)


def describe_event(event: Event) -> str:
    """One human-readable line for an event (the log and the CLI use it)."""
    if isinstance(event, RunCreated):
        return f"run folder: {event.run_dir}"
    if isinstance(event, StepLogged):
        parts = [f"step {event.step}/{event.total_steps}", f"loss {event.loss:.4f}"]
        for key, value in event.metrics.items():
            if isinstance(value, (int, float)):
                parts.append(f"{key} {value:.4f}")
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
    if isinstance(event, SamplesScored):
        checked = [item.correct for item in event.items if item.correct is not None]
        marks = f", {sum(checked)} of {len(checked)} correct" if checked else ""
        return f"sampled answers at step {event.step}: {len(event.items)} shown{marks}"
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
        return f"stopped at step {event.step}; checkpoint {event.checkpoint}" + (f" ({event.reason})" if event.reason else "")
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
        if isinstance(event, RunStarted):
            run.drop_records_after(event.start_step)  # a resumed run logs the steps past its checkpoint again
        run.append(run.events_path, record)
        if isinstance(event, (StepLogged, EvalLogged)):
            run.append(run.metrics_path, record)
        if isinstance(event, SamplesGenerated):
            run.append(run.samples_path, record)
        if not isinstance(event, SamplesGenerated):
            run.log(describe_event(event))
        if isinstance(event, RunStarted):
            identity = ProcessIdentity.current().to_record()
            run.write_status("running", **identity, step=event.start_step, total_steps=event.total_steps, started_at=event.time, message="")
        elif isinstance(event, StepLogged):
            run.write_status("running", step=event.step, total_steps=event.total_steps)
        elif isinstance(event, RunPaused):
            run.write_status("paused", step=event.step)
        elif isinstance(event, RunResumed):
            run.write_status("running", step=event.step)
        elif isinstance(event, RunFinished):
            run.write_status("finished", step=event.step, final_path=event.final_path, message="finished")
        elif isinstance(event, RunStopped):
            run.write_status("stopped", step=event.step, message=event.reason or "stopped on request")
        elif isinstance(event, RunFailed):
            state = "diverged" if event.kind == "diverged" else "failed"
            run.write_status(state, step=event.step, message=event.reason)
