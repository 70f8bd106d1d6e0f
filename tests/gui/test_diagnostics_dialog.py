"""Help → Diagnostics…: the doctor's report in a dialog, copied to the clipboard."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QGuiApplication

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]


def test_help_menu_shows_and_copies_diagnostics(make_window, qtbot):
    window = make_window()
    help_menu = [a.menu() for a in window.menuBar().actions() if a.text() == "&Help"][0]
    assert window.menus.diagnostics_action in help_menu.actions()
    window.menus.diagnostics_action.trigger()
    dialog = window.menus.diagnostics_dialog
    assert dialog.isVisible() and not dialog.copy_button.isEnabled()
    qtbot.waitUntil(dialog.copy_button.isEnabled, timeout=60_000)  # a child process runs `distill-gui doctor`
    text = dialog.text.toPlainText()
    assert text.startswith("distill-gui ") and "torch vs driver     ok" in text
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == text
    assert dialog.summary.text().endswith("(copied to the clipboard)")
    dialog.close()
