"""Recipes: what each sets, that a saved config reads back as the same recipe, what each needs and says when it is missing."""

from __future__ import annotations

import json

import pytest

from distill_gui.core import methods, recipes
from distill_gui.core.config import ConfigError, RunConfig, config_from_dict, load_config, save_config
from distill_gui.core.events import StepLogged
from distill_gui.core.training import train
from distill_gui.core.training.stages import stage_runs


def _config(tiny_pair, data, **extra) -> RunConfig:
    teacher, student = tiny_pair
    return config_from_dict({"teacher": {"path": str(teacher)}, "student": {"path": str(student)}, "data": {"train": str(data)},
                             **extra})


def test_the_six_recipes_are_there_in_plain_words_and_use_registered_methods():
    assert recipes.names() == ("traces", "logit_kd", "on_policy_kd", "self_distill", "traces_rlvr", "synthetic")
    titles = [r.title for r in recipes.RECIPES]
    assert titles == ["Reasoning traces, R1-Distill style", "Logit KD", "On-policy KD", "Self-distillation",
                      "Traces, then RL with verifiable rewards", "Synthetic data from the teacher"]
    for recipe in recipes.RECIPES:
        assert recipe.summary and recipe.needs
        for kind in [recipe.method["kind"], *recipe.stage_kinds()]:
            methods.get(kind)
    assert recipes.get("traces_rlvr").describe_stages() == ["traces: Hard-label SFT", "rlvr: RL with verifiable rewards"]
    with pytest.raises(ConfigError, match="'rl' is not a recipe; choose one of traces, logit_kd"):
        recipes.get("rl")


@pytest.mark.parametrize("name", recipes.names())
def test_a_saved_config_opens_on_the_recipe_it_was_made_with(name, tmp_path):
    recipe = recipes.get(name)
    config = recipes.apply(recipe, RunConfig())
    assert recipes.recipe_of(config) is recipe
    save_config(config, tmp_path / "run.yaml")
    again = load_config(tmp_path / "run.yaml")
    assert recipes.recipe_of(again) is recipe
    assert again.method.kind == recipe.method["kind"]
    assert [s["method"]["kind"] for s in again.stages] == recipe.stage_kinds()


def test_what_each_recipe_sets():
    base = RunConfig()
    assert recipes.recipe_of(base).name == "logit_kd"  # the default config
    on_policy = recipes.apply(recipes.get("on_policy_kd"), base)
    assert on_policy.method.kind == "kd" and on_policy.method.kd.on_policy == 0.5 and not on_policy.stages
    staged = recipes.apply(recipes.get("traces_rlvr"), on_policy)
    assert staged.method.kind == "rlvr" and [s["name"] for s in staged.stages] == ["traces", "rlvr"]
    assert [staged.stage_config(i).method.kind for i in range(2)] == ["sft", "rlvr"]
    back = recipes.apply(recipes.get("logit_kd"), staged)  # a one-run recipe ends the stages
    assert back.stages == [] and back.method.kd.on_policy == 0.0
    base.data.train = "/data/gsm8k.jsonl"
    synthetic = recipes.apply(recipes.get("synthetic"), base)
    assert synthetic.method.kind == "sft" and synthetic.data.train == "/data/gsm8k.jsonl"
    assert [(m.path, m.weight) for m in synthetic.data.mix] == [("/data/gsm8k.synthetic.jsonl", recipes.SYNTHETIC_WEIGHT)]
    assert recipes.apply(recipes.get("traces"), synthetic).data.mix == []  # trace SFT on data.train alone
    # Keys the user gave on the command line keep their values.
    kept = recipes.apply(recipes.get("on_policy_kd"), RunConfig(), keep=("method.kd.on_policy",))
    assert kept.method.kind == "kd" and kept.method.kd.on_policy == 0.0


def test_tuned_settings_keep_the_recipe_and_other_changes_make_it_custom():
    config = recipes.apply(recipes.get("on_policy_kd"), RunConfig())
    config.method.kd.on_policy = 0.9
    config.training.learning_rate = 1e-3
    assert recipes.recipe_of(config).name == "on_policy_kd"
    config.method.kind = "cross_kd"
    assert recipes.recipe_of(config) is None
    staged = recipes.apply(recipes.get("traces_rlvr"), RunConfig())
    staged.stages.append({"name": "more", "method": {"kind": "sft"}})
    assert recipes.recipe_of(staged) is None
    staged.stages = [{"name": "traces", "method": {"kind": "sft"}}, {"name": "rlvr"}]  # the stage takes method.kind: rlvr
    assert recipes.recipe_of(staged).name == "traces_rlvr"


def test_the_rl_stage_of_the_recipe_takes_enough_questions_a_step():
    from distill_gui.core.methods.rlvr import FEW_QUESTIONS

    rl = recipes.apply(recipes.get("traces_rlvr"), RunConfig()).stage_config(1)
    assert rl.method.kind == "rlvr"
    answers = rl.training.batch_size * rl.training.gradient_accumulation_steps
    assert answers // rl.method.rlvr.group_size >= FEW_QUESTIONS


