"""The files that ship inside the package: the demo pair and the app icon.

This module is the one place that knows where they are. They live in ``distill_gui/assets/`` and are
found with :mod:`importlib.resources`, so a checkout, an editable install and a wheel installed into
any environment all answer the same way. Code elsewhere asks here; nothing walks up from ``__file__``.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

DEMO_DIR_ENV = "DISTILL_GUI_DEMO_DIR"
"""Set to a folder holding ``teacher/``, ``train.jsonl`` and ``test.jsonl`` to use other demo files."""

ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)
"""The square PNG renders of the icon shipped next to its SVG source (``icon/distill-gui-<N>.png``)."""


def assets_dir() -> Path:
    """The package's ``assets`` folder, as a real folder on disk (models are loaded from paths)."""
    resource = files("distill_gui").joinpath("assets")
    if not isinstance(resource, Path):
        raise RuntimeError(
            f"distill-gui is installed as a zip archive ({resource}); install it as a folder "
            "(pip install, not a zipapp) so its demo files can be read from disk"
        )
    return resource


def demo_dir() -> Path:
    """The demo files (``teacher/``, ``train.jsonl``, ``test.jsonl``); ``DISTILL_GUI_DEMO_DIR`` overrides."""
    override = os.environ.get(DEMO_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return assets_dir() / "demo"


def icon_svg() -> Path:
    """The app icon's SVG source."""
    return assets_dir() / "icon" / "distill-gui.svg"


def icon_png(size: int = 256) -> Path:
    """A square PNG render of the app icon; ``size`` is one of :data:`ICON_SIZES`."""
    if size not in ICON_SIZES:
        raise ValueError(f"icon size {size}: the shipped renders are {', '.join(map(str, ICON_SIZES))} pixels")
    return assets_dir() / "icon" / f"distill-gui-{size}.png"
