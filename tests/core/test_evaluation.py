"""Evaluating a run folder uses the prompt settings the run was trained with, unless overridden."""

from __future__ import annotations

import json

import pytest

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import RunConfig
from distill_gui.core.data import load_examples
from distill_gui.core.evaluation import EvalSettings, evaluate_loaded, evaluate_model, with_run_data_settings
from distill_gui.core.runs import RunDir

SYSTEM = "Answer with the number only."
COLUMNS = {"prompt": "q", "completion": "a"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_tokenizer):
    """A finished run folder (a tiny model in final/) trained with its own columns, chat template and system prompt,
    and a data file in those columns."""
    import tiny_models

    root = tmp_path_factory.mktemp("eval")
    data = root / "qa.jsonl"
    rows = [{"q": f"What is {a} plus {b}?", "a": f" {a} + {b} = {a + b}. #### {a + b}"} for a, b in [(1, 2), (3, 4), (5, 1), (2, 2)]]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    config = RunConfig()
    config.data.train = str(data)
    config.data.format = "prompt_completion"
    config.data.columns = dict(COLUMNS)
    config.data.chat_template = "always"
    config.data.system_prompt = SYSTEM
    run = RunDir.create(root / "runs", config)
    model = tiny_models.build_llama(tiny_tokenizer, seed=3)
    with ckpt.atomic_checkpoint(run.final_dir) as staging:
        tiny_models.save_pair_member(staging, tiny_tokenizer, model)
    return run, data, model


def _perplexity(model, tokenizer, data, **settings) -> float:
    examples, _ = load_examples(str(data), "prompt_completion", COLUMNS)
    return evaluate_loaded(model, tokenizer, examples, EvalSettings(max_new_tokens=2, device="cpu", **settings)).perplexity


def test_run_folder_brings_its_data_settings(trained_run):
    run, _, _ = trained_run
    taken = with_run_data_settings(run.path, EvalSettings())
    assert (taken.data_format, taken.columns, taken.chat_template, taken.system_prompt) == (
        "prompt_completion", COLUMNS, "always", SYSTEM)
    kept = with_run_data_settings(run.path, EvalSettings(chat_template="auto"), given={"chat_template"})
    assert kept.chat_template == "auto" and kept.system_prompt == SYSTEM
    assert with_run_data_settings(run.final_dir, EvalSettings()) == EvalSettings()  # a model folder: unchanged


def test_eval_of_a_run_folder_scores_the_runs_prompts(trained_run, tiny_tokenizer):
    run, data, model = trained_run
    result = evaluate_model(run.path, data, EvalSettings(max_new_tokens=2, device="cpu"))
    assert result.rows == 4
    want = _perplexity(model, tiny_tokenizer, data, chat_template="always", system_prompt=SYSTEM)
    other = _perplexity(model, tiny_tokenizer, data, chat_template="never")
    assert result.perplexity == pytest.approx(want, rel=1e-5)
    assert other != pytest.approx(want, rel=1e-3)  # the prompt format changes the score


def test_the_command_line_overrides_the_run(trained_run, tiny_tokenizer, capsys):
    from distill_gui.cli import main

    run, data, model = trained_run
    assert main(["eval", str(run.path), "--data", str(data), "--json", "--max-new-tokens", "2", "--device", "cpu",
                 "--chat-template", "never"]) == 0
    result = json.loads(capsys.readouterr().out)
    want = _perplexity(model, tiny_tokenizer, data, chat_template="never", system_prompt=SYSTEM)
    assert result["perplexity"] == pytest.approx(want, rel=1e-5)

    assert main(["eval", str(run.path), "--data", str(data), "--json", "--max-new-tokens", "2", "--device", "cpu",
                 "--system-prompt", "Think step by step.", "--column", "prompt=q", "--column", "completion=a"]) == 0
    result = json.loads(capsys.readouterr().out)
    want = _perplexity(model, tiny_tokenizer, data, chat_template="always", system_prompt="Think step by step.")
    assert result["perplexity"] == pytest.approx(want, rel=1e-5)


def test_a_bad_column_flag_is_one_clear_error(trained_run, capsys):
    from distill_gui.cli import main

    run, data, _ = trained_run
    assert main(["eval", str(run.path), "--data", str(data), "--column", "prompt"]) != 0
    assert "write FIELD=COLUMN" in capsys.readouterr().err
