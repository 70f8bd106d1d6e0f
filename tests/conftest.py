"""Test setup: offline hub, offscreen Qt, tiny models built from config."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return tiny_models.build_tokenizer()


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory, tiny_tokenizer):
    """(teacher_dir, student_dir): a tiny Llama teacher (h=48, 2 layers) and student (h=32, 1 layer), same tokenizer."""
    root = tmp_path_factory.mktemp("pair")
    teacher = tiny_models.save_pair_member(root / "teacher", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, hidden=48, layers=2, seed=1))
    student = tiny_models.save_pair_member(root / "student", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, hidden=32, layers=1, seed=2))
    return teacher, student


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A small prompt/completion JSONL file."""
    root = tmp_path_factory.mktemp("data")
    path = root / "train.jsonl"
    rows = []
    for i in range(40):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append({"prompt": f"Question: What is {a} plus {b}? Answer:", "completion": f" {a} + {b} = {a + b}. #### {a + b}"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path
