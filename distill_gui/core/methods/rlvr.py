"""RL with verifiable rewards (RLVR): GRPO on the student's own answers, rewarded by the verifier.

The R1-Distill → RL recipe: start from a student that already writes reasoning traces (a trace-SFT run
folder is a valid ``student.path``), sample ``group_size`` answers per question, reward each by the
verifier's verdict against the row's reference answer (:mod:`distill_gui.core.verify`; plus an
optional format reward), and push the policy towards the answers that beat their group's mean, with
the probability ratio clipped to ``1 ± clip_epsilon`` and a KL penalty ``beta`` to the starting policy.

Training runs on TRL's ``GRPOTrainer`` built from the run's ``TrainingArguments``, with the run's
callbacks (events, stop/pause, checkpoint commits), so an RLVR run writes the same run folder, resumes
from its step checkpoints and stops and pauses like any other. With LoRA the reference policy is the
base model with the (new, zero-initialised) adapter switched off, no second copy; with full fine-tuning
and ``beta > 0`` TRL loads a frozen copy of the starting model.

Dropout (LoRA's included) is off during RLVR, so answers are sampled and scored by the same network.

``training.batch_size`` counts completions (not questions): each optimizer step trains on
``batch_size × gradient_accumulation_steps`` completions, i.e. that many divided by ``group_size``
questions; that product must be a multiple of ``group_size``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_gui.core.methods.base import TEACHER_NONE, MemoryInputs, Method, MethodMemory, MetricSpec
from distill_gui.core.schema import ConfigError, choice, option

if TYPE_CHECKING:
    from distill_gui.core.config import RunConfig
    from distill_gui.core.data import Example

LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")
SAMPLERS = ("distill", "trl")

LOGPROB_CHUNK = 32768
"""Positions TRL's fused log-prob head projects onto the vocabulary at a time (trl.trainer.utils)."""
LOGPROB_COPIES = 3
"""fp32 [chunk, vocab] blocks alive while one chunk's log-probs and their gradient are computed."""
SAMPLING_COPIES = 3
"""fp32 [rows, vocab] blocks alive while a token is sampled (logits, processed logits, probabilities)."""


@dataclass
class RLVRConfig:
    """RL with verifiable rewards (GRPO) settings."""

    group_size: int = option(
        4,
        "Answers sampled per question (GRPO's group); each answer's advantage is its reward minus its group's mean. "
        "training.batch_size × gradient_accumulation_steps counts answers and must be a multiple of it.",
        min=2,
        max=64,
    )
    beta: float = option(
        0.04,
        "Weight of the KL penalty to the starting policy (the student before RL): higher keeps the student closer to "
        "where it started. 0 turns it off and keeps no reference model (less memory).",
        min=0.0,
        max=10.0,
    )
    clip_epsilon: float = option(
        0.2,
        "Clip range ε of the probability ratio between the updated and the sampling policy (PPO-style); it matters "
        "when a batch of answers is trained on more than once (num_iterations > 1).",
        min=0.0,
        max=1.0,
    )
    max_completion_length: int = option(
        256,
        "Longest sampled answer in tokens; longer answers are cut off (and usually fail the verifier).",
        min=1,
        max=32768,
    )
    temperature: float = option(
        1.0,
        "Sampling temperature of the answers: higher gives more varied groups (more signal), lower surer ones.",
        min=0.05,
        max=5.0,
    )
    correct_weight: float = option(
        1.0,
        "Weight of the verifier's reward: 1 for an answer whose final answer matches the reference, 0 otherwise.",
        min=0.0,
        max=100.0,
    )
    format_weight: float = option(
        0.0,
        "Weight of the format reward: 1 for an answer that states its final answer as '#### answer' or \\boxed{answer}. 0 turns it off.",
        min=0.0,
        max=100.0,
    )
    checker: str = option(
        "numeric",
        "How answers are checked (distill_gui.core.verify): numeric compares the final numbers exactly; steps also "
        "requires every arithmetic step the answer writes out to hold (no reward for a right answer by luck); math "
        "checks LaTeX/symbolic equivalence; a checker registered with verify.register_checker can be named too.",
    )
    loss_type: str = choice(
        "dapo",
        LOSS_TYPES,
        "How token losses are averaged (TRL's loss_type): dapo over all answer tokens of the step (no length bias), "
        "grpo per answer then over answers, dr_grpo by a constant (max_completion_length), bnpo over the micro-batch.",
    )
    num_iterations: int = option(
        1,
        "Optimizer passes over each batch of sampled answers (μ); above 1 reuses the samples and the clip applies.",
        min=1,
        max=8,
    )
    sampler: str = choice(
        "distill",
        SAMPLERS,
        "What samples the answers: distill is distill-gui's KV-cache sampler, in which a finished answer leaves the "
        "batch; trl is TRL's (transformers' generate, which runs every row to the longest answer).",
    )


