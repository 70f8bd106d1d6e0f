"""Open TensorBoard on a run folder: a ``tensorboard`` child process (QProcess), its page opened in the browser.

One TensorBoard per run folder is kept while the app runs (asking again reopens its page); all are ended
when the launcher is. Nothing here blocks: the URL is read from the child's output as it comes.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QCoreApplication, QObject, QProcess, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices

from distill_gui.core.tracking import tensorboard_command, tensorboard_dir

_URL = re.compile(r"(http://(?:localhost|127\.0\.0\.1):\d+/?)")  # "TensorBoard 2.x at http://localhost:PORT/"


class TensorBoardLauncher(QObject):
    """Starts (or reopens) TensorBoard for run folders."""

    # ---- Signals
    sig_opened = Signal(str, str)
    """TensorBoard serves a run: (run folder, URL)."""
    sig_failed = Signal(str, str)
    """TensorBoard could not be opened for a run: (run folder, why, in one line)."""

    def __init__(self, parent: QObject | None = None, open_browser: bool = True):
        super().__init__(parent)
        self.open_browser = open_browser
        self._processes: dict[str, QProcess] = {}
        self._urls: dict[str, str] = {}
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.close_all)  # no TensorBoard outlives the app

    # ---- Public API
    @staticmethod
    def available() -> bool:
        """TensorBoard is installed."""
        return tensorboard_command(".") is not None

    def open(self, run_path: str) -> bool:
        """Show ``run_path``'s TensorBoard logs; False (and ``sig_failed``) when there is nothing to show."""
        command = tensorboard_command(run_path)
        if command is None:
            self.sig_failed.emit(run_path, "TensorBoard is not installed: pip install tensorboard")
            return False
        if not tensorboard_dir(run_path).is_dir():
            self.sig_failed.emit(run_path, "this run wrote no TensorBoard logs; train with training.report_to: [tensorboard]")
            return False
        if run_path in self._urls:
            self._show(run_path, self._urls[run_path])
            return True
        if run_path in self._processes:
            return True  # starting; its page opens when it says where it is
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.setProperty("run_path", run_path)
        process.readyReadStandardOutput.connect(self.on_output)
        process.finished.connect(self.on_finished)
        self._processes[run_path] = process
        process.start(command[0], [*command[1:], "--port", "0", "--host", "localhost"])
        return True

    @Slot()
    def close_all(self) -> None:
        """End every TensorBoard this launcher started."""
        for process in list(self._processes.values()):
            process.kill()
            process.waitForFinished(3000)
        self._processes.clear()
        self._urls.clear()

    # ---- Slots
    @Slot()
    def on_output(self) -> None:
        process = self.sender()
        if not isinstance(process, QProcess):
            return
        run_path = str(process.property("run_path"))
        text = bytes(process.readAllStandardOutput().data()).decode("utf-8", errors="replace")
        match = _URL.search(text)
        if match and run_path not in self._urls:
            self._urls[run_path] = match.group(1)
            self._show(run_path, match.group(1))

    @Slot(int, QProcess.ExitStatus)
    def on_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        process = self.sender()
        if not isinstance(process, QProcess):
            return
        run_path = str(process.property("run_path"))
        self._processes.pop(run_path, None)
        if self._urls.pop(run_path, None) is None:
            self.sig_failed.emit(run_path, f"TensorBoard ended (exit {code}) before it served the logs")
        process.deleteLater()

    def _show(self, run_path: str, url: str) -> None:
        if self.open_browser:
            QDesktopServices.openUrl(QUrl(url))
        self.sig_opened.emit(run_path, url)
