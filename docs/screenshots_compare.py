"""Take the README's screenshots of the Compare and Arena pages with the demo teacher and its students.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots_compare.py [--demo-folder DIR]

``--demo-folder`` is a folder written by ``distill-gui demo`` (its ``runs/`` are the students); without
it a ``distill-gui demo --quick`` runs first (about two minutes). The app compares the teacher with the
trace-SFT student of each size on the demo's test problems, then plays a few arena rounds (votes go to
a temporary file), and saves docs/screenshots/compare.png, compare_questions.png and arena.png.
"""

from __future__ import annotations

import argparse
import os
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-folder", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="screenshots-compare-"))
    os.environ["DISTILL_GUI_ARENA_DB"] = str(work / "arena.sqlite3")
    demo = args.demo_folder
    if demo is None:
        subprocess.run([sys.executable, "-m", "distill_gui", "demo", "--quick", "--no-progress", "--runs-dir", str(work / "demo")],
                       check=True, cwd=REPO)
        demo = next((work / "demo").iterdir())
    # One trace-SFT student per size (the first seed's, when the demo ran several).
    students = sorted(p for p in (demo / "runs").iterdir() if p.name.endswith(("-trace_sft", "-trace_sft-seed0")))

    app = QApplication([sys.argv[0]])
    from distill_gui.gui.main_window import MainWindow
    from distill_gui.gui.settings import Settings
    from distill_gui.resources import demo_dir

    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings=settings, runs_root=work / "runs")
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

    page = window.compare_page
    page.add_models([str(demo_dir() / "teacher"), *map(str, students)])
    page.set_data(str(demo_dir() / "test.jsonl"))
    page.limit.setValue(args.rows)
    page.max_new_tokens.setValue(56)
    window.show_page("Compare")
    page.start()
    wait(lambda: page.state == "idle", 900)
    print(page.state_label.text())
    OUT.mkdir(parents=True, exist_ok=True)
    wait(lambda: False, 0.5)
    save(window, OUT / "compare.png")
    page.tabs.setCurrentIndex(1)
    page.filter.setCurrentIndex(page.filter.findData("ref_right_model_wrong"))
    wait(lambda: False, 0.5)
    save(window, OUT / "compare_questions.png")

    arena = window.arena_page
    window.show_page("Arena")
    arena.max_new_tokens.setValue(56)
    for round_ in range(4):
        arena.draw_prompt()
        wait(lambda: arena.prompt_edit.toPlainText().strip() != "" and arena.state_label.text().startswith("Drawn"), 60)
        arena.ask()
        wait(lambda: any(b.isEnabled() for b in arena.vote_buttons.values()), 300)
        if round_ < 3:
            a, b = arena.current_pair()
            outcome = "a" if "teacher" in a else "b" if "teacher" in b else "tie"
            arena.vote(outcome)
    wait(lambda: False, 0.5)
    save(window, OUT / "arena.png")
    window.close_choice = window.CLOSE_STOP
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
