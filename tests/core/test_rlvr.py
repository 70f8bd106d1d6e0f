"""RL with verifiable rewards (method.kind: rlvr) on tiny real models: GRPO through TRL, rewards from the verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill_gui.core import methods
from distill_gui.core.config import ConfigError, config_from_dict
from distill_gui.core.data import Example
from distill_gui.core.events import EvalLogged, LogMessage, RunStarted, StepLogged
from distill_gui.core.methods.rlvr import REPORTED, grpo_rows, reference_of
from distill_gui.core.methods.rlvr_rewards import ZERO_REWARD_ROUNDS, FormatReward, VerifierReward
from distill_gui.core.training import RunControl, train
from distill_gui.core.verify import register_checker

# A checker that accepts about half of a random model's answers, so groups have a reward spread to learn from.
register_checker("rlvr_test_even_length", lambda predicted, reference: len(predicted) % 2 == 0)


def _boom(predicted: str, reference: str) -> bool:
    if "7" in predicted:
        raise ValueError("cannot parse 7")
    return predicted.strip() == reference


register_checker("rlvr_test_raises_on_7", _boom)


def rl_config(student, data, rlvr=None, **training):
    settings = {"max_steps": 4, "batch_size": 8, "learning_rate": 1e-2, "save_steps": 0, "precision": "fp32", "logging_steps": 1}
    settings.update(training)
    section = {"group_size": 4, "max_completion_length": 6, "beta": 0.04, "checker": "rlvr_test_even_length"}
    section.update(rlvr or {})
    return config_from_dict({"name": "rl", "student": {"path": str(student)}, "data": {"train": str(data)},
                             "method": {"kind": "rlvr", "rlvr": section}, "training": settings})


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


# ---- Rewards


def test_the_reward_is_the_verifiers_verdict():
    warnings: list[str] = []
    metrics: dict[str, list[float]] = {}
    reward = VerifierReward("numeric", warnings.append)
    prompts = ["q1"] * 2 + ["q2"] * 2
    completions = ["3 + 4 = 7. #### 7", "#### 8", "so it is 12", "no idea"]
    values = reward(prompts=prompts, completions=completions, reference=["7", "7", "12", "12"],
                    log_metric=lambda k, v: metrics.setdefault(k, []).append(v))
    assert values == [1.0, 0.0, 1.0, 0.0]
    assert metrics == {"accuracy": [0.5], "solved_groups": [1.0], "verifier_errors": [0.0]}
    # chat prompts give completions as messages
    assert reward(prompts=["q"], completions=[[{"role": "assistant", "content": "#### 7"}]], reference=["7"]) == [1.0]
    assert not warnings


def test_an_answer_the_verifier_raises_on_counts_as_wrong_and_is_reported():
    warnings: list[str] = []
    metrics: dict[str, list[float]] = {}
    reward = VerifierReward("rlvr_test_raises_on_7", warnings.append)
    values = reward(prompts=["q"] * 4, completions=["5", "7", "17", "6"], reference=["5", "7", "17", "5"],
                    log_metric=lambda k, v: metrics.setdefault(k, []).append(v), trainer_state=type("S", (), {"global_step": 4})())
    assert values == [1.0, 0.0, 0.0, 0.0]
    assert metrics["verifier_errors"] == [0.5]
    assert len(warnings) == 1
    assert warnings[0].startswith("step 5: the rlvr_test_raises_on_7 verifier raised on 2 of 4 answers; they count as wrong.")
    assert "ValueError: cannot parse 7" in warnings[0]


def test_all_zero_rewards_are_reported_once_with_the_advice_to_train_on_traces_first():
    warnings: list[str] = []
    reward = VerifierReward("numeric", warnings.append)
    for _ in range(ZERO_REWARD_ROUNDS + 3):
        assert reward(prompts=["q", "q"], completions=["blah", "#### 3"], reference=["4", "4"]) == [0.0, 0.0]
    assert len(warnings) == 1
    assert f"first {ZERO_REWARD_ROUNDS} rounds: 0 of {2 * ZERO_REWARD_ROUNDS} sampled answers were correct" in warnings[0]
    assert "Train the student on reasoning traces first" in warnings[0]
    lucky = VerifierReward("numeric", warnings.append)
    lucky(prompts=["q"], completions=["#### 4"], reference=["4"])
    for _ in range(ZERO_REWARD_ROUNDS + 3):
        lucky(prompts=["q"], completions=["#### 3"], reference=["4"])
    assert len(warnings) == 1, "one correct answer early on means the student can be rewarded"


def test_the_format_reward_wants_an_explicit_final_answer():
    assert FormatReward()(prompts=["q"] * 4, completions=["so #### 12", "\\boxed{3}", "it is 12", "####"]) == [1.0, 1.0, 0.0, 0.0]


def test_references_and_prompts_for_grpo(tiny_tokenizer):
    assert reference_of(Example(prompt="q", completion="a #### 42", reference="42")) == "42"
    assert reference_of(Example(prompt="q", completion="so \\boxed{\\frac{1}{2}}")) == "so \\boxed{\\frac{1}{2}}"
    assert reference_of(Example(prompt="q", completion=" 1,200 ")) == "1,200"
    assert reference_of(Example(prompt="q", completion="a sentence with 3 words")) is None
    config = config_from_dict({"data": {"chat_template": "never", "max_length": 64}})
    examples = [Example(prompt="What is 2 plus 2?", completion="#### 4", reference="4", format="question_answer"),
                Example(prompt="Tell me a story", completion="Once upon a time"),
                Example(prompt="word " * 40, completion="#### 1", reference="1")]
    rows, unreferenced, too_long = grpo_rows(examples, tiny_tokenizer, config)
    assert rows == [{"prompt": "Question: What is 2 plus 2?\nAnswer: ", "reference": "4"}]
    assert (unreferenced, too_long) == (1, 1)


# ---- Settings


def test_settings_validate_with_the_field_and_what_to_do(tiny_pair, tiny_data):
    student = tiny_pair[1]
    assert methods.get("rlvr").teacher == methods.TEACHER_NONE
    assert not methods.needs_teacher(rl_config(student, tiny_data))
    rl_config(student, tiny_data).validate_for_run()
    with pytest.raises(ConfigError, match=r"training.batch_size: .*group_size=3 .*\(8 × 1 = 8\) .*multiple of 3"):
        rl_config(student, tiny_data, {"group_size": 3}).validate_for_run()
    rl_config(student, tiny_data, {"group_size": 3}, batch_size=3, gradient_accumulation_steps=2).validate_for_run()
    with pytest.raises(ConfigError, match="method.rlvr.checker: 'nope' is not a checker; choose one of .*numeric"):
        rl_config(student, tiny_data, {"checker": "nope"}).validate_for_run()
    with pytest.raises(ConfigError, match="method.rlvr.correct_weight: must be above 0"):
        rl_config(student, tiny_data, {"correct_weight": 0.0}).validate_for_run()
    for key, value in (("group_size", 1), ("beta", -0.1), ("clip_epsilon", 1.5), ("temperature", 0.0), ("loss_type", "ppo")):
        with pytest.raises(ConfigError, match=f"method.rlvr.{key}"):
            rl_config(student, tiny_data, {key: value})
    with pytest.raises(ConfigError, match="method.rlvr.beta: .*GGUF"):
        rl_config("model.gguf", tiny_data).validate_for_run()


def test_without_trl_the_method_says_how_to_install_it(tiny_pair, tiny_data, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"method.kind: rlvr trains with TRL's GRPOTrainer, which is not installed; .*distill-gui\[trl\]"):
        rl_config(tiny_pair[1], tiny_data).validate_for_run()


def test_data_without_reference_answers_is_refused_before_a_run_folder_is_made(tiny_pair, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"Say hi {i}", "completion": "Hello there, friend"}) for i in range(8)) + "\n")
    with pytest.raises(ConfigError, match=r"data.train: rlvr on data without reference answers: no row of .*chat.jsonl"):
        train(rl_config(tiny_pair[1], data), runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_memory_counts_the_sampled_groups_and_the_reference_model():
    from distill_gui.core.memory import estimate_memory
    from distill_gui.core.model_info import ModelInfo
    from distill_gui.core.models import ModelSource

    info = ModelInfo(source=ModelSource("folder", "x"), architecture="LlamaForCausalLM", model_type="llama", num_params=500_000_000,
                     vocab_size=32000, tokenizer_vocab_size=32000, hidden_size=1024, num_layers=24, intermediate_size=4096,
                     num_attention_heads=16, tie_word_embeddings=False, disk_dtype="bf16", disk_bytes=10**9,
                     num_linear_layers=168, linear_dims_total=24 * 7 * 4096)

    def share(**over):
        settings = {"method": {"kind": "rlvr", "rlvr": {"beta": over.pop("beta", 0.0), "max_completion_length": over.pop("length", 256)}},
                    "training": {"batch_size": 8, "gradient_accumulation_steps": over.pop("accumulation", 1)},
                    "student": {"lora": {"enabled": over.pop("lora", False)}}}
        config = config_from_dict(settings)
        return estimate_memory(None, info, config=config, student_dtype_bytes=2, device_total_bytes=1 << 40).logits

    base = share()
    assert share(length=1024) > base  # longer answers: a longer KV cache and more positions
    assert share(accumulation=2) == base  # training on 8 answers at a time outweighs sampling 16
    assert share(accumulation=32) > base  # the whole generation batch (256 answers) is sampled at once
    assert share(beta=0.04) - base == 500_000_000 * 2  # a frozen copy of the starting model
    assert share(beta=0.04, lora=True) == share(lora=True)  # LoRA: the base model is the reference


# ---- Runs


@pytest.fixture(scope="module")
def sft_run(tiny_pair, tiny_data, tmp_path_factory):
    """A finished SFT run of the tiny student: the RL runs start from its folder (R1-Distill → RL)."""
    config = config_from_dict({"name": "sft", "student": {"path": str(tiny_pair[1])}, "data": {"train": str(tiny_data)},
                               "method": {"kind": "sft"},
                               "training": {"max_steps": 2, "batch_size": 4, "save_steps": 0, "precision": "fp32"}})
    outcome = train(config, runs_root=tmp_path_factory.mktemp("sft"))
    assert outcome.state == "finished"
    return outcome.run


def test_a_run_from_an_sft_run_folder_trains_with_the_verifier_and_reports_its_metrics(sft_run, tiny_data, tmp_path):
    events = []
    config = rl_config(sft_run.path, tiny_data, save_steps=2)
    config.data.eval_fraction = 0.2
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished" and outcome.step == 4
    evaluated = [e for e in events if isinstance(e, EvalLogged)]
    assert len(evaluated) == 1 and 0.0 <= evaluated[0].metrics["eval_accuracy"] <= 1.0  # sampled on held-out questions
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.method == "rlvr"
    assert {spec["key"] for spec in started.metric_specs} >= {"reward", "accuracy", "kl", "completions_mean_length", "frac_reward_zero_std"}
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    for event in steps:
        assert {spec["key"] for spec in started.metric_specs} <= set(event.metrics) <= REPORTED | {"rewards_verifier_mean"}
        assert 0.0 <= event.metrics["accuracy"] <= 1.0 and event.metrics["completions_mean_length"] <= 6
        assert event.metrics["reward"] == pytest.approx(event.metrics["accuracy"])  # correct_weight 1, no format reward
    assert any(0 < e.metrics["accuracy"] < 1 for e in steps)
    assert any(e.metrics["kl"] > 0 for e in steps[1:]), "the policy moved away from the starting one"
    assert [s for s, _ in outcome.run.checkpoints()] == [2, 4]
    start, end = weights(sft_run.final_dir), weights(outcome.final_path)
    assert any(not torch.equal(start[k], end[k]) for k in start)
    recorded = [m for m in outcome.run.metrics() if m["event"] == "StepLogged"]
    assert len(recorded) == 4 and "accuracy" in recorded[-1]["metrics"]


@pytest.mark.slow
def test_grpo_raises_the_share_of_answers_the_verifier_accepts(tiny_pair, tiny_data, tmp_path):
    """A learnable reward (the answer writes a digit; about 1 in 5 do at first): accuracy climbs to nearly all."""
    register_checker("rlvr_test_has_digit", lambda predicted, reference: any(c.isdigit() for c in predicted))
    config = rl_config(tiny_pair[1], tiny_data, {"group_size": 8, "max_completion_length": 4, "beta": 0.0, "checker": "rlvr_test_has_digit"},
                       max_steps=20, batch_size=16, lr_scheduler="constant")
    accuracy = []
    outcome = train(config, runs_root=tmp_path, on_event=lambda e: accuracy.append(e.metrics["accuracy"]) if isinstance(e, StepLogged) else None)
    assert outcome.state == "finished" and len(accuracy) == 20
    first, last = sum(accuracy[:5]) / 5, sum(accuracy[-5:]) / 5
    assert first < 0.4 and last > first + 0.3, accuracy


def test_a_student_that_never_answers_right_is_told_to_train_on_traces_first(tiny_pair, tiny_data, tmp_path):
    events = []
    config = rl_config(tiny_pair[1], tiny_data, {"checker": "numeric"}, max_steps=3)
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished"
    warned = [e for e in events if isinstance(e, LogMessage) and e.level == "warning" and "no answer earned a reward" in e.text]
    assert len(warned) == 1
    # 8 answers a step, 4 per question: the run is also told its steps are too small to trust.
    assert [e.text.split(" (")[0] for e in events if isinstance(e, LogMessage) and "questions per optimizer step (" in e.text] == [
        "rlvr: 2 questions per optimizer step"
    ]
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert events.index(warned[0]) < events.index(steps[ZERO_REWARD_ROUNDS - 1]) + 2
    assert all(e.metrics["frac_reward_zero_std"] == 1.0 and e.metrics["accuracy"] == 0.0 for e in steps[:ZERO_REWARD_ROUNDS])


def test_a_step_of_few_questions_is_warned_with_the_accumulation_that_fixes_it(tiny_pair, tiny_data):
    from distill_gui.core.methods.rlvr import FEW_QUESTIONS, few_questions_warning

    config = rl_config(tiny_pair[1], tiny_data, {"group_size": 8}, batch_size=32)
    text = few_questions_warning(4, config)
    assert text.startswith("rlvr: 4 questions per optimizer step") and "gradient_accumulation_steps to 4 or more" in text
    config.training.gradient_accumulation_steps = 4
    config.validate_for_run()  # the advice is a valid setting: 128 answers, 16 questions
    assert config.training.batch_size * 4 // 8 == FEW_QUESTIONS


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_stop_and_resume_finishes_like_an_uninterrupted_run(tiny_pair, tiny_data, tmp_path, lora):
    def config():
        # A new LoRA adapter draws its A matrices from the global RNG, which nothing seeds before the student
        # loads (the same for every method): seed it here so both runs start from the same adapter.
        torch.manual_seed(0)
        made = rl_config(tiny_pair[1], tiny_data)
        made.student.lora.enabled, made.student.lora.r = lora, 4
        return made

    reference = train(config(), runs_root=tmp_path / "a")
    control = RunControl()

    def stop_at_two(event):
        if isinstance(event, StepLogged) and event.step == 2:
            control.request_stop()

    stopped = train(config(), runs_root=tmp_path / "b", on_event=stop_at_two, control=control)
    assert stopped.state == "stopped" and stopped.step == 2
    assert [s for s, _ in stopped.run.checkpoints()] == [2]
    resumed = train(None, run=stopped.run, resume=True)
    assert resumed.state == "finished" and resumed.step == 4
    steps = [m["step"] for m in resumed.run.metrics() if m["event"] == "StepLogged"]
    assert steps == [1, 2, 3, 4]
    a, b = weights(reference.final_path), weights(resumed.final_path)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_lora_rlvr_from_the_cli(tiny_pair, tiny_data, tmp_path, capsys):
    from distill_gui.cli import main
    from distill_gui.core.runs import RunDir

    config = tmp_path / "rl.yaml"
    config.write_text(
        f"student: {{path: {tiny_pair[1]}, lora: {{enabled: true, r: 4, alpha: 8}}}}\n"
        f"data: {{train: {tiny_data}}}\n"
        "method: {kind: rlvr, rlvr: {group_size: 2, max_completion_length: 6, beta: 0.1, format_weight: 0.5, checker: rlvr_test_even_length, "
        "sampler: trl}}\n"
        "training: {max_steps: 3, batch_size: 4, learning_rate: 1.0e-2, save_steps: 2, precision: fp32}\n"
    )
    code = main(["train", str(config), "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    run = RunDir(Path(out[-1]))
    assert run.status()["state"] == "finished" and run.final_model() is not None
    assert (run.final_dir / "adapter").is_dir() and (run.final_dir / "model.safetensors").is_file()
    assert not list(run.path.rglob("ref")), "the reference is the base model (adapter off), not a saved copy"
    steps = [m for m in run.metrics() if m["event"] == "StepLogged"]
    assert len(steps) == 3 and all("rewards_format_mean" in m["metrics"] for m in steps)
    assert all(m["metrics"]["reward"] == pytest.approx(m["metrics"]["accuracy"] + 0.5 * m["metrics"]["rewards_format_mean"]) for m in steps)
    assert steps[0]["metrics"]["kl"] == pytest.approx(0.0, abs=1e-6) and steps[-1]["metrics"]["kl"] > 0  # KL to the base model


CHILD = """
import sys
from distill_gui.core.verify import register_checker
register_checker("rlvr_test_even_length", lambda predicted, reference: len(predicted) % 2 == 0)
from distill_gui.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tiny_pair, tiny_data, tmp_path):
    import sys

    import kill_and_resume

    from distill_gui.core import checkpoints as ckpt
    from distill_gui.core.config import save_config
    from distill_gui.core.events import CheckpointSaved
    from distill_gui.core.runs import RunDir

    config = rl_config(tiny_pair[1], tiny_data, max_steps=6, save_steps=2)
    reference = train(config, runs_root=tmp_path / "a")
    save_config(config, tmp_path / "run.yaml")
    command = [sys.executable, "-c", CHILD]
    run_dir = kill_and_resume.train_then_kill(command, tmp_path / "run.yaml", tmp_path / "b",
                                              lambda e: isinstance(e, CheckpointSaved) and e.step >= 2)
    run = RunDir(run_dir)
    assert run.final_model() is None, "the run finished before it was killed; the test proved nothing"
    killed_at = run.latest_checkpoint()
    assert killed_at is not None and ckpt.is_complete(killed_at)
    kill_and_resume.resume(command, run_dir)
    a = weights(reference.final_path)
    assert any(not torch.equal(a[k], weights(tiny_pair[1])[k]) for k in a), "the run must have learned something"
    kill_and_resume.assert_same_weights(reference.final_path, run.final_dir)


