"""Ask a teacher and a student the same prompts and get their answers side by side.

Used by ``distill-gui generate`` and by the app's prompt box (from a background worker).
Models load lazily on first use and stay loaded for later questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill_gui.core.config import ModelConfig


@dataclass(frozen=True)
class Answer:
    """One prompt with each model's answer (None for a model that was not given)."""

    prompt: str
    teacher: str | None
    student: str | None


class SideBySide:
    """A teacher/student pair answering prompts; either side may be omitted."""

    def __init__(self, teacher: str | None = None, student: str | None = None, device: str = "auto", chat_template: str = "auto"):
        self.paths = {"teacher": teacher, "student": student}
        self.device = device
        self.chat_template = chat_template
        self._loaded: dict[str, object] = {}

    @property
    def teacher_name(self) -> str:
        return Path(self.paths["teacher"] or "").name or "-"

    @property
    def student_name(self) -> str:
        return Path(self.paths["student"] or "").name or "-"

    def _model(self, role: str):
        if role not in self._loaded:
            from distill_gui.core.models import load_model
            from distill_gui.core.runs import model_path_for

            path = self.paths[role]
            if Path(path).exists():
                path = str(model_path_for(path))
            self._loaded[role] = load_model(ModelConfig(path=path, device=self.device), role)
        return self._loaded[role]

    def answer(self, prompts: list[str], max_new_tokens: int = 128, temperature: float = 0.0) -> list[Answer]:
        """Each prompt (plain text; the chat template is applied when the tokenizer has one) answered by both."""
        from distill_gui.core.data import Example, render_prompt
        from distill_gui.core.generation import GenerationSettings, generate

        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)
        answers: dict[str, list[str | None]] = {}
        for role, path in self.paths.items():
            if not path:
                answers[role] = [None] * len(prompts)
                continue
            loaded = self._model(role)
            rendered = [render_prompt(Example(prompt=p, completion=""), loaded.tokenizer, self.chat_template) for p in prompts]
            answers[role] = [a[0] for a in generate(loaded.model, loaded.tokenizer, rendered, settings)]
        return [Answer(prompt=p, teacher=t, student=s) for p, t, s in zip(prompts, answers["teacher"], answers["student"])]
