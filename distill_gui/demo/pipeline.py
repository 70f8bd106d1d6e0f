"""The built-in demo: from a teacher to a recovery table, offline, on a CPU.

``run_demo`` reads top to bottom:

1. evaluate the shipped teacher on the test split;
2. the teacher writes step-by-step traces for the training questions (which have final answers only);
   only traces whose answer verifies are kept;
   with the continued method ``synthetic`` in the plan, the teacher also labels new questions by majority vote;
3. for each of three random-initialised students (about 1/4, 1/10 and 1/30 of the teacher's
   parameters), and each initialisation seed, train three ways on the same budget (optimizer steps x
   batch size): ``answer_sft`` (question -> ``#### N``, no reasoning), ``trace_sft`` (the verified
   teacher traces) and ``trace_sft_kd`` (the same traces plus logit KD against the teacher); then
   continue the trace-SFT student with each continued method (``demo/continued.py``) and with more
   trace SFT for the same steps, the control they are compared with (budget rules: ``demo/plan.py``);
4. evaluate every student on the test split (greedy, the same code as ``distill-gui eval``);
5. write ``recovery.md``, ``recovery.csv`` and ``recovery.png`` (mean and min-max over the seeds) into
   the demo's run folder.

Training goes through :func:`distill_gui.core.training.train`, so each student run is an ordinary run
folder (under ``<demo folder>/runs/``) that the GUI can open.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from distill_gui.demo.plan import (  # noqa: F401 - re-exported: the demo's public names
    BASE_METHODS,
    CONTINUED_METHODS,
    METHODS,
    STUDENT_SIZES,
    DemoPlan,
    StudentSize,
    size_place,
)
from distill_gui.demo.recovery import RecoveryRow, aggregate, to_text, with_recovery, write_all
from distill_gui.resources import demo_dir as shipped_demo_dir

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
                   teacher_cache: Path | None = None, learning_rate: float | None = None, seed: int | None = None):
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
            "precision": "auto", "seed": plan.seed if seed is None else seed, "logging_steps": max(1, plan.steps // 20),
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


# ---- One student (a size and a seed): its base methods, then its continued ones ----------------------


@dataclass(frozen=True)
class StudentUnit:
    """One student of the demo: seed number ``seed`` of size ``size`` (an index into ``plan.sizes``)."""

    seed: int
    size: int


@dataclass(frozen=True)
class SharedInputs:
    """What every student's runs read: the demo folder and the files made before the students train."""

    folder: Path
    teacher_dir: Path
    test_file: Path
    answers: Path
    synthetic: Path | None
    teacher_params: int


