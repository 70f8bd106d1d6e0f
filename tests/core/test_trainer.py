"""Training runs end to end on tiny real models: KD and SFT, stop, resume, divergence, checkpoints."""

from __future__ import annotations

import json
import math

import kill_and_resume
import pytest
import torch
from safetensors.torch import load_file

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import config_from_dict
from distill_gui.core.events import CheckpointSaved, RunFailed, StepLogged
from distill_gui.core.runs import RunDir
from distill_gui.core.training import RunControl, train


def make_config(tiny_pair, tiny_data, **training):
    teacher, student = tiny_pair
    settings = {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 2, "precision": "fp32", "logging_steps": 1}
    settings.update(training)
    return config_from_dict(
        {
            "name": "test",
            "teacher": {"path": str(teacher)},
            "student": {"path": str(student)},
            "data": {"train": str(tiny_data)},
            "method": {"kind": "kd", "loss": "forward_kl", "alpha": 0.5, "chunk_size": 7},
            "training": settings,
        }
    )


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_kd_run_writes_a_complete_run_folder(tiny_pair, tiny_data, tmp_path):
    events = []
    config = make_config(tiny_pair, tiny_data, sample_steps=3, save_total_limit=2)
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished" and outcome.step == 6
    run = outcome.run
    steps = [m for m in run.metrics() if m["event"] == "StepLogged"]
    assert [m["step"] for m in steps] == [1, 2, 3, 4, 5, 6]
    assert all(set(m["metrics"]) == {"kd", "ce"} for m in steps)
    # total = alpha * kd + (1 - alpha) * ce, as logged
    for m in steps:
        assert m["loss"] == pytest.approx(0.5 * m["metrics"]["kd"] + 0.5 * m["metrics"]["ce"], rel=1e-4)
    samples = run.samples()
    assert [s["step"] for s in samples] == [0, 3, 6]
    assert all(s["samples"][0]["teacher"] is not None for s in samples)
    assert run.status()["state"] == "finished"
    assert [s for s, _ in run.checkpoints()] == [4, 6]  # rotated to the newest two
    assert run.final_model() is not None
    assert (run.final_dir / "distill_config.yaml").is_file()
    assert any(isinstance(e, CheckpointSaved) for e in events)
    assert run.log_path.read_text().count("step ") >= 6


def test_training_changes_the_student_and_not_the_teacher(tiny_pair, tiny_data, tmp_path):
    teacher, student = tiny_pair
    before_t, before_s = weights(teacher), weights(student)
    outcome = train(make_config(tiny_pair, tiny_data), runs_root=tmp_path)
    after = weights(outcome.final_path)
    assert any(not torch.equal(before_s[k], after[k]) for k in before_s)
    assert all(torch.equal(before_t[k], v) for k, v in weights(teacher).items())


def test_sft_run_uses_cross_entropy_only(tiny_pair, tiny_data, tmp_path):
    config = make_config(tiny_pair, tiny_data)
    config.method.kind = "sft"
    outcome = train(config, runs_root=tmp_path)
    steps = [m for m in outcome.run.metrics() if m["event"] == "StepLogged"]
    assert outcome.state == "finished"
    assert all(set(m["metrics"]) == {"ce"} and m["loss"] == pytest.approx(m["metrics"]["ce"], rel=1e-4) for m in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]