def test_rlvr_on_data_without_reference_answers_says_why(tiny_pair, tiny_data, tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps({"prompt": f"Say hi {i}", "completion": " hello there"}) for i in range(5)), encoding="utf-8")
    recipe = recipes.get("traces_rlvr")
    config = recipes.apply(recipe, _config(tiny_pair, plain))
    missing = recipes.unmet(recipes.check_needs(recipe, config))
    assert [c.need for c in missing] == [recipes.REFERENCES]
    assert "no reference answers" in missing[0].text and "'#### <answer>'" in missing[0].text
    good = recipes.apply(recipe, _config(tiny_pair, tiny_data))
    assert recipes.unmet(recipes.check_needs(recipe, good)) == []
    assert recipes.check_needs(recipe, good, references=False)[1].met is False  # what the app already knows wins
    good.validate_for_run()  # and the run would start


def test_a_missing_teacher_or_checker_is_named():
    config = recipes.apply(recipes.get("logit_kd"), RunConfig())
    (need,) = recipes.check_needs(recipes.get("logit_kd"), config)
    assert need.met is False and "teacher.path" in need.text
    config.teacher.url = "http://localhost:11434/v1"
    assert recipes.check_needs(recipes.get("traces"), config)[0].met is True  # a served teacher writes traces
    assert recipes.check_needs(recipes.get("logit_kd"), config)[0].met is False  # its log-probs need the teacher cache
    config.method.kd.cache_teacher = True
    assert recipes.check_needs(recipes.get("logit_kd"), config)[0].met is True
    assert recipes.check_needs(recipes.get("on_policy_kd"), config)[0].met is False  # the student's answers need the model
    sd = recipes.apply(recipes.get("self_distill"), RunConfig())
    sd.method.self_distill.checker = "nonsense"
    checks = {c.need: c for c in recipes.check_needs(recipes.get("self_distill"), sd)}
    assert checks[recipes.VERIFIER].met is False and "method.self_distill.checker: 'nonsense' is not a checker" in checks[recipes.VERIFIER].text
    assert checks[recipes.REFERENCES].met is None  # no data chosen yet: not known


def test_the_synthetic_recipe_says_how_to_make_its_data_then_is_satisfied(tiny_pair, tiny_data, tmp_path):
    recipe = recipes.get("synthetic")
    data = tmp_path / "seeds.jsonl"
    data.write_text(tiny_data.read_text(encoding="utf-8"), encoding="utf-8")
    config = recipes.apply(recipe, _config(tiny_pair, data))
    out = tmp_path / "seeds.synthetic.jsonl"
    (need,) = recipes.unmet(recipes.check_needs(recipe, config))
    assert need.need == recipes.SYNTHETIC_DATA
    assert f"distill-gui generate-data --synthetic {recipes.SYNTHETIC_QUESTIONS}" in need.text
    assert f"--data {data}" in need.text and f"--out {out}" in need.text and f"--teacher {tiny_pair[0]}" in need.text
    rows = [{"question": f"What is {i} plus 1?", "answer": f"{i} + 1 = {i + 1}. #### {i + 1}", "confidence": 1.0} for i in range(6)]
    out.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert recipes.unmet(recipes.check_needs(recipe, config)) == []
    config.validate_for_run()


@pytest.mark.slow
def test_the_traces_then_rlvr_recipe_trains_its_two_stages(tiny_pair, tiny_data, tmp_path):
    config = recipes.apply(recipes.get("traces_rlvr"), _config(tiny_pair, tiny_data))
    config.training.max_steps, config.training.batch_size, config.training.save_steps = 1, 4, 0
    config.training.precision = "fp32"
    config.method.rlvr.max_completion_length = 4
    events: list = []
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished"
    stages = stage_runs(outcome.run)
    assert sorted(stages) == ["01-traces", "02-rlvr"]
    assert stages["02-rlvr"].load_config().method.kind == "rlvr"
    assert [e.step for e in events if isinstance(e, StepLogged)] == [1, 2]
    assert recipes.recipe_of(outcome.run.load_config()).name == "traces_rlvr"


def test_a_served_teacher_makes_the_synthetic_data_through_its_server():
    config = recipes.apply(recipes.get("synthetic"), RunConfig())
    config.teacher.url, config.teacher.model = "http://localhost:11434/v1", "qwen2.5:7b"
    config.data.train = "/data/seeds.jsonl"
    command = recipes.synthetic_command(config, "/data/seeds.synthetic.jsonl")
    assert "--teacher-url http://localhost:11434/v1 --teacher-model qwen2.5:7b" in command and "--teacher " not in command
    checks = {c.need: c for c in recipes.check_needs(recipes.get("synthetic"), config)}
    assert checks[recipes.TEACHER].met is True and checks[recipes.SYNTHETIC_DATA].met is False
