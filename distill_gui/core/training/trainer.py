"""The ``transformers.Trainer`` subclass: the method's loss, weighted by tokens over each optimizer step.

Only public hooks are overridden: ``compute_loss`` asks the run's method for the loss of a micro-batch
(a mean over its trained tokens) and ``get_batch_samples`` counts the trained tokens of the whole
optimizer step (all micro-batches, all processes). Each micro-batch's loss is scaled by its share of
those tokens, so a step's gradient is the per-token mean over the step: batch 8 × accumulation 1,
4 × 2 and 2 processes × 4 give the same gradient. Non-finite losses end the run as diverged.
"""

from __future__ import annotations

from typing import Any

from distill_gui.core.methods import trained_positions
from distill_gui.core.training.outcome import Diverged


class TokenWeightedMeans:
    """Per-token means of the loss and the method's metrics since the last :meth:`take`."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.tokens = 0

    def add(self, values: dict[str, float], tokens: int) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * tokens
        self.tokens += tokens

    def take(self) -> dict[str, float]:
        tokens, sums = self.tokens, self.sums
        self.sums, self.tokens = {}, 0
        if tokens == 0:
            return {}
        return {key: value / tokens for key, value in sums.items()}

    def state(self) -> dict[str, float]:
        """The running sums as flat numbers (summed over processes by the trainer, then :meth:`load`-ed)."""
        return {**{f"sum/{key}": value for key, value in self.sums.items()}, "tokens": float(self.tokens)}

    def load(self, state: dict[str, float]) -> None:
        self.sums = {key[4:]: value for key, value in state.items() if key.startswith("sum/")}
        self.tokens = int(round(state.get("tokens", 0.0)))


def make_trainer_class() -> type:
    """Build the Trainer subclass lazily so importing this module does not import transformers."""
    import torch
    from transformers import Trainer

    from distill_gui.core.training.compat import check_trainer_api

    check_trainer_api()

    class DistillTrainer(Trainer):
        """``transformers.Trainer`` with the run's method as loss, token-weighted accumulation, divergence checks."""

        # compute_loss returns the loss already divided by the step's trained tokens: no division by accumulation.
        loss_is_scaled_for_ga = True

        def __init__(self, *args: Any, setup: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.setup = setup
            self.model_accepts_loss_kwargs = False
            self.means = {"train": TokenWeightedMeans(), "eval": TokenWeightedMeans()}
            self.tokens_seen = 0

        # ---- Token counting over the optimizer step
        def get_batch_samples(self, epoch_iterator, num_batches, device):
            batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
            count = sum(int(trained_positions(batch["labels"]).sum()) for batch in batch_samples if "labels" in batch)
            total = torch.tensor(count, device=device, dtype=torch.long)
            if self.args.world_size > 1:
                total = self.accelerator.gather(total.reshape(1)).sum()
            return batch_samples, total

        # ---- Loss
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            setup = self.setup
            mode = "train" if model.training else "eval"
            tokens = int(trained_positions(inputs["labels"]).sum())
            if mode == "train":
                self.tokens_seen += int(inputs["attention_mask"].sum())
            ctx = setup.step_context(self.accelerator.autocast)
            result = setup.method.loss(ctx, model, inputs)
            loss = result.total
            if not torch.isfinite(loss.detach()):
                raise Diverged(f"the loss became {loss.item()} at step {self.state.global_step + 1}", step=self.state.global_step + 1)
            self.means[mode].add({"loss": loss.detach(), **result.metrics}, tokens)
            if mode == "train" and num_items_in_batch is not None:
                step_tokens = max(int(num_items_in_batch), 1)
                # DDP averages gradients over processes; the step's token count is global.
                loss = loss * (tokens * self.args.world_size / step_tokens)
            return (loss, {}) if return_outputs else loss

        def take_means(self, mode: str) -> dict[str, float]:
            """Token-weighted means of the loss and the method's metrics since the last call, over every process
            (each process sums its own rows; called by every process, at each log)."""
            means = self.means[mode]
            if self.args.world_size > 1:
                import torch.distributed as dist

                state = means.state()
                named: list[Any] = [None] * self.args.world_size
                dist.all_gather_object(named, sorted(state))
                keys = sorted(set().union(*named))
                values = torch.tensor([state.get(key, 0.0) for key in keys], dtype=torch.float64, device=self.args.device)
                means.load(dict(zip(keys, self.accelerator.reduce(values, reduction="sum").tolist())))
            return means.take()

    return DistillTrainer
