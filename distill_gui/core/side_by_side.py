"""Ask a teacher and a student the same prompts and get their answers side by side.

Used by ``distill-gui generate`` and by the app's "Ask both models" box (from a background worker).
Models load lazily on first use and stay loaded for later questions; a run folder means its final
model (or latest checkpoint), loaded again when a newer checkpoint appears. Prompts are rendered the
way training data is (its format's template, or the chat template), so a model trained on
``Question: ...\\nAnswer:`` rows is asked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from distill_gui.core.config import ModelConfig

ROLES = ("teacher", "student")


@dataclass(frozen=True)
class Answer:
    """One prompt with each model's answer (None for a model that was not given)."""

    prompt: str
    teacher: str | None
    student: str | None


@dataclass(frozen=True)
class PromptStyle:
    """How a plain question is turned into the text a model completes."""

    chat_template: str = "auto"
    system_prompt: str | None = None
    data_format: str = "prompt_completion"


class SideBySide:
    """A teacher/student pair answering prompts; either side may be omitted, and either may change."""

    def __init__(
        self,
        teacher: str | None = None,
        student: str | None = None,
        device: str = "auto",
        chat_template: str = "auto",
        status: Callable[[str], None] | None = None,
    ):
        self.paths: dict[str, str | None] = {"teacher": teacher, "student": student}
        self.device = device
        self.style = PromptStyle(chat_template=chat_template)
        self.status = status or (lambda text: None)
        self._loaded: dict[str, tuple[tuple, Any]] = {}

    @property
    def teacher_name(self) -> str:
        return Path(self.paths["teacher"] or "").name or "-"

    @property
    def student_name(self) -> str:
        return Path(self.paths["student"] or "").name or "-"

    def model(self, role: str) -> Any:
        """The loaded model of a role (loaded on first use; again when its path or checkpoint changed)."""
        from distill_gui.core.models import load_model
        from distill_gui.core.runs import model_path_for

        path = self.paths[role]
        if not path:
            raise ValueError(f"no {role} is set")
        stamp = 0.0
        if Path(path).exists():
            path = str(model_path_for(path))
            stamp = Path(path).stat().st_mtime  # a newer checkpoint of the same run is loaded again
        key = (path, self.device, stamp)
        cached = self._loaded.get(role)
        if cached is None or cached[0] != key:
            self._loaded.pop(role, None)
            self.status(f"loading the {role} ({Path(path).name})…")
            self._loaded[role] = (key, load_model(ModelConfig(path=path, device=self.device), role))
        return self._loaded[role][1]

    def answer_as(
        self, role: str, prompts: list[str], max_new_tokens: int = 128, temperature: float = 0.0, style: PromptStyle | None = None
    ) -> list[str | None]:
        """One role's answers (None each when that role has no model)."""
        if not self.paths[role]:
            return [None] * len(prompts)
        from distill_gui.core.data import Example, render_prompt
        from distill_gui.core.generation import GenerationSettings, generate

        style = style or self.style
        loaded = self.model(role)
        rendered = [
            render_prompt(
                Example(prompt=p, completion="", format=style.data_format), loaded.tokenizer, style.chat_template, style.system_prompt
            )
            for p in prompts
        ]
        self.status(f"the {role} is writing…")
        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)
        return [a[0] for a in generate(loaded.model, loaded.tokenizer, rendered, settings)]

    def answer(
        self, prompts: list[str], max_new_tokens: int = 128, temperature: float = 0.0, style: PromptStyle | None = None
    ) -> list[Answer]:
        """Each prompt answered by both (plain text; rendered as the training data would be)."""
        answers = {role: self.answer_as(role, prompts, max_new_tokens, temperature, style) for role in ROLES}
        return [Answer(prompt=p, teacher=t, student=s) for p, t, s in zip(prompts, answers["teacher"], answers["student"])]
