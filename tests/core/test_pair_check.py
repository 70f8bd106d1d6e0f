"""The pair check the app runs in a child process: its answers, stale requests, cut-short weights."""

from __future__ import annotations

import io
import json
import shutil

from distill_gui.core.config import RunConfig, config_to_dict
from distill_gui.core.pair_check import PairChecker, decode, serve


def pair_config(teacher, student) -> RunConfig:
    config = RunConfig()
    config.teacher.path, config.student.path = str(teacher), str(student)
    return config


def test_a_pair_is_described_compared_and_estimated_and_answers_round_trip(tiny_pair):
    answers = []
    PairChecker().check(7, pair_config(*tiny_pair), answers.append, lambda: False)
    kinds = [(a["kind"], a.get("role")) for a in answers]
    assert kinds == [("described", "teacher"), ("licence", "teacher"), ("described", "student"), ("licence", "student"),
                     ("compatibility", None), ("memory", None), ("done", None)]
    assert all(a["id"] == 7 for a in answers)
    decoded = {a["kind"]: decode(a["kind"], json.loads(json.dumps(a["data"]))) for a in answers if "data" in a}
    assert decoded["described"].num_params > 0 and decoded["compatibility"].verdict == "identical"
    assert decoded["memory"].total > 0 and decoded["licence"].key == "unknown"


def test_a_stale_request_stops_and_a_cut_short_weights_file_is_named(tiny_pair, tmp_path):
    teacher, student = tiny_pair
    answers = []
    PairChecker().check(1, pair_config(teacher, student), answers.append, lambda: True)
    assert answers == []
    cut = tmp_path / "student"
    shutil.copytree(student, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    PairChecker().check(2, pair_config(teacher, cut), answers.append, lambda: False)
    failed = [a for a in answers if a["kind"] == "failed"]
    assert [a["role"] for a in failed] == ["student"] and "cut short" in failed[0]["message"]
    assert "model.safetensors" in failed[0]["message"]
    assert not any(a["kind"] in ("compatibility", "memory") for a in answers)


def test_the_child_protocol_answers_the_newest_request(tiny_pair):
    teacher, student = tiny_pair
    lines = [json.dumps({"id": 1, "config": config_to_dict(pair_config(teacher, student))}), "not json",
             json.dumps({"id": 2, "config": {"training": {"max_steps": "lots"}}})]
    out = io.StringIO()
    assert serve(io.StringIO("\n".join(lines) + "\n"), out) == 0
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers[-1] == {"id": 2, "kind": "done"}
    bad = [a for a in answers if a["id"] == 2 and a["kind"] == "failed"]
    assert bad and "max_steps" in bad[0]["message"]
