"""How a run ends: its outcome, and the errors that end it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill_gui.core.errors import UserError
from distill_gui.core.runs import RunDir


class Diverged(RuntimeError):
    """The loss or the gradients stopped being finite (``step``: the optimizer step it happened in)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


class TrainingError(UserError):
    """A run could not start or continue; the message says why and what to do."""


@dataclass
class RunOutcome:
    """How a run ended: ``state`` is finished, stopped, diverged or failed."""

    run: RunDir
    state: str
    step: int
    final_path: Path | None = None
    reason: str = ""


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
