"""Trainer callbacks: events for the app and the CLI, stop/pause between steps, checkpoint commits."""

from __future__ import annotations

import math
import time
from typing import Any

from distill_gui.core.events import EvalLogged, RunPaused, RunResumed, RunStarted, StepLogged
from distill_gui.core.training.checkpointing import commit_saved
from distill_gui.core.training.outcome import Diverged


def make_event_bridge() -> type:
    import torch
    from transformers import TrainerCallback

    class EventBridge(TrainerCallback):
        """Turns Trainer callbacks into distill-gui events, polls stop/pause, commits checkpoints."""

        def __init__(self, setup: Any):
            self.setup = setup
            self.trainer: Any = None
            self.start_time = time.time()
            self.start_step = 0
            self.last_log_time = time.time()
            self.last_tokens = 0

        def on_train_begin(self, args, state, control, **kwargs):
            s = self.setup
            self.start_step = state.global_step
            self.start_time = self.last_log_time = time.time()
            self.last_tokens = getattr(self.trainer, "tokens_seen", 0)
            s.emit(
                RunStarted(
                    run_dir=str(s.run.path),
                    total_steps=state.max_steps,
                    start_step=state.global_step,
                    method=s.method.name,
                    student_params=s.student_params,
                    trainable_params=s.trainable_params,
                    teacher_params=s.teacher_params,
                    device=str(s.device),
                    metric_specs=tuple(spec.to_dict() for spec in s.method.metrics),
                )
            )
            if s.config.training.sample_steps and state.global_step == 0:
                s.emit_samples(self.trainer.model, 0)

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            grads = [p.grad for p in self.trainer.model.parameters() if p.grad is not None]
            if grads:
                norm = torch.nn.utils.get_total_norm(grads)
                if not torch.isfinite(norm):
                    raise Diverged(f"the gradient norm became {norm.item()} at step {state.global_step + 1}", step=state.global_step + 1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            s = self.setup
            now = time.time()
            if "loss" in logs:
                means = self._method_metrics(logs)
                tokens = getattr(self.trainer, "tokens_seen", 0)
                dt = max(now - self.last_log_time, 1e-9)
                tps = (tokens - self.last_tokens) / dt
                self.last_log_time, self.last_tokens = now, tokens
                done = state.global_step - self.start_step
                elapsed = now - self.start_time
                eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
                grad = logs.get("grad_norm")
                s.emit(
                    StepLogged(
                        step=state.global_step,
                        total_steps=state.max_steps,
                        loss=float(logs["loss"]),
                        metrics=means,
                        learning_rate=float(logs.get("learning_rate", 0.0)),
                        grad_norm=None if grad is None else float(grad),
                        tokens_per_s=tps,
                        eta_s=eta,
                        elapsed_s=elapsed,
                        epoch=float(logs.get("epoch", state.epoch or 0.0)),
                    )
                )
            if "eval_loss" in logs:
                means = self.trainer.take_means("eval") if hasattr(self.trainer, "take_means") else {}
                # Token-weighted over every eval row (the Trainer's own eval_loss is a mean of batch means).
                metrics = {"eval_loss": means.pop("loss", float(logs["eval_loss"]))}
                for key, value in means.items():
                    metrics[f"eval_{key}"] = value
                if "ce" in means:
                    metrics["perplexity"] = math.exp(min(means["ce"], 50.0))
                s.emit(EvalLogged(step=state.global_step, metrics=metrics))
            # A pause or stop asked for while this step was logged is honoured now, before the next step.
            self._honour_pause()
            self._honour_stop(control)

        def _method_metrics(self, logs: dict) -> dict[str, float]:
            """The method's numbers for this log: token-weighted means from our trainer, or what another
            trainer (e.g. TRL's) logged besides the standard values."""
            if hasattr(self.trainer, "take_means"):
                means = self.trainer.take_means("train")
                means.pop("loss", None)
                return means
            standard = {"loss", "learning_rate", "grad_norm", "epoch", "step"}
            return {
                key.replace("/", "_"): float(value)
                for key, value in logs.items()
                if key not in standard and isinstance(value, (int, float)) and not isinstance(value, bool)
            }

        def on_step_end(self, args, state, control, **kwargs):
            s = self.setup
            every = s.config.training.sample_steps
            if every and state.global_step % every == 0 and state.global_step < state.max_steps:
                s.emit_samples(self.trainer.model, state.global_step)
            self._honour_pause()
            self._honour_stop(control)
            return control

        def on_save(self, args, state, control, **kwargs):
            commit_saved(self.setup, self.trainer.model, state.global_step)

        def _honour_pause(self) -> None:
            s = self.setup
            # Only the main process reads the requests; every process asks it (procs.any) whether to wait,
            # so all of them pause at the same step and wait in short collectives, never in one that
            # could time out during a long pause.
            if s.procs.any(s.control.paused and not s.control.stop_requested):
                s.emit(RunPaused(step=self.trainer.state.global_step))
                paused_at = time.time()
                while s.procs.any(s.control.paused and not s.control.stop_requested):
                    time.sleep(0.05 if s.procs.world_size == 1 else 0.2)
                # A pause is not training time: tokens/s and the ETA count from where training was.
                paused_for = time.time() - paused_at
                self.last_log_time += paused_for
                self.start_time += paused_for
                if not s.control.stop_requested:
                    s.emit(RunResumed(step=self.trainer.state.global_step))

        def _honour_stop(self, control) -> None:
            if self.setup.procs.any(self.setup.control.stop_requested) and not self.setup.stopped:
                self.setup.stopped = True
                control.should_save = True
                control.should_training_stop = True

    return EventBridge
