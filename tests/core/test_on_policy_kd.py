"""On-policy KD (method.kd.on_policy = λ): the student samples, the teacher scores every token it wrote.

The sampler against transformers' greedy ``generate`` and its shrinking batch; the on-policy loss and its
gradient against a plain full-logit reference; a mixed step's gradient against the token-weighted plain
reference over the very micro-batches the run trained on; λ = 0 is plain KD bit for bit; a λ = 1 run
reports ``kd_on_policy``; stop/resume and SIGKILL/resume end with the same weights; settings validate.
"""

from __future__ import annotations

import os
import subprocess
import sys

import kill_and_resume
import pytest
import tiny_models
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from distill_gui.core.config import config_from_dict
from distill_gui.core.events import CheckpointSaved, RunStarted, StepLogged
from distill_gui.core.generation import sample_token_ids
from distill_gui.core.methods import StepContext, get, kd_on_policy
from distill_gui.core.methods.kd_on_policy import ON_POLICY_KEY, is_on_policy, on_policy_batch, prompt_tokens
from distill_gui.core.runs import RunDir
from distill_gui.core.schema import ConfigError
from distill_gui.core.training import RunControl, callbacks, train

# ---- helpers -------------------------------------------------------------------------------------


def make_config(tiny_pair, data, kd=None, **training):
    teacher, student = tiny_pair
    settings = {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 0, "precision": "fp32",
                "logging_steps": 1, "seed": 3}
    settings.update(training)
    return config_from_dict({
        "teacher": {"path": str(teacher)}, "student": {"path": str(student)}, "data": {"train": str(data)},
        "method": {"kind": "kd", "kd": {"alpha": 0.5, "chunk_size": 7, "max_new_tokens": 6, **(kd or {})}},
        "training": settings,
    })


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def plain_divergence(kind, s_logits, t_logits, beta, temperature):
    """Per-position divergence from full logits, written out from the definitions."""
    s = F.log_softmax(s_logits.double() / temperature, -1)
    t = F.log_softmax(t_logits.double() / temperature, -1)
    ps, pt = s.exp(), t.exp()
    if kind == "forward_kl":
        return (pt * (t - s)).sum(-1)
    if kind == "reverse_kl":
        return (ps * (s - t)).sum(-1)
    m = torch.log(beta * pt + (1 - beta) * ps)
    return beta * (pt * (t - m)).sum(-1) + (1 - beta) * (ps * (s - m)).sum(-1)


def plain_sums(student, teacher, batch, kd):
    """(sum of the micro-batch's per-token loss, its trained tokens) from full logits: on-policy the divergence
    times T², off-policy alpha * that + (1 - alpha) * cross-entropy."""
    s_logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    with torch.no_grad():
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    div = plain_divergence(kd["loss"], s_logits[keep], t_logits[keep], kd.get("beta", 0.5), kd.get("temperature", 1.0))
    div = div * kd.get("temperature", 1.0) ** 2
    if ON_POLICY_KEY in batch:
        return div.sum(), int(keep.sum())
    ce = F.cross_entropy(s_logits[keep].double(), labels[keep], reduction="none")
    return (kd["alpha"] * div + (1 - kd["alpha"]) * ce).sum(), int(keep.sum())


@pytest.fixture(scope="module")
def peaked_pair(tiny_tokenizer):
    """An in-memory tiny teacher and student whose output heads are scaled up (peaked, unlike random models)."""
    teacher = tiny_models.build_llama(tiny_tokenizer, hidden=48, layers=2, seed=1).eval()
    student = tiny_models.build_llama(tiny_tokenizer, hidden=32, layers=1, seed=2)
    with torch.no_grad():
        teacher.lm_head.weight.mul_(40.0)
        student.lm_head.weight.mul_(25.0)
    return teacher, student


def data_batch(tokenizer, pairs):
    from distill_gui.core.data import DataCollator

    rows = []
    for prompt, completion in pairs:
        p = tokenizer(prompt)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    return DataCollator(tokenizer.pad_token_id)(rows)


PAIRS = [("Question: What is 3 plus 4? Answer:", " 3 + 4 = 7. #### 7"), ("Hi", " there"),
         ("The quick brown fox", " jumps over the lazy dog.")]


# ---- the sampler ---------------------------------------------------------------------------------


def test_greedy_sampling_matches_transformers_generate(tiny_tokenizer, peaked_pair):
    _, student = peaked_pair
    prompts = [tiny_tokenizer(p)["input_ids"] for p, _ in PAIRS]
    ours = sample_token_ids(student, prompts, max_new_tokens=10, temperature=0.0, stop_ids=[], pad_id=tiny_tokenizer.pad_token_id)
    for prompt, tokens in zip(prompts, ours):
        reference = student.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), max_new_tokens=10,
            do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=None,
        )[0, len(prompt):].tolist()
        assert tokens == reference


