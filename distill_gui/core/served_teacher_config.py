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
