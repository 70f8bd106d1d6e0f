"""A comparison's folder: ``results.json``, ``results.csv``, ``results.md``, ``predictions.jsonl`` and
``accuracy_vs_size.png``; and reading past comparisons back (the app lists and reopens them).

``predictions.jsonl`` has one line per question: its source, question, reference answer and each
model's answer with a right/wrong mark (``{"answers": {label: {"prediction", "correct", "output"}}}``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

CSV_FIELDS = (
    "label",
    "params",
    "disk_bytes",
    "accuracy",
    "correct",
    "answered",
    "recovery_pct",
    "pass_at_k",
    "majority_accuracy",
    "perplexity",
    "perplexity_ratio",
    "answer_agreement",
    "top1_agreement",
    "mean_answer_tokens",
    "tokens_per_s",
    "peak_memory_mb",
    "error",
    "path",
)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def format_params(n: int) -> str:
    return "–" if not n else f"{n / 1e6:.2f}M"


def format_size(n: int) -> str:
    if not n:
        return "–"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def to_markdown(rows: Sequence[dict], title: str = "") -> str:
    """A table like the demo's recovery table, with the comparison's extra columns."""
    reference = next((r for r in rows if r.get("reference")), rows[0] if rows else None)
    ref_params = reference.get("params", 0) if reference else 0
    sampled = any(r.get("pass_at_k") is not None for r in rows)
    head = (
        ["model", "params", "accuracy", "recovery"]
        + (["pass@k", "majority"] if sampled else [])
        + ["perplexity", "ppl ratio", "agreement", "top-1 agr.", "answer tokens", "tokens/s", "memory", "disk"]
    )
    lines = [f"## {title}", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['label']} | " + " | ".join(["–"] * (len(head) - 2)) + f" | failed: {r['error']} |")
            continue
        params = r.get("params") or 0
        ratio = f" (1/{ref_params / params:.0f})" if params and ref_params and params < ref_params else ""
        recovery = "–" if r.get("recovery_pct") is None else f"{r['recovery_pct']:.1f}%"
        cells = [
            f"{r['label']}{' (reference)' if r.get('reference') else ''}",
            f"{format_params(params)}{ratio}",
            _pct(r.get("accuracy")),
            recovery,
        ]
        if sampled:
            cells += [_pct(r.get("pass_at_k")), _pct(r.get("majority_accuracy"))]
        cells += [
            _num(r.get("perplexity"), ".3f"),
            _num(r.get("perplexity_ratio"), ".3g"),
            _pct(r.get("answer_agreement")),
            _pct(r.get("top1_agreement")),
            _num(r.get("mean_answer_tokens"), ".1f"),
            _num(r.get("tokens_per_s"), ".0f"),
            f"{r.get('peak_memory_mb', 0):.0f} MB",
            format_size(r.get("disk_bytes") or 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_text(rows: Sequence[dict]) -> str:
    """A fixed-width table for the terminal."""
    cells = [("model", "params", "accuracy", "recovery", "perplexity", "agreement", "tokens/s")]
    for r in rows:
        if r.get("error"):
            cells.append((r["label"], "–", "failed", "", "", "", ""))
            continue
        recovery = "–" if r.get("recovery_pct") is None else f"{r['recovery_pct']:.1f}%"
        cells.append(
            (
                r["label"] + (" *" if r.get("reference") else ""),
                format_params(r.get("params") or 0),
                _pct(r.get("accuracy")),
                recovery,
                _num(r.get("perplexity"), ".3f"),
                _pct(r.get("answer_agreement")),
                _num(r.get("tokens_per_s"), ".0f"),
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    failures = [f"{r['label']}: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(lines + failures) + "\n"


def to_csv(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow(["" if r.get(name) is None else r.get(name) for name in CSV_FIELDS])
    return buf.getvalue()


def question_lines(comparison) -> list[dict[str, Any]]:
    """One record per question with every model's answer, in the data's order."""
    lines: dict[str, dict] = {}
    for source, q in comparison.questions.items():
        lines[source] = {"source": source, "question": q.get("question", ""), "reference": q.get("reference"), "answers": {}}
    for score in comparison.scores:
        for p in score.predictions:
            line = lines.setdefault(p["source"], {"source": p["source"], "question": "", "reference": p.get("reference"), "answers": {}})
            entry = {"prediction": p.get("prediction"), "correct": bool(p.get("correct")), "output": p.get("output", "")}
            if "sample_answers" in p:
                entry.update(sample_answers=p["sample_answers"], pass_at_k=p.get("pass_at_k"), majority=p.get("majority"))
            line["answers"][score.label] = entry
    return [line for line in lines.values() if line["answers"]]


def plot(rows: Sequence[dict], path: str | Path, title: str = "Accuracy against size") -> Path | None:
    """Accuracy against parameters (log scale), one labelled point per model, the reference as a line."""
    points = [r for r in rows if not r.get("error") and r.get("accuracy") is not None and r.get("params")]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for r in points:
        ref = bool(r.get("reference"))
        ax.scatter([r["params"]], [100 * r["accuracy"]], s=60 if ref else 40, color="#f59e0b" if ref else "#3b82f6", zorder=3)
        ax.annotate(r["label"], (r["params"], 100 * r["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    reference = next((r for r in points if r.get("reference")), None)
    if reference is not None:
        ax.axhline(100 * reference["accuracy"], color="#444", linewidth=0.8, linestyle="--")
        ax.text(
            ax.get_xlim()[0], 100 * reference["accuracy"] + 1, f" reference {100 * reference['accuracy']:.1f}%", fontsize=7, va="bottom"
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def write_report(comparison, folder: str | Path) -> Path:
    """(Re)write every file of the comparison's folder from what is scored so far."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = comparison.table()
    from dataclasses import asdict

    summary = {
        "data": comparison.data,
        "rows": comparison.rows,
        "reference": comparison.reference,
        "state": comparison.state,
        "settings": asdict(comparison.settings),
        "written_at": time.time(),
        "models": rows,
    }
    _write_atomic(folder / "results.json", json.dumps(summary, indent=2, ensure_ascii=False))
    _write_atomic(folder / "results.csv", to_csv(rows))
    title = f"{Path(comparison.data).name}: {comparison.rows} rows, reference {comparison.reference}"
    _write_atomic(folder / "results.md", to_markdown(rows, title))
    _write_atomic(folder / "predictions.jsonl", "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in question_lines(comparison)))
    if comparison.state != "running":
        plot(rows, folder / "accuracy_vs_size.png", title)
    return folder


# ---- Reading back --------------------------------------------------------------------------------


def load_results(folder: str | Path) -> dict[str, Any]:
    """``results.json`` of a comparison folder; a ValueError names the file when it is missing or damaged."""
    path = Path(folder) / "results.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ValueError(f"{path}: missing; {folder} is not a comparison folder") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: damaged ({exc.msg} at line {exc.lineno})") from None


