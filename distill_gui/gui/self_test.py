"""``distill-gui app --self-test``: proves an installation works, then quits.

Shows the window on the demo pair, waits until the demo's student is made (which imports torch and
transformers in the app's environment), prints one line and exits: 0 when all of that worked, 1 when
not. The installers' end-to-end test and a user who wants to check an install both run it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QApplication

TIMEOUT_MS = 300_000
"""How long the demo student may take to be made (seconds on a CPU; more on a cold disk)."""


class SelfTest(QObject):
    """Watches a :class:`MainWindow` that is about to be shown and ends the application when it is ready."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.started = time.perf_counter()
        self.done = False
        window.demo_builder.sig_built.connect(self.on_student_built)
        window.demo_builder.sig_failed.connect(self.on_student_failed)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.on_timeout)
        self.timer.start(TIMEOUT_MS)
        QTimer.singleShot(0, self.on_shown)  # runs once the event loop has shown the window

    # ---- Slots
    @Slot()
    def on_shown(self) -> None:
        from distill_gui.resources import demo_dir

        if self.done:
            return
        config = self.window.current_config()
        teacher = Path(config.teacher.path)
        if not self.window.isVisible():
            self.finish(1, "the window did not show")
        elif teacher != demo_dir() / "teacher" or not (teacher / "config.json").is_file():
            self.finish(1, f"the window is not on the demo pair (teacher: {config.teacher.path or 'none'}; demo files: {demo_dir()})")
        elif (Path(config.student.path) / "config.json").is_file():
            self.finish(0, f"window shown on the demo pair after {self.elapsed():.1f} s")
        else:
            print(f"distill-gui self-test: window shown after {self.elapsed():.1f} s; making the demo student…", flush=True)

    @Slot(str)
    def on_student_built(self, path: str) -> None:
        self.finish(0, f"window shown on the demo pair; demo student ready in {path} after {self.elapsed():.1f} s")

    @Slot(str)
    def on_student_failed(self, message: str) -> None:
        self.finish(1, f"the demo student could not be made: {message}")

    @Slot()
    def on_timeout(self) -> None:
        self.finish(1, f"nothing happened within {TIMEOUT_MS // 1000} s")

    # ---- Internals
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def finish(self, code: int, message: str) -> None:
        if self.done:
            return
        self.done = True
        self.timer.stop()
        stream = sys.stdout if code == 0 else sys.stderr
        print(f"distill-gui self-test: {'ok' if code == 0 else 'FAILED'}: {message}", file=stream, flush=True)
        self.window.close()
        QApplication.instance().exit(code)