def train_student(plan: DemoPlan, shared: SharedInputs, unit: StudentUnit, log: Callable[[str], None],
                  progress: bool) -> tuple[list[RecoveryRow], list[dict]]:
    """Train and evaluate one student with every method of the plan; returns its rows and skipped runs.

    Every method of a size and seed starts from the same initialisation and gets the same budget; the
    continued methods start from this student's trace-SFT result.
    """
    from distill_gui.core.data import load_examples
    from distill_gui.core.errors import UserError
    from distill_gui.core.training import train
    from distill_gui.demo.continued import continued_config

    folder, k = shared.folder, unit.seed
    size = plan.sizes[unit.size]
    test_examples = load_examples(str(shared.test_file))[0][: plan.test_rows]
    traces = folder / "traces.jsonl"
    data_for = {"answer_sft": shared.answers, "trace_sft": traces, "trace_sft_kd": traces}
    tag = f"-seed{k}" if plan.seeds > 1 else ""
    init = folder / "students" / size.name / (f"seed{k}" if plan.seeds > 1 else "") / "init"
    # A size's initialisation seed follows its place among all sizes, so --sizes does not change its student.
    place = size_place(size)
    place = unit.size if place is None else place
    params = build_student(size, shared.teacher_dir, init, seed=plan.seed + 1 + place + 1000 * k)
    lr = plan.learning_rate or size.learning_rate
    finals: dict[str, Path] = {}
    rows: list[RecoveryRow] = []
    skipped: list[dict] = []
    for method in plan.trained_methods:
        name = f"{size.name}-{method}{tag}"
        if method in BASE_METHODS:
            config = student_config(plan, method, init, shared.teacher_dir, data_for[method], name,
                                    teacher_cache=folder / "teacher_cache.safetensors", learning_rate=lr, seed=plan.seed + k)
        else:
            config = continued_config(plan, method, finals["trace_sft"], shared.teacher_dir, traces, shared.answers,
                                      shared.synthetic, name, lr, seed=plan.seed + k)
        steps = plan.steps if method in BASE_METHODS else plan.continue_steps
        on_event, close = _step_bar(f"{size.name} {method}{tag}", steps, progress)
        try:
            outcome = train(config, runs_root=folder / "runs", on_event=on_event)
        except UserError as exc:
            if method in BASE_METHODS:
                raise
            # A continued method can refuse a weak student (self-distillation with no correct answer to
            # keep): the row is left out and the reason kept, the rest of the demo goes on.
            skipped.append({"model": size.name, "method": method, "seed": k, "reason": str(exc)})
            log(f"      {size.name} {method}{tag}: skipped: {exc}")
            continue
        finally:
            close()
        if outcome.final_path is None:
            raise RuntimeError(f"{name}: training ended {outcome.state}: {outcome.reason}")
        finals[method] = Path(outcome.final_path)
        model, student_tok, _ = _load(outcome.final_path, "student")
        accuracy, speed = _evaluate(model, student_tok, test_examples, plan)
        rows.append(RecoveryRow(size.name, params, method, accuracy, speed))
        log(f"      {size.name} ({params:,} params, 1/{shared.teacher_params / params:.0f}) {method}{tag}: accuracy {accuracy:.1%}  "
            f"[{outcome.run.path.name}]")
    return rows, skipped


def _student_worker(plan: DemoPlan, shared: SharedInputs, unit: StudentUnit, threads: int) -> tuple[list[RecoveryRow], list[dict]]:
    """``train_student`` in a worker process with ``threads`` torch threads, logging to the shared stdout."""
    import torch

    torch.set_num_threads(threads)
    return train_student(plan, shared, unit, log=lambda s: print(s, flush=True), progress=False)


