"""The demo's continued methods: each starts from a size's trace-SFT student and trains it further.

- ``trace_sft_more``: trace SFT for the same extra steps (the control every continued method is compared with);
- ``trace_sft_rlvr``: RL with verifiable rewards (GRPO, the verifier's verdict as the reward), R1-Distill → RL;
- ``trace_sft_onpolicy_kd``: logit KD on a mix of the traces and the student's own samples scored by the teacher;
- ``self_distill``: the student samples answers, the verifier keeps the correct ones, the student trains on them;
- ``synthetic``: trace SFT on the real traces mixed with new questions the teacher labelled by majority vote.

``continued_config`` gives each one's run configuration; ``make_synthetic`` writes the synthetic data.
"""

from __future__ import annotations

from pathlib import Path

from distill_gui.demo.plan import DemoPlan


def _base_config(plan: DemoPlan, name: str, student: Path, data: Path, learning_rate: float, seed: int) -> dict:
    return {
        "name": name,
        "teacher": {"path": "", "device": "cpu", "dtype": "fp32", "attn_implementation": "eager"},
        "student": {"path": str(student), "device": "cpu", "dtype": "fp32", "attn_implementation": "eager"},
        "data": {"train": str(data), "format": "question_answer", "max_length": 160},
        "method": {"kind": "sft"},
        "training": {
            "max_steps": plan.continue_steps, "batch_size": plan.batch_size, "learning_rate": learning_rate,
            "weight_decay": 0.1, "warmup_steps": min(plan.warmup_steps, max(1, plan.continue_steps // 10)),
            "lr_scheduler": "cosine", "precision": "auto", "seed": seed,
            "logging_steps": max(1, plan.continue_steps // 20), "save_steps": 0, "save_total_limit": 1, "sample_steps": 0,
        },
    }


def continued_config(plan: DemoPlan, method: str, student: Path, teacher: Path, traces: Path, answers: Path,
                     synthetic: Path | None, name: str, learning_rate: float, seed: int):
    """The run configuration of continued ``method`` from the trace-SFT ``student`` (a model folder).

    ``traces`` are the teacher's verified traces, ``answers`` the training questions with their final answers
    only (the references RLVR and self-distillation check against), ``synthetic`` the teacher-labelled rows.
    """
    from distill_gui.core.config import config_from_dict

    lr = learning_rate * plan.continue_lr_scale
    cfg = _base_config(plan, name, student, traces, lr, seed)
    if method == "trace_sft_more":
        pass
    elif method == "trace_sft_rlvr":
        cfg["data"]["train"] = str(answers)
        cfg["training"]["learning_rate"] = learning_rate * plan.rlvr_lr_scale
        # One optimizer step on rlvr_questions questions' answers (micro-batches of batch_size answers).
        cfg["training"]["gradient_accumulation_steps"] = max(1, plan.rlvr_questions * plan.rlvr_group // plan.batch_size)
        cfg["method"] = {"kind": "rlvr", "rlvr": {
            "group_size": plan.rlvr_group, "beta": 0.04, "temperature": 1.0, "max_completion_length": plan.max_new_tokens,
            "correct_weight": 1.0, "format_weight": 0.0, "checker": "steps",
        }}
    elif method == "trace_sft_onpolicy_kd":
        cfg["teacher"]["path"] = str(teacher)
        cfg["method"] = {"kind": "kd", "kd": {
            "loss": "forward_kl", "alpha": plan.kd_alpha, "temperature": plan.kd_temperature,
            "on_policy": plan.on_policy, "on_policy_temperature": 1.0, "max_new_tokens": plan.max_new_tokens,
        }}
    elif method == "self_distill":
        cfg["data"]["train"] = str(answers)
        cfg["method"] = {"kind": "self_distill", "self_distill": {
            "rounds": plan.self_distill_rounds, "samples_per_question": plan.self_distill_samples, "temperature": 0.8,
            "max_new_tokens": plan.max_new_tokens, "questions_per_round": plan.self_distill_questions, "checker": "steps",
            "generation_batch_size": 256,
        }}
    elif method == "synthetic":
        if synthetic is None:
            raise ValueError("synthetic: the teacher-labelled data is missing (make_synthetic makes it)")
        cfg["data"]["train"] = ""
        cfg["data"]["mix"] = [
            {"path": str(traces), "weight": 1.0 - plan.synthetic_weight},
            {"path": str(synthetic), "weight": plan.synthetic_weight},
        ]
    else:
        raise ValueError(f"{method}: not a continued method of the demo")
    return config_from_dict(cfg)


def make_synthetic(teacher, tokenizer, seeds: Path, out: Path, plan: DemoPlan, progress=None):
    """New questions shaped like the training ones (their numbers re-drawn), answered ``synthetic_samples`` times by
    the teacher; the majority's answer is kept when at least ``synthetic_threshold`` of the samples agree.

    The re-drawn numbers make some questions nonsensical (giving away more than one has); the teacher's answers
    then disagree and the threshold drops them. Returns the ``SyntheticReport``.
    """
    from distill_gui.core.synthetic_data import SyntheticConfig, make_synthetic_data

    config = SyntheticConfig(
        count=plan.synthetic_questions, generator="numbers", samples=plan.synthetic_samples, temperature=0.8,
        max_new_tokens=plan.max_new_tokens, threshold=plan.synthetic_threshold, labels="majority", check_steps=True,
        batch_size=plan.gen_batch_size, data_format="question_answer", seed=plan.seed,
    )
    return make_synthetic_data(teacher, tokenizer, seeds, out, config, progress=progress)
