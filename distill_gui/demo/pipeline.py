"""The built-in demo: from a teacher to a recovery table, offline, on a CPU.

``run_demo`` reads top to bottom:

1. evaluate the shipped teacher on the test split;
2. the teacher writes step-by-step traces for the training questions (which have final answers only);
   only traces whose answer verifies are kept;
3. for each of three random-initialised students (about 1/4, 1/10 and 1/30 of the teacher's
   parameters), train three ways on the same budget (optimizer steps x batch size):
   ``answer_sft`` (question -> ``#### N``, no reasoning), ``trace_sft`` (the verified teacher traces)
   and ``trace_sft_kd`` (the same traces plus logit KD against the teacher);
4. evaluate every student on the test split (greedy, the same code as ``distill-gui eval``);
5. write ``recovery.md``, ``recovery.csv`` and ``recovery.png`` into the demo's run folder.

Training goes through :func:`distill_gui.core.training.train`, so each student run is an ordinary run
folder (under ``<demo folder>/runs/``) that the GUI can open.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from distill_gui.demo.recovery import RecoveryRow, to_text, with_recovery, write_all
from distill_gui.resources import demo_dir as shipped_demo_dir

METHODS = ("answer_sft", "trace_sft", "trace_sft_kd")


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


@dataclass
class DemoPlan:
    """Budgets of one demo run (``quick()`` and ``full()`` are the two presets)."""

    quick: bool = False
    trace_prompts: int = 8000
    """Training questions the teacher writes traces for (the answer-only students see the same questions)."""
    test_rows: int = 500
    """Test problems every model is scored on."""
    steps: int = 2000
    """Optimizer steps per student and method: the same budget for every size and method."""
    batch_size: int = 32
    learning_rate: float | None = None
    """One peak learning rate for every size; None gives each size its own (``StudentSize.learning_rate``)."""
    warmup_steps: int = 50
    kd_alpha: float = 0.5
    """Weight of the logit-KD term in trace_sft_kd (the trace cross-entropy gets 1 - alpha)."""
    kd_temperature: float = 1.0
    kd_top_k: int = 16
    """Teacher tokens kept per position in the offline teacher cache (plus a tail bucket for the rest)."""
    max_new_tokens: int = 56
    gen_batch_size: int = 64
    eval_batch_size: int = 100
    seed: int = 0
    sizes: tuple[StudentSize, ...] = field(default=STUDENT_SIZES)

    @classmethod
    def full(cls) -> "DemoPlan":
        return cls()

    @classmethod
    def create_quick(cls) -> "DemoPlan":
        return cls(quick=True, trace_prompts=256, test_rows=100, steps=80, batch_size=16, learning_rate=3e-3, warmup_steps=10)

    @property
    def budget_rows(self) -> int:
        return self.steps * self.batch_size

    def estimate_seconds(self) -> float:
        """Expected wall time on 2 free CPU cores, from times measured there (a busy machine is slower)."""
        # Seconds per optimizer step at batch 32 for the three sizes (large, medium, small), bf16
        # autocast, eager attention. Logit KD reads the offline teacher cache, so it costs about what
        # trace SFT costs; answer-only rows are shorter (no trace).
        per_step = {"answer_sft": (0.113, 0.065, 0.045), "trace_sft": (0.14, 0.08, 0.056), "trace_sft_kd": (0.14, 0.085, 0.06)}
        train = sum(self.steps * (self.batch_size / 32) * cost for m in METHODS for cost in per_step[m][: len(self.sizes)])
        setup = 5.0 * len(self.sizes) * len(METHODS)
        evals = (1 + len(self.sizes) * len(METHODS)) * self.test_rows * 0.025
        generation = self.trace_prompts * 0.0175
        cache = self.trace_prompts * 0.004
        return 10 + train + setup + evals + generation + cache


# ---- Steps -------------------------------------------------------------------------------------------


def _evaluate(model, tokenizer, examples, plan: DemoPlan) -> tuple[float, float]:
    """(accuracy, tokens/s) with the same code as ``distill-gui eval``."""
    from distill_gui.core.evaluation import EvalSettings, evaluate_loaded

    settings = EvalSettings(max_new_tokens=plan.max_new_tokens, batch_size=plan.eval_batch_size)
    result = evaluate_loaded(model, tokenizer, examples, settings)
    return result.accuracy or 0.0, result.tokens_per_s


def _load(path: Path, role: str):
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import load_model

    loaded = load_model(ModelConfig(path=str(path), device="cpu", dtype="fp32"), role=role)
    return loaded.model, loaded.tokenizer, loaded.num_params


def _write_answer_only(train_file: Path, out: Path, n: int) -> Path:
    from distill_gui.demo.task import read_jsonl, write_jsonl

    rows = read_jsonl(train_file)[:n]
    return write_jsonl(({"question": r["question"], "answer": r["answer"]} for r in rows), out)


def build_student(size: StudentSize, teacher_dir: Path, out: Path, seed: int) -> int:
    """Save a random-initialised student (safetensors) with the teacher's tokenizer; returns its parameter count."""
    from transformers import AutoTokenizer

    from distill_gui.demo.train_teacher import TeacherRecipe, build_model

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = build_model(tokenizer, TeacherRecipe(), hidden=size.hidden, layers=size.layers, heads=size.heads, mlp=size.mlp, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def student_config(plan: DemoPlan, method: str, student: Path, teacher: Path, data: Path, name: str,
                   teacher_cache: Path | None = None, learning_rate: float | None = None):
    """The run configuration of one student and method.

    Logit KD reads the teacher from an offline top-k cache (``teacher_cache``, shared by the three
    students: the teacher runs once over the traces instead of once per step and student).
    """
    from distill_gui.core.config import config_from_dict

    kd = method == "trace_sft_kd"
    cache = {"top_k": plan.kd_top_k, "cache_teacher": True, "teacher_cache": str(teacher_cache)} if kd and teacher_cache else {}
    return config_from_dict({
        "name": name,
        # Eager attention: for models this small, under bf16 on a CPU, it trains 1.5-2.4x faster than sdpa.
        "teacher": {"path": str(teacher) if kd else "", "device": "cpu", "dtype": "fp32", "attn_implementation": "eager"},
        "student": {"path": str(student), "device": "cpu", "dtype": "fp32", "attn_implementation": "eager"},
        "data": {"train": str(data), "format": "question_answer", "max_length": 160},
        "method": {"kind": "kd" if kd else "sft", "kd": {"loss": "forward_kl", "alpha": plan.kd_alpha, "temperature": plan.kd_temperature, **cache}},
        "training": {
            "max_steps": plan.steps, "batch_size": plan.batch_size, "learning_rate": learning_rate or plan.learning_rate or STUDENT_SIZES[1].learning_rate,
            "weight_decay": 0.1, "warmup_steps": plan.warmup_steps, "lr_scheduler": "cosine",
            "precision": "auto", "seed": plan.seed, "logging_steps": max(1, plan.steps // 20),
            "save_steps": 0, "save_total_limit": 1, "sample_steps": 0,
        },
    })


def _step_bar(desc: str, total: int, enabled: bool) -> tuple[Callable, Callable]:
    """(event callback that moves a progress bar with the training steps, close)."""
    from tqdm import tqdm

    from distill_gui.core.events import StepLogged

    bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=not enabled)

    def on_event(event) -> None:
        if isinstance(event, StepLogged):
            bar.n = event.step
            bar.set_postfix(loss=f"{event.loss:.3f}", refresh=False)
            bar.refresh()

    return on_event, bar.close


# ---- Public API ----------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What a demo run produced: its folder, the recovery rows (teacher first) and how long it took."""

    folder: Path
    rows: list[RecoveryRow]
    seconds: float
    kept: int
    generated: int
    quick: bool = False


def run_demo(
    plan: DemoPlan,
    runs_dir: str | Path,
    demo_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> DemoResult:
    """Run the whole demo into a new folder under ``runs_dir``; returns the recovery rows."""
    import torch
    from tqdm import tqdm

    from distill_gui.core.data import load_examples
    from distill_gui.core.teacher_data import TeacherDataConfig, generate_dataset, load_source
    from distill_gui.core.training import train

    started = time.time()
    demo_dir = Path(demo_dir) if demo_dir else shipped_demo_dir()
    teacher_dir, train_file, test_file = demo_dir / "teacher", demo_dir / "train.jsonl", demo_dir / "test.jsonl"
    for needed in (teacher_dir / "config.json", train_file, test_file):
        if not needed.exists():
            raise FileNotFoundError(f"{needed}: the demo files are missing (see distill_gui/assets/demo/README.md)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(runs_dir) / f"{stamp}-demo{'-quick' if plan.quick else ''}"
    folder.mkdir(parents=True, exist_ok=False)
    (folder / "plan.json").write_text(json.dumps(asdict(plan), indent=2), encoding="utf-8")
    log(f"demo folder: {folder}")
    torch.manual_seed(plan.seed)
    test_examples, _ = load_examples(str(test_file))
    test_examples = test_examples[: plan.test_rows]

    # 1. The teacher's score is the 100% mark.
    log(f"[1/4] evaluating the teacher on {len(test_examples)} test problems")
    teacher, tokenizer, teacher_params = _load(teacher_dir, "teacher")
    accuracy, speed = _evaluate(teacher, tokenizer, test_examples, plan)
    rows = [RecoveryRow("teacher", teacher_params, "teacher", accuracy, speed)]
    log(f"      teacher: {teacher_params:,} parameters, accuracy {accuracy:.1%}")

    # 2. Verified traces: the teacher solves the training questions; wrong answers are dropped.
    log(f"[2/4] the teacher writes traces for {plan.trace_prompts} training questions (kept only when the answer checks out)")
    gen_config = TeacherDataConfig(max_new_tokens=plan.max_new_tokens, batch_size=plan.gen_batch_size, limit=plan.trace_prompts, seed=plan.seed)
    source = load_source(train_file, tokenizer, gen_config)
    bar = tqdm(total=len(source), desc="traces", unit="prompt", leave=False, disable=not progress)
    report = generate_dataset(teacher, tokenizer, source, folder / "traces.jsonl", gen_config,
                              progress=lambda done, total: (setattr(bar, "n", done), bar.refresh()))
    bar.close()
    log(f"      kept {report.kept}/{report.generated} traces ({report.kept_fraction:.1%})")
    del teacher
    answers = _write_answer_only(train_file, folder / "answers.jsonl", plan.trace_prompts)
    data_for = {"answer_sft": answers, "trace_sft": folder / "traces.jsonl", "trace_sft_kd": folder / "traces.jsonl"}

    # 3-4. Students: same initialisation and budget for the three methods of a size.
    log(f"[3/4] training {len(plan.sizes)} students x {len(METHODS)} methods, {plan.steps} steps of {plan.batch_size} rows each")
    for s, size in enumerate(plan.sizes):
        init = folder / "students" / size.name / "init"
        params = build_student(size, teacher_dir, init, seed=plan.seed + 1 + s)
        for method in METHODS:
            config = student_config(plan, method, init, teacher_dir, data_for[method], f"{size.name}-{method}",
                                    teacher_cache=folder / "teacher_cache.safetensors",
                                    learning_rate=plan.learning_rate or size.learning_rate)
            on_event, close = _step_bar(f"{size.name} {method}", plan.steps, progress)
            try:
                outcome = train(config, runs_root=folder / "runs", on_event=on_event)
            finally:
                close()
            if outcome.final_path is None:
                raise RuntimeError(f"{size.name} {method}: training ended {outcome.state}: {outcome.reason}")
            model, student_tok, _ = _load(outcome.final_path, "student")
            accuracy, speed = _evaluate(model, student_tok, test_examples, plan)
            rows.append(RecoveryRow(size.name, params, method, accuracy, speed))
            log(f"      {size.name} ({params:,} params, 1/{teacher_params / params:.0f}) {method}: accuracy {accuracy:.1%}  [{outcome.run.path.name}]")
            _write_partial(folder, rows)

    # 5. The table.
    log("[4/4] recovery table")
    rows = with_recovery(rows)
    title = f"Recovery on the demo task ({len(test_examples)} test problems, {plan.steps} steps x {plan.batch_size} rows per student)"
    write_all(rows, folder, title)
    seconds = time.time() - started
    (folder / "results.json").write_text(json.dumps({
        "rows": [asdict(r) for r in rows], "seconds": round(seconds, 1), "kept": report.kept,
        "generated": report.generated, "plan": asdict(plan),
    }, indent=2), encoding="utf-8")
    return DemoResult(folder, rows, seconds, report.kept, report.generated, plan.quick)


def _write_partial(folder: Path, rows: list[RecoveryRow]) -> None:
    """Keep the rows measured so far (a stopped demo still shows what it had)."""
    rows = with_recovery(rows)
    (folder / "results.partial.json").write_text(json.dumps([asdict(r) for r in rows], indent=2), encoding="utf-8")


def format_result(result: DemoResult) -> str:
    """The table for the terminal, then the demo's goals judged on it."""
    from distill_gui.demo.recovery import check_goals, goals_markdown

    goals = goals_markdown(check_goals(result.rows))
    if result.quick:
        goals += ("\n(--quick trains each student for a few dozen steps: it shows the pipeline, and the goals are "
                  "for the full demo's budget.)\n")
    return to_text(result.rows) + goals
