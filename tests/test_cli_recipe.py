"""``distill-gui train CONFIG --recipe NAME``: the recipe's method and stages over the config, overrides still win."""

from __future__ import annotations

import yaml

from distill_gui.cli import EXIT_BAD_INPUT, EXIT_OK, main
from distill_gui.core import recipes

CONFIG = """\
teacher: {path: teacher}
student: {path: student}
data: {train: train.jsonl}
training: {max_steps: 2, batch_size: 4}
"""


def _dry_run(tmp_path, capsys, *argv: str) -> tuple[int, dict, str]:
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    code = main(["train", str(config), "--dry-run", *argv])
    out = capsys.readouterr()
    return code, (yaml.safe_load(out.out) if code == EXIT_OK else {}), out.err


def test_a_recipe_sets_the_method_and_the_stages(tmp_path, capsys):
    code, config, err = _dry_run(tmp_path, capsys, "--recipe", "traces_rlvr")
    assert code == EXIT_OK
    assert config["method"]["kind"] == "rlvr"
    assert [(s["name"], s["method"]["kind"]) for s in config["stages"]] == [("traces", "sft"), ("rlvr", "rlvr")]
    assert recipes.recipe_of(config).name == "traces_rlvr"
    assert "recipe traces_rlvr: No teacher is set" not in err  # teacher.path is set


def test_overrides_win_over_the_recipe_and_unmet_needs_are_said(tmp_path, capsys):
    code, config, err = _dry_run(tmp_path, capsys, "--recipe", "on_policy_kd", "method.kd.on_policy=0.8")
    assert code == EXIT_OK and config["method"]["kind"] == "kd" and config["method"]["kd"]["on_policy"] == 0.8
    code, config, err = _dry_run(tmp_path, capsys, "--recipe", "synthetic")
    assert code == EXIT_OK and config["data"]["mix"] == [{"path": str(tmp_path / "train.synthetic.jsonl"), "weight": 0.5}]
    assert "recipe synthetic:" in err and "generate-data --synthetic" in err


def test_an_unknown_recipe_names_the_recipes(tmp_path, capsys):
    code, _, err = _dry_run(tmp_path, capsys, "--recipe", "grpo")
    assert code == EXIT_BAD_INPUT
    assert "'grpo' is not a recipe; choose one of traces, logit_kd, on_policy_kd, self_distill, traces_rlvr, synthetic" in err
