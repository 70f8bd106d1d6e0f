"""Every use of ``transformers.Trainer`` beyond its documented public API, in one place.

distill-gui's Trainer subclass overrides public methods only (``compute_loss``, ``get_batch_samples``)
and saves checkpoints through the public ``on_save`` callback. What is left is listed here, each with a
check: :func:`check_trainer_api` runs when a trainer is built (and in the tests), so a transformers
upgrade that changes one of them fails loudly at start-up with this message, never silently in training.
The tested range is pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import inspect
from typing import Any

TESTED_TRANSFORMERS = ">=5.20,<6"


class IncompatibleTransformers(RuntimeError):
    """The installed transformers changed an API distill-gui relies on."""


def check_trainer_api() -> None:
    """Raise :class:`IncompatibleTransformers` when a Trainer API used here is missing or changed."""
    import transformers
    from transformers import Trainer

    problems = []
    if not hasattr(Trainer, "loss_is_scaled_for_ga"):
        problems.append("Trainer.loss_is_scaled_for_ga (the loss is token-normalised over the optimizer step)")
    params = list(inspect.signature(Trainer.get_batch_samples).parameters)
    if params[:4] != ["self", "epoch_iterator", "num_batches", "device"]:
        problems.append(f"Trainer.get_batch_samples(self, epoch_iterator, num_batches, device) is now {params}")
    params = list(inspect.signature(Trainer.compute_loss).parameters)
    if "num_items_in_batch" not in params:
        problems.append("Trainer.compute_loss(..., num_items_in_batch)")
    if not callable(getattr(Trainer, "_load_from_checkpoint", None)):
        problems.append("Trainer._load_from_checkpoint (loading weights of a finished checkpoint without training)")
    if problems:
        raise IncompatibleTransformers(
            f"transformers {transformers.__version__} changed what distill-gui uses: {'; '.join(problems)}. "
            f"Install a tested version (transformers{TESTED_TRANSFORMERS})."
        )


def load_checkpoint_weights(trainer: Any, checkpoint: str) -> None:
    """Load a checkpoint's model weights into ``trainer.model`` (no optimizer, no step)."""
    trainer._load_from_checkpoint(checkpoint)