def load_questions(folder: str | Path) -> list[dict[str, Any]]:
    """The per-question records of ``predictions.jsonl`` (lines cut short by a crash are skipped)."""
    path = Path(folder) / "predictions.jsonl"
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def list_comparisons(root: str | Path) -> list[Path]:
    """Comparison folders under ``<root>/comparisons``, newest first."""
    base = Path(root) / "comparisons"
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "results.json").is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def filter_questions(questions: Sequence[dict], kind: str, reference: str, model: str | None = None) -> list[dict]:
    """Questions for the per-question view: ``all``, ``ref_right_model_wrong``, ``ref_wrong_model_right``,
    ``disagree`` (the models' answers differ) or ``all_wrong``; ``model`` None means any model but the reference."""
    out = []
    for q in questions:
        answers = q.get("answers", {})
        ref = answers.get(reference)
        others = [a for label, a in answers.items() if label != reference and (model is None or label == model)]
        if kind == "all":
            keep = True
        elif kind == "ref_right_model_wrong":
            keep = bool(ref and ref["correct"]) and any(not a["correct"] for a in others)
        elif kind == "ref_wrong_model_right":
            keep = bool(ref and not ref["correct"]) and any(a["correct"] for a in others)
        elif kind == "disagree":
            keep = len({a.get("prediction") for a in answers.values()}) > 1
        elif kind == "all_wrong":
            keep = all(not a["correct"] for a in answers.values())
        else:
            raise ValueError(f"unknown question filter {kind!r}")
        if keep:
            out.append(q)
    return out
