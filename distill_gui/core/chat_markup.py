"""The user's own words inside a prompt rendered with a chat template (for display: the template's
markup is shown on demand, not in every cell)."""

from __future__ import annotations

import re

# The last user turn of the common template families: (start of the user turn, end of the turn).
_USER_TURNS = (
    (r"<\|im_start\|>user\s*\n", r"<\|im_end\|>"),  # ChatML (Qwen, SmolLM, ...)
    (r"<\|start_header_id\|>user<\|end_header_id\|>\s*", r"<\|eot_id\|>"),  # Llama 3
    (r"<start_of_turn>user\s*\n", r"<end_of_turn>"),  # Gemma
    (r"<\|user\|>\s*", r"<\|end\|>|</s>|<\|assistant\|>"),  # Phi, Zephyr
    (r"\[INST\]\s*", r"\[/INST\]"),  # Llama 2, Mistral
)
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?s>|<pad>|<unk>|<bos>|<eos>")


def user_text(rendered: str) -> str:
    """The text of the last user turn of ``rendered``; the text without special tokens when no known
    template is found; ``rendered`` itself when that leaves nothing."""
    for start, end in _USER_TURNS:
        starts = list(re.finditer(start, rendered))
        if starts:
            rest = rendered[starts[-1].end() :]
            stop = re.search(end, rest)
            text = (rest[: stop.start()] if stop else rest).strip()
            if text:
                return text
    stripped = _SPECIAL.sub("", rendered).strip()
    return stripped or rendered


def has_markup(rendered: str) -> bool:
    """Whether ``rendered`` carries chat-template markup that :func:`user_text` hides."""
    return user_text(rendered) != rendered.strip()
