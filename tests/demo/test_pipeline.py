"""The demo end to end (slow): ``distill-gui demo --quick`` writes the recovery table from real evaluations."""

from __future__ import annotations

import csv
import json

import pytest

from distill_gui.demo.pipeline import BASE_METHODS, CONTINUED_METHODS, METHODS, STUDENT_SIZES, DemoPlan, student_config


def test_plans_and_student_sizes(tmp_path):
    quick, full = DemoPlan.create_quick(), DemoPlan.full()
    assert quick.quick and quick.estimate_seconds() <= 5 * 60
    assert full.estimate_seconds() <= 45 * 60  # the bound for the full demo at the default seed count
    assert DemoPlan(seeds=3).estimate_seconds() > 2.5 * full.estimate_seconds() - 3 * 60
    assert full.budget_rows > quick.budget_rows
    from transformers import AutoTokenizer

    from distill_gui.demo.train_teacher import TeacherRecipe, build_model
    from distill_gui.resources import demo_dir

    tok = AutoTokenizer.from_pretrained(demo_dir() / "teacher")
    teacher = sum(p.numel() for p in build_model(tok, TeacherRecipe()).parameters())
    ratios = []
    for size in STUDENT_SIZES:
        model = build_model(tok, TeacherRecipe(), hidden=size.hidden, layers=size.layers, heads=size.heads, mlp=size.mlp)
        ratios.append(teacher / sum(p.numel() for p in model.parameters()))
    # Roughly 1/4, 1/10 and 1/30 of the teacher; the middle one at most 1/10 (the recovery goal's bound).
    assert 3 <= ratios[0] <= 5 and 10 <= ratios[1] <= 11 and 25 <= ratios[2] <= 35


