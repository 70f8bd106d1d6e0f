"""Cross-tokenizer KD (method.kind: cross_kd) trains tiny real pairs end to end."""

from __future__ import annotations

import pytest
import tiny_models
import torch

from distill_gui.core.config import config_from_dict
from distill_gui.core.token_alignment import AlignmentError
from distill_gui.core.training import train
from distill_gui.core.vocab import check_compatibility


@pytest.fixture(scope="module")
def cross_pair(tmp_path_factory):
    """(teacher_dir, student_dir) whose tokenizers differ: 420 tokens without digit splitting vs 300 with."""
    root = tmp_path_factory.mktemp("cross_pair")
    t_tok, s_tok = tiny_models.build_tokenizer(420, digits=False), tiny_models.build_tokenizer(300)
    model = tiny_models.build_llama(t_tok, hidden=48, layers=2, seed=1)
    with torch.no_grad():  # a confident teacher (peaked distributions), as a trained one is; a random one is near uniform
        model.lm_head.weight.mul_(40.0)
    teacher = tiny_models.save_pair_member(root / "teacher", t_tok, model)
    student = tiny_models.save_pair_member(root / "student", s_tok, tiny_models.build_llama(s_tok, hidden=32, layers=1, seed=2))
    return teacher, student


def _config(pair, data, kind="cross_kd", steps=8, **section):
    teacher, student = pair
    method = {"kind": kind, kind: section}
    return config_from_dict(
        {
            "name": "cross",
            "teacher": {"path": str(teacher)},
            "student": {"path": str(student)},
            "data": {"train": str(data)},
            "method": method,
            "training": {
                "max_steps": steps,
                "batch_size": 4,
                "learning_rate": 1e-2,
                "save_steps": 0,
                "precision": "fp32",
                "logging_steps": 1,
                "sample_steps": 0,
                "seed": 3,
            },
        }
    )


def _steps(outcome):
    return [m for m in outcome.run.metrics() if m["event"] == "StepLogged"]


@pytest.mark.slow
@pytest.mark.parametrize("alignment", ["gold", "uld"])
def test_a_pair_with_two_tokenizers_trains_with_falling_loss(cross_pair, tiny_data, tmp_path, alignment):
    config = _config(cross_pair, tiny_data, steps=10, alignment=alignment, alpha=1.0)
    config.training.learning_rate = 3e-2
    outcome = train(config, runs_root=tmp_path)
    assert outcome.state == "finished"
    steps = _steps(outcome)
    kd = [m["metrics"]["kd"] for m in steps]
    assert set(steps[0]["metrics"]) == {"kd", "ce", "aligned"}
    assert 0.3 < steps[0]["metrics"]["aligned"] <= 1.0
    assert sum(kd[-3:]) / 3 < 0.8 * sum(kd[:3]) / 3, kd
    log = outcome.run.log_path.read_text()
    assert "tokens shared exactly" in log and "lie in text both tokenizers cut the same way" in log


@pytest.mark.slow
def test_gold_on_a_shared_tokenizer_equals_ordinary_kd(tiny_pair, tiny_data, tmp_path):
    gold = train(_config(tiny_pair, tiny_data, steps=3, alignment="gold", alpha=0.5, temperature=2.0), runs_root=tmp_path / "gold")
    kd = train(_config(tiny_pair, tiny_data, kind="kd", steps=3, loss="forward_kl", alpha=0.5, temperature=2.0), runs_root=tmp_path / "kd")
    for a, b in zip(_steps(gold), _steps(kd), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["metrics"]["kd"] == pytest.approx(b["metrics"]["kd"], rel=1e-4)
        assert a["metrics"]["aligned"] == 1.0


@pytest.mark.slow
def test_lora_student_trains_across_tokenizers(cross_pair, tiny_data, tmp_path):
    config = _config(cross_pair, tiny_data, steps=2, alignment="gold")
    config.student.lora.enabled = True
    config.student.lora.r = 4
    outcome = train(config, runs_root=tmp_path)
    assert outcome.state == "finished" and all(m["metrics"]["kd"] > 0 for m in _steps(outcome))


def test_no_shared_text_is_said_before_training(tmp_path, tiny_data):
    """A teacher tokenizer that reads each whole row as one unknown word cuts nowhere the student does."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    whole = Tokenizer(models.WordLevel({"<unk>": 0, "<pad>": 1}, unk_token="<unk>"))
    t_tok = PreTrainedTokenizerFast(tokenizer_object=whole, unk_token="<unk>", pad_token="<pad>")
    s_tok = tiny_models.build_tokenizer(300)
    teacher = tiny_models.save_pair_member(tmp_path / "teacher", t_tok, tiny_models.build_llama(t_tok, seed=1))
    student = tiny_models.save_pair_member(tmp_path / "student", s_tok, tiny_models.build_llama(s_tok, seed=2))
    with pytest.raises(AlignmentError, match="no stretch of the .* trained tokens is cut the same way"):
        train(_config((teacher, student), tiny_data, steps=2), runs_root=tmp_path / "runs")


def test_the_pair_check_offers_cross_tokenizer_kd(cross_pair):
    from transformers import AutoTokenizer

    t_tok, s_tok = (AutoTokenizer.from_pretrained(p) for p in cross_pair)
    compat = check_compatibility(t_tok, s_tok, len(t_tok), len(s_tok))
    assert compat.verdict == "different"
    assert "method.kind: cross_kd" in compat.message and "method.kind: sft" in compat.message


def test_a_served_teacher_alone_is_refused_with_the_reason(cross_pair, tiny_data):
    from distill_gui.core.methods import method_for
    from distill_gui.core.schema import ConfigError

    config = _config(cross_pair, tiny_data)
    config.teacher.path = ""
    config.teacher.url = "http://localhost:8080/v1"
    with pytest.raises(ConfigError, match="teacher.path: cross-tokenizer KD .* generate-data --teacher-url"):
        method_for(config).validate(config)


@pytest.mark.slow
@pytest.mark.parametrize("alignment", ["gold", "uld"])
def test_the_teacher_cache_trains_like_live_top_k(cross_pair, tiny_data, tmp_path, alignment):
    live = train(_config(cross_pair, tiny_data, steps=3, alignment=alignment, top_k=8), runs_root=tmp_path / "live")
    cached = train(_config(cross_pair, tiny_data, steps=3, alignment=alignment, top_k=8, cache_teacher=True), runs_root=tmp_path / "cache")
    assert live.state == cached.state == "finished"
    for a, b in zip(_steps(live), _steps(cached), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["metrics"]["kd"] == pytest.approx(b["metrics"]["kd"], rel=1e-4) and a["metrics"]["kd"] > 0
    log = cached.run.log_path.read_text()
    assert "teacher cache: wrote" in log and (cached.run.path / "cross_teacher_cache.safetensors").is_file()


def test_cache_teacher_needs_top_k(cross_pair, tiny_data):
    from distill_gui.core.methods import method_for
    from distill_gui.core.schema import ConfigError

    config = _config(cross_pair, tiny_data, cache_teacher=True)
    with pytest.raises(ConfigError, match="method.cross_kd.top_k: cache_teacher keeps"):
        method_for(config).validate(config)
