"""Hard-label SFT: fine-tune the student on the data's text (e.g. answers a teacher wrote).

Plain next-token cross-entropy on the completion tokens; no teacher at training time, so any
teacher (another tokenizer, a served model) can have written the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distill_gui.core.methods.base import TEACHER_NONE, LossResult, Method, MetricSpec, StepContext


@dataclass
class SFTConfig:
    """Hard-label SFT has no settings of its own: the data, the student and training say it all."""


class SFT(Method):
    name = "sft"
    title = "Hard-label SFT"
    summary = (
        "<b>SFT</b> fine-tunes the student on the data's text alone (hard labels) — the choice when the "
        "tokenizers differ, e.g. on answers or reasoning traces the teacher wrote."
    )
    Config = SFTConfig
    teacher = TEACHER_NONE
    metrics = (MetricSpec("ce", "CE", "Loss", "nats/token", "Cross-entropy on the data's completion tokens."),)
    order = 20

    def loss(self, ctx: StepContext, model: Any, inputs: dict) -> LossResult:
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"])
        return LossResult(total=out.loss, metrics={"ce": out.loss.detach()})
