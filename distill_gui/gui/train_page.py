"""The Train page: Start / Pause / Stop, live plots, progress with ETA, and the log."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core import distributed_launch
from distill_gui.core.config import TrainingConfig
from distill_gui.core.events import (
    Event,
    LogMessage,
    RunFailed,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStopped,
    StepLogged,
)
from distill_gui.core.runs import describe_event
from distill_gui.gui.fields import ConfigBinder, make_field_widget
from distill_gui.gui.plots import MetricsPlots
from distill_gui.gui.supervisor import RunController

REFRESH_MS = 50  # each tick redraws one of the four plots, so each plot updates ~5 times a second
MAX_LOG_LINES = 5000
ETA_WINDOW = 20  # steps whose pace gives the ETA (pauses and the first step's start-up left out)
START_TOOLTIP = "Start training with the current settings (Ctrl+Return)"


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


class TrainPage(QWidget):
    """Controls and live view of the current run; fed by the RunController's signals."""

    # ---- Signals
    sig_start_requested = Signal()
    """The user pressed Start (the window builds the config and starts the run)."""
    sig_compare_requested = Signal()
    """The user asked to compare the finished run's student with its teacher."""
    sig_resume_requested = Signal()
    """The user asked to continue the shown (stopped or interrupted) run from its latest checkpoint."""

    def __init__(self, controller: RunController, binder: ConfigBinder | None = None, parent: QWidget | None = None,
                 devices: distributed_launch.Devices | None = None):
        super().__init__(parent)
        self.controller = controller
        self.binder = binder if binder is not None else ConfigBinder(self)
        self._pending_log: list[str] = []
        self._last_step: StepLogged | None = None
        self._paused_at: int | None = None
        self._pace: list[tuple[float, int]] = []
        self._start_blocked = ""
        self._resumable = False
        self._devices_shown: tuple = ()

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("start")
        self.start_button.setToolTip(START_TOOLTIP)
        self.resume_button = QPushButton("Resume this run")
        self.resume_button.setObjectName("resume_shown_run")
        self.resume_button.setToolTip("Continue the shown run from its latest checkpoint")
        self.resume_button.setVisible(False)
        self.start_reason = QLabel("")
        self.start_reason.setObjectName("start_reason")
        self.start_reason.setTextFormat(Qt.TextFormat.PlainText)
        self.start_reason.setWordWrap(True)
        self.start_reason.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_reason.setVisible(False)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pause")
        self.pause_button.setToolTip("Pause between steps / continue (Ctrl+P)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stop")
        self.stop_button.setToolTip("Save a checkpoint and stop; the run can be resumed later (Ctrl+.)")
        self.state_label = QLabel("No run yet. Choose models and data, then press Start.")
        self.state_label.setObjectName("run_state")
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)
        self.state_label.setWordWrap(True)
        self.state_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        buttons = QHBoxLayout()
        for button in (self.start_button, self.resume_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        buttons.addWidget(self.state_label, 1)
        self.compare_button = QPushButton("Compare with teacher")
        self.compare_button.setObjectName("compare_with_teacher")
        self.compare_button.setVisible(False)
        self.compare_button.clicked.connect(self.sig_compare_requested)
        buttons.addWidget(self.compare_button)

        devices_row = self._devices_row()

        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.progress.setTextVisible(True)

        self.plots = MetricsPlots()
        self.log = QPlainTextEdit()
        self.log.setObjectName("log")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(MAX_LOG_LINES)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("The training log appears here.")

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.plots)
        splitter.addWidget(self.log)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([640, 160])

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addLayout(devices_row)
        layout.addWidget(self.start_reason)
        layout.addWidget(self.progress)
        layout.addWidget(splitter, 1)

        self.start_button.clicked.connect(self.sig_start_requested)
        self.resume_button.clicked.connect(self.sig_resume_requested)
        self.pause_button.clicked.connect(self.on_pause_clicked)
        self.stop_button.clicked.connect(self.on_stop_clicked)
        controller.sig_event.connect(self.on_event)
        controller.sig_log.connect(self.on_log)
        controller.sig_state_changed.connect(self.on_state_changed)
        controller.sig_ended.connect(self.on_ended)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.set_devices(devices if devices is not None else distributed_launch.devices())
        self.on_state_changed(controller.state)

    def _devices_row(self) -> QHBoxLayout:
        """Processes and strategy: the config's ``training.processes`` and ``training.strategy``."""
        processes = make_field_widget(TrainingConfig, "processes", "training.processes")
        strategy = make_field_widget(TrainingConfig, "strategy", "training.strategy")
        assert isinstance(processes, QSpinBox) and isinstance(strategy, QComboBox)
        self.processes, self.strategy = processes, strategy
        self.binder.add(processes)
        self.binder.add(strategy)
        processes.setToolTip(
            "How many training processes: one per GPU, each with its own share of every batch (batch size is per "
            "process). More than 1 starts the run through `accelerate launch`.\n\n" + processes.toolTip()
        )
        self._devices_label = QLabel("")
        self._devices_label.setObjectName("devices_reason")
        self._devices_label.setTextFormat(Qt.TextFormat.PlainText)
        self._devices_label.setWordWrap(True)
        processes.valueChanged.connect(self._on_devices_edited)
        strategy.currentIndexChanged.connect(self._on_devices_edited)
        row = QHBoxLayout()
        row.addWidget(QLabel("Processes"))
        row.addWidget(processes)
        row.addWidget(QLabel("Strategy"))
        row.addWidget(strategy)
        row.addWidget(self._devices_label, 1)
        return row

    # ---- Public API
    def clear(self) -> None:
        """Forget the shown run (plots, progress, log)."""
        self.plots.clear()
        self.log.clear()
        self._pending_log.clear()
        self._last_step = None
        self._paused_at = None
        self._pace.clear()
        self.set_resumable(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")

    def set_start_blocked(self, reason: str) -> None:
        """Why Start cannot be pressed now, with the fix ("" when it can)."""
        self._start_blocked = reason
        self.start_reason.setText(reason)
        self.start_reason.setVisible(bool(reason))
        self._update_start()

    def start_blocked(self) -> str:
        return self._start_blocked

    def set_devices(self, devices: distributed_launch.Devices) -> None:
        """What this machine offers to a run of several processes; the choices follow it."""
        self.devices = devices
        strategies = devices.strategies()
        blocked = self.strategy.blockSignals(True)
        try:
            current = self.strategy.currentData()
            self.strategy.clear()
            for name in strategies:
                self.strategy.addItem(distributed_launch.STRATEGY_TITLES[name], name)
                self.strategy.setItemData(self.strategy.count() - 1, distributed_launch.STRATEGY_HELP[name], Qt.ItemDataRole.ToolTipRole)
            index = self.strategy.findData(current)
            if index < 0 and current is not None:  # a config written elsewhere: shown, and refused at Start
                self.strategy.addItem(str(current), current)
                index = self.strategy.count() - 1
            self.strategy.setCurrentIndex(max(index, 0))
        finally:
            self.strategy.blockSignals(blocked)
        unavailable = [name for name in distributed_launch.STRATEGIES if name not in strategies]
        lines = [f"{distributed_launch.STRATEGY_TITLES[name]}: {distributed_launch.STRATEGY_HELP[name]}" for name in strategies]
        if unavailable:
            lines.append("Not offered here: " + ", ".join(unavailable) + " (" + self._why_not(unavailable) + ").")
        self.strategy.setToolTip("How the processes share the work.\n\n" + "\n\n".join(lines))
        self._on_devices_edited()

    @staticmethod
    def _why_not(names: list[str]) -> str:
        reasons = []
        if "fsdp" in names:
            reasons.append("FSDP needs GPUs")
        if "deepspeed" in names:
            reasons.append("DeepSpeed needs GPUs and the deepspeed package")
        return "; ".join(reasons)

    def devices_problem(self) -> str:
        """Why the shown processes and strategy cannot start here ("" when they can)."""
        from distill_gui.core.schema import ConfigError

        settings = TrainingConfig(processes=self.processes.value(), strategy=str(self.strategy.currentData() or "ddp"))
        try:
            distributed_launch.check_launch(settings, self.devices)
        except ConfigError as exc:
            return str(exc)
        return ""

    def _devices_key(self) -> tuple:
        return (self.processes.value(), self.strategy.currentData(), self._idle())

    @Slot()
    def _on_devices_edited(self) -> None:
        devices = getattr(self, "devices", None)
        if devices is None:
            return
        self._devices_shown = self._devices_key()
        several = self.processes.value() > 1
        single = devices.single_reason()
        # One GPU: a second process has nowhere to run (the control stays usable to go back to 1).
        self.processes.setEnabled(self._idle() and (not single or several))
        self.strategy.setEnabled(self._idle() and several)
        problem = self.devices_problem()
        if problem:
            text = problem
        elif several:
            text = f"{self.processes.value()} processes through accelerate launch ({devices.describe()})"
        else:
            text = single or f"One process ({devices.describe()})"
        self._devices_label.setText(text)
        self._devices_label.setToolTip(text)
        self.processes.setToolTip(self.processes.toolTip().split("\n\nNot now: ")[0] + (f"\n\nNot now: {single}" if single else ""))

    def _idle(self) -> bool:
        return not self.controller.is_active()

    def set_resumable(self, resumable: bool) -> None:
        """Offer "Resume this run" beside Start for a shown run that stopped or was interrupted."""
        self._resumable = resumable
        self._update_start()

    def show_run_from_disk(self, metrics: list[dict], log_text: str, status: dict) -> None:
        """Rebuild the view of a run from its folder (metrics records, train.log text, status)."""
        self.clear()
        for record in metrics:
            self.plots.add_record(record)
        self.plots.refresh()
        self.log.setPlainText(log_text)
        self.log.moveCursor(self.log.textCursor().MoveOperation.End)
        step = int(status.get("step") or 0)
        total = int(status.get("total_steps") or 0)
        self._set_progress(step, total, None)
        state = status.get("state", "created")
        message = status.get("message") or ""
        self.state_label.setText(f"Run {state} at step {step}" + (f": {message}" if message and message != state else ""))

    @Slot()
    def refresh(self) -> None:
        """Timer tick (~10 Hz): redraw a plot with new points, flush log lines, update the progress bar."""
        self.plots.refresh_next()
        if self._devices_shown != self._devices_key():  # values shown from a loaded config emit no edit
            self._on_devices_edited()
        if self._pending_log:
            self.log.appendPlainText("\n".join(self._pending_log))
            self._pending_log.clear()
        if self._last_step is not None:
            event = self._last_step
            self._set_progress(event.step, event.total_steps, event)
            self._last_step = None

    # ---- Slots
    @Slot()
    def on_pause_clicked(self) -> None:
        self.controller.toggle_pause()

    @Slot()
    def on_stop_clicked(self) -> None:
        self.controller.stop()

    @Slot(object)
    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted) and event.start_step == 0:
            self.plots.clear()
        if isinstance(event, StepLogged):
            self.plots.add_event(event)
            self._last_step = event
            self._pace.append((event.time, event.step))
            del self._pace[:-ETA_WINDOW]
            return  # per-step lines would flood the log; the plots and progress show them
        if isinstance(event, (RunStarted, RunPaused, RunResumed)):
            self._pace.clear()  # the pace after a start or a pause is measured afresh
        if isinstance(event, RunPaused):
            self._paused_at = event.step
            self._last_step = None
            self._set_progress(event.step, max(self.controller.total_steps, event.step, self.progress.maximum()), None)
        elif isinstance(event, RunResumed):
            self._paused_at = None
        self.plots.add_event(event)
        if isinstance(event, RunStarted):
            self._set_progress(event.start_step, event.total_steps, None)
        if isinstance(event, (RunFinished, RunStopped, RunFailed)):
            self._last_step = None
            self._paused_at = None
            self._set_progress(event.step, max(self.controller.total_steps, event.step), None)
        text = describe_event(event)
        if isinstance(event, LogMessage) or text:
            self._pending_log.append(text)

    @Slot(str)
    def on_log(self, text: str) -> None:
        self._pending_log.append(text)

    @Slot(str)
    def on_state_changed(self, state: str) -> None:
        active = self.controller.is_active()
        self._update_start()
        self._on_devices_edited()  # processes and strategy are fixed while a run trains
        if active:
            self.compare_button.setVisible(False)
        self.pause_button.setEnabled(state in (RunController.RUNNING, RunController.PAUSED))
        self.pause_button.setText("Resume" if state == RunController.PAUSED else "Pause")
        self.stop_button.setEnabled(state in (RunController.STARTING, RunController.RUNNING, RunController.PAUSED))
        labels = {
            RunController.IDLE: "No run yet. Choose models and data, then press Start.",
            RunController.STARTING: "Starting: loading the models…",
            RunController.RUNNING: "Training" + (" (attached to a run started earlier)" if self.controller.attached else ""),
            RunController.PAUSED: "Paused between steps",
            RunController.STOPPING: "Stopping: saving a checkpoint…",
        }
        if state in labels:
            self.state_label.setText(labels[state])

    @Slot(str, str)
    def on_ended(self, state: str, message: str) -> None:
        self.refresh()
        self.plots.refresh()
        self.state_label.setText(f"Run {state}: {message}")
        self.compare_button.setVisible(state == RunController.FINISHED)

    def _update_start(self) -> None:
        active = self.controller.is_active()
        self.start_button.setEnabled(not active and not self._start_blocked)
        self.start_button.setToolTip(f"Cannot start yet: {self._start_blocked}" if self._start_blocked else START_TOOLTIP)
        self.resume_button.setVisible(self._resumable and not active)
        self.resume_button.setEnabled(self._resumable and not active)

    def _eta(self, event: StepLogged) -> float | None:
        """Seconds left at the pace of the last steps since the latest start or pause (the run's own ETA
        until three steps are seen)."""
        if len(self._pace) >= 3:
            (t0, s0), (t1, s1) = self._pace[0], self._pace[-1]
            if s1 > s0 and t1 > t0:
                return (t1 - t0) / (s1 - s0) * max(event.total_steps - event.step, 0)
        return event.eta_s

    # ---- Internals
    def _set_progress(self, step: int, total: int, event: StepLogged | None) -> None:
        total = max(total, 1)
        self.progress.setRange(0, total)
        self.progress.setValue(min(step, total))
        text = f"step {step} / {total}"
        if self._paused_at is not None:
            text += "  ·  paused"
        elif event is not None:
            text += f"  ·  ETA {format_duration(self._eta(event))}  ·  {event.tokens_per_s:,.0f} tokens/s  ·  loss {event.loss:.4f}"
        self.progress.setFormat(text)
        self.progress.setToolTip(time.strftime("updated %H:%M:%S"))