# ---- Reference answers


def reference_of(example: "Example") -> str | None:
    """The answer a sampled completion is checked against: the text after ``####`` in the row's completion,
    the completion itself when it holds a ``\\boxed{}`` answer or is a bare answer, else None."""
    from distill_gui.core.verify import extract_answer

    if example.reference:
        return example.reference
    completion = (example.completion or "").strip()
    if "\\boxed" in completion or "\\fbox" in completion:
        return completion if extract_answer(completion) is not None else None
    if completion and len(completion.split()) == 1 and extract_answer(completion) is not None:
        return completion
    return None


def _no_references_error(key: str, where: str) -> ConfigError:
    return ConfigError(
        f"{key}: rlvr on data without reference answers: no row of {where} has a final answer to verify against "
        "(the text after '####' in the completion, a \\boxed{} answer, or a bare answer). Give question/answer data "
        "whose answers end in '#### <answer>' (GSM8K style), or train with method.kind: sft"
    )


QUICK_CHECK_BYTES = 20 << 20
"""Data files up to this size are read for reference answers by :meth:`RLVR.validate` (which the app calls
as a run starts); larger files, folders and hub ids are checked once the run has loaded them."""


def _has_references(path: str, config: "RunConfig") -> bool | None:
    """Whether a data file has a row with a reference answer; None when it is not checked here."""
    from distill_gui.core.data import DataError, load_examples

    file = Path(path).expanduser()
    if not file.is_file() or file.stat().st_size > QUICK_CHECK_BYTES:
        return None
    try:
        examples, _ = load_examples(path, config.data.format, config.data.columns)
    except DataError:
        return None  # the data loader reports it with every bad line
    return any(reference_of(e) for e in examples)


def _check_local_data(config: "RunConfig") -> None:
    """Refuse training (or eval) data in which no row has a reference answer (the rows are read, not tokenized)."""
    sources = ([("data.train", config.data.train)] if config.data.train else []) + [
        (f"data.mix[{i}].path", source.path) for i, source in enumerate(getattr(config.data, "mix", None) or []) if source.path
    ]
    found = [_has_references(path, config) for _, path in sources]
    if sources and all(f is False for f in found):
        key, path = sources[0]
        raise _no_references_error(key, path if len(sources) == 1 else f"{path} or the other data.mix sources")
    if config.data.eval and _has_references(config.data.eval, config) is False:
        raise _no_references_error("data.eval", config.data.eval)


# ---- The prompts GRPO samples from


