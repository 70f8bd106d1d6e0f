"""The arena's contestants: models loaded once (as ``distill-gui compare`` resolves them) that answer prompts.

A prompt is an :class:`~distill_gui.core.data.Example` (drawn from a data file, or typed and wrapped in
the data's prompt format), rendered for each model with its own tokenizer, so models with different
tokenizers meet on the same question. A served model (``http://host:port/v1#MODEL``, an OpenAI-compatible
server) answers through its chat API, the server applying its own chat template. The GUI calls this from a
background worker.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

MAX_LOADED = 4
"""Models kept loaded; the least recently used is freed first."""


class ArenaPlayers:
    """Loads models on first use and keeps the last few loaded."""

    def __init__(self, device: str = "auto", chat_template: str = "auto"):
        self.device = device
        self.chat_template = chat_template
        self._loaded: OrderedDict[Any, Any] = OrderedDict()

    def _model(self, spec: str, api_key_env: str = ""):
        from distill_gui.core.served_teacher_config import is_served_spec, served_api, served_model_for_spec

        served = is_served_spec(spec)
        key = (spec, api_key_env) if served else spec  # a served model is asked again with another key variable
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        from distill_gui.core.compare import CompareSettings, load_ref
        from distill_gui.core.model_refs import resolve

        if served:  # a served model (URL#MODEL): nothing is loaded here
            loaded = served_model_for_spec(
                spec, api=served_api(self.chat_template), api_key_env=api_key_env, key_setting="the API key variable (Compare page)"
            )
        else:
            loaded = load_ref(resolve(spec), CompareSettings(device=self.device, chat_template=self.chat_template))
        self._loaded[key] = loaded
        while len(self._loaded) > MAX_LOADED:
            self._loaded.popitem(last=False)
        return loaded

    def answer(self, spec: str, example, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0, api_key_env: str = "") -> str:
        """The model's answer to ``example`` (greedy when ``temperature`` is 0); a served model's API key is read from the
        environment variable ``api_key_env`` (empty: no key)."""
        from distill_gui.core.data import render_prompt
        from distill_gui.core.generation import GenerationSettings, generate
        from distill_gui.core.served_teacher import ServedTeacher

        loaded = self._model(spec, api_key_env)
        if isinstance(loaded, ServedTeacher):  # through its chat API the server applies its own chat template
            from distill_gui.core.served_teacher_config import served_prompt

            text = served_prompt(example, self.chat_template)
            return loaded.complete(text, max_tokens=max_new_tokens, temperature=temperature, seed=seed).text
        prompt = render_prompt(example, loaded.tokenizer, self.chat_template)
        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, batch_size=1)
        return generate(loaded.model, loaded.tokenizer, [prompt], settings, seed=seed)[0][0]


def typed_example(text: str, data_format: str = "prompt_completion"):
    """A typed prompt as an example of ``data_format`` (``question_answer`` gets ``Question: … Answer:``)."""
    from distill_gui.core.data import Example

    fmt = data_format if data_format in ("question_answer", "alpaca") else "prompt_completion"
    return Example(prompt=text, completion="", format=fmt, source="typed")