def test_stop_saves_a_checkpoint_and_resume_finishes_identically(tiny_pair, tiny_data, tmp_path):
    reference = train(make_config(tiny_pair, tiny_data, save_steps=0), runs_root=tmp_path / "a")
    control = RunControl()

    def stop_at_three(event):
        if isinstance(event, StepLogged) and event.step == 3:
            control.request_stop()

    stopped = train(make_config(tiny_pair, tiny_data, save_steps=0), runs_root=tmp_path / "b", on_event=stop_at_three, control=control)
    assert stopped.state == "stopped" and stopped.step == 3
    assert stopped.run.status()["state"] == "stopped"
    assert [s for s, _ in stopped.run.checkpoints()] == [3]
    resumed = train(None, run=stopped.run, resume=True)
    assert resumed.state == "finished" and resumed.step == 6
    a, b = weights(reference.final_path), weights(resumed.final_path)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_pause_holds_between_steps_until_resumed(tiny_pair, tiny_data, tmp_path):
    import threading
    import time

    from distill_gui.core.events import RunPaused, RunResumed

    control = RunControl()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, StepLogged) and event.step == 2:
            control.request_pause()
        if isinstance(event, RunPaused):
            threading.Timer(0.5, control.request_resume).start()

    start = time.monotonic()
    outcome = train(make_config(tiny_pair, tiny_data, save_steps=0), runs_root=tmp_path, on_event=on_event, control=control)
    assert outcome.state == "finished" and time.monotonic() - start > 0.5
    kinds = [type(e).__name__ for e in events]
    paused, resumed = kinds.index("RunPaused"), kinds.index("RunResumed")
    steps_between = [e for e in events[paused:resumed] if isinstance(e, StepLogged)]
    assert not steps_between, "no step may run while paused"
    assert events[paused].step == 2, "the pause takes effect right after the step during which it was asked"
    assert isinstance(events[paused], RunPaused) and isinstance(events[resumed], RunResumed)
    assert any('"state": "paused"' in line or "paused" in line for line in outcome.run.log_path.read_text().splitlines())


def test_non_finite_loss_stops_as_diverged_and_keeps_the_last_good_checkpoint(tiny_pair, tiny_data, tmp_path, monkeypatch):
    from distill_gui.core import losses

    real = losses.kd_loss_from_hidden
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        parts = real(*args, **kwargs)
        if calls["n"] == 3:
            return parts._replace(total=parts.total * float("nan"))
        return parts

    monkeypatch.setattr(losses, "kd_loss_from_hidden", poisoned)
    events = []
    outcome = train(make_config(tiny_pair, tiny_data), runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "diverged"
    assert outcome.run.status()["state"] == "diverged"
    failed = [e for e in events if isinstance(e, RunFailed)]
    assert failed and failed[0].kind == "diverged" and failed[0].checkpoint.endswith("step-000002")
    assert failed[0].step == 3 and "at step 3" in failed[0].reason  # the step it happened in, said once
    assert [s for s, _ in outcome.run.checkpoints()] == [2]
    assert outcome.run.final_model() is None
    for _, path in outcome.run.checkpoints():
        assert all(torch.isfinite(t).all() for t in weights(path).values())


def test_non_finite_gradient_stops_before_the_optimizer_step(tiny_pair, tiny_data, tmp_path, monkeypatch):
    from distill_gui.core import losses

    real = losses.kd_loss_from_hidden
    calls = {"n": 0}

    def poison_grad(*args, **kwargs):
        calls["n"] += 1
        parts = real(*args, **kwargs)
        if calls["n"] == 2:
            hidden = args[0]
            bad = (hidden * float("inf")).sum() * 0.0  # finite (nan) only in the gradient
            total = parts.total + torch.nan_to_num(bad, nan=0.0)
            hidden.register_hook(lambda g: g * float("nan"))
            return parts._replace(total=total)
        return parts

    monkeypatch.setattr(losses, "kd_loss_from_hidden", poison_grad)
    outcome = train(make_config(tiny_pair, tiny_data, save_steps=1), runs_root=tmp_path)
    assert outcome.state == "diverged"
    assert "gradient" in outcome.reason
    assert [s for s, _ in outcome.run.checkpoints()][-1] == 1
    for _, path in outcome.run.checkpoints():
        assert all(torch.isfinite(t).all() for t in weights(path).values())


def test_interrupted_checkpoint_write_is_never_offered(tiny_pair, tiny_data, tmp_path, monkeypatch):
    from transformers import Trainer

    real = Trainer._save_rng_state
    calls = {"n": 0}

    def crash_on_second(self, output_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full while writing the checkpoint")
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", crash_on_second)
    with pytest.raises(OSError):
        train(make_config(tiny_pair, tiny_data), runs_root=tmp_path)
    run = RunDir(next(p for p in tmp_path.iterdir()))
    assert [s for s, _ in run.checkpoints()] == [2]  # step 4 was being written: not offered
    assert not (run.checkpoints_dir / "step-000004").exists()
    assert run.status()["state"] == "failed"


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tiny_pair, tiny_data, tmp_path):
    steps = 24
    reference = train(make_config(tiny_pair, tiny_data, max_steps=steps, save_steps=4), runs_root=tmp_path / "a")
    config_path = tmp_path / "run.yaml"
    from distill_gui.core.config import save_config

    save_config(make_config(tiny_pair, tiny_data, max_steps=steps, save_steps=4), config_path)
    run_dir = kill_and_resume.train_then_kill(kill_and_resume.DISTILL_GUI, config_path, tmp_path / "b",
                                              lambda e: isinstance(e, CheckpointSaved) and e.step >= 8)
    run = RunDir(run_dir)
    assert run.final_model() is None, "the run finished before it was killed; the test proved nothing"
    assert run.status()["state"] == "interrupted"  # its process is gone: resumable
    killed_at = run.latest_checkpoint()
    assert killed_at is not None and ckpt.is_complete(killed_at)
    kill_and_resume.resume(kill_and_resume.DISTILL_GUI, run_dir)
    kill_and_resume.assert_same_weights(reference.final_path, run.final_dir)
    assert json.loads(run.status_path.read_text())["state"] == "finished"
    assert math.isfinite(run.metrics()[-1]["loss"])


def test_kd_with_padded_student_vocab_and_lora(tiny_pair, tiny_data, tiny_tokenizer, tmp_path):
    import tiny_models

    padded = tiny_models.save_pair_member(
        tmp_path / "padded-student", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, hidden=32, layers=1, vocab_pad=64, seed=3)
    )
    config = make_config(tiny_pair, tiny_data, max_steps=3, save_steps=0)
    config.student.path = str(padded)
    config.student.lora.enabled = True
    config.student.lora.r = 4
    events = []
    outcome = train(config, runs_root=tmp_path / "runs", on_event=events.append)
    assert outcome.state == "finished"
    assert any("padded" in getattr(e, "text", "").lower() or "same tokens" in getattr(e, "text", "").lower() for e in events)
    started = next(e for e in events if type(e).__name__ == "RunStarted")
    assert 0 < started.trainable_params < started.student_params / 2
    # The final folder holds merged weights that load as a plain model, and the adapter beside them.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(outcome.final_path)
    assert model.config.vocab_size == len(tiny_tokenizer) + 64
    assert (outcome.final_path / "adapter" / "adapter_config.json").is_file()


