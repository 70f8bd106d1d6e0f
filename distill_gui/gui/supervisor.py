"""Supervision of a training run: a child process (or a run started elsewhere) turned into Qt signals.

* :class:`ChildSupervisor` starts ``distill-gui train`` / ``resume`` as a child process and, in a
  QThread, reads the JSON event stream the child writes on stdout (stderr lines become log lines).
* :class:`FolderFollower` follows a run whose process is not our child (the app was restarted while it
  trained) by reading new lines of its ``events.jsonl`` while its pid is alive.
* :class:`RunController` lives in the GUI thread, owns one of the two, keeps the run's state and
  re-emits everything as ``sig_*`` signals that the pages connect to.

Pause, resume and stop are lines written to the child's stdin (``pause``, ``resume``, ``stop``).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from distill_gui.core.config import RunConfig, resolve_paths, save_config
from distill_gui.core.events import (
    Event,
    RunCreated,
    RunFailed,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStopped,
    StepLogged,
    event_from_dict,
    event_from_json,
)
from distill_gui.core.runs import RunDir, pid_alive

TERMINAL_EVENTS = (RunFinished, RunStopped, RunFailed)
STDERR_TAIL_LINES = 40
POLL_S = 0.02
_LEFT_RUNNING: list[subprocess.Popen] = []
"""Training processes the user left running when the window closed."""
MAX_READ = 1 << 20


def run_in_thread(worker: QObject, parent: QObject, name: str) -> QThread:
    """Move ``worker`` to a new QThread that runs ``worker.run`` and ends on its ``sig_exited``.

    Connect the worker's signals to your slots before calling this, so they are delivered before the
    thread quits; the thread and the worker delete themselves when the thread finishes.
    """
    thread = QThread(parent)
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.sig_exited.connect(thread.quit)
    thread.finished.connect(worker.deleteLater)
    thread.finished.connect(thread.deleteLater)
    return thread


def trainer_command() -> list[str]:
    """How to start the training process: this Python running the package's CLI."""
    return [sys.executable, "-m", "distill_gui"]


def explain_exit(returncode: int, stderr_tail: str) -> tuple[str, str]:
    """(kind, reason) for a training process that ended without a final event."""
    lowered = stderr_tail.lower()
    last = next((line for line in reversed(stderr_tail.splitlines()) if line.strip()), "")
    if "out of memory" in lowered or "outofmemoryerror" in lowered:
        return "out_of_memory", f"the training process ran out of memory: {last}"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (the system may have run out of memory)" if name == "SIGKILL" else ""
        return "killed", f"the training process was killed by {name}{hint}"
    if last:
        return "error", f"the training process exited with code {returncode}: {last}"
    return "error", f"the training process exited with code {returncode} without saying why"


class ChildSupervisor(QObject):
    """Starts the training child and reads its event stream; lives in a QThread (``run`` blocks)."""

    # ---- Signals
    sig_event = Signal(object)
    """An event from the child's stdout (a :class:`distill_gui.core.events.Event`)."""
    sig_log = Signal(str)
    """A human-readable line from the child (its stderr, or stdout text that is not an event)."""
    sig_exited = Signal(int, str)
    """The child ended: return code (-N for signal N, 127 when it could not start) and its stderr tail."""

    def __init__(self, argv: list[str], stream_dir: str | Path, env: dict | None = None, cwd: str | None = None):
        super().__init__()
        self.argv = list(argv)
        self.stream_dir = Path(stream_dir)
        self.env = env
        self.cwd = cwd
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._detached = threading.Event()

    # ---- Public API (any thread)
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def send(self, command: str) -> bool:
        """Write a control line (pause, resume, stop) to the child's stdin; False when it is gone."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.poll() is not None:
                return False
            try:
                proc.stdin.write((command.strip() + "\n").encode("utf-8"))
                proc.stdin.flush()
                return True
            except (OSError, ValueError):
                return False

    def kill(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    def interrupt(self) -> bool:
        """Ctrl+C for the child (commands that stop cleanly on SIGINT); False when it is gone."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return False
            try:
                proc.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)
                return True
            except OSError:
                return False

    # ---- Thread body
    @Slot()
    def run(self) -> None:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        # The child imports this very package, wherever it was imported from (installed or a checkout).
        package_root = str(Path(__file__).resolve().parents[2])
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if package_root not in paths:
            env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
        env.setdefault("PYTHONIOENCODING", "utf-8")
        kwargs: dict = {}
        if os.name == "posix":
            # Its own session: Ctrl+C in the app's terminal does not reach the run, and the run can
            # outlive the window when the user chooses to leave it running.
            kwargs["start_new_session"] = True
        else:
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        # stdout and stderr go to files the child owns, not pipes: a run left training after the
        # window closes keeps writing to them instead of dying on a broken pipe.
        self.stream_dir.mkdir(parents=True, exist_ok=True)
        out_path, err_path = self.stream_dir / "stdout.jsonl", self.stream_dir / "stderr.log"
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                with self._lock:
                    self._proc = subprocess.Popen(
                        self.argv, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env, cwd=self.cwd, **kwargs
                    )
        except OSError as exc:
            self.sig_exited.emit(127, f"could not start the training process: {exc}")
            return
        proc = self._proc
        streams = {"out": _Tail(out_path), "err": _Tail(err_path)}
        while not self._detached.is_set():
            ended = proc.poll() is not None
            got = False
            for name, tail in streams.items():
                for text in tail.read_lines():
                    got = True
                    self._handle(name, text)
            if ended:
                for name, tail in streams.items():
                    for text in tail.read_lines(final=True):
                        self._handle(name, text)
                break
            if not got:
                self._detached.wait(POLL_S)
        if self._detached.is_set():
            # The run goes on without us. Closing its stdin means nothing to it; the Popen object is
            # kept so that it is not finalised (and warned about) while the process still runs.
            self._close_stdin(proc)
            _LEFT_RUNNING.append(proc)
            return
        self._close_stdin(proc)
        self.sig_exited.emit(proc.returncode, "\n".join(self._tail))

    def _close_stdin(self, proc: subprocess.Popen) -> None:
        with self._lock:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass

    def detach(self) -> None:
        """Stop reading (the child keeps running); ``run`` returns within a poll interval."""
        self._detached.set()

    def _handle(self, stream: str, text: str) -> None:
        if not text.strip():
            return
        if stream == "err":
            self._tail.append(text)
            self.sig_log.emit(text)
            return
        if text.startswith("{"):
            try:
                event = event_from_json(text)
            except (ValueError, TypeError):
                event = None
            if event is not None:
                self.sig_event.emit(event)
                return
        self.sig_log.emit(text)