def grpo_rows(examples: list["Example"], tokenizer: Any, config: "RunConfig") -> tuple[list[dict], int, int]:
    """``{"prompt", "reference"}`` rows for GRPO, the rows without a reference and those with an over-long prompt.

    Prompts are rendered as for SFT (:func:`render_prompt`: chat template, system prompt); a leading BOS the
    template writes is dropped when the tokenizer adds one itself, so the prompt starts with one BOS.
    Prompts longer than ``data.max_length`` tokens are left out (and counted).
    """
    from distill_gui.core.data import render_prompt

    bos = tokenizer.bos_token
    adds_bos = bool(bos) and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    rows, unreferenced, too_long = [], 0, 0
    for example in examples:
        reference = reference_of(example)
        if reference is None:
            unreferenced += 1
            continue
        prompt = render_prompt(example, tokenizer, config.data.chat_template, config.data.system_prompt)
        if adds_bos and prompt.startswith(bos):
            prompt = prompt[len(bos) :]
        if len(tokenizer(prompt)["input_ids"]) > config.data.max_length:
            too_long += 1
            continue
        rows.append({"prompt": prompt, "reference": reference})
    return rows, unreferenced, too_long


def _dataset(examples: list["Example"], setup: Any, what: str, key: str) -> Any:
    from datasets import Dataset

    from distill_gui.core.events import LogMessage

    rows, unreferenced, too_long = grpo_rows(examples, setup.tokenizer, setup.config)
    if not rows:
        if too_long and not unreferenced:
            raise ConfigError(
                f"data.max_length: every {what} prompt is longer than {setup.config.data.max_length} tokens; raise data.max_length"
            )
        raise _no_references_error(key, f"the {what} data")
    if unreferenced or too_long:
        parts = [f"{unreferenced} without a reference answer"] if unreferenced else []
        parts += [f"{too_long} with a prompt over data.max_length ({setup.config.data.max_length} tokens)"] if too_long else []
        setup.emit(LogMessage(text=f"rlvr: {len(rows)} {what} questions kept; left out {' and '.join(parts)}", level="warning"))
    return Dataset.from_list(rows)


# ---- The trainer

FEW_QUESTIONS = 16
"""Questions per optimizer step below which a run is warned that its updates will be noisy."""


