"""The model card (``README.md``) written into every export.

It says where the student came from and how it was made: the base student, the teacher, the data files
with their row counts, the method and its settings, the training curve's final numbers, the evaluation
and recovery against the teacher (from the newest comparison that scored the run), the teacher's licence
and what it asks of a model trained from it, and how to run the export. The front matter carries the
student's own licence, so hubs and the GGUF converter read it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import yaml

from distill_gui.core.export_source import ExportSource
from distill_gui.core.licences import DetectedLicence, detect_licence, teacher_notice


@dataclasses.dataclass(frozen=True)
class CardFacts:
    """What a model card says, gathered from the run folder."""

    name: str
    student: str | None
    teacher: str | None
    method: str | None
    method_settings: dict
    training: dict
    data: list[tuple[str, str, int | None]]
    """(role, file, row count)."""
    final_step: dict | None
    final_eval: dict | None
    comparison: dict | None
    student_licence: DetectedLicence
    teacher_licence: DetectedLicence | None
    checkpoint: str
    notes: tuple[str, ...] = ()


def count_rows(path: str | None) -> int | None:
    """Rows in a data file (lines of JSONL/CSV/TXT, records of JSON/Parquet); None when it cannot be read."""
    if not path:
        return None
    p = Path(path)
    try:
        if p.suffix == ".jsonl" or p.suffix == ".txt":
            with open(p, "rb") as f:
                return sum(1 for line in f if line.strip())
        if p.suffix == ".csv":
            with open(p, "rb") as f:
                return max(sum(1 for line in f if line.strip()) - 1, 0)
        if p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            return len(data) if isinstance(data, list) else None
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(str(p)).metadata.num_rows
    except (OSError, ValueError):
        return None
    return None


def _last(records: list[dict], event: str) -> dict | None:
    found = [r for r in records if r.get("event") == event]
    return found[-1] if found else None


def _comparison_row(run_path: Path) -> dict | None:
    """The newest comparison (under the runs root) that scored this run: its row, data and reference."""
    from distill_gui.core.compare_report import list_comparisons, load_results

    for folder in list_comparisons(run_path.parent):
        try:
            results = load_results(folder)
        except (OSError, ValueError):
            continue
        for row in results.get("models", []):
            if row.get("run") and Path(row["run"]).resolve() == run_path.resolve():
                return {
                    "row": row,
                    "data": results.get("data"),
                    "rows": results.get("rows"),
                    "reference": results.get("reference"),
                    "folder": str(folder),
                }
    return None


def gather(source: ExportSource) -> CardFacts:
    """Collect what the card says about ``source``."""
    config = source.config
    ref = source.ref
    student_path = config.student.path if config is not None else ref.path
    teacher_path = (config.teacher.path or None) if config is not None else None
    student_licence = detect_licence(ref.path if ref.adapter else student_path or ref.path)
    if not student_licence.known and ref.adapter is None and student_path:
        student_licence = detect_licence(student_path)
    teacher_licence = detect_licence(teacher_path) if teacher_path else None
    data: list[tuple[str, str, int | None]] = []
    method, method_settings, training = None, {}, {}
    final_step = final_eval = comparison = None
    if config is not None:
        for role, path in (("train", config.data.train), ("eval", config.data.eval)):
            if path:
                data.append((role, path, count_rows(path)))
        method = config.method.kind
        section = getattr(config.method, method, None)
        method_settings = dataclasses.asdict(section) if dataclasses.is_dataclass(section) and not isinstance(section, type) else {}
        training = {
            k: v
            for k, v in dataclasses.asdict(config.training).items()
            if k
            in (
                "max_steps",
                "num_epochs",
                "batch_size",
                "gradient_accumulation_steps",
                "learning_rate",
                "lr_scheduler",
                "warmup_steps",
                "weight_decay",
                "precision",
                "seed",
            )
        }
        if config.student.lora.enabled:
            training["lora"] = f"r={config.student.lora.r}, alpha={config.student.lora.alpha}, quantization={config.student.quantization}"
    if source.run is not None:
        metrics = source.run.metrics()
        final_step, final_eval = _last(metrics, "StepLogged"), _last(metrics, "EvalLogged")
        comparison = _comparison_row(source.run.path)
    return CardFacts(
        name=source.name,
        student=student_path,
        teacher=teacher_path,
        method=method,
        method_settings=method_settings,
        training=training,
        data=data,
        final_step=final_step,
        final_eval=final_eval,
        comparison=comparison,
        student_licence=student_licence,
        teacher_licence=teacher_licence,
        checkpoint=ref.checkpoint or "model folder",
        notes=tuple(source.notes),
    )


def _number(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _front_matter(facts: CardFacts, export_kind: str) -> str:
    meta: dict[str, Any] = {"license": facts.student_licence.key if facts.student_licence.known else "other"}
    if facts.student and not Path(facts.student).is_absolute():
        meta["base_model"] = facts.student
    meta["tags"] = ["distill-gui", "distillation"] + (["gguf"] if export_kind in ("gguf", "ollama") else [])
    meta["library_name"] = "transformers" if export_kind == "hf" else "gguf"
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def render(facts: CardFacts, export_kind: str, files: list[str], usage: list[str], verification: str | None = None) -> str:
    """The model card's Markdown."""
    lines = [
        _front_matter(facts, export_kind),
        f"# {facts.name}",
        "",
        "A student model distilled with [distill-gui](https://pypi.org/project/distill-gui/)."
        if facts.teacher
        else "A model exported with distill-gui.",
        "",
    ]
    lines += ["## Where it came from", "", "| | |", "|---|---|"]
    lines.append(f"| Base student | `{facts.student or 'n/a'}` |")
    lines.append(f"| Teacher | `{facts.teacher}` |" if facts.teacher else "| Teacher | none (this run trained without one) |")
    lines.append(f"| Checkpoint | {facts.checkpoint} |")
    if facts.method:
        lines.append(f"| Method | {facts.method} |")
    for role, path, rows in facts.data:
        lines.append(f"| {role.capitalize()} data | `{path}` ({'rows unknown' if rows is None else f'{rows:,} rows'}) |")
    lines.append("")
    for note in facts.notes:
        lines.append(f"> Note: {note}.")
    if facts.notes:
        lines.append("")
    if facts.method_settings or facts.training:
        lines += ["## Settings", "", "```yaml"]
        settings = {}
        if facts.method_settings:
            settings[f"method.{facts.method}"] = facts.method_settings
        if facts.training:
            settings["training"] = facts.training
        lines += [yaml.safe_dump(settings, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    if facts.final_step or facts.final_eval:
        lines += ["## Training curve: final numbers", ""]
        if facts.final_step:
            s = facts.final_step
            extra = ", ".join(f"{k} {_number(v)}" for k, v in (s.get("metrics") or {}).items())
            lines.append(
                f"- step {s.get('step')} of {s.get('total_steps')}: loss {_number(s.get('loss'))}" + (f" ({extra})" if extra else "")
            )
        if facts.final_eval:
            e = facts.final_eval
            lines.append(
                f"- evaluation at step {e.get('step')}: " + ", ".join(f"{k} {_number(v)}" for k, v in (e.get("metrics") or {}).items())
            )
        lines.append("")
    lines += ["## Evaluation and recovery against the teacher", ""]
    if facts.comparison:
        c, row = facts.comparison, facts.comparison["row"]
        accuracy = row.get("accuracy")
        lines.append(f"On `{c.get('data')}` ({c.get('rows')} rows), reference `{c.get('reference')}`:")
        lines.append("")
        lines.append(f"- answer accuracy: {'n/a' if accuracy is None else f'{100 * accuracy:.1f}%'}")
        if row.get("recovery_pct") is not None:
            lines.append(f"- recovery (accuracy relative to the reference): {row['recovery_pct']:.1f}%")
        if row.get("perplexity") is not None:
            lines.append(
                f"- perplexity: {_number(row['perplexity'])}"
                + (f" ({row['perplexity_ratio']:.3g}x the reference's)" if row.get("perplexity_ratio") is not None else "")
            )
    else:
        lines.append("No comparison has scored this run yet (`distill-gui compare RUN --data FILE` measures it against its teacher).")
    lines.append("")
    lines += ["## Licences", ""]
    lines.append(f"- Student (base model): {facts.student_licence.label()}")
    if facts.teacher_licence is not None:
        lines.append(f"- Teacher: {facts.teacher_licence.label()}")
        notice = teacher_notice(facts.teacher_licence)
        lines.append(
            f"- What the teacher's licence asks of this model: {notice}"
            if notice
            else "- The teacher's licence is permissive: keep its notice."
        )
    lines += ["", "This is information, not legal advice; the licence texts are what count.", ""]
    if verification:
        lines += ["## GGUF verification", "", verification, ""]
    lines += ["## Files", ""] + [f"- `{f}`" for f in files] + [""]
    lines += ["## Use", "", "```sh"] + usage + ["```", ""]
    return "\n".join(lines)
