"""Whether the Hugging Face hub may be reached: the one place that reads ``HF_HUB_OFFLINE``."""

from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (by the environment or huggingface_hub's own settings)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False
    return bool(constants.HF_HUB_OFFLINE)