def test_finished_rows_leave_the_batch(tiny_tokenizer, peaked_pair):
    _, student = peaked_pair
    prompts = [tiny_tokenizer(p)["input_ids"] for p, _ in PAIRS]
    free = sample_token_ids(student, prompts, max_new_tokens=8, temperature=0.0, stop_ids=[], pad_id=0)
    stop = free[1][0]  # the second row's first token ends it at once
    assert stop not in free[0][:4] and stop not in free[2][:4], "pick prompts whose other rows do not stop early"
    rows_per_call = []
    hook = student.model.register_forward_pre_hook(lambda module, args, kwargs: rows_per_call.append(kwargs["input_ids"].shape[0]),
                                                   with_kwargs=True)
    try:
        stopped = sample_token_ids(student, prompts, max_new_tokens=8, temperature=0.0, stop_ids=[stop], pad_id=0)
    finally:
        hook.remove()
    assert stopped[1] == [stop]  # the stop token is kept, nothing after it
    assert stopped[0] == free[0][: len(stopped[0])] and stopped[2] == free[2][: len(stopped[2])]
    assert rows_per_call[:2] == [3, 2], "the finished row was not dropped from the batch"


def test_seeded_sampling_repeats_and_differs_by_seed(tiny_tokenizer, peaked_pair):
    _, student = peaked_pair
    prompts = [tiny_tokenizer(p)["input_ids"] for p, _ in PAIRS]

    def draw(seed):
        return sample_token_ids(student, prompts, max_new_tokens=12, temperature=1.5, stop_ids=[], pad_id=0,
                                generator=torch.Generator().manual_seed(seed))

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_sampling_follows_the_models_distribution_at_the_temperature(tiny_tokenizer, peaked_pair):
    _, student = peaked_pair
    prompt = tiny_tokenizer("Question: What is 3 plus 4? Answer:")["input_ids"]
    temperature, rows = 2.0, 4000
    with torch.no_grad():
        probs = torch.softmax(student(torch.tensor([prompt])).logits[0, -1].double() / temperature, -1)
    drawn = sample_token_ids(student, [prompt] * rows, max_new_tokens=1, temperature=temperature, stop_ids=[], pad_id=0,
                             generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(torch.tensor([d[0] for d in drawn]), minlength=probs.shape[0]).double() / rows
    assert probs.max() < 0.9, "a near-deterministic next token cannot test sampling"
    top = probs.topk(10).indices
    sigma = (probs[top] * (1 - probs[top]) / rows).sqrt()
    assert bool(((counts[top] - probs[top]).abs() < 4.5 * sigma).all()), (counts[top], probs[top])
    rest = 1 - probs[top].sum()
    assert abs(float(1 - counts[top].sum() - rest)) < 4.5 * float((rest * (1 - rest) / rows).sqrt())


# ---- the on-policy batch and its loss ------------------------------------------------------------


def test_on_policy_batch_keeps_the_prompt_and_trains_only_the_students_tokens(tiny_tokenizer, peaked_pair):
    _, student = peaked_pair
    batch = data_batch(tiny_tokenizer, PAIRS)
    prompts = prompt_tokens(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert prompts == [tiny_tokenizer(p)["input_ids"] for p, _ in PAIRS]
    new = on_policy_batch(student, batch, max_new_tokens=5, temperature=0.0, stop_ids=[], pad_id=tiny_tokenizer.pad_token_id)
    sampled = sample_token_ids(student, prompts, max_new_tokens=5, temperature=0.0, stop_ids=[], pad_id=0)
    assert ON_POLICY_KEY in new
    for row, (prompt, completion) in enumerate(zip(prompts, sampled)):
        n = len(prompt) + len(completion)
        assert new["input_ids"][row, :n].tolist() == prompt + completion
        assert new["labels"][row, :n].tolist() == [-100] * len(prompt) + completion
        assert new["attention_mask"][row].tolist() == [1] * n + [0] * (new["input_ids"].shape[1] - n)
        assert set(new["labels"][row, n:].tolist()) <= {-100}
    # the models' context caps prompt + completion
    limit = max(len(p) for p in prompts) + 3
    capped = on_policy_batch(student, batch, max_new_tokens=50, temperature=0.0, stop_ids=[], pad_id=0, max_positions=limit)
    assert int(capped["attention_mask"].sum(1).max()) == limit


@pytest.mark.parametrize("kd", [
    {"loss": "forward_kl"},
    {"loss": "reverse_kl", "temperature": 2.0},
    {"loss": "jsd", "beta": 0.3},
    {"loss": "jsd", "beta": 0.7, "temperature": 0.5, "top_k": 0, "chunk_size": 3},
], ids=["forward_kl", "reverse_kl-T2", "jsd-0.3", "jsd-0.7-T0.5-chunked"])
def test_on_policy_loss_and_gradient_match_the_plain_reference(tiny_tokenizer, peaked_pair, kd):
    teacher, student = peaked_pair
    kd = {"alpha": 0.3, **kd}  # alpha must not matter on-policy
    config = config_from_dict({"method": {"kind": "kd", "kd": kd}})
    batch = on_policy_batch(student, data_batch(tiny_tokenizer, PAIRS), max_new_tokens=6, temperature=1.0, stop_ids=[],
                            pad_id=tiny_tokenizer.pad_token_id, generator=torch.Generator().manual_seed(0))
    ctx = StepContext(config=config, teacher=teacher, teacher_device=torch.device("cpu"))

    student.zero_grad()
    result = get("kd").loss(ctx, student, batch)
    result.total.backward()
    ours = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    assert set(result.metrics) == {"kd_on_policy"}
    assert float(result.metrics["kd_on_policy"]) == pytest.approx(result.total.item(), rel=1e-6)

    student.zero_grad()
    total, tokens = plain_sums(student, teacher, batch, {"loss": kd["loss"], **kd})
    reference = total / tokens
    reference.backward()
    assert tokens == int((batch["labels"][:, 1:] != -100).sum()) and tokens >= 3 * 5
    assert result.total.item() == pytest.approx(reference.item(), rel=1e-5)
    assert reference.item() > 1e-2, "the pair is too alike for the comparison to mean anything"
    for name, p in student.named_parameters():
        if p.grad is None:
            continue
        # float32 loss against a float64 reference: elementwise within 1e-4 of the tensor's largest entry
        scale = float(p.grad.abs().max())
        torch.testing.assert_close(ours[name], p.grad.to(ours[name].dtype), rtol=1e-4, atol=1e-4 * scale, msg=lambda m: f"{name}: {m}")
    student.zero_grad()


def test_the_choice_is_seeded_and_takes_the_fraction():
    draws = [is_on_policy(7, step, micro, 0.3) for step in range(500) for micro in range(4)]
    assert draws == [is_on_policy(7, step, micro, 0.3) for step in range(500) for micro in range(4)]
    assert abs(sum(draws) / len(draws) - 0.3) < 0.04
    assert not any(is_on_policy(7, s, 0, 0.0) for s in range(100)) and all(is_on_policy(7, s, 0, 1.0) for s in range(100))


# ---- runs ----------------------------------------------------------------------------------------


def test_lambda_zero_is_plain_kd_bit_for_bit(tiny_pair, tiny_data, tmp_path):
    plain = train(make_config(tiny_pair, tiny_data), runs_root=tmp_path / "plain")
    zero = train(make_config(tiny_pair, tiny_data, {"on_policy": 0.0, "max_new_tokens": 99}), runs_root=tmp_path / "zero")
    a, b = weights(plain.final_path), weights(zero.final_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [m for m in zero.run.metrics() if m["event"] == "StepLogged"]
    assert all(set(m["metrics"]) == {"kd", "ce"} for m in steps)


def test_lambda_one_trains_on_the_students_own_samples_and_reports_it(tiny_pair, tiny_data, tmp_path, monkeypatch):
    made = []
    real = kd_on_policy.on_policy_batch

    def recording(model, batch, **kwargs):
        made.append((batch, real(model, batch, **kwargs)))
        return made[-1][1]

    monkeypatch.setattr(kd_on_policy, "on_policy_batch", recording)
    events = []
    outcome = train(make_config(tiny_pair, tiny_data, {"on_policy": 1.0, "on_policy_temperature": 1.0}), runs_root=tmp_path,
                    on_event=events.append)
    assert outcome.state == "finished" and outcome.step == 4
    started = next(e for e in events if isinstance(e, RunStarted))
    assert "kd_on_policy" in [spec["key"] for spec in started.metric_specs]
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    for e in steps:
        assert set(e.metrics) == {"kd_on_policy"}
        assert e.loss == pytest.approx(e.metrics["kd_on_policy"], rel=1e-4)
    assert len(made) == 4  # one micro-batch a step, every one on-policy
    for data, new in made:
        for row in range(data["input_ids"].shape[0]):
            prompt = prompt_tokens(data["input_ids"][row:row + 1], data["attention_mask"][row:row + 1], data["labels"][row:row + 1])[0]
            assert new["input_ids"][row, :len(prompt)].tolist() == prompt
            assert 1 <= int((new["labels"][row] != -100).sum()) <= 6
    # what was trained is the student's samples, not the data's completions
    assert any(not torch.equal(d["input_ids"], n["input_ids"][:, : d["input_ids"].shape[1]]) for d, n in made)
    assert outcome.run.metrics()  # written to the run folder too
    logged = [m for m in outcome.run.metrics() if m["event"] == "StepLogged"]
    assert all("kd_on_policy" in m["metrics"] for m in logged)


def test_a_mixed_step_is_the_token_weighted_mean_of_its_micro_batches(tiny_pair, tiny_data, tmp_path, monkeypatch):
    """λ = 0.5, batch 2 x accumulation 4: the first step's gradient equals the plain reference over the very
    micro-batches trained (student samples and data rows), weighted by their trained tokens."""
    from distill_gui.core.training import trainer as trainer_module

    seed = next(s for s in range(100) if 0 < sum(is_on_policy(s, 0, m, 0.5) for m in range(4)) < 4)
    seen, grads = [], {}
    make = trainer_module.make_trainer_class

    def recording_trainer():
        base = make()

        class Recording(base):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                if model.training and self.state.global_step == 0:
                    seen.append({k: v.clone() for k, v in inputs.items()})
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        return Recording

    make_bridge = callbacks.make_event_bridge

    def recording_bridge():
        class Bridge(make_bridge()):
            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                if state.global_step == 0:
                    grads.update({n: p.grad.clone() for n, p in self.trainer.model.named_parameters() if p.grad is not None})
                return super().on_pre_optimizer_step(args, state, control, **kwargs)

        return Bridge

    monkeypatch.setattr(trainer_module, "make_trainer_class", recording_trainer)
    monkeypatch.setattr(callbacks, "make_event_bridge", recording_bridge)
    kd = {"loss": "reverse_kl", "alpha": 0.5, "on_policy": 0.5, "on_policy_temperature": 1.0, "max_new_tokens": 6}
    config = make_config(tiny_pair, tiny_data, kd, max_steps=1, batch_size=2, gradient_accumulation_steps=4, max_grad_norm=0.0,
                         seed=seed)
    assert train(config, runs_root=tmp_path).state == "finished"
    assert len(seen) == 4 and 0 < sum(ON_POLICY_KEY in b for b in seen) < 4

    from transformers import AutoModelForCausalLM

    teacher_dir, student_dir = tiny_pair
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    parts = [plain_sums(student, teacher, b, kd) for b in seen]
    (sum(total for total, _ in parts) / sum(tokens for _, tokens in parts)).backward()
    assert len({tokens for _, tokens in parts}) > 1, "micro-batches of equal size cannot show the weighting"
    whole = torch.cat([grads[n].flatten() for n, p in student.named_parameters() if n in grads])
    reference = torch.cat([p.grad.flatten() for n, p in student.named_parameters() if n in grads])
    gap = float((whole - reference).norm() / reference.norm())
    assert gap < 1e-4, f"the step's gradient is {gap:.2%} away from the token-weighted reference"


def test_stop_and_resume_draws_the_same_samples_and_weights(tiny_pair, tiny_data, tmp_path):
    kd = {"on_policy": 0.5}
    reference = train(make_config(tiny_pair, tiny_data, kd, max_steps=6, gradient_accumulation_steps=2), runs_root=tmp_path / "a")
    control = RunControl()

    def stop_at_three(event):
        if isinstance(event, StepLogged) and event.step == 3:
            control.request_stop()

    stopped = train(make_config(tiny_pair, tiny_data, kd, max_steps=6, gradient_accumulation_steps=2), runs_root=tmp_path / "b",
                    on_event=stop_at_three, control=control)
    assert stopped.state == "stopped" and stopped.step == 3
    resumed = train(None, run=stopped.run, resume=True)
    assert resumed.state == "finished" and resumed.step == 6
    a, b = weights(reference.final_path), weights(resumed.final_path)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    logged = {m["step"]: m for m in reference.run.metrics() if m["event"] == "StepLogged"}
    again = {m["step"]: m for m in resumed.run.metrics() if m["event"] == "StepLogged"}
    for step in (4, 5, 6):
        assert again[step]["metrics"].keys() == logged[step]["metrics"].keys()
        assert again[step]["loss"] == pytest.approx(logged[step]["loss"], rel=1e-5)


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tiny_pair, tiny_data, tmp_path):
    from distill_gui.core.config import save_config

    config = make_config(tiny_pair, tiny_data, {"on_policy": 0.5}, max_steps=16, save_steps=4)
    reference = train(config, runs_root=tmp_path / "a")
    config_path = tmp_path / "run.yaml"
    save_config(config, config_path)
    run_dir = kill_and_resume.train_then_kill(kill_and_resume.DISTILL_GUI, config_path, tmp_path / "b",
                                              lambda e: isinstance(e, CheckpointSaved) and e.step >= 8)
    run = RunDir(run_dir)
    assert run.final_model() is None, "the run finished before it was killed; the test proved nothing"
    kill_and_resume.resume(kill_and_resume.DISTILL_GUI, run_dir)
    kill_and_resume.assert_same_weights(reference.final_path, run.final_dir)


@pytest.mark.slow
def test_two_processes_train_on_policy_with_one_token_count(tiny_pair, tiny_data, tmp_path):
    """Under torchrun each process samples its own rows; the step's token count is gathered (no hang, no mismatch)."""
    from pathlib import Path

    from distill_gui.core.config import save_config

    config_path = tmp_path / "kd.yaml"
    save_config(make_config(tiny_pair, tiny_data, {"on_policy": 0.5}, max_steps=4, batch_size=2, gradient_accumulation_steps=2),
                config_path)
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "torchrun"), "--nproc_per_node", "2", "-m", "distill_gui", "train", str(config_path),
               "--runs-dir", str(tmp_path / "runs")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run = RunDir(next((tmp_path / "runs").iterdir()))
    steps = [m for m in run.metrics() if m["event"] == "StepLogged"]
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    assert any("kd_on_policy" in m["metrics"] for m in steps) and any("kd" in m["metrics"] for m in steps)
    assert run.final_model() is not None


def test_a_lora_student_with_a_padded_vocabulary_samples_only_tokens_the_teacher_knows(tiny_pair, tiny_data, tiny_tokenizer,
                                                                                        tmp_path, monkeypatch):
    model = tiny_models.build_llama(tiny_tokenizer, hidden=32, layers=1, vocab_pad=64, seed=3)
    with torch.no_grad():  # make the padded rows likely tokens: unrestricted sampling picks them (checked: it fails)
        model.lm_head.weight[len(tiny_tokenizer):] = 5.0
    padded = tiny_models.save_pair_member(tmp_path / "padded-student", tiny_tokenizer, model)
    made = []
    real = kd_on_policy.on_policy_batch
    monkeypatch.setattr(kd_on_policy, "on_policy_batch", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    config = make_config(tiny_pair, tiny_data, {"on_policy": 1.0}, max_steps=2)
    config.student.path = str(padded)
    config.student.lora.enabled = True
    config.student.lora.r = 4
    outcome = train(config, runs_root=tmp_path / "runs")
    assert outcome.state == "finished" and len(made) == 2
    sampled = torch.cat([b["labels"][b["labels"] != -100] for b in made])
    assert sampled.numel() > 0 and int(sampled.max()) < len(tiny_tokenizer)


# ---- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kd, field", [
    ({"on_policy": 1.5}, "method.kd.on_policy"),
    ({"on_policy": -0.1}, "method.kd.on_policy"),
    ({"on_policy_temperature": -1.0}, "method.kd.on_policy_temperature"),
    ({"max_new_tokens": 0}, "method.kd.max_new_tokens"),
])
def test_out_of_range_settings_name_their_field(kd, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config_from_dict({"method": {"kind": "kd", "kd": kd}})


def test_on_policy_with_a_teacher_cache_is_refused_before_a_run_starts(tiny_pair, tiny_data, tmp_path):
    config = make_config(tiny_pair, tiny_data, {"on_policy": 0.5, "top_k": 8, "cache_teacher": True})
    with pytest.raises(ConfigError, match=r"method\.kd\.on_policy: .*cache_teacher: false"):
        train(config, runs_root=tmp_path)
    assert not (tmp_path).exists() or not any(tmp_path.iterdir())


def test_the_settings_are_documented_in_the_registry():
    from distill_gui.core.config import field_doc
    from distill_gui.core.methods.kd import KDConfig

    for name in ("on_policy", "on_policy_temperature", "max_new_tokens"):
        assert len(field_doc(KDConfig, name)) > 30
    assert config_from_dict({"method": {"kind": "kd"}}).method.kd.on_policy == 0.0
