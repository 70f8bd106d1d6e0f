"""Soft-label logit KD: the student learns the teacher's whole next-token distribution.

The loss is ``alpha * KD + (1 - alpha) * CE``, with KD the forward KL, reverse KL or generalized JSD
at temperature T (scaled by T²). It is computed from the final hidden states and the output heads in
chunks of positions (:func:`distill_gui.core.losses.kd_loss_from_hidden`), so the full logits of
teacher and student are never held at once. With ``cache_teacher`` the teacher runs once over the data
before training; its top-k log-probs are read back each step and its weights are freed.

With ``on_policy`` = λ > 0 it is on-policy KD (GKD): a share λ of the micro-batches is replaced by
completions the student samples itself, and the teacher scores every token the student wrote
(:mod:`distill_gui.core.methods.kd_on_policy`). λ = 0 is plain KD, unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_gui.core.methods.base import (
    TEACHER_LOGITS,
    LossResult,
    MemoryInputs,
    Method,
    MethodMemory,
    MetricSpec,
    StepContext,
)
from distill_gui.core.schema import ConfigError, choice, option

if TYPE_CHECKING:
    from distill_gui.core.config import RunConfig

KD_LOSSES = ("forward_kl", "reverse_kl", "jsd")

KD_CHUNK_COPIES = 4
"""fp32 [chunk, vocabulary] blocks alive while one chunk's loss and gradient are computed (live teacher;
measured: tests/core/test_memory_measured.py)."""
KD_CACHED_CHUNK_COPIES = 3
"""The same from a teacher cache: the teacher's side is its top-k, not a [chunk, vocabulary] block."""


@dataclass
class KDConfig:
    """Soft-label KD settings."""

    loss: str = choice(
        "forward_kl", KD_LOSSES, "KD divergence: forward KL(teacher||student), reverse KL(student||teacher) or generalized JSD."
    )
    beta: float = option(
        0.5,
        "JSD mixture weight of the teacher (TRL's GKD convention): 0 gives exactly the forward KL, 1 exactly the "
        "reverse KL; values between give a generalized JSD, not a blend of the two KLs.",
        min=0.0,
        max=1.0,
        when={"loss": "jsd"},
    )
    temperature: float = option(1.0, "Softmax temperature for both models; the KD term is scaled by T².", min=1e-3, max=1e3)
    alpha: float = option(0.5, "Weight of the KD term; the hard-label cross-entropy gets 1 - alpha.", min=0.0, max=1.0)
    top_k: int = option(0, "Keep only the teacher's top-k logits (with a tail bucket for the rest); 0 uses all.", min=0)
    chunk_size: int = option(512, "Positions per chunk when computing the KD loss (lower uses less memory).", min=1)
    cache_teacher: bool = option(
        False,
        "Run the teacher once over the data before training and keep only its top-k log-probs (needs top_k > 0): "
        "no teacher forward pass per step, and the teacher is freed while the student trains.",
    )
    teacher_cache: str = option(
        "",
        "File for cache_teacher; empty: teacher_cache.safetensors in the run folder. A file made for the same "
        "teacher, data and settings is reused (several students, one teacher); another one is never overwritten.",
        when={"cache_teacher": True},
    )
    on_policy: float = option(
        0.0,
        "On-policy fraction λ (GKD): the share of micro-batches whose completions the student samples itself; the "
        "teacher scores every token the student wrote and the loss is the divergence alone on those tokens (reported "
        "as kd_on_policy). 0 trains on the data's completions only (plain KD); 1 on the student's own only.",
        min=0.0,
        max=1.0,
    )
    on_policy_temperature: float = option(
        1.0,
        "Sampling temperature of the student's on-policy completions (0 = greedy); the divergence itself uses temperature.",
        min=0.0,
        max=10.0,
    )
    max_new_tokens: int = option(
        128,
        "Longest on-policy completion the student samples (tokens; a row ends earlier at its end-of-turn token).",
        min=1,
        max=32768,
    )


