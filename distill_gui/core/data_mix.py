"""``data.mix``: training rows drawn from several sources in proportion to their weights.

Each source (e.g. teacher-labelled synthetic questions and real traces) is read and tokenized like
``data.train``. The mixed training set has as many rows as the sources together; source ``i`` fills
``weight_i / sum(weights)`` of them (rounded by largest remainder, so the counts add up). A source with
fewer rows than its share is repeated (each pass in a new seeded order), one with more gives a seeded
sample of its rows. ``data.train``, when set, is one more source with weight 1.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence


def mix_counts(sizes: Sequence[int], weights: Sequence[float]) -> list[int]:
    """Rows each source gives to a mix of ``sum(sizes)`` rows, in proportion to ``weights``."""
    total, weight = sum(sizes), float(sum(weights))
    if total == 0 or weight <= 0:
        return [0] * len(sizes)
    exact = [total * w / weight for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def pick_rows(size: int, count: int, rng: random.Random) -> list[int]:
    """``count`` row numbers of a source of ``size`` rows: whole shuffled passes, then a sample of the rest."""
    picked: list[int] = []
    while len(picked) < count and size:
        order = list(range(size))
        rng.shuffle(order)
        picked.extend(order[: count - len(picked)])
    return picked


def mix_sources(sources: Sequence[tuple[str, list, list]], weights: Sequence[float], seed: int) -> tuple[list, list, list[str]]:
    """Mix ``(name, examples, features)`` sources by ``weights``: the mixed examples, features and a note per source."""
    sizes = [len(examples) for _, examples, _ in sources]
    counts = mix_counts(sizes, weights)
    total_weight = float(sum(weights))
    examples_out: list[Any] = []
    features_out: list[Any] = []
    notes = []
    for (name, examples, features), weight, size, count in zip(sources, weights, sizes, counts):
        rows = pick_rows(size, count, random.Random(f"data-mix-{seed}-{name}"))
        examples_out.extend(examples[i] for i in rows)
        features_out.extend(features[i] for i in rows)
        share = f"{weight / total_weight:.0%}" if total_weight else "0%"
        notes.append(
            f"mix: {name} gives {count} of {sum(counts)} rows ({share}; it has {size}"
            + (f", each used about {count / size:.1f}×)" if size and count > size else ")")
        )
    return examples_out, features_out, notes


def prepare_mixed(cfg: Any, tokenizer: Any, base: Any | None) -> Any:
    """The run's data with ``cfg.mix`` mixed in: ``base`` (``data.train`` prepared, weight 1) or None, plus each source.

    Every source is read, tokenized and checked like ``data.train`` (its bad rows refuse the run the same
    way); the evaluation rows stay ``base``'s (held out of ``data.train`` or ``data.eval``), or ``data.eval``'s.
    """
    from pathlib import Path

    from distill_gui.core.data import PreparedData, _check, _features_dataset, _tokenize_all, load_examples

    sources: list[tuple[str, list, list]] = []
    weights: list[float] = []
    report = base.report if base is not None else None
    if base is not None:
        sources.append((Path(cfg.train).name or cfg.train, base.train_examples, [dict(row) for row in base.train]))
        weights.append(1.0)
    for index, source in enumerate(cfg.mix):
        examples, source_report = load_examples(source.path, cfg.format, cfg.columns)
        examples, features = _tokenize_all(examples, source_report, cfg, tokenizer)
        _check(source_report, source.path, cfg.max_bad_fraction)
        name = source_report.file if source_report.file not in {s[0] for s in sources} else f"{source_report.file} (mix[{index}])"
        sources.append((name, examples, features))
        weights.append(float(source.weight))
        if report is None:
            report = source_report
        elif source_report is not report:
            report.notes.append(source_report.summary(max_rows=3).replace("\n", "; "))
    examples, features, notes = mix_sources(sources, weights, cfg.seed)
    assert report is not None  # data.mix has at least one source (checked when the config is read)
    report.notes.extend(notes)
    eval_examples, eval_data, eval_report = (base.eval_examples, base.eval, base.eval_report) if base is not None else ([], None, None)
    if base is None and cfg.eval:
        eval_examples, eval_report = load_examples(cfg.eval, report.format, cfg.columns)
        eval_examples, eval_features = _tokenize_all(eval_examples, eval_report, cfg, tokenizer)
        _check(eval_report, cfg.eval, cfg.max_bad_fraction)
        eval_data = _features_dataset(eval_features)
    return PreparedData(
        train=_features_dataset(features),
        eval=eval_data,
        train_examples=examples,
        eval_examples=eval_examples,
        report=report,
        eval_report=eval_report,
        format=report.format,
    )