def test_students_side_by_side_and_the_estimate(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert DemoPlan().parallel_jobs(3) == 2 and DemoPlan(jobs=1).parallel_jobs(3) == 1
    assert DemoPlan(jobs=8).parallel_jobs(3) == 3 and DemoPlan().parallel_jobs(1) == 1
    # Side by side the slowest worker sets the time; a size's own step costs are used when only some train.
    one, two = DemoPlan(jobs=1, seeds=3), DemoPlan(jobs=2, seeds=3)
    assert 0.5 * one.estimate_seconds() < two.estimate_seconds() < one.estimate_seconds()
    small, large = DemoPlan(sizes=STUDENT_SIZES[2:]), DemoPlan(sizes=STUDENT_SIZES[:1])
    assert small.estimate_seconds() < large.estimate_seconds()
    with pytest.raises(ValueError, match="--jobs"):
        DemoPlan(jobs=-1).validate()


def test_student_configs_use_the_same_budget(tmp_path):
    plan = DemoPlan.full()
    configs = {m: student_config(plan, m, tmp_path / "s", tmp_path / "t", tmp_path / "d.jsonl", m) for m in BASE_METHODS}
    assert configs["answer_sft"].method.kind == "sft" and configs["trace_sft"].method.kind == "sft"
    assert configs["trace_sft_kd"].method.kind == "kd" and configs["trace_sft_kd"].teacher.path
    assert len({(c.training.max_steps, c.training.batch_size) for c in configs.values()}) == 1
    # Logit KD reads a teacher cache shared by the students when one is given.
    shared = tmp_path / "cache.safetensors"
    kd = student_config(plan, "trace_sft_kd", tmp_path / "s", tmp_path / "t", tmp_path / "d.jsonl", "kd", teacher_cache=shared)
    assert kd.method.kd.cache_teacher and kd.method.kd.teacher_cache == str(shared) and kd.method.kd.top_k == plan.kd_top_k
    kd.validate_for_run()


def test_continued_methods_share_one_budget_and_start_from_trace_sft(tmp_path):
    from distill_gui.demo.continued import continued_config

    plan = DemoPlan.full()
    (tmp_path / "d.jsonl").write_text("")
    configs = {m: continued_config(plan, m, tmp_path / "trace_sft_final", tmp_path / "t", tmp_path / "traces.jsonl",
                                   tmp_path / "answers.jsonl", tmp_path / "synthetic.jsonl", m, 2e-3, seed=1)
               for m in CONTINUED_METHODS}
    assert {c.training.max_steps for c in configs.values()} == {plan.continue_steps}
    assert {c.training.batch_size for c in configs.values()} == {plan.batch_size}
    assert {c.student.path for c in configs.values()} == {str(tmp_path / "trace_sft_final")}
    assert configs["trace_sft_more"].method.kind == "sft" and configs["trace_sft_more"].data.train.endswith("traces.jsonl")
    rlvr = configs["trace_sft_rlvr"]
    assert rlvr.method.kind == "rlvr" and rlvr.data.train.endswith("answers.jsonl") and plan.batch_size % rlvr.method.rlvr.group_size == 0
    on_policy = configs["trace_sft_onpolicy_kd"]
    assert on_policy.method.kind == "kd" and on_policy.method.kd.on_policy == plan.on_policy and on_policy.teacher.path
    assert configs["self_distill"].method.kind == "self_distill" and configs["self_distill"].data.train.endswith("answers.jsonl")
    mix = configs["synthetic"].data.mix
    assert [m.path.rsplit("/", 1)[-1] for m in mix] == ["traces.jsonl", "synthetic.jsonl"]
    assert [m.weight for m in mix] == [1 - plan.synthetic_weight, plan.synthetic_weight]
    # The control trains at the same learning rate as the SFT-like continued methods.
    assert configs["trace_sft_more"].training.learning_rate == configs["synthetic"].training.learning_rate


def test_demo_flags_are_checked(tmp_path, capsys):
    import argparse

    from distill_gui.cli_demo import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    for bad, said in ((["--methods", "trace_sft,rlhf"], "unknown rlhf"), (["--seeds", "0"], "--seeds: at least 1"),
                      (["--sizes", "student-XL"], "unknown student-XL")):
        args = parser.parse_args(["demo", "--quick", "--runs-dir", str(tmp_path), *bad])
        assert args.func(args) == 2
        assert said in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    plan = DemoPlan(methods=("trace_sft_rlvr",))
    assert plan.trained_methods == ("trace_sft", "trace_sft_rlvr")


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    import argparse

    from distill_gui.cli_demo import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["demo", "--quick", "--runs-dir", str(tmp_path), "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "about" in out.splitlines()[1] and "minute" in out.splitlines()[1]
    folder = next(tmp_path.glob("*-demo-quick"))
    assert f"run folder: {folder}" in out
    with open(folder / "recovery.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    from distill_gui.demo.recovery import CSV_HEADER

    assert tuple(rows[0]) == CSV_HEADER and list(CSV_HEADER[:6]) == ["model", "params", "method", "accuracy", "recovery_pct", "tokens_per_s"]
    assert rows[0]["model"] == "teacher" and rows[0]["method"] == "teacher"
    results = json.loads((folder / "results.json").read_text())
    # A continued method may refuse a student this weak (self-distillation with no correct answer): its row is
    # left out, with the reason kept and printed.
    skipped = {(s["model"], s["method"]) for s in results["skipped"]}
    assert all(method in CONTINUED_METHODS for _, method in skipped)
    for s in results["skipped"]:
        assert f"skipped: {s['model']} {s['method']}" in out
    expected = [(r["model"], r["method"]) for r in rows[1:]]
    assert expected == [(size, m) for size in ("student-L", "student-M", "student-S") for m in METHODS if (size, m) not in skipped]
    teacher_acc = float(rows[0]["accuracy"])
    for row, measured in zip(rows, results["rows"]):
        assert float(row["accuracy"]) == pytest.approx(measured["accuracy"], abs=1e-4)
        if teacher_acc:
            assert float(row["recovery_pct"]) == pytest.approx(100 * float(row["accuracy"]) / teacher_acc, abs=0.1)
    assert (folder / "recovery.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "recovery.md").is_file()
    assert len(list((folder / "runs").iterdir())) >= 3 * len(METHODS) - len(skipped)
    # Every continued run started from its size's trace-SFT student.
    import yaml

    for run in (folder / "runs").iterdir():
        config = yaml.safe_load((run / "config.yaml").read_text())
        if any(run.name.split("-", 2)[-1].startswith(m) for m in CONTINUED_METHODS) and "trace_sft_more" not in run.name:
            assert "trace_sft" in config["student"]["path"], run.name
