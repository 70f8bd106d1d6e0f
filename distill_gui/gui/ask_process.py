"""The Generations page's "Ask both models" in a child process (:mod:`distill_gui.core.ask_service`):
the models load and generate there, so the window never waits, and Cancel ends the child at once."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal, Slot

from distill_gui.gui.json_lines_client import JsonLinesClient


class AskProcess(JsonLinesClient):
    """Sends questions to the ask child and re-emits its answers; one question at a time."""

    # ---- Signals
    sig_status = Signal(str)
    """What the child is doing (loading a model, writing)."""
    sig_answered = Signal(str, object, object)
    """(prompt, teacher answer or None, student answer or None)."""
    sig_failed = Signal(str)
    """A message saying why there is no answer (also after Cancel)."""
    sig_disagreement = Signal(object, object)
    """(per-answer lists of TokenScore, hardest tokens [(token, mean KL, count)]) for a disagreement request."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__([sys.executable, "-m", "distill_gui.core.ask_service"], parent)
        self._next_id = 0
        self._prompts: dict[int, str] = {}

    # ---- Public API
    @Slot(object)
    def ask(self, request: dict) -> None:
        """Ask both models ``request["prompt"]`` (the child starts on the first question and stays)."""
        self._next_id += 1
        self._prompts[self._next_id] = str(request.get("prompt", ""))
        self._send({**request, "id": self._next_id})

    @Slot(object)
    def explain(self, request: dict) -> None:
        """Score ``request["samples"]`` ([{prompt, answer}]) token by token with both models."""
        self.ask({**request, "kind": "disagreement", "prompt": ""})

    @Slot()
    def cancel(self) -> None:
        """End the child now (the models load again on the next question)."""
        if self._prompts:
            self._prompts.clear()
            self.shutdown(timeout_ms=0)
            self.sig_failed.emit("cancelled (the models load again on the next question)")

    def busy(self) -> bool:
        return bool(self._prompts)

    # ---- Internals
    def _child_ended(self, code: int) -> None:
        if self._prompts:
            self._prompts.clear()
            self.sig_failed.emit(f"the models' process ended unexpectedly ({self._end_reason(code)})")

    def _answer(self, answer: dict) -> None:
        request_id, kind = answer["id"], answer["kind"]
        if request_id not in self._prompts:
            return  # an answer to a cancelled question
        if kind == "status":
            self.sig_status.emit(str(answer.get("text", "")))
        elif kind == "answered":
            self.sig_answered.emit(self._prompts.pop(request_id), answer.get("teacher"), answer.get("student"))
        elif kind == "disagreement":
            from distill_gui.core.token_disagreement import TokenScore

            self._prompts.pop(request_id, None)
            answers = [[TokenScore(**{**t, "teacher_top": tuple(map(tuple, t["teacher_top"])),
                                      "student_top": tuple(map(tuple, t["student_top"]))}) for t in a] for a in answer["answers"]]
            self.sig_disagreement.emit(answers, [tuple(h) for h in answer["hardest"]])
        elif kind == "failed":
            self._prompts.pop(request_id, None)
            self.sig_failed.emit(str(answer.get("message", "")))
