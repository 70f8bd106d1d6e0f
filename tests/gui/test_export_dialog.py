"""The Export dialog: a real export child on a tiny model, the result folder shown; bad input shown in one line."""

from __future__ import annotations

import pytest
import tiny_models

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]

WAIT_MS = 180_000


def test_export_dialog_runs_the_export_in_a_child_and_shows_the_folder(qtbot, tmp_path, tiny_tokenizer):
    from distill_gui.gui.export_dialog import ExportDialog

    source = tiny_models.save_pair_member(tmp_path / "tiny", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=5))
    dialog = ExportDialog(str(source), teacher_notice="The teacher's licence has terms for models trained from it — x.")
    qtbot.addWidget(dialog)
    assert not dialog.quant.isEnabled()  # hf: no GGUF weight type
    dialog.out.setText(str(tmp_path / "hf"))
    with qtbot.waitSignal(dialog.sig_exported, timeout=WAIT_MS) as done:
        dialog.export_button.click()
        assert not dialog.export_button.isEnabled()  # the window goes on; the work is in the child
    assert done.args == [str(tmp_path / "hf")]
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "README.md").is_file()
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=WAIT_MS)
    assert "Exported to" in dialog.status.text() and dialog.open_button.isEnabled()
    assert dialog.progress.value() == 100

    dialog.export_button.click()  # the folder exists now, and "replace" is off
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=WAIT_MS)
    assert "already exists" in dialog.status.text() and "--force" in dialog.status.text()


def test_the_runs_page_export_button_opens_the_dialog_for_the_selected_run(qtbot, tmp_path, monkeypatch):
    from distill_gui.core.runs import RunDir
    from distill_gui.gui.export_dialog import ExportDialog
    from distill_gui.gui.runs_page import RunsPage

    page = RunsPage(tmp_path)
    qtbot.addWidget(page)
    run = tmp_path / "20260101-000000-demo"
    run.mkdir()
    monkeypatch.setattr(page, "selected_run", lambda: RunDir(run))
    page.export_button.click()
    (dialog,) = page.findChildren(ExportDialog)
    assert dialog.isVisible() and dialog.source == str(run)
    dialog.close()
    page.shutdown()  # the lister thread ends before the page goes


def test_the_models_page_shows_licences_and_a_teachers_terms(qtbot, tmp_path, settings):
    from distill_gui.gui.fields import ConfigBinder
    from distill_gui.gui.models_page import ModelsPage

    page = ModelsPage(ConfigBinder(), settings)
    qtbot.addWidget(page)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "README.md").write_text("---\nlicense: llama3.1\n---\n# teacher\n", encoding="utf-8")
    page.teacher.show_licence(str(teacher))
    text = page.teacher.licence.text()
    assert "Llama 3.1 Community License (from README.md front matter)" in text and '"Llama" at the start of its name' in text
    student = tmp_path / "student"
    student.mkdir()
    (student / "README.md").write_text("---\nlicense: apache-2.0\n---\n", encoding="utf-8")
    page.student.show_licence(str(student))
    assert page.student.licence.text() == "Licence: Apache License 2.0 (from README.md front matter)"


def test_tensorboard_opens_on_a_run_folder_with_logs(qtbot, tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from distill_gui.gui.tensorboard_launcher import TensorBoardLauncher

    launcher = TensorBoardLauncher(open_browser=False)
    run = tmp_path / "run"
    run.mkdir()
    with qtbot.waitSignal(launcher.sig_failed, timeout=5000) as failed:
        assert not launcher.open(str(run))
    assert "report_to" in failed.args[1]
    with SummaryWriter(str(run / "tensorboard")) as writer:
        writer.add_scalar("train/loss", 1.0, 1)
    try:
        with qtbot.waitSignal(launcher.sig_opened, timeout=120_000) as opened:
            assert launcher.open(str(run))
        assert opened.args[0] == str(run) and opened.args[1].startswith("http://localhost:")
    finally:
        launcher.close_all()
