"""Rendering a tokenizer's chat template within a time and size limit.

A chat template is a Jinja program shipped with the model. transformers runs it in Jinja's sandbox,
which keeps it from touching the machine but not from looping: nested ``range`` loops can run for
hours, and ``train``, ``eval`` and ``generate`` would hang. Here the template's own lines run under a
trace function that stops it past :data:`TIME_LIMIT_S`, and output beyond :func:`size_limit` is
refused; either way the model is reported as having a broken chat template.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from distill_gui.core.models import ModelError

TIME_LIMIT_S = 5.0
"""A chat template renders one conversation in well under a millisecond; five seconds is broken."""
TEMPLATE_FILENAME = "<template>"
"""The file name Jinja gives the Python code it compiles templates to."""
PROBE = [{"role": "user", "content": "Hello"}]


class BrokenChatTemplate(ModelError):
    """The tokenizer's chat template runs too long or writes too much; the message names the tokenizer."""


class _TimeUp(Exception):
    pass


def size_limit(messages: list[dict]) -> int:
    """The longest rendering allowed: four times the conversation's text plus 64 KiB of markup."""
    text = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return 4 * text + 64 * 1024


def _tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def render_chat_template(tokenizer: Any, messages: list[dict], *, time_limit_s: float | None = None, **kwargs: Any) -> str:
    """``tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)``, stopped past ``time_limit_s``.

    Raises :class:`BrokenChatTemplate` when the template runs longer, recurses without end or renders
    more than :func:`size_limit` characters (``time_limit_s`` defaults to :data:`TIME_LIMIT_S`). Other
    template errors propagate unchanged.
    """
    time_limit_s = TIME_LIMIT_S if time_limit_s is None else time_limit_s
    deadline = time.monotonic() + time_limit_s

    def line_tracer(frame, event, arg):
        if time.monotonic() > deadline:
            raise _TimeUp
        return line_tracer

    def call_tracer(frame, event, arg):
        if frame.f_code.co_filename == TEMPLATE_FILENAME:
            if time.monotonic() > deadline:
                raise _TimeUp
            return line_tracer
        return None

    previous = sys.gettrace()
    sys.settrace(call_tracer)
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except _TimeUp:
        raise BrokenChatTemplate(
            f"{_tokenizer_name(tokenizer)}: the chat template is broken: it ran for more than {time_limit_s:g} s "
            "on one conversation (it loops); fix the template in tokenizer_config.json or set data.chat_template: never"
        ) from None
    except RecursionError:
        raise BrokenChatTemplate(
            f"{_tokenizer_name(tokenizer)}: the chat template is broken: it calls itself without end; fix the "
            "template in tokenizer_config.json or set data.chat_template: never"
        ) from None
    finally:
        sys.settrace(previous)
    if isinstance(rendered, str) and len(rendered) > size_limit(messages):
        raise BrokenChatTemplate(
            f"{_tokenizer_name(tokenizer)}: the chat template is broken: it wrote {len(rendered):,} characters for "
            f"a conversation of {sum(len(str(m.get('content', ''))) for m in messages):,}; fix the template in "
            "tokenizer_config.json or set data.chat_template: never"
        )
    return rendered


def check_chat_template(tokenizer: Any, time_limit_s: float | None = None) -> None:
    """Render a one-line conversation once; raises :class:`BrokenChatTemplate` for a template that loops or
    floods. A template that refuses the probe conversation with its own error is not judged here."""
    if not getattr(tokenizer, "chat_template", None):
        return
    try:
        render_chat_template(tokenizer, PROBE, time_limit_s=time_limit_s, add_generation_prompt=True)
    except BrokenChatTemplate:
        raise
    except Exception:  # noqa: BLE001 - the template's own refusals (raise_exception) are for real conversations to meet
        return
