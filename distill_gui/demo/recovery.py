"""The recovery table: teacher first, then every student and method, as DeepSeek reports R1-Distill.

``recovery_pct`` is the student's accuracy divided by the teacher's, in percent. The numbers come from
the evaluation of each model; this module only formats them, as ``recovery.csv``, ``recovery.md``, a
bar chart ``recovery.png`` and a plain-text table for the terminal.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

CSV_HEADER = ("model", "params", "method", "accuracy", "recovery_pct", "tokens_per_s", "accuracy_min", "accuracy_max", "seeds")
METHOD_LABELS = {
    "teacher": "teacher",
    "answer_sft": "answer-only SFT",
    "trace_sft": "trace SFT",
    "trace_sft_kd": "trace SFT + logit KD",
    "trace_sft_more": "trace SFT, continued",
    "trace_sft_rlvr": "trace SFT, then RLVR",
    "trace_sft_onpolicy_kd": "trace SFT, then on-policy KD",
    "self_distill": "trace SFT, then self-distillation",
    "synthetic": "trace SFT, then + synthetic data",
}
COLORS = {
    "answer_sft": "#9aa5b1", "trace_sft": "#3b82f6", "trace_sft_kd": "#f59e0b", "trace_sft_more": "#1e3a8a",
    "trace_sft_rlvr": "#dc2626", "trace_sft_onpolicy_kd": "#16a34a", "self_distill": "#9333ea", "synthetic": "#0891b2",
}


@dataclass(frozen=True)
class RecoveryRow:
    """One evaluated model."""

    model: str
    params: int
    method: str
    accuracy: float
    """Share of test problems answered correctly, 0..1."""
    tokens_per_s: float
    recovery_pct: float = 100.0
    """accuracy / teacher accuracy x 100 (100 on the teacher's row)."""
    accuracy_min: float | None = None
    """Lowest accuracy over the seeds (None: one seed)."""
    accuracy_max: float | None = None
    seeds: int = 1
    """Initialisation seeds the accuracy is the mean of."""


def aggregate(rows: Sequence[RecoveryRow]) -> list[RecoveryRow]:
    """One row per (model, method), in first-seen order: the mean accuracy and tokens/s over its seeds, with the
    min and max accuracy (the teacher's row, measured once, stays as it is)."""
    groups: dict[tuple[str, str], list[RecoveryRow]] = {}
    for r in rows:
        groups.setdefault((r.model, r.method), []).append(r)
    out = []
    for (model, method), members in groups.items():
        accs = [m.accuracy for m in members]
        n = len(members)
        out.append(RecoveryRow(
            model, members[0].params, method, sum(accs) / n, sum(m.tokens_per_s for m in members) / n,
            members[0].recovery_pct, min(accs) if n > 1 else None, max(accs) if n > 1 else None, n,
        ))
    return out


def with_recovery(rows: Sequence[RecoveryRow]) -> list[RecoveryRow]:
    """The rows with ``recovery_pct`` computed against the first row whose method is ``teacher``."""
    teacher = next((r for r in rows if r.method == "teacher"), None)
    if teacher is None:
        raise ValueError("the recovery table needs the teacher's row")
    out = []
    for r in rows:
        pct = 100.0 * r.accuracy / teacher.accuracy if teacher.accuracy > 0 else 0.0
        out.append(RecoveryRow(r.model, r.params, r.method, r.accuracy, r.tokens_per_s, round(pct, 1),
                               r.accuracy_min, r.accuracy_max, r.seeds))
    return out


def _accuracy(r: RecoveryRow) -> str:
    """``64.0%``, or ``64.0% (60.2-66.8)`` over several seeds."""
    if r.accuracy_min is None or r.accuracy_max is None:
        return f"{r.accuracy:.1%}"
    return f"{r.accuracy:.1%} ({100 * r.accuracy_min:.1f}-{100 * r.accuracy_max:.1f})"


def _ratio(params: int, teacher_params: int) -> str:
    return "" if params >= teacher_params else f" (1/{teacher_params / params:.0f})"


def to_csv(rows: Sequence[RecoveryRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        low = "" if r.accuracy_min is None else f"{r.accuracy_min:.4f}"
        high = "" if r.accuracy_max is None else f"{r.accuracy_max:.4f}"
        writer.writerow([r.model, r.params, r.method, f"{r.accuracy:.4f}", f"{r.recovery_pct:.1f}", f"{r.tokens_per_s:.1f}", low, high, r.seeds])
    return buf.getvalue()


def to_markdown(rows: Sequence[RecoveryRow], title: str = "") -> str:
    teacher_params = rows[0].params if rows else 0
    lines = [f"## {title}", ""] if title else []
    lines += [
        "| model | params | method | accuracy | recovery | tokens/s |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.params / 1e6:.2f}M{_ratio(r.params, teacher_params)} | {METHOD_LABELS.get(r.method, r.method)} "
            f"| {_accuracy(r)} | {r.recovery_pct:.1f}% | {r.tokens_per_s:.0f} |"
        )
    return "\n".join(lines) + "\n"


def to_text(rows: Sequence[RecoveryRow]) -> str:
    """A fixed-width table for the terminal."""
    teacher_params = rows[0].params if rows else 0
    cells = [("model", "params", "method", "accuracy", "recovery", "tokens/s")]
    for r in rows:
        cells.append((
            r.model, f"{r.params / 1e6:.2f}M{_ratio(r.params, teacher_params)}", METHOD_LABELS.get(r.method, r.method),
            _accuracy(r), f"{r.recovery_pct:.1f}%", f"{r.tokens_per_s:.0f}",
        ))
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    right = (False, True, False, True, True, True)
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[RecoveryRow], path: str | Path, title: str = "Recovery of the teacher's accuracy") -> Path:
    """A grouped bar chart of recovery % per student size and method (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    students = [r for r in rows if r.method != "teacher"]
    models = list(dict.fromkeys(r.model for r in students))
    methods = [m for m in METHOD_LABELS if m != "teacher" and any(r.method == m for r in students)]
    fig = Figure(figsize=(7.5 if len(methods) <= 3 else 10.5, 4.6), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(methods))
    for j, method in enumerate(methods):
        xs, heights = [], []
        for i, model in enumerate(models):
            match = [r for r in students if r.model == model and r.method == method]
            if match:
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(match[0].recovery_pct)
        bars = ax.bar(xs, heights, width * 0.95, label=METHOD_LABELS[method], color=COLORS.get(method))
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    teacher = next((r for r in rows if r.method == "teacher"), None)
    labels = []
    for model in models:
        params = next(r.params for r in students if r.model == model)
        labels.append(f"{model}\n{params / 1e6:.2f}M" + (_ratio(params, teacher.params) if teacher else ""))
    ax.set_xticks(range(len(models)), labels, fontsize=8)
    ax.axhline(100, color="#444", linewidth=0.8, linestyle="--")
    if teacher is not None:
        ax.text(len(models) - 0.5, 101, f"teacher {teacher.accuracy:.0%}", ha="right", va="bottom", fontsize=8)
    ax.set_ylabel("recovery (% of teacher accuracy)")
    ax.set_ylim(0, 115)
    ax.set_title(title, fontsize=10)
    if len(methods) <= 3:
        ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.93))
    else:  # beside the bars: with eight methods a legend inside covers them
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


@dataclass(frozen=True)
class Goal:
    """One of the demo's goals, checked on a measured table."""

    text: str
    met: bool
    detail: str


def _by_size(rows: Sequence[RecoveryRow]) -> dict[str, dict[str, RecoveryRow]]:
    sizes: dict[str, dict[str, RecoveryRow]] = {}
    for r in rows:
        if r.method != "teacher":
            sizes.setdefault(r.model, {})[r.method] = r
    return sizes


def check_goals(rows: Sequence[RecoveryRow], min_recovery: float = 80.0, rlvr_margin: float = 5.0) -> list[Goal]:
    """The demo's goals, judged on the rows (teacher first, then each size's methods):

    trace SFT beats answer-only SFT at every size; adding logit KD beats trace SFT alone at two sizes
    of three or more; larger students recover more (each size's best method); the best student of at
    most 1/10 of the teacher's parameters recovers at least ``min_recovery`` percent. With the continued
    methods in the table: RLVR after trace SFT beats continued trace SFT at the largest size of at most 1/10 of
    the teacher by ``rlvr_margin`` accuracy points or more; at least two of the other three continued methods
    (on-policy KD, self-distillation, synthetic data) beat continued trace SFT at two sizes of three or more.
    """
    teacher = next(r for r in rows if r.method == "teacher")
    sizes = _by_size(rows)
    names = sorted(sizes, key=lambda m: -next(iter(sizes[m].values())).params)
    goals = []
    # A goal is judged only when the table has its methods at every size (``--methods`` may leave some out).
    pairs = [(m, sizes[m].get("answer_sft"), sizes[m].get("trace_sft")) for m in names]
    if pairs and all(a and t for _, a, t in pairs):
        wins = [f"{m} {t.accuracy:.1%} vs {a.accuracy:.1%}" for m, a, t in pairs]
        goals.append(Goal("trace distillation beats answer-only SFT at every size",
                          all(t.accuracy > a.accuracy for _, a, t in pairs), "; ".join(wins)))
    kd = [(m, sizes[m].get("trace_sft"), sizes[m].get("trace_sft_kd")) for m in names]
    if kd and all(t and k for _, t, k in kd):
        kd_wins = sum(1 for _, t, k in kd if k.accuracy > t.accuracy)
        goals.append(Goal("adding logit KD beats trace SFT alone at two sizes of three or more", kd_wins >= min(2, len(kd)),
                          f"{kd_wins} of {len(kd)}: " + "; ".join(f"{m} {k.accuracy:.1%} vs {t.accuracy:.1%}" for m, t, k in kd)))
    best = [(m, max(sizes[m].values(), key=lambda r: r.accuracy)) for m in names]
    ordered = all(a.recovery_pct > b.recovery_pct for (_, a), (_, b) in zip(best, best[1:]))
    goals.append(Goal("larger students recover more (best method of each size)", ordered,
                      " > ".join(f"{m} {r.recovery_pct:.1f}%" for m, r in best)))
    small = [(m, r) for m, r in best if r.params * 10 <= teacher.params]
    top = max(small, key=lambda x: x[1].recovery_pct) if small else None
    goals.append(Goal(f"the best student of at most 1/10 of the teacher's size recovers at least {min_recovery:.0f}%",
                      bool(top and top[1].recovery_pct >= min_recovery),
                      f"{top[0]} ({METHOD_LABELS.get(top[1].method, top[1].method)}): {top[1].recovery_pct:.1f}%" if top else "no such student"))
    goals += _continued_goals(sizes, names, teacher, rlvr_margin)
    return goals


def _continued_goals(sizes: dict[str, dict[str, RecoveryRow]], names: list[str], teacher: RecoveryRow,
                     rlvr_margin: float) -> list[Goal]:
    """The goals of the continued methods, each judged against continued trace SFT (the same extra steps)."""
    goals = []
    tenth = [m for m in names if "trace_sft_more" in sizes[m] and "trace_sft_rlvr" in sizes[m]
             and next(iter(sizes[m].values())).params * 10 <= teacher.params]
    if tenth:
        m = tenth[0]  # names are largest first
        rl, more = sizes[m]["trace_sft_rlvr"], sizes[m]["trace_sft_more"]
        gain = 100 * (rl.accuracy - more.accuracy)
        goals.append(Goal(f"RLVR after trace SFT beats continued trace SFT at the 1/10 size by at least {rlvr_margin:.0f} points",
                          gain >= rlvr_margin, f"{m}: {rl.accuracy:.1%} vs {more.accuracy:.1%} ({gain:+.1f} points)"))
    others = [k for k in ("trace_sft_onpolicy_kd", "self_distill", "synthetic") if any(k in sizes[m] for m in names)]
    if others and any("trace_sft_more" in sizes[m] for m in names):
        details, winners = [], 0
        for k in others:
            compared = [m for m in names if k in sizes[m] and "trace_sft_more" in sizes[m]]
            wins = [m for m in compared if sizes[m][k].accuracy > sizes[m]["trace_sft_more"].accuracy]
            winners += len(wins) >= min(2, len(compared)) and bool(compared)
            details.append(f"{METHOD_LABELS[k]}: {len(wins)} of {len(compared)} sizes")
        goals.append(Goal("at least two of on-policy KD, self-distillation and synthetic data beat continued trace SFT at two sizes of three",
                          winners >= min(2, len(others)), "; ".join(details)))
    return goals


def goals_markdown(goals: Sequence[Goal]) -> str:
    lines = ["", "Goals:", ""]
    lines += [f"- {'met' if g.met else 'not met'}: {g.text} ({g.detail})" for g in goals]
    return "\n".join(lines) + "\n"


def write_all(rows: Sequence[RecoveryRow], folder: str | Path, title: str = "") -> dict[str, Path]:
    """Write recovery.csv, recovery.md (with the goals) and recovery.png into ``folder``; returns their paths."""
    folder = Path(folder)
    paths = {"csv": folder / "recovery.csv", "md": folder / "recovery.md", "png": folder / "recovery.png"}
    paths["csv"].write_text(to_csv(rows), encoding="utf-8")
    md = to_markdown(rows, title)
    if len(_by_size(rows)) >= 2:
        md += goals_markdown(check_goals(rows))
    paths["md"].write_text(md, encoding="utf-8")
    plot(rows, paths["png"])
    return paths
