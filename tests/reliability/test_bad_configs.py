"""`distill-gui train bad.yaml` for 30+ kinds of bad config: exit 2, one line naming the problem, no traceback,
no run folder left behind."""

from __future__ import annotations

import pytest
from harness import cli, one_line_error

GOOD = {"student": "student: {path: student}", "data": "data: {train: train.jsonl}", "method": "method: {kind: sft}"}
WHOLE_FILES = ("top-level", "no-", "binary", "broken", "tab", "deep")
"""Cases written exactly as given; the others get the sections they lack from GOOD, so only their fault remains."""

# (name, file content (text or bytes), words the one line must hold)
BAD_CONFIGS = [
    ("nan-float", "training: {learning_rate: .nan}", "training.learning_rate"),
    ("inf-float", "training: {learning_rate: .inf}", "infinite"),
    ("minus-inf-float", "training: {weight_decay: -.inf}", "training.weight_decay"),
    ("1e400-float", "training: {learning_rate: 1e400}", "out of range"),
    ("1e400-int", "training: {max_steps: 1e400}", "training.max_steps"),
    ("nan-int", "training: {batch_size: .nan}", "NaN"),
    ("inf-int", "training: {save_steps: .inf}", "training.save_steps"),
    ("huge-int", "training: {max_steps: 99999999999999999999999}", "out of range"),
    ("5000-digit-int", "training: {max_steps: " + "9" * 5000 + "}", "cannot be read"),
    ("400-digit-float", "training: {learning_rate: " + "9" * 400 + "}", "training.learning_rate"),
    ("negative-seed", "training: {seed: -1}", "training.seed"),
    ("seed-over-32-bits", "training: {seed: 4294967296}", "training.seed"),
    ("fraction-int", "training: {max_steps: 2.5}", "whole number"),
    ("text-int", "training: {max_steps: many}", "training.max_steps"),
    ("bool-int", "training: {max_steps: true}", "training.max_steps"),
    ("list-int", "training: {batch_size: [1, 2]}", "training.batch_size"),
    ("below-minimum", "training: {batch_size: 0}", "below the minimum"),
    ("above-maximum", "data: {eval_fraction: 0.95}", "above the maximum"),
    ("nan-fraction", "data: {max_bad_fraction: .nan}", "data.max_bad_fraction"),
    ("bad-choice", "training: {lr_scheduler: sideways}", "training.lr_scheduler"),
    ("bad-precision", "training: {precision: fp8}", "training.precision"),
    ("unknown-key", "training: {max_stepz: 5}", "unknown key"),
    ("unknown-section", "trainer: {max_steps: 5}", "unknown key"),
    ("section-is-scalar", "training: 5", "training"),
    ("section-is-list", "data: [a, b]", "data"),
    ("text-is-mapping", "name: {a: 1}", "name"),
    ("bad-device", "student: {path: s, device: tpu}", "device"),
    ("bad-bool", "student: {path: s, trust_remote_code: maybe}", "trust_remote_code"),
    ("top-level-list", "- training\n- data", "must be a mapping"),
    ("top-level-scalar", "42", "must be a mapping"),
    ("broken-yaml", "training: {max_steps: 5\n", "not valid YAML"),
    ("tab-indented-yaml", "training:\n\tmax_steps: 5\n", "not valid YAML"),
    ("deep-nesting", "training: " + "[" * 5000 + "]" * 5000, "run.yaml"),
    ("binary", b"\x00\x01\x02\xff\xfe\x89PNG\r\n", "run.yaml"),
    ("not-utf8", b"name: caf\xe9\n", "UTF-8"),
    ("python-tag", "training: !!python/object/apply:os.system [echo hacked]", "not valid YAML"),
    ("no-student", "data: {train: train.jsonl}\nmethod: {kind: sft}", "student.path"),
    ("no-data", "student: {path: student}\nmethod: {kind: sft}", "data.train"),
]


@pytest.mark.parametrize(("name", "content", "words"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_a_bad_config_is_one_line_and_exit_2(tmp_path, name, content, words):
    path = tmp_path / "run.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        missing = [text for key, text in GOOD.items() if not content.startswith(f"{key}:")]
        path.write_text(content if name.startswith(WHOLE_FILES) else "\n".join([content, *missing]) + "\n")
    runs = tmp_path / "runs"
    result = cli("train", str(path), "--runs-dir", str(runs))
    line = one_line_error(result)
    assert words in line, line
    assert result.stdout == ""
    assert not runs.exists() or not any(runs.iterdir()), "a refused config left a run folder behind"


def test_there_are_at_least_30_bad_configs():
    assert len(BAD_CONFIGS) >= 30