class _Tail:
    """Reads the complete lines appended to a file since the last read."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def read_lines(self, final: bool = False) -> list[str]:
        """Complete new lines (at most about MAX_READ bytes); ``final`` reads to the end and flushes a last partial line."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read() if final else fh.read(MAX_READ)
        except OSError:
            return []
        self.offset += len(data)
        data = self.partial + data
        if final:
            self.partial = b""
            chunks = data.split(b"\n")
        else:
            *chunks, self.partial = data.split(b"\n")
        # Progress bars redraw a line with carriage returns: keep what the line last showed.
        lines = (c.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1] for c in chunks)
        return [line for line in lines if line.strip()]


class FolderFollower(QObject):
    """Follows a run started by another process through its run folder; lives in a QThread."""

    # ---- Signals
    sig_event = Signal(object)
    """An event appended to the run's events.jsonl."""
    sig_log = Signal(str)
    """Not used by the follower beyond notes (kept for the same interface as the supervisor)."""
    sig_exited = Signal(int, str)
    """The followed process is gone (return code unknown: -1) or ended with a final event (0)."""

    def __init__(self, run_dir: str | Path, pid: int, skip_existing: bool = True, poll_s: float = 0.25):
        super().__init__()
        self.folder = RunDir(run_dir)
        self._pid = pid
        self._stop = threading.Event()
        self._poll_s = poll_s
        self._offset = self.folder.events_path.stat().st_size if skip_existing and self.folder.events_path.exists() else 0

    # ---- Public API (any thread)
    @property
    def pid(self) -> int | None:
        return self._pid

    def send(self, command: str) -> bool:
        """Not our child, so no stdin: ``stop`` interrupts it (SIGINT), like Ctrl+C in its terminal."""
        if command.strip() != "stop" or not pid_alive(self._pid):
            return False
        try:
            os.kill(self._pid, signal.SIGINT)
            return True
        except OSError:
            return False

    def kill(self) -> None:
        self.send("stop")

    def quit(self) -> None:
        """Stop following (the run goes on)."""
        self._stop.set()

    # ---- Thread body
    @Slot()
    def run(self) -> None:
        ended = False
        buffer = ""
        while not self._stop.is_set():
            alive = pid_alive(self._pid)
            chunk = self._read_new()
            if chunk:
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    event = self._parse(line)
                    if event is None:
                        continue
                    self.sig_event.emit(event)
                    if isinstance(event, TERMINAL_EVENTS):
                        ended = True
            if ended:
                self.sig_exited.emit(0, "")
                return
            if not alive:
                # One more read: the last lines may have landed just before it exited.
                rest = buffer + self._read_new()
                for line in rest.split("\n"):
                    event = self._parse(line)
                    if event is not None:
                        self.sig_event.emit(event)
                        ended = ended or isinstance(event, TERMINAL_EVENTS)
                self.sig_exited.emit(0 if ended else -1, "")
                return
            self._stop.wait(self._poll_s)

    def _read_new(self) -> str:
        try:
            with open(self.folder.events_path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return ""
        # Only consume complete lines; a half-written last line is read again next time.
        cut = data.rfind(b"\n") + 1
        self._offset += cut
        return data[:cut].decode("utf-8", errors="replace")

    @staticmethod
    def _parse(line: str) -> Event | None:
        line = line.strip()
        if not line:
            return None
        try:
            return event_from_dict(json.loads(line))
        except (ValueError, TypeError):
            return None


class RunController(QObject):
    """The GUI-thread owner of the current run: start, resume, attach, pause, stop; state and signals."""

    IDLE, STARTING, RUNNING, PAUSED, STOPPING, FINISHED, STOPPED, FAILED = (
        "idle", "starting", "running", "paused", "stopping", "finished", "stopped", "failed",
    )
    ACTIVE = (STARTING, RUNNING, PAUSED, STOPPING)

    # ---- Signals
    sig_event = Signal(object)
    """Every event of the current run, in order."""
    sig_log = Signal(str)
    """A log line (from the child's stderr, or written by the controller)."""
    sig_state_changed = Signal(str)
    """The run's state: idle, starting, running, paused, stopping, finished, stopped or failed."""
    sig_run_dir_changed = Signal(str)
    """The current run's folder is known (after RunCreated, or when attaching)."""
    sig_ended = Signal(str, str)
    """The run ended: final state and a sentence saying why."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.command = trainer_command()
        self.state = self.IDLE
        self.run_dir: str | None = None
        self.step = 0
        self.total_steps = 0
        self.attached = False
        self._worker: ChildSupervisor | FolderFollower | None = None
        self._thread: QThread | None = None
        self._ended_event: Event | None = None
        self._work_dir: Path | None = None

    # ---- Public API
    def is_active(self) -> bool:
        return self.state in self.ACTIVE

    @property
    def pid(self) -> int | None:
        return self._worker.pid if self._worker is not None else None

    def start(self, config: RunConfig, runs_root: str | Path) -> None:
        """Start a new run of ``config`` under ``runs_root`` in a child process."""
        if self.is_active():
            raise RuntimeError("a run is already active")
        config.validate_for_run()
        config = resolve_paths(config, Path.cwd())
        work = self._new_work_dir()
        path = work / "config.yaml"
        save_config(config, path)
        Path(runs_root).mkdir(parents=True, exist_ok=True)
        argv = [*self.command, "train", str(path), "--runs-dir", str(runs_root), "--events", "json"]
        self.run_dir = None
        self._launch(ChildSupervisor(argv, self._work_dir), attached=False)

    def resume(self, run_dir: str | Path) -> None:
        """Continue a stopped or crashed run from its latest checkpoint."""
        if self.is_active():
            raise RuntimeError("a run is already active")
        argv = [*self.command, "resume", str(run_dir), "--events", "json"]
        self._new_work_dir()
        self._set_run_dir(str(run_dir))
        self._launch(ChildSupervisor(argv, self._work_dir), attached=False)

    def attach(self, run_dir: str | Path) -> bool:
        """Follow a run that trains in another process (started before the app was restarted)."""
        if self.is_active():
            raise RuntimeError("a run is already active")
        run = RunDir(run_dir)
        status = run.status()
        pid = status.get("pid")
        if status.get("state") not in ("running", "paused") or not pid_alive(pid):
            return False
        self._set_run_dir(str(run.path))
        self.step = int(status.get("step") or 0)
        self.total_steps = int(status.get("total_steps") or 0)
        self._launch(FolderFollower(run.path, pid), attached=True)
        self._set_state(self.PAUSED if status.get("state") == "paused" else self.RUNNING)
        return True

    def pause(self) -> bool:
        return self.state == self.RUNNING and self._send("pause")

    def resume_training(self) -> bool:
        return self.state == self.PAUSED and self._send("resume")

    def toggle_pause(self) -> bool:
        return self.resume_training() if self.state == self.PAUSED else self.pause()

    def stop(self) -> bool:
        """Ask the run to save a checkpoint and stop (it ends with RunStopped)."""
        if not self.is_active() or self._worker is None:
            return False
        sent = self._send("stop")
        if sent:
            self._set_state(self.STOPPING)
            self.sig_log.emit("stop requested: the run saves a checkpoint and stops")
        return sent

    def kill(self) -> None:
        if self._worker is not None:
            self._worker.kill()

    def detach(self) -> None:
        """Stop watching and leave the run training (used when the window closes)."""
        worker, thread = self._worker, self._thread
        if isinstance(worker, FolderFollower):
            worker.quit()
        elif isinstance(worker, ChildSupervisor):
            worker.detach()
        self._disconnect_worker()
        if thread is not None:
            thread.quit()
            thread.wait(3000)
        self._worker = None
        self._thread = None
        self._work_dir = None  # the child still writes its streams there
        self.attached = False
        self._set_state(self.IDLE)

    def wait_finished(self, timeout_ms: int) -> bool:
        """Block (processing nothing) until the supervising thread ends; True when it did."""
        if self._thread is None:
            return True
        return self._thread.wait(timeout_ms)

    # ---- Internals
    def _send(self, command: str) -> bool:
        return self._worker is not None and self._worker.send(command)

    def _launch(self, worker: ChildSupervisor | FolderFollower, attached: bool) -> None:
        self._ended_event = None
        self.attached = attached
        worker.sig_event.connect(self._on_event)
        worker.sig_log.connect(self._on_log)
        worker.sig_exited.connect(self._on_exited)
        thread = run_in_thread(worker, self, "run-supervisor")
        self._worker = worker
        self._thread = thread
        if not attached:
            self._set_state(self.STARTING)
        thread.start()

    def _disconnect_worker(self) -> None:
        worker = self._worker
        if worker is None:
            return
        for sig, slot in ((worker.sig_event, self._on_event), (worker.sig_log, self._on_log), (worker.sig_exited, self._on_exited)):
            try:
                sig.disconnect(slot)
            except (RuntimeError, TypeError):
                pass

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.sig_state_changed.emit(state)

    def _set_run_dir(self, run_dir: str) -> None:
        if run_dir != self.run_dir:
            self.run_dir = run_dir
            self.sig_run_dir_changed.emit(run_dir)

    def _new_work_dir(self) -> Path:
        """A scratch folder for one launch: the config handed to the child and its output streams."""
        self._cleanup_work_dir()
        self._work_dir = Path(tempfile.mkdtemp(prefix="distill-gui-run-"))
        return self._work_dir

    def _cleanup_work_dir(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    @Slot(object)
    def _on_event(self, event: Event) -> None:
        if isinstance(event, RunCreated):
            self._set_run_dir(event.run_dir)
        elif isinstance(event, RunStarted):
            self._set_run_dir(event.run_dir)
            self.step = event.start_step
            self.total_steps = event.total_steps
            if self.state != self.STOPPING:
                self._set_state(self.RUNNING)
        elif isinstance(event, StepLogged):
            self.step = event.step
            self.total_steps = event.total_steps
            if self.state == self.STARTING:
                self._set_state(self.RUNNING)
        elif isinstance(event, RunPaused):
            if self.state != self.STOPPING:
                self._set_state(self.PAUSED)
        elif isinstance(event, RunResumed):
            if self.state != self.STOPPING:
                self._set_state(self.RUNNING)
        elif isinstance(event, TERMINAL_EVENTS):
            self._ended_event = event
        self.sig_event.emit(event)

    @Slot(str)
    def _on_log(self, text: str) -> None:
        self.sig_log.emit(text)

    @Slot(int, str)
    def _on_exited(self, returncode: int, stderr_tail: str) -> None:
        event = self._ended_event
        thread = self._thread
        self._worker = None
        self._thread = None
        if thread is not None:
            thread.quit()
            thread.wait(5000)  # its run() has returned; this only lets the thread's loop end
        self._cleanup_work_dir()
        if isinstance(event, RunFinished):
            state, message = self.FINISHED, f"finished at step {event.step}; the trained student is in {event.final_path}"
        elif isinstance(event, RunStopped):
            state, message = self.STOPPED, f"stopped at step {event.step}; resume it from the Runs page"
        elif isinstance(event, RunFailed):
            state, message = self.FAILED, f"{event.kind.replace('_', ' ')} at step {event.step}: {event.reason}"
        elif self.attached and returncode == -1:
            state = self.FAILED
            message = "the training process ended without writing a final event (killed?)"
            self.sig_event.emit(RunFailed(step=self.step, reason=message, kind="killed"))
        else:
            kind, reason = explain_exit(returncode, stderr_tail)
            state, message = self.FAILED, reason
            failed = RunFailed(step=self.step, reason=reason, kind=kind)
            self.sig_event.emit(failed)
            self._record_crash(failed)
        self.sig_log.emit(message)
        self._set_state(state)
        self.sig_ended.emit(state, message)

    def _record_crash(self, event: RunFailed) -> None:
        """A child that died without a word leaves its folder saying so (the Runs page reads it)."""
        if not self.run_dir:
            return
        run = RunDir(self.run_dir)
        if not run.is_run():
            return
        try:
            run.append(run.events_path, event.to_dict())
            run.write_status("failed", step=event.step, message=event.reason, ended_at=time.time())
            run.log(f"{event.kind} at step {event.step}: {event.reason}")
        except OSError:
            pass
