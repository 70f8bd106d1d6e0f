"""On-policy KD (GKD, "on-policy distillation"): the student writes the completion, the teacher scores it.

With ``method.kd.on_policy = λ > 0`` KD trains with :func:`make_on_policy_trainer_class`. Before an
optimizer step's trained tokens are counted, each of its micro-batches is chosen on-policy with
probability λ (:func:`is_on_policy`); a chosen micro-batch is replaced by :func:`on_policy_batch`: its
prompts (each row's tokens before its first trained label) are continued by the student itself, sampled
at ``on_policy_temperature`` for at most ``max_new_tokens`` tokens with the batched KV-cache sampler of
:func:`distill_gui.core.generation.sample_token_ids` (finished rows leave the batch), and every token
the student wrote becomes a trained position. KD's loss then scores those tokens with the teacher: the
chosen divergence alone (no cross-entropy: the student's own tokens are not targets), reported as
``kd_on_policy``.

Because the replacement happens before the count, the step's gradient stays the per-token mean over
all its micro-batches, on- and off-policy alike. The choice and the sampling draw from generators seeded
by (``training.seed``, optimizer step, micro-batch, process), never from the global random state, so a
run resumed from a checkpoint draws the same samples and ends with the same weights.

The first step with on-policy micro-batches, and then one at least ``training.sample_steps`` (else 10) later, reports a few of the
student's samples (:func:`scored_samples`: a SamplesScored event, with the verifier's mark where the row's
own completion states a final answer).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

ON_POLICY_KEY = "on_policy"
"""Batch key marking a micro-batch whose completions the student wrote (KD's loss reads it)."""


def is_on_policy(seed: int, step: int, micro: int, fraction: float) -> bool:
    """Whether micro-batch ``micro`` of optimizer step ``step`` is on-policy (probability ``fraction``)."""
    if fraction <= 0.0:
        return False
    if fraction >= 1.0:
        return True
    return random.Random(f"on-policy choice {seed} {step} {micro}").random() < fraction


def sampling_seed(seed: int, step: int, micro: int, process: int) -> int:
    """The seed of the generator that samples one micro-batch's completions."""
    digest = hashlib.sha256(f"on-policy sample {seed} {step} {micro} {process}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def prompt_tokens(input_ids: Any, attention_mask: Any, labels: Any) -> list[list[int]]:
    """Each row's prompt: its tokens before the first trained label (at least its first token).

    Rows are right-padded (:class:`~distill_gui.core.data.DataCollator`); a row with no trained label
    keeps all its tokens as the prompt.
    """
    prompts = []
    for ids, mask, row_labels in zip(input_ids.tolist(), attention_mask.tolist(), labels.tolist()):
        length = sum(mask)
        start = next((i for i, label in enumerate(row_labels[:length]) if label != -100), length)
        prompts.append(ids[: max(start, 1)])
    return prompts


def on_policy_batch(
    model: Any,
    batch: dict,
    *,
    max_new_tokens: int,
    temperature: float,
    stop_ids: list[int],
    pad_id: int,
    generator: Any = None,
    max_positions: int | None = None,
    vocab_size: int | None = None,
) -> dict:
    """``batch`` with its completions rewritten by ``model``: prompt + sampled tokens, only those trained.

    The result is right-padded like the data's batches (``labels`` -100 on the prompt and the padding)
    and carries :data:`ON_POLICY_KEY`. ``max_positions`` caps prompt + completion (the models' context);
    ``vocab_size`` keeps the samples inside the vocabulary the teacher can score.
    """
    import torch

    prompts = prompt_tokens(batch["input_ids"], batch["attention_mask"], batch["labels"])
    budget = max_new_tokens
    if max_positions:
        budget = max(1, min(budget, max_positions - max(len(p) for p in prompts)))
    from distill_gui.core.generation import sample_token_ids

    completions = sample_token_ids(
        model,
        prompts,
        max_new_tokens=budget,
        temperature=temperature,
        stop_ids=stop_ids,
        pad_id=pad_id,
        generator=generator,
        vocab_size=vocab_size,
    )
    width = max(len(p) + len(c) for p, c in zip(prompts, completions))
    ids, mask, labels = [], [], []
    for prompt, completion in zip(prompts, completions):
        pad = width - len(prompt) - len(completion)
        ids.append(prompt + completion + [pad_id] * pad)
        mask.append([1] * (len(prompt) + len(completion)) + [0] * pad)
        labels.append([-100] * len(prompt) + completion + [-100] * pad)
    device = batch["input_ids"].device
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long, device=device),
        "attention_mask": torch.tensor(mask, dtype=torch.long, device=device),
        "labels": torch.tensor(labels, dtype=torch.long, device=device),
        ON_POLICY_KEY: torch.ones((), dtype=torch.long, device=device),
    }


def context_limit(*models: Any) -> int | None:
    """The shortest ``max_position_embeddings`` of ``models`` (None when none declares one)."""
    declared = [getattr(getattr(m, "config", None), "max_position_embeddings", None) for m in models if m is not None]
    limits = [x for x in declared if isinstance(x, int) and x > 0]
    return min(limits) if limits else None