class KD(Method):
    name = "kd"
    title = "Soft-label KD"
    summary = (
        "<b>Soft-label KD</b> trains the student to match the teacher's whole next-token distribution "
        "(forward KL, reverse KL or generalized JSD with β), mixed with the ordinary cross-entropy on the data "
        "by α. Teacher and student must share a tokenizer. With <i>on_policy</i> λ &gt; 0 it is <b>on-policy KD</b> "
        "(GKD): for a share λ of the batches the student writes the completions itself and the teacher scores every "
        "token it wrote (plotted as <i>KD on student samples</i>)."
    )
    Config = KDConfig
    teacher = TEACHER_LOGITS
    metrics = (
        MetricSpec("kd", "KD", "Loss", "nats/token", "The divergence from the teacher (times T²)."),
        MetricSpec("ce", "CE", "Loss", "nats/token", "Cross-entropy on the data's completion tokens."),
        MetricSpec(
            "kd_on_policy",
            "KD on student samples",
            "Loss",
            "nats/token",
            "The divergence from the teacher (times T²) on completions the student sampled itself (on_policy > 0).",
        ),
    )
    order = 10

    # ---- Config
    def loads_teacher_for_training(self, config: "RunConfig") -> bool:
        """A served teacher (``teacher.url``) is not loaded: its top log-probs fill the teacher cache."""
        from distill_gui.core.served_teacher_config import is_served

        return not is_served(config.teacher)

    def validate(self, config: "RunConfig") -> None:
        from distill_gui.core.served_teacher_config import is_served

        kd = self.section(config)
        if is_served(config.teacher):
            _validate_served(kd)
        if kd.cache_teacher and kd.top_k < 1:
            raise ConfigError("method.kd.top_k: method.kd.cache_teacher keeps the teacher's top-k log-probs; set top_k (e.g. 32)")
        if kd.on_policy > 0 and kd.cache_teacher:
            raise ConfigError(
                "method.kd.on_policy: the teacher scores the student's own samples, which a cache made before training "
                "cannot hold; set method.kd.cache_teacher: false (or on_policy: 0)"
            )

    def resolve_paths(self, section: KDConfig, base: Path) -> None:
        if section.teacher_cache:
            section.teacher_cache = str((base / Path(section.teacher_cache).expanduser()).resolve())

    # ---- Training
    def resume_cache(self, setup: Any) -> Any:
        from distill_gui.core.methods.kd_teacher_cache import cache_path

        kd = setup.config.method.kd
        path = cache_path(setup) if kd.cache_teacher and setup.run is not None else None
        return path if path is not None and path.is_file() else None

    def check(self, setup: Any) -> None:
        from distill_gui.core.heads import output_head
        from distill_gui.core.served_teacher_config import is_served
        from distill_gui.core.vocab import check_compatibility, require_kd_compatible

        if is_served(setup.config.teacher):
            from distill_gui.core.methods.kd_served_teacher import check_served_teacher

            output_head(setup.student)
            check_served_teacher(setup)  # a served teacher: its tokens must be the student's
            return
        output_head(setup.teacher)  # an architecture whose logit post-processing is unknown is refused here
        output_head(setup.student)
        student_rows = setup.student.get_output_embeddings().weight.shape[0] if hasattr(setup.student, "get_output_embeddings") else 0
        compat = check_compatibility(
            setup.teacher_tokenizer, setup.tokenizer, setup.teacher.get_output_embeddings().weight.shape[0], student_rows
        )
        require_kd_compatible(compat)
        setup.shared_vocab_size = compat.shared_vocab_size
        setup.log(f"tokenizers: {compat.message}")

    def prepare(self, setup: Any, prepared: Any) -> None:
        from distill_gui.core.methods.kd_teacher_cache import attach_teacher_cache

        if self.section(setup.config).cache_teacher:
            attach_teacher_cache(setup, prepared)

    def trainer_class(self, setup: Any) -> type:
        if self.section(setup.config).on_policy <= 0:
            return super().trainer_class(setup)
        from distill_gui.core.methods.kd_on_policy import make_on_policy_trainer_class

        return make_on_policy_trainer_class()

    def loss(self, ctx: StepContext, model: Any, inputs: dict) -> LossResult:
        import torch

        from distill_gui.core.heads import output_head
        from distill_gui.core.hidden_states import decoder_of, final_hidden
        from distill_gui.core.losses import kd_loss_from_cache, kd_loss_from_hidden
        from distill_gui.core.methods.kd_on_policy import ON_POLICY_KEY

        kd = self.section(ctx.config)
        _, student_hidden = final_hidden(model, inputs["input_ids"], inputs["attention_mask"])
        hidden = student_hidden[:, :-1].reshape(-1, student_hidden.shape[-1])
        labels = inputs["labels"][:, 1:].reshape(-1)
        # The head with the model's own logit post-processing (Gemma-2 soft-capping, Granite/Cohere scaling).
        s_head = output_head(model)
        # The student's own completions: the divergence alone (its own tokens are no targets for a cross-entropy).
        on_policy = ON_POLICY_KEY in inputs
        with ctx.autocast():  # the run's autocast, as the teacher's forward below sees it
            kind = hidden.device.type
            run_dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
        options = dict(
            loss=kd.loss,
            beta=kd.beta,
            temperature=kd.temperature,
            alpha=1.0 if on_policy else kd.alpha,
            chunk_size=kd.chunk_size,
            vocab_size=ctx.shared_vocab_size,
            # A bf16 run computes the heads' matmuls in bf16 as its autocast would (fp16 would underflow the gradients).
            matmul_dtype=torch.bfloat16 if run_dtype == torch.bfloat16 else None,
        )
        if ctx.teacher_cache is not None and not on_policy:
            t_ids, t_log_probs = ctx.teacher_cache.for_rows(inputs["row"].tolist())
            parts = kd_loss_from_cache(hidden, s_head, t_ids.to(hidden.device), t_log_probs.to(hidden.device), labels, **options)
        else:
            # The teacher runs under the run's mixed precision too (accelerate wraps only the student).
            with torch.no_grad(), ctx.autocast():
                _, t_decoder = decoder_of(ctx.teacher)
                teacher_hidden = t_decoder(
                    input_ids=inputs["input_ids"].to(ctx.teacher_device), attention_mask=inputs["attention_mask"].to(ctx.teacher_device)
                ).last_hidden_state.to(hidden.device)
            parts = kd_loss_from_hidden(
                hidden,
                s_head,
                teacher_hidden[:, :-1].reshape(-1, teacher_hidden.shape[-1]),
                output_head(ctx.teacher).detach().to(hidden.device),
                labels,
                top_k=kd.top_k,
                **options,
            )
        if on_policy:
            return LossResult(total=parts.total, metrics={"kd_on_policy": parts.kd.detach()})
        return LossResult(total=parts.total, metrics={"kd": parts.kd.detach(), "ce": parts.ce.detach()})

    # ---- Memory
    def memory(self, config: "RunConfig", sizes: MemoryInputs) -> MethodMemory:
        kd = self.section(config)
        if kd.on_policy > 0:  # an on-policy row is its prompt (at most max_length) plus up to max_new_tokens
            length = max(config.data.max_length, 1)
            sizes = dataclasses.replace(sizes, positions=sizes.positions * (length + kd.max_new_tokens) // length)
        chunk = min(kd.chunk_size, sizes.positions)
        vocab = max(sizes.student_vocab, sizes.teacher_vocab)
        # The student computes one logit row (logits_to_keep=1); the loss builds [chunk, vocab] blocks only.
        logits = chunk * vocab * 4 * KD_CHUNK_COPIES
        if kd.cache_teacher:
            logits = chunk * vocab * 4 * KD_CACHED_CHUNK_COPIES
            k = max(kd.top_k, 1)
            cached = sizes.positions * (k + 1) * (4 + 8)  # top-k ids (int64) and log-probs (fp32) of the batch
            return MethodMemory(logits=int(logits + cached), teacher_weights_at_start=self.loads_teacher_for_training(config))
        teacher_hidden = sizes.positions * sizes.teacher_hidden * sizes.teacher_dtype_bytes
        teacher_layer = sizes.positions * sizes.teacher_layer_values * sizes.teacher_dtype_bytes
        return MethodMemory(logits=int(logits), teacher_activations=int(teacher_hidden + teacher_layer), teacher_weights_resident=True)


def _validate_served(kd: KDConfig) -> None:
    """KD from a served teacher reads its top log-probs once, into the teacher cache, at temperature 1."""
    if kd.on_policy > 0:
        raise ConfigError(
            "method.kd.on_policy: on-policy KD needs the teacher's whole distribution on every token the student samples, "
            "which a served teacher (teacher.url) does not give; set on_policy: 0, or use a local teacher (teacher.path, "
            "teacher.url empty)"
        )
    if not kd.cache_teacher or kd.top_k < 1:
        raise ConfigError(
            "method.kd.cache_teacher: a served teacher (teacher.url) teaches soft-label KD through the teacher cache filled "
            "from its top_logprobs; set method.kd.cache_teacher: true and method.kd.top_k to what the server gives "
            "(often at most 20, e.g. top_k: 20)"
        )
    if kd.temperature != 1.0:
        raise ConfigError(
            f"method.kd.temperature: {kd.temperature:g}; a served teacher's top_logprobs are at temperature 1, so KD from "
            "it needs temperature: 1"
        )
