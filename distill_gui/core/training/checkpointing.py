"""Checkpoints of a run: the Trainer writes into an incoming folder, we commit it atomically.

The Trainer saves ``checkpoint-N`` into ``checkpoints/.partial-incoming/`` (weights, optimizer,
scheduler, RNG states of every process). The public ``on_save`` callback then checks the weights are
finite, adds the tokenizer and the run's config, and commits the folder as ``checkpoints/step-N``
(:mod:`distill_gui.core.checkpoints`: the completion marker is written last, then one rename). A kill
at any point leaves at most a hidden partial folder that the next run sweeps away.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import save_config
from distill_gui.core.events import CheckpointSaved
from distill_gui.core.training.outcome import Diverged

INCOMING = ".partial-incoming"


def incoming_dir(checkpoints_dir: Path) -> Path:
    """Where the Trainer writes checkpoints before they are committed."""
    return checkpoints_dir / INCOMING


def all_finite(model: Any) -> bool:
    import torch

    for p in model.parameters():
        if p.dtype.is_floating_point and not torch.isfinite(p.detach()).all():
            return False
    return True


def commit_saved(setup: Any, model: Any, step: int) -> None:
    """Commit the checkpoint the Trainer just wrote for ``step`` (called on every process)."""
    procs = setup.procs
    procs.barrier()  # every process has written its part (its RNG state)
    source = incoming_dir(setup.run.checkpoints_dir) / f"checkpoint-{step}"
    if not all_finite(model):
        if procs.is_main:
            shutil.rmtree(source, ignore_errors=True)
        raise Diverged(f"non-finite weights at step {step}; the checkpoint was not written", step=step)
    target = setup.run.checkpoints_dir / ckpt.step_dir_name(step)
    if procs.is_main:
        try:
            setup.tokenizer.save_pretrained(source)
            save_config(setup.config, source / "distill_config.yaml")
            ckpt.commit(source, target, {"step": step})
        except BaseException:
            shutil.rmtree(source, ignore_errors=True)
            raise
        ckpt.rotate_checkpoints(setup.run.checkpoints_dir, setup.config.training.save_total_limit)
        setup.emit(CheckpointSaved(step=step, path=str(target)))
    procs.barrier()


def save_final(trainer: Any, setup: Any) -> Path:
    """Write the trained student to checkpoints/final (merged weights for LoRA when possible).

    Called on every process: under FSDP the whole weights are gathered from all of them (a collective);
    only the main process writes.
    """
    target = setup.run.final_dir
    gathered = trainer.accelerator.get_state_dict(trainer.model) if getattr(trainer, "is_fsdp_enabled", False) else None
    if not setup.procs.is_main:
        return target
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not (all_finite(model) if gathered is None else _all_finite_tensors(gathered.values())):
        raise Diverged("non-finite weights at the end of training; the final model was not written")
    with ckpt.atomic_checkpoint(target, {"step": trainer.state.global_step, "final": True}) as staging:
        if gathered is not None:
            model.save_pretrained(staging, state_dict=gathered)
        elif hasattr(model, "merge_and_unload") and setup.config.student.quantization == "none":
            model.save_pretrained(staging / "adapter")
            merged = model.merge_and_unload()
            merged.save_pretrained(staging)
        else:
            model.save_pretrained(staging)
        setup.tokenizer.save_pretrained(staging)
        save_config(setup.config, staging / "distill_config.yaml")
    return target


def _all_finite_tensors(tensors: Any) -> bool:
    import torch

    return all(torch.isfinite(t).all() for t in tensors if t.dtype.is_floating_point)


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was written at (from its trainer_state.json, else its name)."""
    import json

    try:
        return int(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        match = ckpt.STEP_PATTERN.match(checkpoint.name)
        return int(match.group(1)) if match else 0
