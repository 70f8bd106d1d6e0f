"""Cross-tokenizer logit KD: a teacher whose tokenizer differs from the student's.

Before training every row is aligned (:mod:`distill_gui.core.token_alignment`): the student's tokens
are decoded to text, the teacher's tokenizer splits that text, and both token sequences are cut where
both have a boundary at the same character. Each step the teacher reads its own tokens and the loss
(:mod:`distill_gui.core.cross_tokenizer_losses`) compares the two models' merged distributions over
each aligned group: ``uld`` by sorted probabilities (Universal Logit Distillation), ``gold`` by the
tokens both vocabularies share exactly, plus ULD on the rest (TRL's GOLD trainer). The total is
``alpha * KD + (1 - alpha) * CE`` on the student's own tokens, as in soft-label KD.

A pair that shares its tokenizer is aligned token by token; ``gold`` then equals forward-KL KD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distill_gui.core.errors import UserError
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

ALIGNMENTS = ("gold", "uld")

CROSS_KD_CHUNK_COPIES = 6
"""fp32 [chunk, vocabulary] blocks alive while one chunk of groups is computed: the student's logits,
log-probs and their gradient, the teacher's logits and log-probs, a sorted copy (ULD)."""


@dataclass
class CrossKDConfig:
    """Cross-tokenizer KD settings."""

    alignment: str = choice(
        "gold",
        ALIGNMENTS,
        "How the two distributions are compared over each stretch of text both tokenizers cut the same way: gold "
        "compares the tokens both vocabularies share exactly (KL) and the rest by sorted probabilities; uld compares "
        "sorted probabilities only (Universal Logit Distillation).",
    )
    temperature: float = option(1.0, "Softmax temperature for both models; the KD term is scaled by T².", min=1e-3, max=1e3)
    alpha: float = option(0.5, "Weight of the KD term; the student's cross-entropy on the data gets 1 - alpha.", min=0.0, max=1.0)
    unmatched_weight: float = option(
        1.0,
        "gold: weight of the sorted-probability distance over the tokens the vocabularies do not share.",
        min=0.0,
        max=100.0,
        when={"alignment": "gold"},
    )
    chunk_size: int = option(256, "Aligned groups per chunk when computing the loss (lower uses less memory).", min=1)
    top_k: int = option(
        0,
        "Keep only the teacher's top-k tokens of each aligned stretch (the rest as one bucket); 0 uses all. gold then "
        "compares the shared ones of those k and the rest; uld the k largest probabilities and the rest.",
        min=0,
    )
    cache_teacher: bool = option(
        False,
        "Run the teacher once over the aligned rows before training and keep its top-k per aligned stretch "
        "(cross_teacher_cache.safetensors in the run folder; needs top_k > 0): no teacher pass per step, and the "
        "teacher is freed while the student trains. A file made for the same teacher, rows and settings is reused.",
    )


class RowAlignments:
    """Each training row's alignment, found by the batch's ``row`` numbers (the method's per-row teacher side)."""

    def __init__(self, rows: list[Any], shared: Any, identical: bool, student_vocab: int, teacher_vocab: int):
        self.rows = rows
        self.shared = shared
        self.identical = identical
        self.student_vocab = student_vocab
        """Logit columns of the student that are tokens (its tokenizer's size; the shared size for one tokenizer)."""
        self.teacher_vocab = teacher_vocab
        self.columns: Any = None
        self.teacher_to_student: Any = None
        self.cache: Any = None
        """The teacher's top-k per aligned group (a :class:`~distill_gui.core.teacher_cache.TeacherCache` over groups)."""

    def for_rows(self, numbers: list[int]) -> list[Any]:
        return [self.rows[n] for n in numbers]


