"""What a new user meets around training (issue 16): shortcuts that respect focus, verdicts that never
outlive their pair, Start that says why it waits, keyboard reach, model text shown as text, honest
progress, and the runs folder given once staying a one-off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QApplication, QCheckBox, QLineEdit
from test_app import fake_config

from distill_gui.core import config as cfg
from distill_gui.core.events import RunPaused, RunStarted, Sample, SamplesGenerated, StepLogged
from distill_gui.core.vocab import TokenizerCompatibility

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]


def shown_text(text: str, auto_rich: bool = True) -> str:
    """What Qt draws for ``text`` in a label or tooltip that guesses rich text (Qt.mightBeRichText)."""
    from PySide6.QtGui import Qt as QtGui

    if auto_rich and QtGui.mightBeRichText(text):
        doc = QTextDocument()
        doc.setHtml(text)
        return doc.toPlainText()
    return text


def label_shows(label, needle: str) -> bool:
    if label.textFormat() == Qt.TextFormat.PlainText:
        return needle in label.text()
    if label.textFormat() == Qt.TextFormat.RichText:
        doc = QTextDocument()
        doc.setHtml(label.text())
        return needle in doc.toPlainText()
    return needle in shown_text(label.text())


def set_text(widget, text: str) -> None:
    """Type into a line edit the way a user does (textEdited fires)."""
    widget.setText(text)
    widget.textEdited.emit(text)


def step(n: int, total: int = 10, eta: float = 60.0) -> StepLogged:
    return StepLogged(step=n, total_steps=total, loss=1.0 / n, learning_rate=1e-3, tokens_per_s=100.0, eta_s=eta)


# ---- Defect 1: Ctrl+Enter in the Ask box asks; it never starts a run
def test_ctrl_enter_in_the_ask_box_asks_and_starts_no_run(make_window, qtbot, tmp_path):
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=300))
    page = window.generations_page
    window.show_page("Generations")
    page.prompt.setPlainText("What is 2 + 3?")
    page.prompt.setFocus()
    qtbot.waitUntil(page.prompt.hasFocus, timeout=5000)
    with qtbot.waitSignal(page.sig_ask, timeout=5000) as asked:
        qtbot.keyClick(page.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert asked.args[0]["prompt"] == "What is 2 + 3?"
    QApplication.processEvents()
    assert window.controller.state == "idle" and window.controller.run_dir is None
    # Elsewhere the window-wide shortcut still starts the run.
    window.show_page("Train")
    window.train_page.start_button.setFocus()
    qtbot.keyClick(window.train_page.start_button, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.controller.state != "idle", timeout=10000)


# ---- Defect 3: a changed or failed model clears the pair's verdicts at once
def test_pair_verdicts_clear_when_a_model_changes_or_fails(make_window, qtbot, tmp_path):
    window = make_window()
    page = window.models_page
    window.on_compatibility(window._inspect_id, TokenizerCompatibility(
        verdict="identical", shared_vocab_size=400, message="400 tokens", teacher_vocab_size=400, student_vocab_size=400,
        teacher_tokenizer_size=400, student_tokenizer_size=400))
    assert "Identical" in page.compatibility.text()
    page.memory.setText("Total 1 GB — fits")
    set_text(window.findChild(QLineEdit, "teacher.path"), str(tmp_path / "no-such-teacher"))
    set_text(window.findChild(QLineEdit, "student.path"), str(tmp_path / "no-such-student"))
    # At once, before any answer: the old verdicts are gone.
    assert "Identical" not in page.compatibility.text() and "checking" in page.compatibility.text().lower()
    assert "fits" not in page.memory.text() and "checking" in page.memory.text().lower()
    # The failure shows in their place.
    qtbot.waitUntil(lambda: "no-such-teacher" in page.teacher.summary.text(), timeout=60_000)
    qtbot.waitUntil(lambda: "checking" not in page.compatibility.text().lower(), timeout=60_000)
    assert "teacher" in page.compatibility.text().lower() and "could not" in page.compatibility.text().lower()
    assert "could not" in page.memory.text().lower()


# ---- Defect 4: Start waits while the demo student is being made
def test_start_waits_for_the_demo_student(make_window, qtbot, tmp_path):
    window = make_window(fake=True)
    config = fake_config(tmp_path)
    student = tmp_path / "demo-student"
    config.student.path = str(student)
    window.set_config(config)
    window._shown = False  # the builder is not started: the student stays missing while we look
    window.prepare_demo_student(config.teacher.path, str(student))
    button = window.train_page.start_button
    assert not button.isEnabled()
    assert "demo student" in button.toolTip().lower()
    assert "demo student" in window.train_page.start_reason.text().lower()
    assert not window.start_run()
    assert window.controller.state == "idle"
    student.mkdir()
    (student / "config.json").write_text("{}", encoding="utf-8")
    window.on_demo_student_built(str(student))
    assert button.isEnabled() and window.train_page.start_reason.text() == ""


# ---- Defect 5: a config given on the command line that cannot be read is said, and nothing else is opened
def test_a_bad_config_argument_is_reported_and_the_last_config_is_not_opened(make_window, settings, tmp_path):
    previous = cfg.RunConfig(name="previous-session")
    settings.set_last_config_yaml(cfg.dump_config(previous))
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  max_steps: lots\n", encoding="utf-8")
    from distill_gui.gui.app import _parse, create_window

    window = create_window(_parse(["--runs-dir", str(tmp_path / "runs"), str(bad)]), settings=settings)
    window.close_choice = window.CLOSE_STOP
    try:
        assert window.current_config().name != "previous-session"
        assert window.notice.isVisible() or not window.notice.isHidden()
        assert "bad.yaml" in window.notice.text() and "max_steps" in window.notice.text()
    finally:
        window.close()


# ---- Defect 6: Tab leaves tables and text boxes; Enter opens a run
@pytest.mark.parametrize("name", ["columns", "preview", "bad_rows", "generations", "training.probe_prompts", "ask_prompt", "runs"])
def test_tab_moves_focus_out_of_tables_and_text_boxes(make_window, qtbot, name):
    window = make_window()
    widget = {"columns": window.data_page.columns, "preview": window.data_page.preview, "bad_rows": window.data_page.bad_rows,
              "generations": window.generations_page.table, "runs": window.runs_page.table,
              "ask_prompt": window.generations_page.prompt}.get(name) or window.findChild(object, name)
    page = next(p for p in window.pages() if p.isAncestorOf(widget))
    window.stack.setCurrentWidget(page)
    if name in ("preview", "bad_rows"):
        window.data_page.tabs.setCurrentWidget(widget)
    if name == "columns":
        window.data_page.columns.show_fields(["prompt", "completion"])
    if hasattr(widget, "setRowCount") and widget.rowCount() == 0 and name != "columns":
        widget.setRowCount(2)
    widget.setFocus()
    qtbot.waitUntil(widget.hasFocus, timeout=5000)
    if hasattr(widget, "setCurrentCell"):
        widget.setCurrentCell(0, 0)
    qtbot.keyClick(widget, Qt.Key.Key_Tab)
    assert not widget.hasFocus(), f"Tab stays in {name}"
    if hasattr(widget, "toPlainText"):
        assert "\t" not in widget.toPlainText()


def test_enter_on_the_runs_table_opens_the_run(make_window, qtbot, tmp_path):
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=3))
    with qtbot.waitSignal(window.controller.sig_ended, timeout=20000):
        window.start_run()
    run_dir = window.controller.run_dir
    window.train_page.clear()
    window.shown_run = None
    window.show_page("Runs")
    table = window.runs_page.table
    qtbot.waitUntil(lambda: window.runs_page.select_run(run_dir), timeout=10000)
    table.setFocus()
    qtbot.keyClick(table, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.shown_run == run_dir, timeout=5000)
    assert window.stack.currentWidget() is window.train_page


# ---- Defect 7: known problems are stopped before Start, with the fix
def test_start_is_refused_for_kd_with_different_tokenizers(make_window, tmp_path):
    window = make_window(fake=True)
    config = fake_config(tmp_path)
    config.method.kind = "kd"
    window.set_config(config)
    window.on_compatibility(window._inspect_id, TokenizerCompatibility(
        verdict="different", shared_vocab_size=None, message="49,152 vs 400 tokens", teacher_vocab_size=49152,
        student_vocab_size=400, teacher_tokenizer_size=49152, student_tokenizer_size=400))
    button = window.train_page.start_button
    assert not button.isEnabled()
    reason = window.train_page.start_reason.text()
    assert "tokenizer" in reason.lower() and "Method" in reason  # names the fix: another method, on the Method page
    assert not window.start_run()
    assert window.controller.state == "idle"
    # A method that does not compare logits clears it (the same pair's verdict still stands).
    config.method.kind = "sft"
    window.set_config(config)
    window.on_compatibility(window._inspect_id, TokenizerCompatibility(
        verdict="different", shared_vocab_size=None, message="49,152 vs 400 tokens", teacher_vocab_size=49152,
        student_vocab_size=400, teacher_tokenizer_size=49152, student_tokenizer_size=400))
    assert button.isEnabled() and window.train_page.start_reason.text() == ""


def test_start_is_refused_when_a_model_cannot_be_read(make_window, tmp_path):
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path))
    window.on_model_failed(window._inspect_id, "teacher", "m: has only pickle weights (pytorch_model.bin); set Allow pickle")
    assert not window.train_page.start_button.isEnabled()
    assert "pickle" in window.train_page.start_reason.text()
    assert not window.start_run()


def test_start_is_refused_when_too_many_rows_are_bad(make_window, qtbot, tmp_path):
    window = make_window(fake=True)
    config = fake_config(tmp_path)
    data = tmp_path / "mostly-bad.jsonl"
    data.write_text("\n".join([json.dumps({"prompt": "p", "completion": "c"})] + ["{not json"] * 4) + "\n", encoding="utf-8")
    config.data.train = str(data)
    window.set_config(config)
    qtbot.waitUntil(lambda: "bad" in window.train_page.start_reason.text().lower()
                    or "unusable" in window.train_page.start_reason.text().lower(), timeout=30000)
    assert not window.train_page.start_button.isEnabled()
    assert "Data" in window.train_page.start_reason.text()


# ---- Defect 8: trusting remote code asks first, naming the files
def test_trust_remote_code_asks_first_naming_the_python_files(make_window, tmp_path):
    window = make_window()
    model = tmp_path / "custom"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "custom", "auto_map": {}}), encoding="utf-8")
    (model / "modeling_custom.py").write_text("raise SystemExit('ran')\n", encoding="utf-8")
    set_text(window.findChild(QLineEdit, "teacher.path"), str(model))
    asked = []
    window.models_page.teacher.confirm_remote_code = lambda role, files: asked.append((role, files)) or False
    box = window.findChild(QCheckBox, "teacher.trust_remote_code")
    box.click()
    assert asked and asked[0][0] == "teacher" and any("modeling_custom.py" in f for f in asked[0][1])
    assert not box.isChecked() and not window.current_config().teacher.trust_remote_code
    window.models_page.teacher.confirm_remote_code = lambda role, files: True
    box.click()
    assert box.isChecked() and window.current_config().teacher.trust_remote_code


# ---- Defect 9: model-provided text is shown as text
def test_special_tokens_are_shown_literally(make_window):
    window = make_window()
    page = window.generations_page
    prompt = "<s>Say hi<|im_end|>"
    page.on_event(SamplesGenerated(step=5, samples=(Sample(prompt=prompt, student="<pad><s>hi", teacher="<b>hello</b>"),)))
    for col, text in ((1, "<b>hello</b>"), (2, "<pad><s>hi")):
        item = page.table.item(0, col)
        assert text in item.text()
        assert text in shown_text(item.toolTip())
    # The prompt column shows the user's words; the template's markup is in the tooltip, as text.
    assert page.table.item(0, 0).text() == "Say hi"
    assert prompt in shown_text(page.table.item(0, 0).toolTip())
    page.on_event(SamplesGenerated(step=6, samples=(Sample(prompt="<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
                                                          student="4"),)))
    assert page.table.item(0, 0).text() == "What is 2+2?"
    page.on_answered(prompt, "<s>a", "b")
    assert label_shows(page.ask_state, prompt)
    window.models_page.show_failed("pair", "eos_token: '<s>' vs '<|im_end|>'")
    assert label_shows(window.models_page.compatibility, "'<s>' vs '<|im_end|>'")
    window.models_page.show_compatibility(TokenizerCompatibility(
        verdict="different", shared_vocab_size=None, message="bos <s> vs <|im_start|>", teacher_vocab_size=1,
        student_vocab_size=1, teacher_tokenizer_size=1, student_tokenizer_size=1))
    assert label_shows(window.models_page.compatibility, "bos <s> vs <|im_start|>")


# ---- Defect 10: progress and plots say what happened
def test_progress_follows_pause_and_eta_is_not_frozen_while_paused(make_window):
    window = make_window()
    train = window.train_page
    train.on_event(RunStarted(run_dir="r", total_steps=10, start_step=0))
    train.on_event(step(6))
    train.refresh()
    train.on_event(RunPaused(step=7))
    train.refresh()
    assert "step 7 / 10" in train.progress.text()
    assert "paused" in train.progress.text().lower() and "ETA" not in train.progress.text()


def test_a_new_run_gets_fresh_axes_and_whole_step_ticks(make_window, qtbot):
    window = make_window()
    plots = window.train_page.plots
    for n in range(1, 500):
        plots.add_event(step(n, total=500))
    plots.refresh()
    plots.clear()
    plots.add_event(step(1, total=3))
    plots.refresh()
    view = plots.plots["Loss"].getViewBox()
    qtbot.waitUntil(lambda: view.viewRange()[0][1] < 50, timeout=5000)  # not the old run's 500 steps
    (x0, x1), _ = view.viewRange()
    assert x0 < 1 < x1
    axis = plots.plots["Loss"].getAxis("bottom")
    ticks = axis.tickValues(x0, x1, 400)
    assert all(float(v).is_integer() for _, values in ticks for v in values)


# ---- Defect 11
def test_runs_dir_given_once_is_not_remembered(qtbot, settings, runs_root, tmp_path):
    from distill_gui.gui.app import _parse, create_window

    before = settings.runs_root()
    once = tmp_path / "elsewhere"
    window = create_window(_parse(["--runs-dir", str(once)]), settings=settings)
    qtbot.addWidget(window)
    assert window.runs_root() == once
    window.close()
    assert settings.runs_root() == before != once
    again = create_window(_parse([]), settings=settings)
    qtbot.addWidget(again)
    assert again.runs_root() == before
    again.close()


def test_blank_answers_are_visible(make_window):
    window = make_window()
    page = window.generations_page
    page.on_event(SamplesGenerated(step=1, samples=(Sample(prompt="p", student="   ", teacher="\n"),)))
    assert page.table.item(0, 2).text().strip() != "" and "blank" in page.table.item(0, 2).text()
    assert page.table.item(0, 1).text().strip() != ""


def test_after_stop_the_train_page_offers_resume(make_window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=200))
    window.start_run()
    qtbot.waitUntil(lambda: window.controller.step >= 2, timeout=20000)
    with qtbot.waitSignal(window.controller.sig_ended, timeout=20000):
        window.controller.stop()
    resume = window.train_page.resume_button
    qtbot.waitUntil(resume.isVisible, timeout=5000)
    assert resume.isEnabled()
    with qtbot.waitSignal(window.controller.sig_state_changed, timeout=20000):
        qtbot.mouseClick(resume, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.controller.is_active(), timeout=10000)
    assert Path(window.controller.run_dir) == Path(window.shown_run)
    with qtbot.waitSignal(window.controller.sig_ended, timeout=20000):
        window.controller.stop()


# ---- Defects 2 and 8: the pair check (and any model's own code) runs in a child process, never in the app
def test_the_pair_check_runs_a_models_code_in_a_child_process(make_window, qtbot, tmp_path):
    import os

    window = make_window()
    model = tmp_path / "custom"
    model.mkdir()
    marker = tmp_path / "ran-in-pid"
    (model / "config.json").write_text(json.dumps({
        "model_type": "custom-marker", "auto_map": {"AutoConfig": "configuration_marker.MarkerConfig"}}), encoding="utf-8")
    (model / "configuration_marker.py").write_text(
        "import os\n"
        f"open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
        "from transformers import PretrainedConfig\n"
        "class MarkerConfig(PretrainedConfig):\n    model_type = 'custom-marker'\n", encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"")
    window.models_page.teacher.confirm_remote_code = lambda role, files: True
    set_text(window.findChild(QLineEdit, "teacher.path"), str(model))
    window.findChild(QCheckBox, "teacher.trust_remote_code").click()
    qtbot.waitUntil(marker.exists, timeout=120_000)
    assert int(marker.read_text()) not in (os.getpid(), 0)
    assert int(marker.read_text()) == window.inspector.pid()
    # Its failure (the model cannot be built) is shown on the page, in words.
    qtbot.waitUntil(lambda: "custom" in window.models_page.teacher.summary.text(), timeout=60_000)


# ---- Defect 11: the first Ask can be cancelled; Ask runs in a child process
def test_ask_runs_in_a_child_process_and_can_be_cancelled(make_window, qtbot, tmp_path):
    import os

    window = make_window()
    page = window.generations_page
    page.set_models(str(tmp_path / "no-teacher"), str(tmp_path / "no-student"))
    window.show_page("Generations")
    page.prompt.setPlainText("What is 2 + 3?")
    qtbot.mouseClick(page.ask_button, Qt.MouseButton.LeftButton)
    assert not page.ask_button.isEnabled() and page.cancel_button.isVisible()
    pid = window.asker.pid()
    assert pid not in (None, os.getpid())
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    assert "cancelled" in page.ask_state.text() and page.ask_button.isEnabled() and not page.cancel_button.isVisible()
    assert window.asker.pid() is None
    # The next question starts a new child, which says in words why there is no answer.
    qtbot.mouseClick(page.ask_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(page.ask_button.isEnabled, timeout=120_000)
    assert page.ask_state.text().startswith("No answer") and "no-teacher" in page.ask_state.text()


# ---- Model discovery: the picker lists what is on the machine; no hub id typed from memory
def test_model_picker_lists_this_apps_runs_and_fills_the_fields(make_window, qtbot, runs_root, tmp_path):
    final = runs_root / "20260101-000000-my-distilled" / "checkpoints" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}), encoding="utf-8")
    window = make_window()
    chooser = window.models_page.teacher
    picker = chooser.open_picker()
    qtbot.addWidget(picker)
    qtbot.waitUntil(lambda: picker.table.rowCount() > 0, timeout=30_000)
    picker.search.setText("my-distilled llama")
    assert picker.select_by_name("20260101-000000-my-distilled")
    picker.search.setText("no-model-is-called-this")
    assert all(picker.table.isRowHidden(r) for r in range(picker.table.rowCount()))
    picker.search.setText("my-distilled")
    assert picker.select_by_name("20260101-000000-my-distilled")
    picker.on_accept()
    assert picker.chosen == (str(final), "")
    chooser.set_model(*picker.chosen)
    assert window.current_config().teacher.path == str(final)
    # An Ollama blob is a GGUF file without the .gguf name: the folder and the file name go in their fields.
    chooser.set_model(str(tmp_path / "blobs"), "sha256-abc")
    config = window.current_config()
    assert (config.teacher.path, config.teacher.gguf_file) == (str(tmp_path / "blobs"), "sha256-abc")
    # An LM Studio file is given as the file itself.
    chooser.set_model(str(tmp_path / "lms"), "model-Q8_0.gguf")
    config = window.current_config()
    assert config.teacher.path == str(tmp_path / "lms" / "model-Q8_0.gguf") and not config.teacher.gguf_file


# ---- The Home page: the steps at a glance, the sidebar's states, the demo in one button
def test_home_page_shows_the_steps_and_the_sidebar_their_states(make_window, qtbot, tmp_path):
    window = make_window(fake=True)
    assert window.stack.currentWidget() is window.home_page
    home = window.home_page
    assert home.step_state("teacher") == "waiting" and home.step_state("data") == "waiting"
    window.set_config(fake_config(tmp_path))  # the fake models are empty folders: the check fails
    qtbot.waitUntil(lambda: home.step_state("data") == "done", timeout=30_000)
    assert "1 rows" in home.step_notes["data"].text()
    qtbot.waitUntil(lambda: home.step_state("teacher") == "problem", timeout=120_000)
    assert home.step_state("start") == "problem" and "Models page" in home.step_notes["start"].text()
    models_item = window.sidebar.item(1)
    assert models_item.text() == "Models" and not models_item.icon().isNull() and models_item.toolTip()
    qtbot.mouseClick(home.step_buttons["data"], Qt.MouseButton.LeftButton)
    assert window.stack.currentWidget() is window.data_page


def test_start_the_demo_makes_its_student_then_trains(make_window, qtbot, runs_root):
    from distill_gui.gui.app import demo_config, demo_student_dir

    if demo_config() is None:
        pytest.skip("the demo pair is not in this checkout")
    window = make_window(fake=True)
    assert not (demo_student_dir() / "config.json").exists()
    qtbot.mouseClick(window.home_page.demo_button, Qt.MouseButton.LeftButton)
    assert window.controller.state == "idle" and "demo student" in window.train_page.start_reason.text()
    qtbot.waitUntil(lambda: window.controller.run_dir is not None, timeout=180_000)
    assert (demo_student_dir() / "config.json").is_file()
    with qtbot.waitSignal(window.controller.sig_ended, timeout=20000):
        window.controller.stop()


# ---- Help: the guide, the keyboard shortcuts, the version
def test_help_menu_has_the_guide_and_the_shortcuts(make_window, qtbot):
    window = make_window()
    window.menus.guide_action.trigger()
    guide = window.menus.guide_dialog
    qtbot.addWidget(guide)
    titles = [guide.index.item(i).text() for i in range(guide.index.count())]
    assert "Development" in titles and len(titles) > 3
    guide.index.setCurrentRow(titles.index("Development"))
    assert "methods" in guide.text.toPlainText().lower()
    window.menus.shortcuts_action.trigger()
    table = window.menus.shortcuts_dialog.table
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows.get("Ctrl+Return") == "Start" and "Ctrl+Return in “Ask both models”" in rows
    assert any(keys == "Ctrl+1" and does == "Home" for keys, does in rows.items())


# ---- The token-level view of what the student has not learned yet
def test_token_view_shades_by_kl_escapes_tokens_and_explains_on_hover(make_window):
    from distill_gui.core.token_disagreement import TokenScore

    window = make_window()
    view = window.generations_page.token_view
    scores = [TokenScore(text=t, kl=kl, student_choice="x", teacher_p_student_choice=0.1,
                         teacher_top=(("<s>", 0.5), ("4", 0.2)), student_top=(("x", 0.6), ("4", 0.1)))
              for t, kl in (("<s>", 0.0), (" 4", 3.0), ("\n", 0.5))]
    view.show_scores(scores, "Row 1")
    html_text = view.text.toHtml()
    assert "&lt;s&gt;" in html_text and "<s>" not in view.text.toPlainText().replace("<s>", "", 1)
    assert "<s> 4⏎" in view.text.toPlainText()
    assert "mean KL 1.167" in view.caption.text() and "darkest 3.00" in view.caption.text()
    hover = view.token_at(1)
    assert "KL 3.000" in hover and "teacher's top tokens" in hover and "'<s>'" in hover and "student would say 'x'" in hover
    from PySide6.QtGui import QColor

    from distill_gui.gui.token_view import shade

    base, accent = QColor(250, 250, 250), QColor(200, 50, 50)
    assert shade(0.0, base, accent) == base and shade(99.0, base, accent) == accent
    assert shade(1.0, base, accent).name() == QColor(225, 150, 150).name()  # half of SHADE_FULL_KL: half way


@pytest.mark.slow
def test_where_the_student_disagrees_is_scored_in_the_ask_child(make_window, qtbot, tiny_pair):
    window = make_window()
    teacher, student = tiny_pair
    page = window.generations_page
    page.set_models(str(teacher), str(student))
    page.on_event(SamplesGenerated(step=5, samples=(Sample(prompt="What is 2 plus 3?", student="7", teacher=" 5"),
                                                    Sample(prompt="What is 1 plus 1?", student="", reference=" 2"))))
    window.show_page("Generations")
    page.tools.setCurrentIndex(1)
    qtbot.mouseClick(page.explain_button, Qt.MouseButton.LeftButton)
    assert not page.explain_button.isEnabled()
    qtbot.waitUntil(page.explain_button.isEnabled, timeout=180_000)
    assert "2 answers scored" in page.explain_state.text(), page.explain_state.text()
    assert page.token_view.hardest.count() > 0 and page.token_view.scores
    page.table.selectRow(1)
    assert "Row 2" in page.token_view.caption.text()


# ---- Plain words: choices read as words with the config value beside them
def test_choices_are_words_with_the_config_value_beside(make_window):
    from PySide6.QtWidgets import QComboBox

    window = make_window()
    loss = window.findChild(QComboBox, "method.kd.loss")
    assert loss.itemText(loss.findData("forward_kl")) == "Forward KL (mean-seeking)  ·  forward_kl"
    loss.setCurrentIndex(loss.findData("reverse_kl"))
    assert window.current_config().method.kd.loss == "reverse_kl"
    kind = window.findChild(QComboBox, "method.kind")
    assert "·  kd" in kind.itemText(kind.findData("kd")) and kind.itemText(kind.findData("kd")) != "kd"
    config = window.current_config()
    config.method.kind, config.training.lr_scheduler = "sft", "linear"
    window.set_config(config)
    assert kind.currentData() == "sft" and window.findChild(QComboBox, "training.lr_scheduler").currentText().startswith("Linear decay")
    assert window.current_config().method.kind == "sft"
