"""Take the README's screenshot of the Export dialog: the demo teacher exported as GGUF q8_0, verified.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots_export.py

The dialog runs the real export child (llama.cpp's converter, then the file loaded back and checked
against the model) into a temporary folder and saves docs/screenshots/export.png when it has finished.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

OUT = REPO / "docs" / "screenshots" / "export.png"


def main() -> int:
    app = QApplication([sys.argv[0]])
    from distill_gui.gui.export_dialog import ExportDialog
    from distill_gui.resources import demo_dir

    work = Path(tempfile.mkdtemp(prefix="screenshots-export-"))
    dialog = ExportDialog(str(demo_dir() / "teacher"))
    dialog.kind.setCurrentIndex(1)  # GGUF
    dialog.quant.setCurrentText("q8_0")
    dialog.out.setText(str(work / "demo-teacher-gguf"))
    dialog.resize(760, 300)
    dialog.show()
    loop = QEventLoop()
    dialog.sig_exported.connect(loop.quit)
    QTimer.singleShot(600_000, loop.quit)
    dialog.export_button.click()
    loop.exec()
    while not dialog.export_button.isEnabled():  # the child has ended and its thread is joined
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 100)
    dialog.resize(760, 300)
    for _ in range(20):  # let the last status lines lay out
        app.processEvents()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    dialog.grab().save(str(OUT))
    print(OUT)
    ok = dialog.result is not None
    dialog.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