def test_a_chat_students_end_of_turn_ends_its_sampled_answers(tiny_tokenizer):
    import tiny_models

    from distill_gui.core.methods.rlvr import stop_at_turn_end

    tokenizer = tiny_models.build_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|system|>{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")  # <|system|> stands in for <|im_end|>
    model = tiny_models.build_llama(tokenizer)
    config = config_from_dict({})
    stop_at_turn_end(model, tokenizer, config)
    end = tokenizer.convert_tokens_to_ids("<|system|>")
    assert model.generation_config.eos_token_id == [tokenizer.eos_token_id, end]
    stop_at_turn_end(model, tokenizer, config)
    assert model.generation_config.eos_token_id == [tokenizer.eos_token_id, end], "added once"
    plain = tiny_models.build_llama(tiny_tokenizer)  # its template ends a turn with EOS already
    stop_at_turn_end(plain, tiny_tokenizer, config)
    assert plain.generation_config.eos_token_id == tiny_tokenizer.eos_token_id


def test_a_mix_needs_reference_answers_in_one_source_only(tiny_pair, tiny_data, tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text("\n".join(json.dumps({"prompt": f"Say hi {i}", "completion": "Hello there, friend"}) for i in range(8)) + "\n")
    config = rl_config(tiny_pair[1], chat)
    config.data.mix = [_mix_source(tiny_data)]
    config.validate_for_run()  # the mixed-in source has references: rows without them are left out
    config.data.mix = [_mix_source(chat)]
    with pytest.raises(ConfigError, match=r"data.train: rlvr on data without reference answers: no row of .*chat.jsonl or the other data.mix sources"):
        config.validate_for_run()
    config.data.train, config.data.eval = str(tiny_data), str(chat)
    with pytest.raises(ConfigError, match=r"data.eval: rlvr on data without reference answers"):
        config.validate_for_run()


def _mix_source(path):
    from distill_gui.core.config import MixSource

    return MixSource(path=str(path), weight=1.0)


def test_a_run_folder_as_a_model_path_needs_a_loadable_checkpoint(tiny_pair, tmp_path):
    from distill_gui.core import checkpoints as ckpt
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import ModelError, resolve_source
    from distill_gui.core.runs import RunDir

    run = RunDir.create(tmp_path, config_from_dict({"name": "lora", "student": {"path": str(tiny_pair[1]), "lora": {"enabled": True}}}))
    with pytest.raises(ModelError, match="this run has no complete checkpoint yet"):
        resolve_source(ModelConfig(path=str(run.path)))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "adapter_config.json").write_text("{}")
    (staging / "adapter_model.safetensors").write_bytes(b"")
    ckpt.commit(staging, run.checkpoints_dir / "step-000002", {"step": 2})
    with pytest.raises(ModelError, match=r"this run has not finished and its latest checkpoint \(step-000002\) holds only a LoRA adapter; resume"):
        resolve_source(ModelConfig(path=str(run.path)))
    assert resolve_source(ModelConfig(path=str(tiny_pair[1]))).path == str(tiny_pair[1].resolve())  # a model folder stays itself
