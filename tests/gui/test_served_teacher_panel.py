"""The Models page's "Teacher: local model | server URL" choice and its Test button, against a real
OpenAI-compatible server on loopback (tests/openai_server.py) serving a tiny model."""

from __future__ import annotations

import socket

import pytest
import tiny_models
from openai_server import ModelServer

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def server(tiny_tokenizer):
    with ModelServer(tiny_models.build_llama(tiny_tokenizer, hidden=32, layers=1, seed=5), tiny_tokenizer, name="tiny") as served:
        yield served


@pytest.fixture(autouse=True)
def _reset(server):
    server.delay, server.api_key = 0.0, None


@pytest.fixture
def panel(qtbot):
    from distill_gui.gui.fields import ConfigBinder
    from distill_gui.gui.served_teacher_panel import ServedTeacherPanel

    binder = ConfigBinder()
    widget = ServedTeacherPanel(binder)
    widget.binder = binder
    qtbot.addWidget(widget)
    widget.set_served(True)
    return widget


def _type(edit, text: str) -> None:
    edit.setText(text)
    edit.textEdited.emit(text)


def _test(qtbot, panel) -> str:
    from PySide6.QtCore import Qt

    qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.result.text()[:1] in "✔✘" and panel.result.text() != "", timeout=WAIT_MS)
    assert panel.test_button.isEnabled()
    return panel.result.text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_test_button_lists_the_models_and_times_one_completion(qtbot, panel, server):
    _type(panel.url_edit, server.url)
    _type(panel.model_edit, "tiny")
    before = server.requests
    text = _test(qtbot, panel)
    assert text.startswith("✔ 1 model(s): tiny. tiny answered ") and text.endswith(" ms."), text
    assert server.requests - before >= 3  # /models twice (list, resolve) and one completion


@pytest.mark.parametrize(
    "case, expected",
    [
        ("down", "✘ teacher.url: nothing answers at "),
        ("model", "✘ teacher.model: the server at "),
        ("timeout", "✘ teacher.url: "),
        ("key", "✘ teacher.api_key_env: the environment variable DG_PANEL_KEY is not set"),
    ],
)
def test_the_test_button_says_in_one_line_what_failed(qtbot, panel, server, monkeypatch, case, expected):
    _type(panel.url_edit, f"http://127.0.0.1:{_free_port()}/v1" if case == "down" else server.url)
    _type(panel.model_edit, "llama-70b" if case == "model" else "tiny")
    if case == "timeout":
        server.delay, panel.timeout_s = 1.0, 0.2
    if case == "key":
        monkeypatch.delenv("DG_PANEL_KEY", raising=False)
        _type(panel.key_edit, "DG_PANEL_KEY")
    text = _test(qtbot, panel)
    assert text.startswith(expected) and "\n" not in text, text
    if case == "model":
        assert "no model 'llama-70b'; it serves: tiny" in text
    if case == "timeout":
        assert "within 0.2 s" in text


def test_an_empty_url_is_asked_for_without_a_request(qtbot, panel):
    from PySide6.QtCore import Qt

    qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert panel.result.text().startswith("✘ Give the server's URL first")


def test_the_fields_are_the_teacher_config_and_local_mode_empties_the_url(qtbot, panel, server):
    _type(panel.url_edit, server.url)
    _type(panel.model_edit, "tiny")
    _type(panel.key_edit, "MY_KEY")
    data: dict = {}
    panel.binder.read_into(data)
    assert data["teacher"] == {"url": server.url, "model": "tiny", "api_key_env": "MY_KEY"}
    with qtbot.waitSignal(panel.sig_mode_changed) as blocker:
        panel.set_served(False)
    assert blocker.args == [False] and panel.server_box.isHidden()
    panel.binder.read_into(data)
    assert data["teacher"]["url"] == ""
    panel.set_served(True)  # the typed URL comes back
    panel.binder.read_into(data)
    assert data["teacher"]["url"] == server.url and not panel.server_box.isHidden()
    # A config shown in the fields decides the mode.
    panel.binder.show({"teacher": {"url": "", "model": "", "api_key_env": ""}})
    assert not panel.is_served()
    panel.binder.show({"teacher": {"url": "http://localhost:11434/v1", "model": "llama3", "api_key_env": ""}})
    assert panel.is_served() and panel.model_edit.text() == "llama3"


def test_the_models_page_hides_the_local_teacher_parts_for_a_server(qtbot, settings, server):
    from distill_gui.gui.fields import ConfigBinder
    from distill_gui.gui.models_page import ModelsPage

    binder = ConfigBinder()
    page = ModelsPage(binder, settings)
    qtbot.addWidget(page)
    assert not page.served_teacher.is_served() and not page.teacher.local_parts.isHidden() and page.served_note.isHidden()
    page.served_teacher.set_served(True)
    assert page.teacher.local_parts.isHidden() and page.compatibility.isHidden() and not page.served_note.isHidden()
    assert not page.student.local_parts.isHidden()
    _type(page.served_teacher.url_edit, server.url)
    assert _test(qtbot, page.served_teacher).startswith("✔ 1 model(s): tiny.")
    page.served_teacher.set_served(False)
    assert not page.teacher.local_parts.isHidden() and not page.compatibility.isHidden() and page.served_note.isHidden()


def test_the_window_config_follows_the_choice_both_ways(make_window, server):
    from distill_gui.core.config import RunConfig

    window = make_window()
    panel = window.models_page.served_teacher
    assert not panel.is_served()
    panel.set_served(True)
    _type(panel.url_edit, server.url)
    _type(panel.model_edit, "tiny")
    config = window.current_config()
    assert (config.teacher.url, config.teacher.model) == (server.url, "tiny")
    window.set_config(RunConfig())  # a config without a server: the local teacher
    assert not panel.is_served() and not window.models_page.teacher.local_parts.isHidden()
    config.teacher.path = ""
    window.set_config(config)
    assert panel.is_served() and window.models_page.teacher.local_parts.isHidden()
    assert window.current_config().teacher.url == server.url