class CrossKD(Method):
    name = "cross_kd"
    title = "Cross-tokenizer KD"
    summary = (
        "<b>Cross-tokenizer KD</b> distils the teacher's next-token distributions into a student whose tokenizer "
        "differs. Both tokenizations of each row are lined up by the text they cover; <i>gold</i> compares the "
        "tokens both vocabularies share and the rest by sorted probabilities, <i>uld</i> sorted probabilities only. "
        "Mixed with the cross-entropy on the data by α."
    )
    Config = CrossKDConfig
    teacher = TEACHER_LOGITS
    metrics = (
        MetricSpec("kd", "KD", "Loss", "nats/token", "The divergence from the teacher over aligned text (times T²), per trained token."),
        MetricSpec("ce", "CE", "Loss", "nats/token", "Cross-entropy on the data's completion tokens."),
        MetricSpec(
            "aligned", "aligned share", "Alignment", "", "Share of trained student tokens inside text both tokenizers cut the same way."
        ),
    )
    order = 12

    # ---- Config
    def validate(self, config: "RunConfig") -> None:
        section = self.section(config)
        if section.cache_teacher and section.top_k < 1:
            raise ConfigError("method.cross_kd.top_k: cache_teacher keeps the teacher's top-k per aligned stretch; set top_k (e.g. 32)")
        if config.teacher.url and not config.teacher.path:
            raise ConfigError(
                "teacher.path: cross-tokenizer KD reads the teacher's whole next-token distributions, which a served teacher "
                "(teacher.url) does not give; set teacher.path to the teacher's weights, or use method.kind: sft on text the "
                "served teacher wrote (distill-gui generate-data --teacher-url)"
            )

    # ---- Training
    def check(self, setup: Any) -> None:
        from distill_gui.core.heads import output_head
        from distill_gui.core.token_alignment import AlignmentError, shared_tokens
        from distill_gui.core.vocab import check_compatibility

        output_head(setup.teacher)
        output_head(setup.student)
        t_rows = setup.teacher.get_output_embeddings().weight.shape[0]
        s_rows = setup.student.get_output_embeddings().weight.shape[0]
        compat = check_compatibility(setup.teacher_tokenizer, setup.tokenizer, t_rows, s_rows)
        if compat.kd_compatible:
            setup.log(f"tokenizers: {compat.message} Cross-tokenizer KD aligns them token by token.")
            return
        for role, tok in (("teacher", setup.teacher_tokenizer), ("student", setup.tokenizer)):
            if not getattr(tok, "is_fast", False):
                raise AlignmentError(
                    f"{role}.path: its tokenizer is not a fast (Rust) tokenizer, which cross-tokenizer KD needs for "
                    "character offsets; save the model with a tokenizer.json"
                )
        shared = shared_tokens(setup.teacher_tokenizer, setup.tokenizer, t_rows, s_rows)
        setup.log(
            f"tokenizers differ ({compat.differing_tokens:,} tokens); cross-tokenizer KD "
            f"({self.section(setup.config).alignment}): {len(shared.teacher_ids):,} tokens shared exactly"
        )

    def prepare(self, setup: Any, prepared: Any) -> None:
        from distill_gui.core.token_alignment import (
            AlignmentError,
            SharedTokens,
            align_row,
            identity_row,
            shared_tokens,
            teacher_prefix,
        )
        from distill_gui.core.vocab import check_compatibility

        t_rows = setup.teacher.get_output_embeddings().weight.shape[0]
        s_rows = setup.student.get_output_embeddings().weight.shape[0]
        compat = check_compatibility(setup.teacher_tokenizer, setup.tokenizer, t_rows, s_rows)
        datasets = [prepared.train] + ([prepared.eval] if prepared.eval is not None else [])
        examples = [ex for ds in datasets for ex in ds]
        if not examples:
            raise UserError("cross-tokenizer KD: the data has no rows")
        if compat.kd_compatible:
            rows = [identity_row(ex["input_ids"], ex["labels"]) for ex in examples]
            vocab = int(compat.shared_vocab_size or min(s_rows, t_rows))
            shared = SharedTokens(tuple(range(vocab)), tuple(range(vocab)))
        else:
            prefix = teacher_prefix(setup.teacher_tokenizer)
            skip = frozenset(int(i) for i in setup.tokenizer.all_special_ids)
            rows = [align_row(setup.tokenizer, setup.teacher_tokenizer, ex["input_ids"], ex["labels"], prefix, skip) for ex in examples]
            shared = shared_tokens(setup.teacher_tokenizer, setup.tokenizer, t_rows, s_rows)
        trained = sum(r.trained_tokens for r in rows)
        aligned = sum(g.s_end - g.s_start for r in rows for g in r.groups)
        if aligned == 0:
            raise AlignmentError(
                f"cross-tokenizer KD: no stretch of the {trained:,} trained tokens is cut the same way by both tokenizers, "
                "so the teacher has nothing to compare; use method.kind: sft on text the teacher wrote"
            )
        setup.log(
            f"alignment: {aligned:,} of {trained:,} trained tokens ({aligned / max(trained, 1):.0%}) lie in text both tokenizers cut the same way"
        )
        if compat.kd_compatible:
            s_vocab = t_vocab = int(compat.shared_vocab_size or min(s_rows, t_rows))
        else:
            s_vocab, t_vocab = min(s_rows, len(setup.tokenizer)), min(t_rows, len(setup.teacher_tokenizer))
        setup.teacher_cache = RowAlignments(rows, shared, compat.kd_compatible, s_vocab, t_vocab)
        if self.section(setup.config).cache_teacher:
            self._attach_cache(setup, setup.teacher_cache)
        prepared.train = prepared.train.add_column("row", list(range(len(prepared.train))))
        if prepared.eval is not None:
            start = len(prepared.train)
            prepared.eval = prepared.eval.add_column("row", list(range(start, start + len(prepared.eval))))

    def _attach_cache(self, setup: Any, aligned: RowAlignments) -> None:
        """Run the teacher once over every aligned row and keep its top-k per group; then free the teacher."""
        import gc

        import torch

        from distill_gui.core import teacher_cache as tc
        from distill_gui.core.cross_tokenizer_losses import GroupIndex, teacher_top_k_for_groups
        from distill_gui.core.heads import output_head
        from distill_gui.core.hidden_states import decoder_of

        cfg, config, procs = self.section(setup.config), setup.config, setup.procs
        keyed = [
            {"input_ids": list(r.teacher_ids), "labels": [v for g in r.groups for v in (g.s_start, g.s_end, g.t_start, g.t_end)]}
            for r in aligned.rows
        ]
        fingerprint = tc.fingerprint(
            config.teacher.path,
            keyed,
            cfg.top_k,
            cfg.temperature,
            aligned.teacher_vocab,
            teacher_revision=config.teacher.revision,
            teacher_gguf_file=config.teacher.gguf_file,
            teacher_quantization=config.teacher.quantization,
            teacher_dtype=str(setup.teacher.dtype),
        )
        path = setup.run.path / "cross_teacher_cache.safetensors"

        def build() -> "tc.TeacherCache":
            setup.log(f"teacher cache: running the teacher over {len(aligned.rows):,} aligned rows (top-{cfg.top_k} per stretch)")
            _, decoder = decoder_of(setup.teacher)
            head = output_head(setup.teacher)
            batch = max(8, config.training.batch_size)
            ids, lps, counts = [], [], [0]
            for start in range(0, len(aligned.rows), batch):
                part = aligned.rows[start : start + batch]
                width = max(len(r.teacher_ids) for r in part)
                t_ids = torch.zeros((len(part), width), dtype=torch.long)
                mask = torch.zeros((len(part), width), dtype=torch.long)
                for b, r in enumerate(part):
                    t_ids[b, : len(r.teacher_ids)] = torch.tensor(r.teacher_ids)
                    mask[b, : len(r.teacher_ids)] = 1
                with torch.no_grad():
                    hidden = decoder(
                        input_ids=t_ids.to(setup.teacher_device), attention_mask=mask.to(setup.teacher_device)
                    ).last_hidden_state
                index = GroupIndex.build([(r.teacher_ids, [(g.t_start, g.t_end) for g in r.groups]) for r in part], width)
                i, lp = teacher_top_k_for_groups(
                    hidden.reshape(-1, hidden.shape[-1]),
                    head,
                    index,
                    top_k=cfg.top_k,
                    temperature=cfg.temperature,
                    teacher_vocab=aligned.teacher_vocab,
                    chunk_size=cfg.chunk_size,
                )
                ids.append(i.to("cpu", torch.int32))
                lps.append(lp.float().cpu())
                counts.extend(len(r.groups) for r in part)
            return tc.TeacherCache(
                torch.cat(ids),
                torch.cat(lps),
                torch.tensor(counts, dtype=torch.long).cumsum(0),
                cfg.top_k,
                float(cfg.temperature),
                fingerprint,
            )

        cache = None
        if procs.is_main:
            cache, _ = tc.load_or_build(path, fingerprint, build, setup.log)
        procs.barrier()
        if not procs.is_main:
            cache = tc.TeacherCache.load(path)
        aligned.cache = cache
        if config.training.sample_steps and setup.probe_prompts and procs.is_main:
            setup.answer_probes_with_teacher()
        setup.teacher = None  # training needs only the cache from here on
        gc.collect()

    def loss(self, ctx: StepContext, model: Any, inputs: dict) -> LossResult:
        import torch

        from distill_gui.core.cross_tokenizer_losses import GoldColumns, GroupIndex, cross_kd_loss_from_hidden, teacher_to_student_map
        from distill_gui.core.heads import output_head
        from distill_gui.core.hidden_states import decoder_of, final_hidden

        cfg = self.section(ctx.config)
        aligned_rows: RowAlignments = ctx.teacher_cache
        rows = aligned_rows.for_rows(inputs["row"].tolist())
        _, student_hidden = final_hidden(model, inputs["input_ids"], inputs["attention_mask"])
        device = student_hidden.device
        batch, length = inputs["input_ids"].shape
        t_len = max(len(r.teacher_ids) for r in rows)
        cached = aligned_rows.cache.for_rows(inputs["row"].tolist()) if aligned_rows.cache is not None else None
        teacher_hidden = t_head = None
        if cached is None:
            t_ids = torch.zeros((batch, t_len), dtype=torch.long)
            t_mask = torch.zeros((batch, t_len), dtype=torch.long)
            for b, r in enumerate(rows):
                t_ids[b, : len(r.teacher_ids)] = torch.tensor(r.teacher_ids, dtype=torch.long)
                t_mask[b, : len(r.teacher_ids)] = 1
            with torch.no_grad(), ctx.autocast():
                _, t_decoder = decoder_of(ctx.teacher)
                teacher_hidden = t_decoder(
                    input_ids=t_ids.to(ctx.teacher_device), attention_mask=t_mask.to(ctx.teacher_device)
                ).last_hidden_state
            teacher_hidden = teacher_hidden.to(device).reshape(-1, teacher_hidden.shape[-1])
            t_head = output_head(ctx.teacher).to(device)
        s_index = GroupIndex.build(
            [(ids, [(g.s_start, g.s_end) for g in r.groups]) for ids, r in zip(inputs["input_ids"].tolist(), rows)], length
        )
        t_index = GroupIndex.build([(r.teacher_ids, [(g.t_start, g.t_end) for g in r.groups]) for r in rows], t_len)
        s_head = output_head(model)
        if cfg.alignment == "gold" and aligned_rows.columns is None:
            aligned_rows.columns = GoldColumns.build(aligned_rows.shared, aligned_rows.teacher_vocab, aligned_rows.student_vocab, device)
        if cfg.alignment == "gold" and cfg.top_k and aligned_rows.teacher_to_student is None:
            aligned_rows.teacher_to_student = teacher_to_student_map(aligned_rows.shared, aligned_rows.teacher_vocab, device)
        labels = inputs["labels"][:, 1:].reshape(-1)
        trained = int((labels != -100).sum())
        parts = cross_kd_loss_from_hidden(
            student_hidden.reshape(-1, student_hidden.shape[-1]),
            s_head,
            teacher_hidden,
            t_head,
            _unshifted(labels, batch, length),
            s_index,
            t_index,
            alignment=cfg.alignment,
            columns=aligned_rows.columns,
            temperature=cfg.temperature,
            alpha=cfg.alpha,
            unmatched_weight=cfg.unmatched_weight,
            chunk_size=cfg.chunk_size,
            trained_tokens=trained,
            student_vocab=aligned_rows.student_vocab,
            teacher_vocab=aligned_rows.teacher_vocab,
            top_k=cfg.top_k,
            teacher_to_student=aligned_rows.teacher_to_student,
            cached=cached,
        )
        share = torch.tensor(sum(g.s_end - g.s_start for r in rows for g in r.groups) / max(trained, 1))
        return LossResult(total=parts.total, metrics={"kd": parts.kd, "ce": parts.ce, "aligned": share})

    # ---- Memory
    def memory(self, config: "RunConfig", sizes: MemoryInputs) -> MethodMemory:
        cfg = self.section(config)
        chunk = min(cfg.chunk_size, sizes.positions)
        vocab = max(sizes.student_vocab, sizes.teacher_vocab)
        logits = chunk * vocab * 4 * CROSS_KD_CHUNK_COPIES
        if cfg.cache_teacher:
            cached = sizes.positions * (cfg.top_k + 1) * (4 + 8)  # a batch's top-k ids (int64) and log-probs (fp32)
            return MethodMemory(logits=int(logits + cached), teacher_weights_at_start=True)
        teacher_hidden = sizes.positions * sizes.teacher_hidden * sizes.teacher_dtype_bytes
        teacher_layer = sizes.positions * sizes.teacher_layer_values * sizes.teacher_dtype_bytes
        return MethodMemory(logits=int(logits), teacher_activations=int(teacher_hidden + teacher_layer), teacher_weights_resident=True)


def _unshifted(labels: Any, batch: int, length: int) -> Any:
    """Shifted labels ``[B * (L - 1)]`` laid out on the unshifted ``[B * L]`` positions (the last one of each row -100),
    so flat position ``b * L + i`` predicts ``labels[b * L + i]``."""
    import torch

    out = torch.full((batch, length), -100, dtype=labels.dtype, device=labels.device)
    out[:, :-1] = labels.view(batch, length - 1)
    return out.reshape(-1)
