"""The Data page's preview parsed in a child process (:mod:`distill_gui.core.data_preview`): a large or slow
file is read there, never in the app, so the window never waits on the interpreter lock while it is. The
child starts on the first preview and stays for the next ones; a newer request makes older ones stale."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal, Slot

from distill_gui.gui.json_lines_client import JsonLinesClient


class DataPreviewProcess(JsonLinesClient):
    """Sends preview requests to the child and re-emits its answers."""

    # ---- Signals
    sig_loaded = Signal(int, object, object, int)
    """(request id, first examples, DataReport, number of usable examples)."""
    sig_failed = Signal(int, str)
    """(request id, message) when the file cannot be used at all (or the child ended)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__([sys.executable, "-m", "distill_gui.core.data_preview"], parent)
        self.latest = 0
        """The newest request id; answers to others are dropped."""
        self._pending: int | None = None

    # ---- Public API
    @Slot(int, str, str, object)
    def load(self, request_id: int, path: str, fmt: str, columns: dict) -> None:
        """Ask the child to parse ``path`` (started first if it is not running)."""
        if request_id != self.latest:
            return
        if self._pending is not None:
            self._stop()  # still reading an older file (a large one, or a pipe that never ends): start afresh
        self._send({"id": request_id, "path": path, "format": fmt, "columns": dict(columns or {})})
        self._pending = request_id

    def shutdown(self, timeout_ms: int = 500) -> None:
        """Close the child's stdin (it ends on its own) and end it if it does not."""
        self._stop(timeout_ms)

    # ---- Internals
    def _stop(self, timeout_ms: int = 500) -> None:
        """End the child: an idle one by closing its stdin, a busy one at once (its answer is stale)."""
        busy, self._pending = self._pending is not None, None
        self._end_child(timeout_ms, kill=busy)

    def _child_ended(self, code: int) -> None:
        """A crash, or killed for memory: the open request fails with the reason."""
        pending, self._pending = self._pending, None
        if pending is not None and pending == self.latest:
            self.sig_failed.emit(pending, f"reading the file stopped unexpectedly ({self._end_reason(code)}); edit the path to try again")

    def _answer(self, answer: dict) -> None:
        request_id, kind = answer["id"], answer["kind"]
        if self._pending == request_id:
            self._pending = None
        if request_id != self.latest:
            return  # stale: a newer file or setting was asked for
        if kind == "loaded":
            from distill_gui.core.data_preview import decode_examples, decode_report

            examples = decode_examples(answer.get("examples") or [])
            self.sig_loaded.emit(request_id, examples, decode_report(answer["report"]), int(answer.get("count", len(examples))))
        elif kind == "failed":
            self.sig_failed.emit(request_id, str(answer.get("message", "")))
