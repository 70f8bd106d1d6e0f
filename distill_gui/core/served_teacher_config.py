"""Which teacher a config names: a local model (``teacher.path``) or one served over HTTP (``teacher.url``).

``teacher.url`` set means the teacher is served: a run does not load ``teacher.path`` into its process
then; the server writes the probe answers, and KD fills its teacher cache from the server's
``top_logprobs``. :func:`served_teacher_for` builds the client a config asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.served_teacher import ServedTeacher


def is_served(model: "ModelConfig") -> bool:
    """The config names a served teacher (``url`` is set)."""
    return bool((model.url or "").strip())


def served_teacher_for(model: "ModelConfig", api: str = "completions", **options: Any) -> "ServedTeacher":
    """The client for the server ``model.url`` (its ``model`` name and API key variable); ``options`` go to
    :class:`~distill_gui.core.served_teacher.ServedTeacher` (concurrency, timeout, ...).

    The completions API is the default: the prompt is sent as it is, rendered exactly as a local teacher
    would see it, so a served teacher and the same model loaded locally answer the same text.
    """
    from distill_gui.core.served_teacher import ServedTeacher

    return ServedTeacher(model.url.strip(), model=model.model, api_key_env=model.api_key_env, api=api, **options)


def describe(model: "ModelConfig") -> str:
    """``tiny at http://host/v1`` (or the server alone when no model is named), for messages and logs."""
    return f"{model.model or '(its first model)'} at {model.url.strip()}"


# ---- A served model named on its own (compare, the arena): ``URL#MODEL``


def is_served_spec(spec: str) -> bool:
    """``spec`` names a served model: ``http(s)://host:port/v1`` with ``#MODEL`` (the server's model name) or without
    (its first model), as compare and the arena take it besides folders, .gguf files and hub ids."""
    return str(spec).strip().startswith(("http://", "https://"))


def split_served_spec(spec: str) -> tuple[str, str]:
    """(url, model) of a served model's spec (model '' when none is named)."""
    url, _, model = str(spec).strip().partition("#")
    return url.strip(), model.strip()


def served_spec_label(spec: str) -> str:
    """A short name for tables and votes: ``MODEL@host:port`` (``host:port`` when no model is named)."""
    from urllib.parse import urlsplit

    url, model = split_served_spec(spec)
    host = urlsplit(url).netloc or url
    return f"{model}@{host}" if model else host


def served_model_for_spec(
    spec: str,
    api: str = "chat",
    api_key_env: str = "",
    key_setting: str = "--api-key-env (in the app: Compare, API key variable)",
    **options: Any,
) -> "ServedTeacher":
    """The client for a served model's spec; its model resolved (the server answers and has it).

    ``api_key_env`` names the environment variable holding the server's API key (empty: no key);
    ``key_setting`` is where the user gave it, for messages."""
    from distill_gui.core.served_teacher import ServedTeacher

    url, model = split_served_spec(spec)
    served = ServedTeacher(url, model=model, api=api, api_key_env=api_key_env, key_setting=key_setting, **options)
    served.resolve_model()
    return served


def served_api(chat_template: str = "auto") -> str:
    """The API a served model answers a data row through: ``chat`` (the server applies its own chat template, as a
    local model's template is applied with ``chat_template`` auto or always) or ``completions`` (``never``: plain text)."""
    return "completions" if chat_template == "never" else "chat"


def served_prompt(example: Any, chat_template: str = "auto") -> str:
    """What a served model is sent for a data row (an :class:`~distill_gui.core.data.Example`).

    Through the chat API the user's turn, as a local model's chat template gets it (the prompt and alpaca's
    input; a chat row's only user turn, or for several turns their plain transcript); through the completions
    API the plain prompt template (``Question: ...\\nAnswer: ``, alpaca's sections).
    """
    from distill_gui.core.data import render_prompt

    if served_api(chat_template) == "completions":
        return render_prompt(example, None, "never")
    if example.messages is not None:
        turns = [m for m in example.messages if m.get("role") != "system"]
        if len(turns) == 1 and turns[0].get("role") == "user":
            return str(turns[0].get("content", ""))
        return str(example.prompt)
    return example.prompt + (f"\n\n{example.input}" if example.input.strip() else "")
