"""Render the app icon's SVG source into the PNG, ICO and ICNS files the window and the installers use.

    python packaging/render_icon.py        # rewrites the committed renders

The SVG (``distill_gui/assets/icon/distill-gui.svg``) is the source; the PNGs ship inside the package
(the window's icon, the Linux desktop entry), the ICO goes into the Windows installer and the ICNS into
the macOS app bundle. Qt's SVG renderer draws, Pillow writes the ICO and ICNS containers.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill_gui.resources import ICON_SIZES, icon_png, icon_svg  # noqa: E402

ICO = REPO / "packaging" / "icon" / "distill-gui.ico"
ICNS = REPO / "packaging" / "icon" / "distill-gui.icns"
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
"""Windows picks from these for the taskbar, Start menu, shortcuts and Explorer."""


def render_png(svg: Path, size: int) -> bytes:
    """The SVG drawn into a transparent square of ``size`` pixels, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _ = QGuiApplication.instance() or QGuiApplication(["render_icon"])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG file")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image

    renders = {size: render_png(icon_svg(), size) for size in sorted(set(ICON_SIZES) | set(ICO_SIZES))}
    for size in ICON_SIZES:
        icon_png(size).write_bytes(renders[size])
    largest = Image.open(io.BytesIO(renders[max(renders)]))
    ICO.parent.mkdir(parents=True, exist_ok=True)
    # Pillow resamples the largest image for each ICO size; hand it the exact renders instead.
    frames = [Image.open(io.BytesIO(renders[s])) for s in ICO_SIZES]
    frames[-1].save(ICO, format="ICO", sizes=[(s, s) for s in ICO_SIZES], append_images=frames[:-1])
    largest.save(ICNS, format="ICNS", append_images=[Image.open(io.BytesIO(renders[s])) for s in (16, 32, 64, 128, 256)])
    for path in [icon_png(s) for s in ICON_SIZES] + [ICO, ICNS]:
        print(f"{path.relative_to(REPO)}  {path.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
