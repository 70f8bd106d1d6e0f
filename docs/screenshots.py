"""Take the README's screenshots of every page with the built-in demo pair.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots.py

Opens the app on the demo pair (distill_gui/assets/demo), trains for a little while, asks both models a
question, and saves docs/screenshots/<page>.png (palette-reduced to stay small).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

OUT = REPO / "docs" / "screenshots"
SIZE = (1280, 800)


def main() -> int:
    app = QApplication([sys.argv[0]])
    from distill_gui.gui.app import _parse, create_window, demo_config
    from distill_gui.gui.settings import Settings

    if demo_config() is None:
        print("the demo pair is not in distill_gui/assets/demo", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="screenshots-"))
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = create_window(_parse(["--demo", "--runs-dir", str(work / "runs")]), settings=settings)
    config = window.current_config()
    config.training.sample_steps = 10
    config.training.save_steps = 20  # a checkpoint to ask "the trained student of the run"
    window.set_config(config)
    window.resize(*SIZE)
    window.show()

    def wait(condition, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            app.processEvents()
            if condition():
                return True
            time.sleep(0.02)
        return False

    models = window.models_page
    wait(lambda: "Total" in models.memory.text() and "✔" in models.compatibility.text(), 240)
    wait(lambda: window.data_page.preview.rowCount() > 0, 60)
    window.start_run()
    wait(lambda: window.controller.step >= 40 and window.generations_page.step_combo.count() >= 3, 600)
    page = window.generations_page
    page.prompt.setPlainText("Mia has 12 pencils. She buys 7 more. How many pencils does Mia have now?")
    page.max_new_tokens.setValue(48)
    page.student_choice.setCurrentIndex(page.student_choice.findData("run"))
    page.on_ask_clicked()
    wait(lambda: page.ask_button.isEnabled(), 180)

    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("Models", "Data", "Method", "Train", "Generations"):
        window.show_page(name)
        wait(lambda: False, 0.6)  # let the live plots take a few more points
        save(window, OUT / f"{name.lower()}.png")
    window.close_choice = window.CLOSE_STOP
    window.controller.stop()
    wait(lambda: not window.controller.is_active(), 120)
    window.show_page("Runs")
    window.runs_page.refresh()
    window.runs_page.table.selectRow(0)
    wait(lambda: False, 0.3)
    save(window, OUT / "runs.png")
    window.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


def save(window, path: Path) -> None:
    window.grab().save(str(path))
    if shutil.which("convert"):
        subprocess.run(["convert", str(path), "-colors", "256", "-strip", f"PNG8:{path}"], check=False)
    print(f"{path.relative_to(REPO)}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    raise SystemExit(main())
