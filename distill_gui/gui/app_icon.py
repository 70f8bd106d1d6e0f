"""The app icon as a :class:`QIcon`, from the PNG renders shipped in the package (every size, crisp)."""

from __future__ import annotations

from PySide6.QtGui import QIcon

from distill_gui.resources import ICON_SIZES, icon_png


def app_icon() -> QIcon:
    """The window and taskbar icon; Qt picks the render closest to each size it draws."""
    icon = QIcon()
    for size in ICON_SIZES:
        icon.addFile(str(icon_png(size)))
    return icon
