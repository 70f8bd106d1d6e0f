"""The Method page's recipe picker: a recipe fills the method and the stages, shows its stages and what it lacks,
and a saved config opens on the same recipe ("Custom" once edited by hand)."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QPoint, Qt

from distill_gui.core import config as cfg
from distill_gui.core import recipes

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]


def _pick(qtbot, window, name: str) -> None:
    window.show_page("Method")
    button = window.method_page.recipe.buttons[name]
    window.method_page.scroll.ensureWidgetVisible(button)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=QPoint(8, button.height() // 2))  # on the round mark
    assert button.isChecked()


def test_a_recipe_fills_the_stages_and_a_saved_config_opens_on_it(qtbot, make_window, tmp_path):
    window = make_window()
    picker = window.method_page.recipe
    assert picker.chosen == "logit_kd"  # the default config is logit KD
    assert [b.text() for b in picker.buttons.values()][:6] == [r.title for r in recipes.RECIPES]
    _pick(qtbot, window, "traces_rlvr")
    config = window.current_config()
    assert config.method.kind == "rlvr"
    assert [(s["name"], s["method"]["kind"]) for s in config.stages] == [("traces", "sft"), ("rlvr", "rlvr")]
    stages = picker.stages.text()
    assert "Stages, in order" in stages and stages.index("Hard-label SFT") < stages.index("RL with verifiable rewards")
    assert window.method_page.stack.currentWidget().objectName() == "method_panel.rlvr"  # its raw settings below
    path = tmp_path / "recipe.yaml"
    assert window.save_config_file(path)
    other = make_window()
    assert other.load_config_file(path)
    assert other.method_page.recipe.chosen == "traces_rlvr"
    assert other.method_page.recipe.buttons["traces_rlvr"].isChecked()
    # A hand edit that leaves the recipe makes it custom; a tuned setting does not.
    other.findChild(type(window.method_page.binder.widget("method.rlvr.beta")), "method.rlvr.beta").setValue(0.5)
    assert other.method_page.recipe.chosen == "traces_rlvr"
    kind = other.method_page.binder.widget("method.kind")
    _pick(qtbot, other, "on_policy_kd")
    assert other.current_config().stages == [] and other.current_config().method.kd.on_policy == 0.5
    kind.setCurrentIndex(kind.findData("cross_kd"))  # the user's own change (currentTextChanged: an edit)
    assert other.method_page.recipe.chosen == "custom" and other.method_page.recipe.buttons["custom"].isChecked()


def test_a_recipe_whose_needs_are_not_met_says_why(qtbot, make_window, tmp_path):
    window = make_window()
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps({"prompt": f"Say hi {i}", "completion": " hello"}) for i in range(4)), encoding="utf-8")
    config = cfg.RunConfig()
    config.data.train = str(plain)
    window.set_config(config)
    _pick(qtbot, window, "self_distill")
    page = window.method_page
    assert any("reference answers: not checked yet" in line for line in [page.recipe.needs.text()])
    qtbot.waitUntil(lambda: page._references is not None, timeout=20000)  # the data preview read the rows
    (missing,) = page.recipe.missing()
    assert "no reference answers" in missing and "'#### <answer>'" in missing
    assert "Not ready" in page.recipe.needs.text()
    _pick(qtbot, window, "logit_kd")
    assert "No teacher weights" in page.recipe.missing()[0]


def test_the_synthetic_recipe_mixes_the_teachers_data_and_gives_the_command(qtbot, make_window, tmp_path):
    window = make_window()
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"question": "What is 2 plus 3?", "answer": "2 + 3 = 5. #### 5"}) + "\n", encoding="utf-8")
    config = cfg.RunConfig()
    config.data.train = str(seeds)
    config.teacher.path = str(tmp_path / "teacher")
    window.set_config(config)
    _pick(qtbot, window, "synthetic")
    made = window.current_config()
    out = tmp_path / "seeds.synthetic.jsonl"
    assert made.method.kind == "sft" and [(m.path, m.weight) for m in made.data.mix] == [(str(out), recipes.SYNTHETIC_WEIGHT)]
    picker = window.method_page.recipe
    assert picker.command_box.isVisibleTo(picker)
    assert picker.command.text().startswith("distill-gui generate-data --synthetic") and f"--out {out}" in picker.command.text()
    picker.copy_button.click()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == picker.command.text()
    out.write_text(json.dumps({"question": "What is 1 plus 1?", "answer": "#### 2"}) + "\n", encoding="utf-8")
    window.method_page.refresh_recipe()
    assert not picker.command_box.isVisibleTo(picker) and picker.missing() == []
    assert window.save_config_file(tmp_path / "s.yaml")
    assert recipes.recipe_of(cfg.load_config(tmp_path / "s.yaml")).name == "synthetic"