def _train_in_parallel(plan: DemoPlan, shared: SharedInputs, units: list[StudentUnit], jobs: int,
                       log: Callable[[str], None], rows: list[RecoveryRow]):
    """Train ``units`` in ``jobs`` worker processes (spawned, so each has its own torch threads); returns the
    rows and skipped runs per unit. A failed student stops the demo with its error once the others finish."""
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    rows_of: dict[StudentUnit, list[RecoveryRow]] = {}
    skipped_of: dict[StudentUnit, list[dict]] = {}
    failure: BaseException | None = None
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(_student_worker, plan, shared, unit, threads): unit for unit in units}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                unit = pending.pop(future)
                try:
                    rows_of[unit], skipped_of[unit] = future.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised below, after the running students end
                    failure = failure or exc
                    for other in pending:
                        other.cancel()
                    continue
                done_rows = [r for u in units if u in rows_of for r in rows_of[u]]
                _write_partial(shared.folder, rows + done_rows)
                log(f"      student {plan.sizes[unit.size].name} seed {unit.seed}: done "
                    f"({len(rows_of)} of {len(units)} students)")
    if failure is not None:
        raise failure
    return rows_of, skipped_of


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
    skipped: list[dict] = field(default_factory=list)
    """Continued runs that refused their student (model, method, seed, reason)."""


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
    from distill_gui.demo.continued import make_synthetic

    plan.validate()
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
    answers = _write_answer_only(train_file, folder / "answers.jsonl", plan.trace_prompts)

    synthetic = None
    if "synthetic" in plan.continued_methods:
        log(f"      the teacher labels {plan.synthetic_questions} new questions (numbers re-drawn; majority of "
            f"{plan.synthetic_samples} answers, kept at {plan.synthetic_threshold:.0%} agreement)")
        bar = tqdm(total=plan.synthetic_questions, desc="synthetic", unit="question", leave=False, disable=not progress)
        synthetic_report = make_synthetic(teacher, tokenizer, answers, folder / "synthetic.jsonl", plan,
                                          progress=lambda done, total: (setattr(bar, "n", done), bar.refresh()))
        bar.close()
        synthetic = folder / "synthetic.jsonl"
        log(f"      {synthetic_report.summary()}")
    del teacher

    # 3-4. Students: same initialisation and budget for every method of a size and seed.
    trained = plan.trained_methods
    units = [StudentUnit(k, s) for k in range(plan.seeds) for s in range(len(plan.sizes))]
    jobs = plan.parallel_jobs(len(units))
    log(f"[3/4] training {len(plan.sizes)} students x {len(trained)} methods x {plan.seeds} seed{'s' if plan.seeds > 1 else ''}: "
        f"{plan.steps} steps of {plan.batch_size} rows (base), {plan.continue_steps} more (continued)"
        + (f"; {jobs} students at a time" if jobs > 1 else ""))
    shared = SharedInputs(folder, teacher_dir, test_file, answers, synthetic, teacher_params)
    skipped: list[dict] = []
    if jobs == 1:
        for unit in units:
            unit_rows, unit_skipped = train_student(plan, shared, unit, log, progress)
            rows += unit_rows
            skipped += unit_skipped
            _write_partial(folder, rows)
    else:
        rows_of, skipped_of = _train_in_parallel(plan, shared, units, jobs, log, rows)
        rows += [r for unit in units for r in rows_of[unit]]
        skipped += [x for unit in units for x in skipped_of[unit]]

    # 5. The table.
    log("[4/4] recovery table")
    per_seed = rows
    rows = with_recovery(aggregate(rows))
    title = (f"Recovery on the demo task ({len(test_examples)} test problems, {plan.steps} steps x {plan.batch_size} rows per student"
             + (f", continued methods +{plan.continue_steps} steps" if plan.continued_methods else "")
             + (f"; mean and min-max of {plan.seeds} seeds" if plan.seeds > 1 else "") + ")")
    paths = write_all(rows, folder, title)
    if skipped:
        with open(paths["md"], "a", encoding="utf-8") as fh:
            fh.write("\nSkipped:\n\n" + "".join(f"- {x['model']} {x['method']} (seed {x['seed']}): {x['reason']}\n" for x in skipped))
    seconds = time.time() - started
    (folder / "results.json").write_text(json.dumps({
        "rows": [asdict(r) for r in rows], "per_seed": [asdict(r) for r in with_recovery(per_seed)], "skipped": skipped,
        "seconds": round(seconds, 1), "kept": report.kept,
        "generated": report.generated, "plan": asdict(plan),
    }, indent=2), encoding="utf-8")
    return DemoResult(folder, rows, seconds, report.kept, report.generated, plan.quick, skipped)


def _write_partial(folder: Path, rows: list[RecoveryRow]) -> None:
    """Keep the rows measured so far (a stopped demo still shows what it had)."""
    rows = with_recovery(aggregate(rows))
    (folder / "results.partial.json").write_text(json.dumps([asdict(r) for r in rows], indent=2), encoding="utf-8")


def format_result(result: DemoResult) -> str:
    """The table for the terminal, then the demo's goals judged on it."""
    from distill_gui.demo.recovery import check_goals, goals_markdown

    goals = goals_markdown(check_goals(result.rows))
    if result.quick:
        goals += ("\n(--quick trains each student for a few dozen steps: it shows the pipeline, and the goals are "
                  "for the full demo's budget.)\n")
    skipped = "".join(f"skipped: {x['model']} {x['method']} (seed {x['seed']}): {x['reason']}\n" for x in result.skipped)
    return to_text(result.rows) + goals + skipped
