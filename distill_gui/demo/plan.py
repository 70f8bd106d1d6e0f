"""What one demo run does: the student sizes, the methods, the budgets, and how long it takes.

``DemoPlan.full()`` and ``DemoPlan.create_quick()`` are the two presets; ``distill-gui demo`` changes
``seeds``, ``steps``, ``continue_steps`` and ``methods`` from its flags.

Budget rules (the same for every size):

- the three **base** methods (``answer_sft``, ``trace_sft``, ``trace_sft_kd``) train a random-initialised
  student for ``steps`` optimizer steps of ``batch_size`` rows;
- the **continued** methods start from that size's ``trace_sft`` student and train it for
  ``continue_steps`` more optimizer steps. ``trace_sft_more`` (trace SFT continued for the same steps, on
  the same rows) is the control each of them is compared with, so a gain is the method's, not the extra
  steps'. A step of RLVR trains on ``batch_size`` sampled answers (``batch_size / rlvr_group`` questions);
  self-distillation splits its steps over its rounds; sampling and the teacher's scoring are not steps
  (their time is in the demo's wall time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASE_METHODS = ("answer_sft", "trace_sft", "trace_sft_kd")
CONTINUED_METHODS = ("trace_sft_more", "trace_sft_rlvr", "trace_sft_onpolicy_kd", "self_distill", "synthetic")
METHODS = BASE_METHODS + CONTINUED_METHODS
NEW_CONTINUED = ("trace_sft_onpolicy_kd", "self_distill", "synthetic")
"""The continued methods besides RLVR, judged together by one of the goals."""


@dataclass(frozen=True)
class StudentSize:
    """A student architecture (Llama, tied embeddings, the teacher's tokenizer)."""

    name: str
    hidden: int
    layers: int
    heads: int
    mlp: int
    learning_rate: float
    """Peak learning rate: narrower models take larger steps (the same change of the function per step)."""


# Wide and shallow: at equal parameters, fewer and wider layers learned this task far faster (single
# runs, batch 32, test accuracy): ~0.9M parameters after 2,000 steps, 3 layers of 144: 84%, 4 of 128:
# 60%; ~0.35M, 2 layers of 128: 71% after 2,000 steps; 2 of 112, 3 of 96, 6 of 64: 42-47% after 1,500-2,000.
STUDENT_SIZES = (
    StudentSize("student-L", hidden=144, layers=3, heads=4, mlp=432, learning_rate=1.5e-3),  # 1/4.0 (883,440 parameters)
    StudentSize("student-M", hidden=128, layers=2, heads=4, mlp=192, learning_rate=2e-3),  # 1/10.3 (344,704 parameters)
    StudentSize("student-S", hidden=64, layers=2, heads=4, mlp=128, learning_rate=3e-3),  # 1/30.8 (115,008 parameters)
)

# Seconds per optimizer step at batch 32 for the three sizes (large, medium, small) on 2 free CPU cores,
# bf16 autocast, eager attention. Logit KD reads the offline teacher cache, so it costs about what trace
# SFT costs; answer-only rows are shorter (no trace). The continued methods add their sampling (RLVR: 32
# answers a step; on-policy KD: half the batches; self-distillation samples its rounds apart, see
# SAMPLE_SECONDS); their medium-size costs were measured in a demo run at one thread on a loaded machine
# (trace SFT 2.3x its idle cost there) and scaled to idle, the other sizes scaled like trace SFT.
STEP_SECONDS = {
    "answer_sft": (0.113, 0.065, 0.045),
    "trace_sft": (0.14, 0.08, 0.056),
    "trace_sft_kd": (0.14, 0.085, 0.06),
    "trace_sft_more": (0.14, 0.08, 0.056),
    "trace_sft_rlvr": (1.6, 1.12, 0.88),  # 16 questions x 8 answers a step: 4 micro-batches of 32
    "trace_sft_onpolicy_kd": (0.5, 0.35, 0.28),
    "self_distill": (0.1, 0.06, 0.045),
    "synthetic": (0.16, 0.09, 0.065),
}
def size_place(size: StudentSize) -> int | None:
    """The place of ``size`` among :data:`STUDENT_SIZES` (by name), None for a size of one's own."""
    return next((i for i, known in enumerate(STUDENT_SIZES) if known.name == size.name), None)


SAMPLE_SECONDS = 0.0015
"""Seconds per answer the student samples for self-distillation (batched, KV cache)."""
ONE_THREAD_SLOWDOWN = 1.1
"""How much longer a student takes at one thread, next to another, than alone at two threads. Measured: trace SFT,
400 steps, the 1/10 and 1/31 students: one after the other at two threads 86-112 s (58 s for the 1/10 one),
side by side at one thread each 60 s (52 s for the 1/10 one, 39 s for the 1/31 one)."""


@dataclass
class DemoPlan:
    """Budgets of one demo run."""

    quick: bool = False
    trace_prompts: int = 8000
    """Training questions the teacher writes traces for (the answer-only students see the same questions)."""
    test_rows: int = 500
    """Test problems every model is scored on."""
    steps: int = 2000
    """Optimizer steps per student and base method: the same budget for every size and method."""
    continue_steps: int = 150
    """Optimizer steps each continued method (and its control, continued trace SFT) adds to the trace-SFT student."""
    batch_size: int = 32
    learning_rate: float | None = None
    """One peak learning rate for every size; None gives each size its own (``StudentSize.learning_rate``)."""
    continue_lr_scale: float = 0.25
    """Continued runs train at this fraction of the size's peak learning rate (they start from a trained student)."""
    rlvr_lr_scale: float = 0.01
    """RLVR's learning rate as a fraction of the size's peak learning rate. Measured on the 1/10 student after
    trace SFT (71.4% greedy), test accuracy after GRPO: 0.1 of the peak (2e-4), 200 steps: 62.2%; 5e-5 at
    temperature 1.0, 100 steps: 69.0%; 2e-5, 100 steps: 70.8%; 5e-5 and 1e-4 at temperature 0.6, 200 steps:
    68.6% and 66.4%. The smallest rate did the least harm; none helped."""
    warmup_steps: int = 50
    kd_alpha: float = 0.5
    """Weight of the logit-KD term in trace_sft_kd (the trace cross-entropy gets 1 - alpha)."""
    kd_temperature: float = 1.0
    kd_top_k: int = 16
    """Teacher tokens kept per position in the offline teacher cache (plus a tail bucket for the rest)."""
    on_policy: float = 0.5
    """λ of on-policy KD: the share of micro-batches the student writes itself."""
    rlvr_group: int = 8
    """Answers RLVR samples per question."""
    rlvr_questions: int = 16
    """Questions per RLVR optimizer step (their answers in micro-batches of ``batch_size``). With 4 a step (one
    micro-batch) GRPO's updates were mostly noise: a plain GRPO loop from the 1/10 trace-SFT student at 2e-4 lowered
    the sampled reward from 0.58 to 0.44 in 60 steps; with 32 a step it held (0.58 -> 0.60-0.63)."""
    self_distill_rounds: int = 2
    self_distill_samples: int = 4
    self_distill_questions: int = 1024
    """Questions sampled per self-distillation round (drawn afresh each round)."""
    synthetic_questions: int = 2000
    """New questions the teacher labels for the synthetic row (same-shape questions with new numbers)."""
    synthetic_samples: int = 4
    """Teacher answers per synthetic question; the majority's answer is kept when enough of them agree."""
    synthetic_threshold: float = 0.75
    synthetic_weight: float = 0.5
    """Share of synthetic rows in the synthetic row's training mix (the rest: the real traces)."""
    max_new_tokens: int = 56
    gen_batch_size: int = 64
    eval_batch_size: int = 100
    seed: int = 0
    seeds: int = 1
    """Initialisation seeds per student; the table reports the mean and the min-max over them."""
    jobs: int = 0
    """Students trained at the same time, each in its own process (0: as many as the CPU has cores, at most
    the number of students). On 2 cores two students at one thread each finish sooner than one at two
    threads: models this small use a second thread poorly."""
    methods: tuple[str, ...] = METHODS
    sizes: tuple[StudentSize, ...] = field(default=STUDENT_SIZES)

    @classmethod
    def full(cls) -> "DemoPlan":
        return cls()

    @classmethod
    def create_quick(cls) -> "DemoPlan":
        return cls(quick=True, trace_prompts=256, test_rows=100, steps=80, continue_steps=8, batch_size=16, learning_rate=3e-3,
                   warmup_steps=10, self_distill_questions=32, synthetic_questions=48)

    @property
    def budget_rows(self) -> int:
        return self.steps * self.batch_size

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        if self.seeds < 1:
            raise ValueError(f"--seeds: at least 1 (got {self.seeds})")
        if self.jobs < 0:
            raise ValueError(f"--jobs: 0 (one per CPU core) or more (got {self.jobs})")
        if self.continue_steps < 1 and self.continued_methods:
            raise ValueError(f"--continue-steps: at least 1 for the continued methods (got {self.continue_steps})")

    def parallel_jobs(self, students: int) -> int:
        """How many of ``students`` (size x seed) train at once."""
        import os

        wanted = self.jobs if self.jobs > 0 else (os.cpu_count() or 1)
        return max(1, min(wanted, students))

    @property
    def continued_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m in CONTINUED_METHODS)

    @property
    def base_methods(self) -> tuple[str, ...]:
        """The base methods trained: trace_sft always when a continued method needs its student."""
        wanted = set(self.methods) | ({"trace_sft"} if self.continued_methods else set())
        return tuple(m for m in BASE_METHODS if m in wanted)

    @property
    def trained_methods(self) -> tuple[str, ...]:
        return self.base_methods + self.continued_methods

    def estimate_seconds(self) -> float:
        """Expected wall time on 2 free CPU cores, from times measured there (a busy machine is slower).

        The teacher's work (evaluation, traces, cache, synthetic data) comes first; then the students (one per
        size and seed) go to ``parallel_jobs`` workers in order, each to the first free one.
        """
        shared = 10 + self.test_rows * 0.025 + self.trace_prompts * (0.0175 + 0.004)
        if "synthetic" in self.trained_methods:
            shared += self.synthetic_questions * self.synthetic_samples * 0.0045
        units = [self._student_seconds(size) for _ in range(self.seeds) for size in self.sizes]
        jobs = self.parallel_jobs(len(units))
        if jobs == 1:
            return shared + sum(units)
        free = [0.0] * jobs
        for seconds in units:
            first = min(range(jobs), key=free.__getitem__)
            free[first] += seconds * ONE_THREAD_SLOWDOWN
        return shared + max(free)

    def _student_seconds(self, size: StudentSize) -> float:
        """One student's training and evaluation with every method, alone on 2 free cores."""
        place = size_place(size)
        index = len(STUDENT_SIZES) - 1 if place is None else place
        seconds = 0.0
        for m in self.trained_methods:
            steps = self.steps if m in BASE_METHODS else self.continue_steps
            seconds += steps * (self.batch_size / 32) * STEP_SECONDS[m][index] + 5.0 + self.test_rows * 0.025
        if "self_distill" in self.trained_methods:
            seconds += self.self_distill_rounds * self.self_distill_questions * self.self_distill_samples * SAMPLE_SECONDS
        return seconds