class KeyedTokenMeans:
    """Per-token means like :class:`~distill_gui.core.training.trainer.TokenWeightedMeans`, each metric over
    the tokens of the micro-batches that report it: ``kd`` over the off-policy tokens, ``kd_on_policy``
    over the student's own, ``loss`` over all."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.tokens: dict[str, int] = {}

    def add(self, values: dict[str, Any], tokens: int) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * tokens
            self.tokens[key] = self.tokens.get(key, 0) + tokens

    def take(self) -> dict[str, float]:
        sums, tokens = self.sums, self.tokens
        self.sums, self.tokens = {}, {}
        return {key: value / tokens[key] for key, value in sums.items() if tokens[key] > 0}

    def state(self) -> dict[str, float]:
        """The running sums as flat numbers (summed over processes by the trainer, then :meth:`load`-ed)."""
        return {**{f"sum/{k}": v for k, v in self.sums.items()}, **{f"tokens/{k}": float(v) for k, v in self.tokens.items()}}

    def load(self, state: dict[str, float]) -> None:
        self.sums = {key[4:]: value for key, value in state.items() if key.startswith("sum/")}
        self.tokens = {key[7:]: int(round(value)) for key, value in state.items() if key.startswith("tokens/")}


def scored_samples(tokenizer: Any, step: int, pairs: list[tuple[dict, dict]]) -> Any:
    """A :class:`~distill_gui.core.events.SamplesScored` event of the first sampled rows of ``pairs``
    (each an original micro-batch and its on-policy replacement).

    An answer is checked by the verifier (``numeric``) when the row's own completion states a final answer
    (``#### 42`` or ``\\boxed{}``); otherwise it carries no mark.
    """
    from distill_gui.core.events import SCORED_SAMPLE_ITEMS, SamplesScored, ScoredSample
    from distill_gui.core.verify import answers_match, extract_answer

    items: list[ScoredSample] = []
    for original, batch in pairs:
        for row in range(batch["input_ids"].shape[0]):
            if len(items) >= SCORED_SAMPLE_ITEMS:
                break
            ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
            trained = [i for i, label in enumerate(labels) if label != -100]
            start = trained[0] if trained else len(ids)
            prompt = tokenizer.decode(ids[:start], skip_special_tokens=True)
            completion = tokenizer.decode([ids[i] for i in trained], skip_special_tokens=True)
            wanted = [t for t in original["labels"][row].tolist() if t != -100]
            own = tokenizer.decode(wanted, skip_special_tokens=True)
            reference = extract_answer(own) if ("####" in own or "\\boxed" in own) else None
            correct: bool | None = None
            error = None
            if reference is not None:
                try:
                    correct = answers_match(completion, reference)
                except Exception as exc:  # noqa: BLE001 - a verifier's failure on one answer marks it wrong
                    correct, error = False, f"{type(exc).__name__}: {exc}"
            items.append(
                ScoredSample(
                    prompt=prompt,
                    completion=completion,
                    correct=correct,
                    answer=extract_answer(completion) if reference is not None else None,
                    reference=reference,
                    error=error,
                )
            )
    return SamplesScored(step=step, items=tuple(items), method="kd")


def make_on_policy_trainer_class() -> type:
    """distill-gui's Trainer subclass with on-policy micro-batches mixed in (built lazily: imports torch)."""
    import torch

    from distill_gui.core.events import SCORED_SAMPLE_STEPS
    from distill_gui.core.generation import _stop_ids
    from distill_gui.core.methods.base import trained_positions
    from distill_gui.core.training.trainer import make_trainer_class

    base: Any = make_trainer_class()

    class OnPolicyKDTrainer(base):
        """Replaces a share λ of the micro-batches by the student's own completions before the step's tokens are counted."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.means["train"] = KeyedTokenMeans()
            setup = self.setup
            self.kd = setup.method.section(setup.config)
            tokenizer = setup.tokenizer
            self.stop_ids = _stop_ids(tokenizer, setup.student)
            self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            self.max_positions = context_limit(setup.student, setup.teacher)
            self.scored_at = 0  # the last step whose samples were reported

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
            step, seed = self.state.global_step, self.args.seed
            originals = batch_samples
            batch_samples = [
                self.student_batch(batch, step, micro) if is_on_policy(seed, step, micro, self.kd.on_policy) else batch
                for micro, batch in enumerate(batch_samples)
            ]
            sampled = [(o, b) for o, b in zip(originals, batch_samples) if ON_POLICY_KEY in b]
            every = self.setup.config.training.sample_steps or SCORED_SAMPLE_STEPS
            if sampled and self.args.process_index == 0 and (not self.scored_at or step + 1 >= self.scored_at + every):
                self.scored_at = step + 1
                self.setup.emit(scored_samples(self.setup.tokenizer, step + 1, sampled))
            count = sum(int(trained_positions(batch["labels"]).sum()) for batch in batch_samples if "labels" in batch)
            total = torch.tensor(count, device=device, dtype=torch.long)
            if self.args.world_size > 1:
                total = self.accelerator.gather(total.reshape(1)).sum()
            return batch_samples, total

        def student_batch(self, batch: dict, step: int, micro: int) -> dict:
            """``batch`` with completions the student samples now (seeded by step, micro-batch and process)."""
            model = self.accelerator.unwrap_model(self.model)
            device = batch["input_ids"].device
            generator = torch.Generator(device=device)
            generator.manual_seed(sampling_seed(self.args.seed, step, micro, self.args.process_index))
            with self.accelerator.autocast():
                return on_policy_batch(
                    model,
                    batch,
                    max_new_tokens=self.kd.max_new_tokens,
                    temperature=self.kd.on_policy_temperature,
                    stop_ids=self.stop_ids,
                    pad_id=self.pad_id,
                    generator=generator,
                    max_positions=self.max_positions,
                    vocab_size=self.setup.shared_vocab_size,
                )

    return OnPolicyKDTrainer
