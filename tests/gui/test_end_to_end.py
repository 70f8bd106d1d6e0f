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
    window.findChild(QSpinBox, "training.max_steps").setValue(20)
    window.findChild(QSpinBox, "training.batch_size").setValue(4)
    window.findChild(QSpinBox, "training.sample_steps").setValue(5)
    window.findChild(QSpinBox, "training.save_steps").setValue(5)
    window.findChild(QSpinBox, "training.max_new_tokens").setValue(6)
    window.findChild(QSpinBox, "training.num_probe_prompts").setValue(2)
    window.findChild(QLineEdit, "training.learning_rate").setText("0.001")


def test_train_stop_resume_finish_with_the_real_trainer(make_window, qtbot, tiny_pair, tiny_data):
    window = make_window()
    pick_pair_and_data(window, tiny_pair, tiny_data)
    config = window.current_config()
    assert config.teacher.path == str(tiny_pair[0]) and config.training.max_steps == 20
    controller = window.controller

    qtbot.mouseClick(window.train_page.start_button, Qt.MouseButton.LeftButton)
    assert controller.is_active()
    qtbot.waitUntil(lambda: controller.step >= 2, timeout=CHILD_TIMEOUT_MS)
    qtbot.mouseClick(window.train_page.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.state == "paused", timeout=30_000)
    assert controller.step < 20
    plots = window.train_page.plots
    series = ("loss", "kd", "ce", "learning_rate", "grad_norm", "tokens_per_s")
    qtbot.waitUntil(lambda: all(plots.point_count(key) >= 2 for key in series), timeout=5000)
    qtbot.waitUntil(lambda: window.generations_page.row_count() == 2, timeout=30_000)  # the step-0 probe
    table = window.generations_page.table
    assert [table.horizontalHeaderItem(c).text() for c in range(3)] == ["Prompt", "Teacher", "Student"]
    assert "Question:" in table.item(0, 0).text()

    # Stop while paused: a checkpoint is saved and the run ends as stopped.
    with qtbot.waitSignal(controller.sig_ended, timeout=CHILD_TIMEOUT_MS) as ended:
        qtbot.mouseClick(window.train_page.stop_button, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "stopped", ended.args
    run = RunDir(controller.run_dir)
    assert run.status()["state"] == "stopped"
    assert run.can_resume()

    window.show_page("Runs")
    window.runs_page.refresh()
    qtbot.waitUntil(lambda: window.runs_page.select_run(run.path) and window.runs_page.resume_button.isEnabled(), timeout=10000)
    with qtbot.waitSignal(controller.sig_ended, timeout=CHILD_TIMEOUT_MS) as ended:
        qtbot.mouseClick(window.runs_page.resume_button, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "finished", ended.args
    assert run.final_model() is not None
    steps = {r["step"] for r in run.metrics() if r.get("event") == "StepLogged"}
    assert max(steps) == 20

    # Open the finished run from the Runs page: its plots and generations come back from disk.
    window.train_page.clear()
    window.generations_page.clear()
    window.runs_page.refresh()
    qtbot.waitUntil(lambda: window.runs_page.select_run(run.path), timeout=10000)
    qtbot.mouseClick(window.runs_page.open_button, Qt.MouseButton.LeftButton)
    assert window.train_page.plots.point_count("loss") >= 20
    assert window.generations_page.row_count() == 2
    assert window.generations_page.step_combo.count() >= 4  # steps 0, 5, 10, 15, 20 (one may repeat after resume)

    # Ask the trained student of the shown run and the teacher the same question.
    page = window.generations_page
    window.show_page("Generations")
    page.student_choice.setCurrentIndex(page.student_choice.findData("run"))
    page.prompt.setPlainText("Question: What is 2 plus 3? Answer:")
    page.max_new_tokens.setValue(4)
    qtbot.mouseClick(page.ask_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(page.ask_button.isEnabled, timeout=60_000)
    assert page.ask_state.text().startswith("Answers to"), page.ask_state.text()


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


def test_teacher_traces_are_generated_verified_and_used(make_window, qtbot, tiny_pair, tiny_data, tmp_path):
    window = make_window()
    teacher, student = tiny_pair
    type_into(window.findChild(QLineEdit, "teacher.path"), str(teacher))
    type_into(window.findChild(QLineEdit, "student.path"), str(student))
    type_into(window.findChild(QLineEdit, "data.train"), str(tiny_data))
    window.show_page("Method")
    panel = window.method_page.traces
    panel.limit.setValue(4)
    panel.max_new_tokens.setValue(6)
    out = tmp_path / "traces.jsonl"
    panel.out_edit.setText(str(out))
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert panel.is_running() and panel.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=CHILD_TIMEOUT_MS)
    # A random tiny teacher rarely gets an answer right; the job still reports what it kept.
    assert "4/4 prompts" in panel.state.text(), panel.state.text()
    assert "verified traces in" in panel.state.text()
    assert out.is_file()
    assert panel.use_button.isEnabled() == bool(out.read_text(encoding="utf-8").strip())

    # Using a traces file switches the run to SFT on it.
    traces = tmp_path / "kept.jsonl"
    traces.write_text(json.dumps({"prompt": "Question: What is 1 plus 2? Answer:", "completion": " 1 + 2 = 3. #### 3"}) + "\n", encoding="utf-8")
    panel.sig_use_traces.emit(str(traces))
    config = window.current_config()
    assert config.data.train == str(traces) and config.method.kind == "sft"
    assert window.method_page.stack.currentWidget().objectName() == "method_panel.sft"  # KD's settings are put away
