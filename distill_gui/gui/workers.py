"""Starting and stopping the QThreads that background workers (QObjects) of the app's pages live in.

Heavy jobs run in child processes instead (the pair check: gui/pair_check_process.py, the data preview:
gui/data_preview_process.py); workers import torch / transformers lazily inside their slots, so none is
loaded before the window shows.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QThread


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
