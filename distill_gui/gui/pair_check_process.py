"""The Models page's pair check in a child process (:mod:`distill_gui.core.pair_check`): torch,
transformers, GGUF parsing and any model's own code run there, never in the app, so the window never
waits on them. The child starts on the first check and stays for the next ones (it keeps what it read)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal, Slot

from distill_gui.core.config import RunConfig, config_to_dict
from distill_gui.gui.json_lines_client import JsonLinesClient


class PairCheckProcess(JsonLinesClient):
    """Sends check requests to the child and re-emits its answers (request ids let the window drop stale ones)."""

    # ---- Signals
    sig_described = Signal(int, str, object)
    """(request id, role, ModelInfo) for a model that could be read."""
    sig_licence = Signal(int, str, object)
    """(request id, role, DetectedLicence) for a model that could be read."""
    sig_failed = Signal(int, str, str)
    """(request id, role, message): role is teacher, student, pair or memory."""
    sig_compatibility = Signal(int, object)
    """(request id, TokenizerCompatibility) for the pair."""
    sig_memory = Signal(int, object)
    """(request id, MemoryEstimate) for the whole run."""
    sig_done = Signal(int)
    """The request is complete (or the child ended before it was)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__([sys.executable, "-m", "distill_gui.core.pair_check"], parent)
        self.latest = 0
        self._pending: int | None = None

    # ---- Public API
    @Slot(int, object)
    def inspect(self, request_id: int, config: RunConfig) -> None:
        """Ask the child to check ``config``'s pair (started first if it is not running)."""
        if request_id != self.latest:
            return
        self._send({"id": request_id, "config": config_to_dict(config)})
        self._pending = request_id

    # ---- Internals
    def _child_ended(self, code: int) -> None:
        """A crash: the open request ends with the reason; the next starts a new child."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self.sig_failed.emit(pending, "pair", f"The model check stopped unexpectedly ({self._end_reason(code)}); press Check again.")
            self.sig_done.emit(pending)

    def _answer(self, answer: dict) -> None:
        from distill_gui.core.pair_check import decode

        request_id, kind = answer["id"], answer["kind"]
        if kind == "done":
            if self._pending == request_id:
                self._pending = None
            self.sig_done.emit(request_id)
        elif kind == "failed":
            self.sig_failed.emit(request_id, str(answer.get("role", "pair")), str(answer.get("message", "")))
        elif kind == "described":
            self.sig_described.emit(request_id, str(answer.get("role")), decode(kind, answer["data"]))
        elif kind == "licence":
            self.sig_licence.emit(request_id, str(answer.get("role")), decode(kind, answer["data"]))
        elif kind == "compatibility":
            self.sig_compatibility.emit(request_id, decode(kind, answer["data"]))
        elif kind == "memory":
            self.sig_memory.emit(request_id, decode(kind, answer["data"]))
