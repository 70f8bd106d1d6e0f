"""What reading training data gives: examples, bad rows, the report, prepared data, and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill_gui.core.errors import UserError

# ---- Public types ----------------------------------------------------------------------------------


class DataError(UserError, ValueError):
    """The data cannot be used; the message names the file and what to change.

    ``report`` is the :class:`DataReport` behind a refusal for bad rows (None for other errors): its
    ``summary(max_rows=None)`` lists every bad line, for the run's log.
    """

    def __init__(self, message: str, report: "DataReport | None" = None):
        super().__init__(message)
        self.report = report


MAX_ROW_BYTES = 1 << 20
"""A row over 1 MiB of text is skipped as a bad row (about 250k tokens, far beyond any max_length),
checked before it is parsed or tokenized."""


@dataclass
class Example:
    """One training example, independent of the file format it came from."""

    prompt: str
    """Plain prompt text ('' for the text format). For alpaca the instruction; for messages/sharegpt a
    plain ``Role: content`` transcript of the prompt turns ending in ``Assistant: ``."""
    completion: str
    """What the model learns to write (the EOS token is appended at tokenization)."""
    messages: list[dict] | None = None
    """Chat prompt turns ({role, content}, system included) when the format had them."""
    reference: str | None = None
    """The final answer after ``####`` in the completion, when there is one."""
    source: str = ""
    """Where the row came from: ``file.jsonl:12``, ``file.json:item 3`` or ``file.parquet:row 7``."""
    format: str = "prompt_completion"
    """The format the row was read as (decides the plain prompt template)."""
    input: str = ""
    """Alpaca's optional input (context) field; the instruction is in ``prompt``."""


@dataclass
class BadRow:
    """A row that was skipped, and why."""

    file: str
    line: int
    reason: str
    unit: str = "line"
    """``line`` for text files (1-based), ``item`` for JSON lists and ``row`` for tables (0-based)."""

    def __str__(self) -> str:
        return f"{self.file} {self.unit} {self.line}: {self.reason}"


@dataclass
class DataReport:
    """What was read from one source: format, columns, counts, skipped rows and notes."""

    file: str
    format: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    """Format field -> column actually read."""
    total: int = 0
    """Rows seen in the source (blank lines are not rows)."""
    kept: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    truncated_rows: list[BadRow] = field(default_factory=list)
    """Rows kept but cut to max_length (the reason says from how many tokens)."""
    notes: list[str] = field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        return len(self.bad_rows) / self.total if self.total else 0.0

    def summary(self, max_rows: int | None = 10) -> str:
        """Lines of text for a log or a dialog; ``max_rows=None`` lists every skipped and truncated row."""
        fields = ", ".join(f"{k} <- {v}" if k != v else k for k, v in self.columns.items())
        head = f"{self.file}: format {self.format or '?'} ({fields}); {self.total} rows, {self.kept} kept, {len(self.bad_rows)} skipped"
        lines = [head + (f", {len(self.truncated_rows)} truncated" if self.truncated_rows else "")]
        for title, rows in (("skipped", self.bad_rows), ("truncated", self.truncated_rows)):
            shown = rows if max_rows is None else rows[:max_rows]
            if rows and title == "truncated":
                lines.append(f"  {len(rows)} rows truncated to data.max_length:")
            lines += [f"  {row.unit} {row.line}: {row.reason}" for row in shown]
            if len(rows) > len(shown):
                lines.append(f"  ... and {len(rows) - len(shown)} more {title} rows")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class PreparedData:
    """Tokenized train (and eval) sets plus the examples behind them."""

    train: Any
    """``datasets.Dataset`` with input_ids, attention_mask and labels."""
    eval: Any | None
    train_examples: list[Example]
    eval_examples: list[Example]
    report: DataReport
    eval_report: DataReport | None
    format: str
