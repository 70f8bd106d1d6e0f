"""Can the teacher teach the student token by token? Comparing the two tokenizers.

Soft-label distillation compares the teacher's and the student's probabilities for each next
token, so both must number their tokens the same way. Three verdicts:

- ``identical``: the same token-to-id mapping and the same embedding size in both models;
- ``padded``: the same mapping, but one model's embedding matrix has extra unused rows (Qwen's
  151,936 vs 152,064); logits are cut to the shared real vocabulary before the loss;
- ``different``: the tokenizers number tokens differently; cross-tokenizer KD (``method.kind: cross_kd``,
  which lines up the two tokenizations by the text they cover) or hard-label SFT on text the teacher
  wrote (``method.kind: sft``) move knowledge across.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill_gui.core.errors import UserError

#: Texts both tokenizers must split into the same ids (same vocabulary but a different
#: pre-tokenizer or normalizer still breaks token-level KD).
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog. 12 + 7 = 19.",
    "  Indented code:\n\tdef f(x):\n\t\treturn x * 2  # done\n",
    "Ünïcödé, emoji 🙂 and 中文 text; URLs https://example.org/a?b=1.",
)
_SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "pad_token")
CROSS_TOKENIZER_ADVICE = (
    "Use method.kind: cross_kd (cross-tokenizer KD: the two tokenizations are lined up by the text they cover, "
    "alignment gold or uld), or method.kind: sft to fine-tune the student (hard labels) on text the teacher wrote."
)


class IncompatibleTokenizers(UserError, ValueError):
    """The teacher and student tokenizers differ, so token-level (soft-label) KD is impossible."""


@dataclass(frozen=True)
class TokenizerCompatibility:
    """The verdict on a teacher/student tokenizer pair."""

    verdict: str
    """identical, padded or different."""
    shared_vocab_size: int | None
    """Logit columns both models share (slice both to this before the KD loss); None when different."""
    message: str
    teacher_vocab_size: int
    student_vocab_size: int
    teacher_tokenizer_size: int
    student_tokenizer_size: int
    differing_tokens: int = 0
    """Tokens missing from one tokenizer or numbered differently (0 unless different)."""
    sample_differences: tuple[str, ...] = ()
    special_token_differences: tuple[str, ...] = field(default=())
    """Special-token roles set differently, e.g. "eos_token: '</s>' vs '<|im_end|>'" (informational)."""

    @property
    def kd_compatible(self) -> bool:
        return self.verdict in ("identical", "padded")


def _special_differences(teacher: Any, student: Any) -> list[str]:
    out = []
    for role in _SPECIAL_ROLES:
        a, b = getattr(teacher, role, None), getattr(student, role, None)
        if str(a) != str(b):
            out.append(f"{role}: {a!r} vs {b!r}")
    return out


def _sample(tokens: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(t) for t in tokens[:limit])
    return shown + (", ..." if len(tokens) > limit else "")


def check_compatibility(
    teacher_tokenizer: Any,
    student_tokenizer: Any,
    teacher_vocab_size: int,
    student_vocab_size: int,
) -> TokenizerCompatibility:
    """Compare two tokenizers and the two models' embedding sizes (``config.vocab_size``)."""
    t_vocab: dict[str, int] = teacher_tokenizer.get_vocab()
    s_vocab: dict[str, int] = student_tokenizer.get_vocab()
    t_len, s_len = len(teacher_tokenizer), len(student_tokenizer)
    specials = _special_differences(teacher_tokenizer, student_tokenizer)
    common: dict[str, Any] = dict(
        teacher_vocab_size=teacher_vocab_size,
        student_vocab_size=student_vocab_size,
        teacher_tokenizer_size=t_len,
        student_tokenizer_size=s_len,
        special_token_differences=tuple(specials),
    )

    if t_vocab != s_vocab:
        differing = sorted(
            (tok for tok in t_vocab.keys() | s_vocab.keys() if t_vocab.get(tok) != s_vocab.get(tok)),
            key=lambda tok: min(t_vocab.get(tok, 1 << 62), s_vocab.get(tok, 1 << 62)),
        )
        message = (
            f"The tokenizers differ: {len(differing):,} of {len(t_vocab.keys() | s_vocab.keys()):,} tokens are missing "
            f"from one of them or have another id (e.g. {_sample(differing)}); teacher {t_len:,} tokens, student "
            f"{s_len:,}. Soft-label KD compares the two models token by token, so it cannot be used. {CROSS_TOKENIZER_ADVICE}"
        )
        return TokenizerCompatibility(
            "different", None, message, differing_tokens=len(differing), sample_differences=tuple(differing[:5]), **common
        )

    for text in PROBE_TEXTS:
        t_ids = teacher_tokenizer(text, add_special_tokens=False)["input_ids"]
        s_ids = student_tokenizer(text, add_special_tokens=False)["input_ids"]
        if t_ids != s_ids:
            message = (
                "The tokenizers share a vocabulary but split text differently (another pre-tokenizer or "
                f"normalizer): {text!r} becomes {len(t_ids)} teacher tokens and {len(s_ids)} student tokens. "
                f"Soft-label KD needs both models to see the same tokens, so it cannot be used. {CROSS_TOKENIZER_ADVICE}"
            )
            return TokenizerCompatibility("different", None, message, sample_differences=(text,), **common)

    real = max(t_len, s_len, max(t_vocab.values(), default=-1) + 1)
    if real > min(teacher_vocab_size, student_vocab_size):
        smaller = "teacher" if teacher_vocab_size <= student_vocab_size else "student"
        message = (
            f"The tokenizers match, but the {smaller} model has only {min(teacher_vocab_size, student_vocab_size):,} "
            f"embedding rows for {real:,} tokens, so some tokens have no logit. Soft-label KD cannot be used; "
            "use method.kind: sft, or a checkpoint whose embeddings cover the tokenizer."
        )
        return TokenizerCompatibility("different", None, message, **common)

    note = f" Special tokens are set differently ({'; '.join(specials)}); that is fine for KD." if specials else ""
    if teacher_vocab_size == student_vocab_size:
        message = f"The tokenizers are identical ({t_len:,} tokens, {teacher_vocab_size:,} logits in both models); soft-label KD can be used.{note}"
        return TokenizerCompatibility("identical", teacher_vocab_size, message, **common)
    message = (
        f"The tokenizers are identical ({real:,} tokens), but the models' embeddings are padded to different sizes "
        f"(teacher {teacher_vocab_size:,}, student {student_vocab_size:,}); KD compares the first {real:,} logits "
        f"and ignores the unused padding rows.{note}"
    )
    return TokenizerCompatibility("padded", real, message, **common)


def require_kd_compatible(compat: TokenizerCompatibility) -> TokenizerCompatibility:
    """Raise :class:`IncompatibleTokenizers` (with the verdict's message) unless KD can be used."""
    if not compat.kd_compatible:
        raise IncompatibleTokenizers(compat.message)
    return compat