# ---- The offline teacher cache --------------------------------------------------------------------


def test_cached_teacher_trains_like_the_live_teacher(tiny_pair, tiny_data, tmp_path, monkeypatch):
    from distill_gui.core import teacher_cache
    from distill_gui.core.teacher_cache import DEFAULT_FILE_NAME, TeacherCache

    monkeypatch.setattr(teacher_cache, "DEFAULT_ENCODING", "exact")  # float32 cache: the same losses as live top-k

    live = make_config(tiny_pair, tiny_data, save_steps=0)
    live.method.kd.top_k = 8
    cached = make_config(tiny_pair, tiny_data, save_steps=0, sample_steps=6)
    cached.method.kd.top_k, cached.method.kd.cache_teacher = 8, True
    a = train(live, runs_root=tmp_path / "live")
    b = train(cached, runs_root=tmp_path / "cached")
    assert a.state == b.state == "finished"
    losses = lambda run: [v for m in run.metrics() if m["event"] == "StepLogged" for v in (m["loss"], m["metrics"]["kd"], m["metrics"]["ce"])]  # noqa: E731
    assert losses(b.run) == pytest.approx(losses(a.run), rel=1e-4)
    for key, value in weights(a.final_path).items():
        torch.testing.assert_close(weights(b.final_path)[key], value, rtol=1e-4, atol=1e-5)
    cache = TeacherCache.load(b.run.path / DEFAULT_FILE_NAME)
    assert cache.top_k == 8 and cache.rows > 0 and cache.log_probs.shape == (cache.positions, 9)
    # The teacher still answers the probe prompts (once, before it is freed).
    assert all(s["teacher"] for s in b.run.samples()[-1]["samples"])


