"""Model-provided text shown as text: Qt guesses rich text in labels and tooltips, so ``<s>`` would strike
the rest through and ``<|im_start|>`` would vanish."""

from __future__ import annotations

import html

TOOLTIP_CHARS = 4000


def plain_tooltip(text: str) -> str:
    """A tooltip that shows ``text`` exactly (escaped, line breaks and spaces kept); "" for no text."""
    return "<p style='white-space:pre-wrap'>" + html.escape(text[:TOOLTIP_CHARS]) + "</p>" if text else ""
