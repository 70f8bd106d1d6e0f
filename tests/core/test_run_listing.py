"""The Runs page's listing: the two config fields it shows are read from config.yaml's lines, the same
values the full load gives; files that cannot be read that way are loaded in full."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_gui.core.config import RunConfig, save_config
from distill_gui.core.run_listing import RunLister, listed_fields, summarize
from distill_gui.core.runs import RunDir


@pytest.mark.parametrize(
    "student",
    [
        "/models/student",
        "C:\\Users\\me\\My Models\\student",
        "/models/a: b #1/student",
        "'quoted'/it's",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "",
        "/models/ünïcödé 🙂",
        "yes",
        "123",
    ],
)
def test_the_fields_read_from_lines_are_the_ones_the_full_load_gives(tmp_path, student):
    config = RunConfig(name="listing")
    config.student.path = student
    config.method.kind = "sft"
    run = RunDir.create(tmp_path, config)
    loaded = run.load_config()
    fields = listed_fields(run.config_path)
    if fields is not None:  # values YAML would read otherwise (escapes) are left to the full load
        assert fields == (loaded.method.kind, loaded.student.path)
    summary = summarize(run)
    assert summary.method == "sft"
    assert summary.student == (Path(loaded.student.path).name or loaded.student.path)


def test_the_app_written_config_is_read_from_its_lines(tmp_path):
    config = RunConfig(name="listing")
    config.student.path = "/models/student"
    run = RunDir.create(tmp_path, config)
    assert listed_fields(run.config_path) == (config.method.kind, "/models/student")


@pytest.mark.parametrize(
    ("text", "method", "student"),
    [
        ("method: {kind: sft}\nstudent: {path: /m/s}\n", "sft", "s"),  # flow style: the full load
        ('method:\n  kind: "sft"\nstudent:\n  path: "/m/\\u00e9"\n', "sft", "é"),  # double quotes: the full load
        ("method:\n  kind: sft\n", "sft", ""),  # no student section: the full load (defaults)
        ("method: [unclosed\n", "?", ""),  # damaged: listed, method '?'
        ("student:\n  path: /m/s\n  kind: x\nmethod:\n  # a comment\n  kind: on_policy_kd  # trailing\n", "on_policy_kd", "s"),
    ],
)
def test_other_configs(tmp_path, text, method, student):
    run = RunDir.create(tmp_path, RunConfig(name="hand"))
    run.config_path.write_text(text, encoding="utf-8")
    summary = summarize(run)
    assert (summary.method, summary.student) == (method, student)


def test_a_changed_config_is_read_again(tmp_path):
    config = RunConfig(name="listing")
    config.student.path = "/models/one"
    run = RunDir.create(tmp_path, config)
    lister = RunLister()
    assert [s.student for s in lister.summaries(tmp_path)] == ["one"]
    config.student.path = "/models/two"
    save_config(config, run.config_path)
    import os

    os.utime(run.config_path, ns=(1, 1))  # another modification time, as a later write has
    assert [s.student for s in lister.summaries(tmp_path)] == ["two"]
