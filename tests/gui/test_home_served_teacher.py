"""The Home page's teacher step with a teacher served over an OpenAI-compatible API (no local path)."""

from __future__ import annotations

import pytest

from tests.gui.test_app import fake_config


# The offscreen platform cannot pass a shown window's size hints on; it says so once the window settles.
@pytest.mark.qt_log_ignore("propagateSizeHints")
def test_a_served_teacher_counts_as_chosen_on_home(make_window, qtbot, tmp_path):
    window = make_window(fake=True)
    home = window.home_page
    config = fake_config(tmp_path)
    config.method.kind = "kd"
    config.teacher.path = ""
    config.teacher.url = "http://127.0.0.1:9/v1"
    config.teacher.model = "smollm2"
    window.set_config(config)
    qtbot.waitUntil(lambda: home.step_state("teacher") == "done", timeout=30_000)
    note = home.step_notes["teacher"].text()
    assert "served" in note and "smollm2" in note and "127.0.0.1:9" in note
    # Without the URL the same config asks for a teacher again.
    config.teacher.url = ""
    window.set_config(config)
    qtbot.waitUntil(lambda: home.step_state("teacher") == "waiting", timeout=30_000)
    assert "Models page" in home.step_notes["teacher"].text()