def few_questions_warning(questions: int, config: "RunConfig") -> str:
    """The warning for a step of ``questions`` questions: how noisy that is, measured, and how to raise it."""
    t = config.training
    wanted = -(-FEW_QUESTIONS * config.method.rlvr.group_size // t.batch_size)  # ceil
    return (
        f"rlvr: {questions} questions per optimizer step (training.batch_size {t.batch_size} × gradient_accumulation_steps "
        f"{t.gradient_accumulation_steps} answers, {config.method.rlvr.group_size} per question): GRPO's updates from so few "
        "questions are mostly noise and can lower accuracy (on the demo's 1/10 student the sampled reward fell from 0.58 to "
        f"0.44 in 60 steps at 4 questions a step, and held at 32). Set training.gradient_accumulation_steps to {wanted} or "
        f"more for at least {FEW_QUESTIONS} questions a step, or lower the learning rate"
    )


def stop_at_turn_end(model: Any, tokenizer: Any, config: "RunConfig") -> None:
    """Make the chat template's end-of-turn token (e.g. ``<|im_end|>``) end a sampled answer.

    SFT teaches a chat student to end its turn with it (:func:`distill_gui.core.data.tokenize_example`);
    TRL stops an answer at the model's EOS ids only, so without this the answers would run on to
    ``max_completion_length`` and the padding after them would be trained on.
    """
    from distill_gui.core.data import turn_end_text

    if not getattr(tokenizer, "chat_template", None) or config.data.chat_template == "never":
        return
    end = turn_end_text(tokenizer)
    ids = tokenizer(end, add_special_tokens=False)["input_ids"] if end else []
    if len(ids) != 1:
        return
    current = model.generation_config.eos_token_id
    current = [] if current is None else [current] if isinstance(current, int) else list(current)
    if ids[0] not in current:
        model.generation_config.eos_token_id = current + ids


def _grpo_config(args: Any, section: RLVRConfig, has_eval: bool) -> Any:
    """TRL's ``GRPOConfig`` with every value of the run's ``TrainingArguments`` plus the method's settings."""
    from transformers import TrainingArguments
    from trl import GRPOConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init and hasattr(args, f.name)}
    weights = [section.correct_weight] + ([section.format_weight] if section.format_weight > 0 else [])
    eval_batch = max(section.group_size, args.per_device_eval_batch_size // section.group_size * section.group_size)
    values.update(
        per_device_eval_batch_size=eval_batch,
        eval_strategy=args.eval_strategy if has_eval else "no",
        remove_unused_columns=False,
        num_generations=section.group_size,
        beta=section.beta,
        epsilon=section.clip_epsilon,
        max_completion_length=section.max_completion_length,
        temperature=section.temperature,
        reward_weights=weights,
        loss_type=section.loss_type,
        num_iterations=section.num_iterations,
        log_completions=False,
        # The same policy samples and scores the answers (LoRA dropout too): otherwise the probability ratio and
        # the KL compare two different random networks.
        disable_dropout=True,
    )
    return GRPOConfig(**values)


class KVCacheRollout:
    """Samples GRPO's answers with :func:`distill_gui.core.generation.sample_token_ids` (TRL's ``rollout_func``).

    The prompts arrive already repeated ``group_size`` times; each is tokenized as TRL does and continued at
    the method's temperature from the whole distribution (TRL's default top-p 1 and no top-k) up to
    ``max_completion_length`` tokens, stopping at the ids TRL stops at; a finished answer leaves the batch.
    """

    def __init__(self, tokenizer: Any, max_new_tokens: int, temperature: float):
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def __call__(self, prompts: list, trainer: Any) -> dict:
        from distill_gui.core.generation import sample_token_ids

        prompt_ids = self.tokenizer(text=list(prompts))["input_ids"]
        model = trainer.accelerator.unwrap_model(trainer.model)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        completion_ids = sample_token_ids(
            model, prompt_ids, max_new_tokens=self.max_new_tokens, temperature=self.temperature, stop_ids=trainer.eos_token_ids, pad_id=pad
        )
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def _takes_rollout_func() -> bool:
    """TRL's GRPOTrainer still has its (experimental) ``rollout_func`` hook, with the return keys used here."""
    import inspect

    from trl import GRPOTrainer

    return "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters


def _use_base_as_reference(trainer: Any) -> None:
    """With LoRA, let the base model (adapters off) be the reference policy instead of TRL's "ref" copy.

    TRL copies the adapter under the name "ref" in case it was trained before; distill-gui's adapter is
    always new (zero-initialised: the base model is the starting policy), so the copy only costs memory
    and would be saved into every checkpoint. Without it TRL computes the reference with adapters off.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


def make_grpo_trainer_class() -> type:
    """``trl.GRPOTrainer`` that also counts the tokens it has seen (the event bridge's tokens/s)."""
    from trl import GRPOTrainer

    class RLVRTrainer(GRPOTrainer):
        """GRPO as distill-gui runs it: tokens counted for tokens/s, and the logged means kept for the event
        bridge (``take_means``), so an evaluation reports its reward and accuracy too, not only its loss."""

        _logged_means: dict[str, dict[str, float]]

        @property
        def tokens_seen(self) -> int:
            return int(self.state.num_input_tokens_seen or 0)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            mode = "train" if self.model is not None and self.model.training else "eval"
            means = {}
            for key, values in self._metrics[mode].items():
                name = key.replace("/", "_")
                valid = [v for v in values if v == v]  # TRL leaves NaN for a batch a reward skipped
                if valid and (name in REPORTED or (name.startswith("rewards_") and name.endswith("_mean"))):
                    means[name] = sum(valid) / len(valid)
            if not hasattr(self, "_logged_means"):
                self._logged_means = {}
            self._logged_means[mode] = means
            super().log(logs, start_time)

        def take_means(self, mode: str) -> dict[str, float]:
            """The means of what GRPO logged in ``mode`` since the last call (reward, accuracy, KL, ...)."""
            return getattr(self, "_logged_means", {}).pop(mode, {})

    return RLVRTrainer


REPORTED = frozenset(
    {
        "reward",
        "reward_std",
        "accuracy",
        "solved_groups",
        "frac_reward_zero_std",
        "kl",
        "entropy",
        "completions_mean_length",
        "completions_max_length",
        "completions_clipped_ratio",
        "verifier_errors",
        "clip_ratio_region_mean",
    }
)
"""What GRPO logs that a run reports (besides each reward's mean, ``rewards_<name>_mean``); TRL logs more."""


class RLVR(Method):
    name = "rlvr"
    title = "RL with verifiable rewards"
    summary = (
        "<b>RLVR</b> (GRPO) improves a student that already reasons — e.g. a trace-SFT run, given as "
        "student.path — by sampling several answers per question and rewarding those the verifier accepts "
        "against the data's reference answers. A KL penalty β keeps it near where it started. Needs data with "
        "reference answers ('#### 42'); no teacher."
    )
    Config = RLVRConfig
    teacher = TEACHER_NONE
    metrics = (
        MetricSpec("reward", "mean reward", "Reward", "", "Mean total reward of the sampled answers (weighted sum of the rewards)."),
        MetricSpec("accuracy", "accuracy", "Accuracy", "", "Share of sampled answers the verifier accepted."),
        MetricSpec(
            "solved_groups", "groups solved", "Accuracy", "", "Share of questions with at least one accepted answer in their group."
        ),
        MetricSpec(
            "frac_reward_zero_std",
            "all-equal groups",
            "Accuracy",
            "",
            "Share of groups whose answers all got the same reward: they teach nothing.",
        ),
        MetricSpec("kl", "KL", "KL", "nats/token", "KL divergence of the student from the starting policy (logged when beta > 0)."),
        MetricSpec("completions_mean_length", "answer length", "Answer length", "tokens", "Mean length of the sampled answers."),
        MetricSpec("completions_clipped_ratio", "cut off", "Answer length", "", "Share of answers cut off at max_completion_length."),
        MetricSpec("verifier_errors", "verifier errors", "Accuracy", "", "Share of answers the verifier raised on (counted as wrong)."),
    )
    order = 40

    # ---- Config
    def validate(self, config: "RunConfig") -> None:
        import importlib.util

        from distill_gui.core.verify import checker_names

        section = self.section(config)
        if importlib.util.find_spec("trl") is None:
            raise ConfigError(
                "method.kind: rlvr trains with TRL's GRPOTrainer, which is not installed; install it with: pip install 'distill-gui[trl]'"
            )
        t = config.training
        answers = t.batch_size * t.gradient_accumulation_steps
        if answers % section.group_size:
            raise ConfigError(
                f"training.batch_size: rlvr samples method.rlvr.group_size={section.group_size} answers per question and "
                f"training.batch_size × gradient_accumulation_steps ({t.batch_size} × {t.gradient_accumulation_steps} = "
                f"{answers}) counts answers; make it a multiple of {section.group_size}"
            )
        if section.checker not in checker_names():
            raise ConfigError(f"method.rlvr.checker: {section.checker!r} is not a checker; choose one of {', '.join(checker_names())}")
        if section.correct_weight <= 0:
            raise ConfigError("method.rlvr.correct_weight: must be above 0 (it is the verifier's reward; without it this is not RLVR)")
        student = config.student
        if section.beta > 0 and not student.lora.enabled and (student.gguf_file or student.path.lower().endswith(".gguf")):
            raise ConfigError(
                "method.rlvr.beta: the KL penalty needs a copy of the starting model, which cannot be loaded from a GGUF "
                "file; set beta to 0, enable student.lora (the base model is then the reference), or convert the model"
            )
        _check_local_data(config)

    # ---- Training
    def build_trainer(self, setup: Any, prepared: Any, args: Any, callbacks: list) -> Any:
        from distill_gui.core.events import LogMessage
        from distill_gui.core.methods.rlvr_rewards import FormatReward, ScoredAnswers, VerifierReward

        section = self.section(setup.config)
        train = _dataset(prepared.train_examples, setup, "training", "data.train")
        evaluate = _dataset(prepared.eval_examples, setup, "evaluation", "data.eval") if prepared.eval is not None else None
        grpo_args = _grpo_config(args, section, evaluate is not None)

        def warn(text: str) -> None:
            setup.emit(LogMessage(text=text, level="warning"))

        stop_at_turn_end(setup.student, setup.tokenizer, setup.config)
        rewards: list = [VerifierReward(section.checker, warn)]
        rewards[0].on_scored = ScoredAnswers(setup.emit, section.correct_weight, section.format_weight, setup.config.training.sample_steps)
        if section.format_weight > 0:
            rewards.append(FormatReward())
        questions = grpo_args.generation_batch_size // section.group_size
        setup.log(f"rlvr: {len(train)} questions, {section.group_size} answers each; {questions} questions per optimizer step")
        if questions < FEW_QUESTIONS and len(train) >= FEW_QUESTIONS:
            warn(few_questions_warning(questions, setup.config))
        rollout = None
        if section.sampler == "distill" and _takes_rollout_func():
            rollout = KVCacheRollout(setup.tokenizer, section.max_completion_length, section.temperature)
        elif section.sampler == "distill":
            warn("rlvr: this TRL's GRPOTrainer takes no rollout_func; sampling with TRL's generation instead")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'")  # TRL marks the hook experimental
            trainer = make_grpo_trainer_class()(
                model=setup.student,
                reward_funcs=rewards,
                args=grpo_args,
                train_dataset=train,
                eval_dataset=evaluate,
                processing_class=setup.tokenizer,
                callbacks=callbacks,
                rollout_func=rollout,
            )
        rewards[0].in_training = lambda: bool(trainer.model.training)  # evaluation rounds do not count towards the warning
        _use_base_as_reference(trainer)
        return trainer

    # ---- Memory
    def memory(self, config: "RunConfig", sizes: MemoryInputs) -> MethodMemory:
        """Generation of ``group_size`` answers per question, or the training step on them, whichever is larger.

        - Sampling: the whole generation batch (``batch_size × gradient_accumulation_steps`` answers) at once, each
          with a KV cache of ``2 × hidden`` values per layer over prompt and answer (an upper bound: grouped-query
          attention keeps less), plus a few fp32 [answers, vocab] blocks for the next token.
        - Training: the general estimate counts activations for ``batch_size × data.max_length`` positions; the
          answers add ``batch_size × max_completion_length`` more, and TRL's log-probs are built in fp32
          [chunk, vocab] tiles.
        - With ``beta > 0`` and full fine-tuning a frozen copy of the starting model stays in memory.

        The share is returned as ``logits`` bytes (the method's part of the peak).
        """
        section = self.section(config)
        t = config.training
        dtype = sizes.student_dtype_bytes
        seq = config.data.max_length + section.max_completion_length
        answers = t.batch_size * t.gradient_accumulation_steps
        kv_cache = answers * seq * sizes.student_layers * 2 * sizes.student_hidden * dtype
        sampling = kv_cache + answers * sizes.student_vocab * 4 * SAMPLING_COPIES
        extra_positions = t.batch_size * section.max_completion_length
        if t.gradient_checkpointing:
            extra_activations = extra_positions * (sizes.student_hidden * sizes.student_layers + sizes.student_layer_values) * dtype
        else:
            extra_activations = extra_positions * sizes.student_layer_values * sizes.student_layers * dtype
        positions = t.batch_size * seq
        logprobs = min(positions, LOGPROB_CHUNK) * sizes.student_vocab * 4 * LOGPROB_COPIES
        training = extra_activations + logprobs
        reference = sizes.student_params * dtype if section.beta > 0 and not config.student.lora.enabled else 0
        return MethodMemory(logits=int(max(sampling, training) + reference))
