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

# Checks that take minutes each (subprocess trainings, installs, measured memory): marked ``long``.
# `make test` runs everything else; `make test-long` runs these, and CI runs them after the rest
# while they fit in its time (.ci/run).
LONG_TESTS = (
    "tests/packaging/test_installers.py",
    "tests/core/test_memory_measured.py",
    "tests/core/test_grad_accumulation.py::test_two_processes_of_batch_4_train_like_one_of_batch_8",
    "tests/core/test_compare.py::test_accuracy_and_perplexity_equal_eval_exactly",
    "tests/core/test_compare.py::test_sampling_gives_pass_at_k_and_majority",
    "tests/reliability/test_live_run_writers.py",
    "tests/test_cli.py::test_train_under_a_distributed_launcher",
    "tests/core/test_distributed_launch.py::test_two_processes",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(LONG_TESTS):
            item.add_marker(pytest.mark.long)


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
