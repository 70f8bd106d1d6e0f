"""Supervision of a training run: one transport from the run to the app, one control channel back.

* :class:`RunWatcher` follows a run through its folder's ``events.jsonl`` — the single source of a run's
  events, whether the app started the run as a child process (then it also watches the child's exit
  and stderr, and learns the new folder from the child's first stdout line) or found it already
  training (then it watches the run's owner, identified by more than a pid).
* :class:`RunController` lives in the GUI thread, owns the watcher, keeps the run's state and
  re-emits everything as ``sig_*`` signals that the pages connect to. Pause, resume and stop are
  requests through the run folder (:mod:`distill_gui.core.run_requests`), for a child and a
  reattached run alike. The app never writes a run's state itself: a run whose process died is
  reported as interrupted by the readers of its folder.
* :class:`ChildSupervisor` reads a generic child command's JSON event stream (teacher-written data).
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

from distill_gui.core.config import ConfigError, RunConfig, resolve_paths, save_config
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
from distill_gui.core.runs import ACTIVE_STATES, RunDir

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


def training_launch(config: RunConfig, work_dir: str | Path, cli_args: list[str], command: list[str] | None = None) -> tuple[list[str], dict]:
    """The command line and extra environment that start ``distill-gui <cli_args>`` for ``config``.

    One process: ``command`` (this Python running the package's CLI). Several (``training.processes``):
    the same CLI in every process through ``accelerate launch``, with its accelerate config written into
    ``work_dir`` (the run's main process copies it into the run folder). Raises a ConfigError naming the
    setting when this machine cannot run the processes or the strategy.
    """
    from distill_gui.core import distributed_launch

    if int(config.training.processes) > 1:
        launch = distributed_launch.prepare_launch(config.training, work_dir, cli_args)
        return launch.argv, dict(launch.env)
    return [*(command or trainer_command()), *cli_args], {}


def child_environment(base: dict | None = None) -> dict:
    """The environment of a child that imports this very package, wherever it was imported from."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def own_session() -> dict:
    """Popen arguments for a child in its own session: Ctrl+C in the app's terminal does not reach it,
    and it can outlive the window when the user chooses to leave it running."""
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def interrupt_child(proc: subprocess.Popen | None) -> bool:
    """Ctrl+C for a child of ours; False when it is gone."""
    if proc is None or proc.poll() is not None:
        return False
    try:
        proc.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)
        return True
    except OSError:
        return False


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
            return interrupt_child(self._proc)

    # ---- Thread body
    @Slot()
    def run(self) -> None:
        env = child_environment(self.env)
        kwargs = own_session()
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


class RunWatcher(QObject):
    """Follows one run through its folder (and its child process, when the app started it); lives in a QThread."""

    # ---- Signals
    sig_event = Signal(object)
    """An event appended to the run's events.jsonl."""
    sig_log = Signal(str)
    """A line the child wrote on stderr (load messages, warnings, a crash's traceback)."""
    sig_exited = Signal(int, str)
    """The run's process is gone: the child's return code (-N for signal N, 127 when it could not start),
    or for a reattached run 0 after a final event and -1 without one; then the child's stderr tail."""

    OWNER_CHECK_S = 1.0

    def __init__(self, run_dir: str | Path | None, argv: list[str] | None = None, stream_dir: str | Path | None = None,
                 skip_existing: bool = True, poll_s: float = 0.1, env: dict | None = None):
        super().__init__()
        self.argv = list(argv) if argv else None
        self.env = dict(env or {})
        """Added to the child's environment (a launch of several processes: see :func:`training_launch`)."""
        self.stream_dir = Path(stream_dir) if stream_dir is not None else None
        self.folder = RunDir(run_dir) if run_dir else None
        self._poll_s = poll_s
        self._offset = 0
        if self.folder is not None and skip_existing and self.folder.events_path.exists():
            self._offset = self.folder.events_path.stat().st_size
        self._buffer = b""
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._detached = threading.Event()
        self._ended = False

    # ---- Public API (any thread)
    @property
    def pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid
        owner = self.folder.owner() if self.folder is not None else None
        return owner.pid if owner is not None else None

    @property
    def is_child(self) -> bool:
        return self.argv is not None

    def interrupt(self) -> bool:
        """Ctrl+C for our own child (before its run folder exists); False when there is none."""
        with self._lock:
            return interrupt_child(self._proc)

    def kill(self) -> None:
        """End our child now (a run we did not start is never killed).

        A launch of several processes is ended through its launcher (SIGTERM): it ends the processes it
        started, which run in sessions of their own and would outlive a killed launcher.
        """
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                if self.env:
                    self._proc.terminate()
                else:
                    self._proc.kill()

    def detach(self) -> None:
        """Stop following (the run goes on); ``run`` returns within a poll interval."""
        self._detached.set()

    # ---- Thread body
    @Slot()
    def run(self) -> None:
        streams: dict[str, _Tail] = {}
        if self.is_child:
            streams = self._start_child()
            if self._proc is None:
                return
        next_owner_check = 0.0
        while not self._detached.is_set():
            got = self._pump(streams)
            if self._proc is not None:
                if self._proc.poll() is not None:
                    self._pump(streams, final=True)
                    self._finish_child()
                    return
            elif self._ended:
                self.sig_exited.emit(0, "")
                return
            elif time.monotonic() >= next_owner_check:
                next_owner_check = time.monotonic() + self.OWNER_CHECK_S
                if self.folder is not None and not self.folder.owner_alive():
                    self._pump(streams, final=True)  # its last lines may have landed just before it ended
                    self.sig_exited.emit(0 if self._ended else -1, "")
                    return
            if not got:
                self._detached.wait(self._poll_s)
        if self._proc is not None:
            # The run goes on without us; the Popen object is kept so it is not finalised while it runs.
            self._close_stdin()
            _LEFT_RUNNING.append(self._proc)

    def _start_child(self) -> dict[str, "_Tail"]:
        env = {**child_environment(), **self.env}
        kwargs = own_session()
        assert self.stream_dir is not None and self.argv is not None
        # stdout and stderr go to files, not pipes: a run left training after the window closes
        # keeps writing to them instead of dying on a broken pipe.
        self.stream_dir.mkdir(parents=True, exist_ok=True)
        out_path, err_path = self.stream_dir / "stdout.jsonl", self.stream_dir / "stderr.log"
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                with self._lock:
                    self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, **kwargs)
        except OSError as exc:
            self.sig_exited.emit(127, f"could not start the training process: {exc}")
            return {}
        return {"out": _Tail(out_path), "err": _Tail(err_path)}

    def _finish_child(self) -> None:
        assert self._proc is not None
        self.sig_exited.emit(self._proc.returncode, "\n".join(self._tail))

    def _close_stdin(self) -> None:
        pass  # the child's stdin is /dev/null: requests go through the run folder

    def _pump(self, streams: dict[str, "_Tail"], final: bool = False) -> bool:
        """Read what is new: the child's stderr (log lines), its stdout until the run folder is known, the events."""
        got = False
        if "err" in streams:
            for text in streams["err"].read_lines(final=final):
                got = True
                self._tail.append(text)
                self.sig_log.emit(text)
        if self.folder is None and "out" in streams:
            for text in streams["out"].read_lines(final=final):
                event = self._parse(text)
                if isinstance(event, RunCreated):
                    self.folder = RunDir(event.run_dir)  # its events.jsonl holds everything from the start
                    self._offset = 0
                    break
        if self.folder is not None:
            for event in self._read_events(final):
                got = True
                self.sig_event.emit(event)
                self._ended = self._ended or isinstance(event, TERMINAL_EVENTS)
        return got

    def _read_events(self, final: bool) -> list[Event]:
        assert self.folder is not None
        try:
            with open(self.folder.events_path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self._offset:  # rewritten (not by distill-gui): follow from its end
                    self._offset, self._buffer = size, b""
                fh.seek(self._offset)
                data = fh.read(MAX_READ)
        except OSError:
            return []
        self._offset += len(data)
        data = self._buffer + data
        *lines, self._buffer = data.split(b"\n")
        if final and self._buffer.strip():
            lines.append(self._buffer)
            self._buffer = b""
        events = [self._parse(line.decode("utf-8", errors="replace")) for line in lines]
        return [e for e in events if e is not None]

    @staticmethod
    def _parse(line: str) -> Event | None:
        line = line.strip()
        if not line.startswith("{"):
            return None
        try:
            return event_from_dict(json.loads(line))
        except (ValueError, TypeError, AttributeError):
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
        self._worker: RunWatcher | None = None
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
        argv, env = training_launch(config, work, ["train", str(path), "--runs-dir", str(runs_root), "--events", "json"], self.command)
        self.run_dir = None
        self._launch(RunWatcher(None, argv, self._work_dir, env=env), attached=False)

    def resume(self, run_dir: str | Path) -> None:
        """Continue a stopped or crashed run from its latest checkpoint."""
        if self.is_active():
            raise RuntimeError("a run is already active")
        work = self._new_work_dir()
        cli_args = ["resume", str(run_dir), "--events", "json"]
        try:
            config = RunDir(run_dir).load_config()
        except ConfigError:  # a damaged config.yaml: the child says what is wrong with it
            config = RunConfig()
        try:
            argv, env = training_launch(config, work, cli_args, self.command)
        except ConfigError as exc:  # e.g. a run of 4 processes resumed on a machine with 2 GPUs
            self._cleanup_work_dir()
            self.sig_log.emit(f"cannot resume: {exc}")
            self.sig_ended.emit(self.FAILED, f"cannot resume: {exc}")
            return
        self._set_run_dir(str(run_dir))
        self._launch(RunWatcher(run_dir, argv, self._work_dir, env=env), attached=False)

    def attach(self, run_dir: str | Path) -> bool:
        """Follow a run that trains in another process (started before the app was restarted)."""
        if self.is_active():
            raise RuntimeError("a run is already active")
        run = RunDir(run_dir)
        status = run.status()
        if status.get("state") not in ACTIVE_STATES or not run.owner_alive():
            return False
        self._set_run_dir(str(run.path))
        self.step = int(status.get("step") or 0)
        self.total_steps = int(status.get("total_steps") or 0)
        self._launch(RunWatcher(run.path), attached=True)
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
        if self.run_dir is None:  # our child has not made its folder yet: interrupt it (it saves nothing yet)
            sent = self._worker.interrupt()
        else:
            sent = self._send("stop")
        if sent:
            self._set_state(self.STOPPING)
            self.sig_log.emit("stop requested: the run saves a checkpoint and stops")
        return sent

    def kill(self) -> None:
        """End our own child now (a run started elsewhere is only ever asked to stop)."""
        if self._worker is not None:
            self._worker.kill()

    def detach(self) -> None:
        """Stop watching and leave the run training (used when the window closes)."""
        worker, thread = self._worker, self._thread
        if worker is not None:
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
        """A request through the run folder (the same channel for our child and a reattached run)."""
        from distill_gui.core.run_requests import RequestError, request

        if self._worker is None or not self.run_dir:
            return False
        try:
            request(self.run_dir, command)
        except RequestError as exc:
            self.sig_log.emit(str(exc))
            return False
        return True

    def _launch(self, worker: RunWatcher, attached: bool) -> None:
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
            self.sig_event.emit(RunFailed(step=self.step, reason=reason, kind=kind))
        self.sig_log.emit(message)
        self._set_state(state)
        self.sig_ended.emit(state, message)
