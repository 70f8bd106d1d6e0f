"""The real thing: the app starts `distill-gui train` on a tiny teacher/student pair, and the pages
that read models and data use the core on real files."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLineEdit, QSpinBox

from distill_gui.core.runs import RunDir

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.qt_log_ignore("propagateSizeHints")]

CHILD_TIMEOUT_MS = 120_000  # model loading in the child is slow on a busy CPU


def type_into(widget: QLineEdit, text: str) -> None:
    widget.setText(text)
    widget.textEdited.emit(text)


def pick_pair_and_data(window, tiny_pair, tiny_data) -> None:
    teacher, student = tiny_pair
    window.show_page("Models")
    type_into(window.findChild(QLineEdit, "teacher.path"), str(teacher))
    type_into(window.findChild(QLineEdit, "student.path"), str(student))
    window.show_page("Data")
    type_into(window.findChild(QLineEdit, "data.train"), str(tiny_data))
    window.findChild(QSpinBox, "data.max_length").setValue(64)
    window.show_page("Method")
    window.findChild(QSpinBox, "training.max_steps").setValue(12)
    window.findChild(QSpinBox, "training.batch_size").setValue(4)
    window.findChild(QSpinBox, "training.sample_steps").setValue(3)
    window.findChild(QSpinBox, "training.save_steps").setValue(3)
    window.findChild(QSpinBox, "training.max_new_tokens").setValue(6)
    window.findChild(QSpinBox, "training.num_probe_prompts").setValue(2)
    window.findChild(QLineEdit, "training.learning_rate").setText("0.001")


def test_train_stop_resume_finish_with_the_real_trainer(make_window, qtbot, tiny_pair, tiny_data):
    window = make_window()
    pick_pair_and_data(window, tiny_pair, tiny_data)
    config = window.current_config()
    assert config.teacher.path == str(tiny_pair[0]) and config.training.max_steps == 12
    controller = window.controller

    qtbot.mouseClick(window.train_page.start_button, Qt.MouseButton.LeftButton)
    assert controller.is_active()
    qtbot.waitUntil(lambda: controller.step >= 3, timeout=CHILD_TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.generations_page.row_count() == 2, timeout=30_000)
    qtbot.waitUntil(lambda: window.train_page.plots.point_count("loss") >= 3, timeout=5000)
    assert window.train_page.plots.point_count("kd_loss") >= 3
    assert window.train_page.plots.point_count("learning_rate") >= 3
    table = window.generations_page.table
    assert table.item(0, 1).text() is not None and table.item(0, 2) is not None

    with qtbot.waitSignal(controller.sig_ended, timeout=CHILD_TIMEOUT_MS) as ended:
        qtbot.mouseClick(window.train_page.stop_button, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "stopped", ended.args
    run = RunDir(controller.run_dir)
    assert run.status()["state"] == "stopped"
    assert run.can_resume()

    window.show_page("Runs")
    window.runs_page.refresh()
    assert window.runs_page.select_run(run.path)
    with qtbot.waitSignal(controller.sig_ended, timeout=CHILD_TIMEOUT_MS) as ended:
        qtbot.mouseClick(window.runs_page.resume_button, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "finished", ended.args
    assert run.final_model() is not None
    steps = {r["step"] for r in run.metrics() if r.get("event") == "StepLogged"}
    assert max(steps) == 12

    # Open the finished run from the Runs page: its plots and generations come back from disk.
    window.train_page.clear()
    window.generations_page.clear()
    window.runs_page.refresh()
    assert window.runs_page.select_run(run.path)
    qtbot.mouseClick(window.runs_page.open_button, Qt.MouseButton.LeftButton)
    assert window.train_page.plots.point_count("loss") >= 12
    assert window.generations_page.row_count() == 2
    assert window.generations_page.step_combo.count() >= 4


def test_models_page_describes_the_pair(make_window, qtbot, tiny_pair):
    window = make_window()
    teacher, student = tiny_pair
    type_into(window.findChild(QLineEdit, "teacher.path"), str(teacher))
    type_into(window.findChild(QLineEdit, "student.path"), str(student))
    page = window.models_page
    qtbot.waitUntil(lambda: "identical" in page.compatibility.text().lower(), timeout=60_000)
    qtbot.waitUntil(lambda: "Total" in page.memory.text(), timeout=10_000)
    assert "LlamaForCausalLM" in page.teacher.summary.text()
    assert "parameters" in page.student.summary.text()
    assert str(student) in window.settings.recent_models()
    # A path that is not a model says so in words, and the app goes on.
    type_into(window.findChild(QLineEdit, "student.path"), str(teacher.parent / "nothing-here"))
    qtbot.waitUntil(lambda: "nothing-here" in page.student.summary.text(), timeout=30_000)


def test_data_page_previews_rows_and_reports_bad_ones(make_window, qtbot, tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [json.dumps({"question": f"What is {i} + 1?", "solution": f"{i + 1}"}) for i in range(5)]
    rows.insert(2, "{not json")
    rows.append(json.dumps({"question": "no solution here"}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    window = make_window()
    page = window.data_page
    window.show_page("Data")
    type_into(window.findChild(QLineEdit, "data.train"), str(path))
    # question/solution is not a known layout until the columns are mapped.
    qtbot.waitUntil(lambda: "Cannot use" in page.detected.text(), timeout=20_000)
    window.findChild(QComboBox, "data.format").setCurrentText("question_answer")
    qtbot.waitUntil(lambda: "question_answer" in page.detected.text() or "Cannot use" in page.detected.text(), timeout=20_000)
    columns = page.columns
    row = [columns.item(r, 0).text() for r in range(columns.rowCount())].index("answer")
    columns.item(row, 1).setText("solution")
    assert window.current_config().data.columns == {"answer": "solution"}
    qtbot.waitUntil(lambda: page.preview.rowCount() == 5, timeout=20_000)
    assert "question_answer" in page.detected.text()
    assert page.bad_rows.rowCount() == 2
    reasons = " ".join(page.bad_rows.item(r, 2).text() for r in range(2))
    assert "solution" in reasons or "answer" in reasons
    lines = {page.bad_rows.item(r, 1).text() for r in range(2)}
    assert "line 3" in lines


def test_ask_both_models_in_the_background(make_window, qtbot, tiny_pair):
    window = make_window()
    teacher, student = tiny_pair
    type_into(window.findChild(QLineEdit, "teacher.path"), str(teacher))
    type_into(window.findChild(QLineEdit, "student.path"), str(student))
    page = window.generations_page
    window.show_page("Generations")
    page.prompt.setPlainText("What is 2 plus 3?")
    page.max_new_tokens.setValue(5)
    qtbot.mouseClick(page.ask_button, Qt.MouseButton.LeftButton)
    assert not page.ask_button.isEnabled()  # busy while the worker loads and generates
    qtbot.waitUntil(page.ask_button.isEnabled, timeout=60_000)
    assert page.ask_state.text().startswith("Answers to"), page.ask_state.text()
    assert page.teacher_answer.toPlainText() != "" and page.student_answer.toPlainText() != ""
    assert "(no" not in page.teacher_answer.toPlainText()
