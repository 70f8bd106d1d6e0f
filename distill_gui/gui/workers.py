"""Background workers (QObjects living in their own QThread) for jobs that stay in the app's process
(the pair check runs in a child process: gui/pair_check_process.py).

Each imports torch / transformers / datasets lazily inside its slot, so none of them is loaded before
the window shows. Requests carry an id; a newer request makes an older one's results stale (the
worker checks ``latest`` between phases, the page drops stale results).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QThread, Signal, Slot

PREVIEW_ROWS = 500


def start_in_thread(worker: QObject, parent: QObject, name: str) -> QThread:
    """Move ``worker`` to a new started QThread owned by ``parent``."""
    thread = QThread(parent)
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.finished.connect(worker.deleteLater)
    thread.start()
    return thread


def stop_thread(thread: QThread | None, timeout_ms: int = 30000) -> None:
    """Let a worker thread finish its current job and end."""
    if thread is not None and thread.isRunning():
        thread.quit()
        thread.wait(timeout_ms)


def _short_error(exc: BaseException) -> str:
    """A user error's message; a bug's first line (its traceback goes to the app log)."""
    from distill_gui.core.errors import describe

    return describe(exc)


class DataPreviewer(QObject):
    """Parses a data file for the preview table and the bad-row report."""

    # ---- Signals
    sig_loaded = Signal(int, object, object, int)
    """(request id, first examples, DataReport, number of examples)."""
    sig_failed = Signal(int, str)
    """(request id, message) when the file cannot be used at all."""

    def __init__(self) -> None:
        super().__init__()
        self.latest = 0

    @Slot(int, str, str, object)
    def load(self, request_id: int, path: str, fmt: str, columns: dict) -> None:
        if request_id != self.latest:
            return
        try:
            from distill_gui.core.data import load_examples

            examples, report = load_examples(path, fmt, dict(columns or {}))
        except Exception as exc:  # noqa: BLE001
            self.sig_failed.emit(request_id, _short_error(exc))
            return
        self.sig_loaded.emit(request_id, examples[:PREVIEW_ROWS], report, len(examples))
