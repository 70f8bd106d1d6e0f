"""An Ollama import: the GGUF file, a ``Modelfile`` with the chat template and stop tokens, and the one command.

Ollama's templates are Go templates, not the tokenizer's Jinja. :func:`chat_turns` renders the Jinja
template on marker messages and reads off what it writes around each role's message and for the
generation prompt; :func:`go_template` writes the same thing as a Go template. The result is checked by
rendering a whole conversation both ways (:func:`render_go_like`); a template that does not follow a
per-message shape (one that moves the system prompt into the first user turn, say) gets no TEMPLATE line,
and Ollama falls back to the chat template stored in the GGUF file. The stop tokens are the end of an
assistant turn, the start of a user turn and the EOS token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MARK = {"system": "\x02SYSTEM\x03", "user": "\x02USER\x03", "assistant": "\x02ASSISTANT\x03"}
_SECOND_USER = "\x02USER2\x03"


@dataclass(frozen=True)
class ChatTurns:
    """What a chat template writes around each role's message, and before the model's answer."""

    head: str
    """Written once before the first message (often the BOS token)."""
    around: dict[str, tuple[str, str]]
    """role -> (text before the message, text after it)."""
    generation: str
    """Written after the last message to start the model's answer."""


def _render(tokenizer: Any, messages: list[dict], add_generation_prompt: bool = False) -> str:
    from distill_gui.core.chat_templates import render_chat_template

    return render_chat_template(tokenizer, messages, add_generation_prompt=add_generation_prompt)


def _split(text: str, marker: str) -> tuple[str, str]:
    at = text.index(marker)
    return text[:at], text[at + len(marker) :]


def chat_turns(tokenizer: Any) -> ChatTurns | None:
    """Read a tokenizer's chat template off its renderings; None when it has none or it is not per-message."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    user, assistant = {"role": "user", "content": _MARK["user"]}, {"role": "assistant", "content": _MARK["assistant"]}
    try:
        one = _render(tokenizer, [user])
        two = _render(tokenizer, [user, assistant])
        three = _render(tokenizer, [user, assistant, {"role": "user", "content": _SECOND_USER}])
        generation = _render(tokenizer, [user], add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - a template that refuses these shapes is not per-message
        return None
    if not (two.startswith(one) and three.startswith(two) and generation.startswith(one) and _SECOND_USER in three):
        return None
    user_before, user_after = _split(three[len(two) :], _SECOND_USER)
    head_and_user, rest = _split(one, _MARK["user"])
    if not head_and_user.endswith(user_before) or rest != user_after:
        return None
    head = head_and_user[: len(head_and_user) - len(user_before)]
    assistant_before, assistant_after = _split(two[len(one) :], _MARK["assistant"])
    around = {"user": (user_before, user_after), "assistant": (assistant_before, assistant_after)}
    try:
        with_system = _render(tokenizer, [{"role": "system", "content": _MARK["system"]}, user])
    except Exception:  # noqa: BLE001 - a template without a system role
        with_system = ""
    if with_system.startswith(head) and with_system.endswith(one[len(head) :]) and _MARK["system"] in with_system:
        system_block = with_system[len(head) : len(with_system) - len(one) + len(head)]
        if _MARK["system"] in system_block:
            around["system"] = _split(system_block, _MARK["system"])
    return ChatTurns(head=head, around=around, generation=generation[len(one) :])


def go_template(turns: ChatTurns, bos_token: str | None) -> str:
    """The Ollama (Go) template writing what ``turns`` describes; a leading BOS is left to the runtime."""
    head = turns.head[len(bos_token) :] if bos_token and turns.head.startswith(bos_token) else turns.head
    branches: list[str] = []
    for role in ("system", "user", "assistant"):
        if role in turns.around:
            before, after = turns.around[role]
            branches.append(f'{"if" if not branches else "else if"} eq .Role "{role}" }}}}{before}{{{{ .Content }}}}{after}')
    body = "{{ ".join(branches)  # no "{{-": it would trim the template's own whitespace around messages
    return f"{head}{{{{ range .Messages }}}}{{{{ {body}{{{{ end }}}}{{{{ end }}}}{turns.generation}"


def render_go_like(turns: ChatTurns, bos_token: str | None, messages: list[dict]) -> str:
    """What :func:`go_template`'s template renders for ``messages`` plus the generation prompt (Python, for checking)."""
    head = turns.head[len(bos_token) :] if bos_token and turns.head.startswith(bos_token) else turns.head
    parts = [head]
    for m in messages:
        before, after = turns.around[m["role"]]
        parts.append(before + m["content"] + after)
    return "".join(parts) + turns.generation


def template_is_faithful(tokenizer: Any, turns: ChatTurns) -> bool:
    """The Go template renders a system + two-turn conversation exactly as the Jinja template does."""
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}]
    if "system" in turns.around:
        messages.insert(0, {"role": "system", "content": "You are terse."})
    try:
        jinja = _render(tokenizer, messages, add_generation_prompt=True)
    except Exception:  # noqa: BLE001
        return False
    bos = tokenizer.bos_token
    expected = jinja[len(bos) :] if bos and turns.head.startswith(bos) and jinja.startswith(bos) else jinja
    return render_go_like(turns, bos, messages) == expected


def stop_strings(tokenizer: Any, turns: ChatTurns | None) -> list[str]:
    """Where an answer ends: the end of an assistant turn, the start of a user turn, the EOS token."""
    stops: list[str] = []
    if turns is not None:
        for text in (turns.around["assistant"][1], turns.around["user"][0]):
            if text.strip():
                stops.append(text.strip())
    if tokenizer.eos_token:
        stops.append(tokenizer.eos_token)
    return list(dict.fromkeys(stops))


def ollama_name(name: str) -> str:
    """A model name Ollama accepts: lower case letters, digits, ``.``, ``-`` and ``_``."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return slug or "distilled-student"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def modelfile_text(gguf_name: str, tokenizer: Any, system_prompt: str | None = None, licence: str | None = None) -> tuple[str, list[str]]:
    """The Modelfile's text and the notes for the person (why a TEMPLATE line is missing, say)."""
    notes: list[str] = []
    turns = chat_turns(tokenizer)
    lines = ["# Ollama Modelfile written by distill-gui. Import: ollama create NAME -f Modelfile", f"FROM ./{gguf_name}"]
    if turns is not None and template_is_faithful(tokenizer, turns):
        template = go_template(turns, tokenizer.bos_token)
        if '"""' in template:
            notes.append('the chat template contains """ and cannot be written into a Modelfile; Ollama uses the one in the GGUF file')
        else:
            lines.append(f'TEMPLATE """{template}"""')
    elif getattr(tokenizer, "chat_template", None):
        notes.append(
            "the chat template does not write each message in its own block; no TEMPLATE line was written, "
            "so Ollama uses the chat template stored in the GGUF file"
        )
    else:
        notes.append("the model has no chat template; Ollama will send prompts as plain text")
    if system_prompt and '"""' not in system_prompt:
        lines.append(f'SYSTEM """{system_prompt}"""')
    for stop in stop_strings(tokenizer, turns):
        lines.append(f"PARAMETER stop {_quoted(stop)}")
    if licence and '"""' not in licence:
        lines.append(f'LICENSE """{licence}"""')
    return "\n".join(lines) + "\n", notes


def import_command(folder: Path, name: str) -> str:
    """The one command that imports the export into Ollama."""
    return f"cd {_shell_quote(str(folder))} && ollama create {ollama_name(name)} -f Modelfile"


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