def test_a_shared_teacher_cache_is_reused_and_never_overwritten(tiny_pair, tiny_data, tmp_path):
    from distill_gui.core.teacher_cache import TeacherCacheError

    shared = tmp_path / "shared.safetensors"
    config = make_config(tiny_pair, tiny_data, save_steps=0, max_steps=2)
    config.method.kd.top_k, config.method.kd.cache_teacher, config.method.kd.teacher_cache = 8, True, str(shared)
    train(config, runs_root=tmp_path)
    made = shared.read_bytes()
    events = []
    train(config, runs_root=tmp_path, on_event=events.append)
    assert any("reusing" in getattr(e, "text", "") for e in events)
    config.method.kd.top_k = 4  # other settings: other cached values
    with pytest.raises(TeacherCacheError, match="another teacher, other data or other KD settings"):
        train(config, runs_root=tmp_path)
    assert shared.read_bytes() == made


def test_teacher_cache_needs_top_k(tiny_pair, tiny_data, tmp_path):
    from distill_gui.core.config import ConfigError

    config = make_config(tiny_pair, tiny_data)
    config.method.kd.cache_teacher = True
    with pytest.raises(ConfigError, match="method.kd.top_k"):
        train(config, runs_root=tmp_path)


def test_a_cached_run_resumes_from_its_own_cache(tiny_pair, tiny_data, tmp_path):
    def config():
        c = make_config(tiny_pair, tiny_data, save_steps=0)
        c.method.kd.top_k, c.method.kd.cache_teacher = 8, True
        return c

    reference = train(config(), runs_root=tmp_path / "a")
    control = RunControl()

    def stop_at_three(event):
        if isinstance(event, StepLogged) and event.step == 3:
            control.request_stop()

    stopped = train(config(), runs_root=tmp_path / "b", on_event=stop_at_three, control=control)
    assert stopped.state == "stopped" and (stopped.run.path / "teacher_cache.safetensors").is_file()
    events = []
    resumed = train(None, run=stopped.run, resume=True, on_event=events.append)
    assert resumed.state == "finished" and resumed.step == 6
    assert any("teacher cache: reusing" in getattr(e, "text", "") for e in events)
    a, b = weights(reference.final_path), weights(resumed.final_path)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_resume_after_the_last_step_checkpoint_writes_final_without_a_step(tiny_pair, tiny_data, tmp_path):
    """Killed after step-4 (= max_steps) was saved but before final/: resume takes no extra step."""
    import shutil

    config = make_config(tiny_pair, tiny_data, max_steps=4, save_steps=2, lr_scheduler="constant")
    outcome = train(config, runs_root=tmp_path)
    run = outcome.run
    last = run.latest_checkpoint()
    assert last.name == "step-000004"
    shutil.rmtree(run.final_dir)
    events = []
    again = train(run.load_config(), run=run, resume=True, on_event=events.append)
    assert again.state == "finished" and again.step == 4
    assert not any(isinstance(e, StepLogged) for e in events), "no optimizer step after the budget was spent"
    for key, value in weights(last).items():
        torch.testing.assert_close(weights(run.final_model())[key], value)


def test_training_eval_perplexity_is_token_weighted_like_eval(tiny_pair, tiny_data, tmp_path):
    """The run's end-of-training perplexity equals `distill-gui eval`'s on the same rows (both per token)."""
    import json as _json

    from distill_gui.core.data import load_examples
    from distill_gui.core.evaluation import EvalSettings, perplexity
    from distill_gui.core.models import load_model

    eval_file = tmp_path / "eval.jsonl"
    rows = [{"prompt": f"Question: What is {a} plus {b}? Answer:", "completion": " " + " ".join([f"{a} + {b} = {a + b}."] * (1 + 5 * (a % 2)))}
            for a, b in ((1, 2), (2, 3), (3, 4), (4, 5), (5, 6))]
    eval_file.write_text("\n".join(_json.dumps(r) for r in rows) + "\n")
    config = make_config(tiny_pair, tiny_data, max_steps=2, save_steps=0, batch_size=2)
    config.data.eval = str(eval_file)
    config.method.kind = "sft"
    outcome = train(config, runs_root=tmp_path / "runs")
    logged = [m for m in outcome.run.metrics() if m["event"] == "EvalLogged"][-1]["metrics"]
    loaded = load_model(config_from_dict({"student": {"path": str(outcome.final_path)}}).student, "student")
    examples, _ = load_examples(str(eval_file))
    measured = perplexity(loaded.model, loaded.tokenizer, examples, EvalSettings(batch_size=2, max_length=config.data.max_length))
    assert logged["perplexity"] == pytest.approx(measured, rel=1e-3)
