"""Config loading: the minimal file works as written, bad keys and values name themselves."""

from __future__ import annotations

import pytest

from distill_gui.core.config import ConfigError, RunConfig, config_from_dict, dump_config, load_config

MINIMAL = """\
teacher: {path: teacher}
student: {path: student}
data: {train: train.jsonl}
method: {kind: kd, loss: forward_kl, temperature: 1.0, alpha: 0.5}   # kind: kd | sft
training: {max_steps: 20, batch_size: 4, learning_rate: 1.0e-3}
"""


def test_minimal_config_resolves_paths_against_its_folder(tmp_path):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "student").mkdir()
    (tmp_path / "train.jsonl").write_text("{}\n")
    path = tmp_path / "run.yaml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert config.teacher.path == str(tmp_path / "teacher")
    assert config.student.path == str(tmp_path / "student")
    assert config.data.train == str(tmp_path / "train.jsonl")
    assert config.method.kind == "kd" and config.method.kd.alpha == 0.5
    assert config.training.max_steps == 20 and config.training.learning_rate == 1e-3


def test_overrides_use_the_yaml_names(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(MINIMAL)
    config = load_config(path, ["training.max_steps=50", "method.loss=jsd", "student.lora.enabled=true"])
    assert config.training.max_steps == 50
    assert config.method.kd.loss == "jsd"
    assert config.student.lora.enabled is True


def test_round_trip_through_yaml(tmp_path):
    config = config_from_dict({"student": {"path": "s", "lora": {"enabled": True, "r": 4}}, "method": {"kind": "sft"}})
    text = dump_config(config)
    again = config_from_dict(__import__("yaml").safe_load(text))
    assert again == config


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"training": {"max_stepz": 3}}, ["training.max_stepz", "unknown key", "max_steps"]),
        ({"method": {"loss": "kl"}}, ["method.kd.loss", "forward_kl", "reverse_kl", "jsd"]),
        ({"method": {"alpha": 1.5}}, ["method.kd.alpha", "maximum"]),
        ({"training": {"batch_size": "many"}}, ["training.batch_size", "whole number"]),
        ({"training": {"batch_size": 2.5}}, ["training.batch_size", "whole number"]),
        ({"student": {"quantization": "4bit"}}, ["student.quantization", "lora.enabled"]),
        ({"teacher": {"device": "gpu"}}, ["device", "cuda:N"]),
        ({"colour": 1}, ["colour", "unknown key", "teacher"]),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(data, words):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    for word in words:
        assert word in str(info.value)


def test_kd_without_teacher_is_refused_before_a_run():
    config = RunConfig()
    config.student.path = "s"
    config.data.train = "d"
    with pytest.raises(ConfigError, match="teacher.path"):
        config.validate_for_run()


def test_broken_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("teacher: {path: t\nstudent: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+"):
        load_config(path)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("training.learning_rate", ".nan", "NaN"),
        ("training.learning_rate", ".inf", "infinite"),
        ("training.learning_rate", "-.inf", "infinite"),
        ("training.learning_rate", "1e400", "out of range"),
        ("training.learning_rate", "9" * 400, "out of range"),
        ("training.max_steps", ".nan", "NaN"),
        ("training.max_steps", ".inf", "infinite"),
        ("training.max_steps", "1e400", "out of range"),
        ("training.max_steps", "99999999999999999999999", "out of range"),
        ("training.seed", "-1", "seed"),
        ("training.seed", "4294967296", "seed"),
        ("data.eval_fraction", "nan", "NaN"),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_config_errors(tmp_path, key, value, words):
    path = tmp_path / "run.yaml"
    path.write_text(MINIMAL)
    with pytest.raises(ConfigError, match=words) as info:
        load_config(path, [f"{key}={value}"])
    assert key in str(info.value) and "\n" not in str(info.value)


def test_numbers_that_fit_still_load(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(MINIMAL)
    config = load_config(path, ["training.max_steps=7.0", "training.learning_rate=1e-4", "training.seed=4294967295"])
    assert config.training.max_steps == 7 and config.training.learning_rate == 1e-4 and config.training.seed == 2**32 - 1


@pytest.mark.parametrize("text", ["training: {max_steps: " + "9" * 5000 + "}", "training: " + "[" * 5000 + "]" * 5000])
def test_unreadable_yaml_values_are_config_errors(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="run.yaml"):
        load_config(path)
