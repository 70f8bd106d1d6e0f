"""Soft-label KD from a served teacher (teacher.url): its top_logprobs fill the teacher cache, the teacher is never
loaded into the run; against a real OpenAI-compatible HTTP server on loopback (tests/openai_server.py)."""

from __future__ import annotations

import pytest
import tiny_models
import torch
from openai_server import ModelServer

from distill_gui.core import methods
from distill_gui.core.config import ConfigError, config_from_dict
from distill_gui.core.served_teacher import ServedTeacherError
from distill_gui.core.teacher_cache import DEFAULT_FILE_NAME, TeacherCache
from distill_gui.core.training import train
from distill_gui.core.vocab import IncompatibleTokenizers


@pytest.fixture(scope="module")
def nameable_teacher(tiny_tokenizer, tmp_path_factory):
    """A tiny teacher whose top tokens can all be named by their text.

    A server names each token by the text it decodes to; single bytes 0x80-0xFF all decode to "\ufffd" and
    cannot be told apart. A random tiny model puts much of its top-k on them (a trained one rarely does), so
    their output rows are zeroed: their logit is 0, below the top-8 of the rest.
    """
    from distill_gui.core.teacher_cache import token_pieces

    model = tiny_models.build_llama(tiny_tokenizer, hidden=48, layers=2, seed=1)
    named = set(token_pieces(tiny_tokenizer).values())
    with torch.no_grad():
        for i in range(len(tiny_tokenizer)):
            if i not in named:
                model.lm_head.weight[i].zero_()
    return tiny_models.save_pair_member(tmp_path_factory.mktemp("nameable") / "teacher", tiny_tokenizer, model)


@pytest.fixture(scope="module")
def served_teacher(nameable_teacher):
    """The nameable teacher, served as "teacher"."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(nameable_teacher, dtype=torch.float32)
    with ModelServer(model, AutoTokenizer.from_pretrained(nameable_teacher), name="teacher") as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(served_teacher):
    served_teacher.logprobs, served_teacher.fail_next = True, []


def make_config(tiny_pair, tiny_data, teacher: dict, **kd):
    _, student = tiny_pair
    settings = {"loss": "forward_kl", "alpha": 0.5, "chunk_size": 7, "top_k": 8, "cache_teacher": True}
    settings.update(kd)
    return config_from_dict(
        {
            "name": "served",
            "teacher": teacher,
            "student": {"path": str(student)},
            "data": {"train": str(tiny_data)},
            "method": {"kind": "kd", "kd": settings},
            "training": {
                "max_steps": 3,
                "batch_size": 4,
                "learning_rate": 1e-3,
                "save_steps": 0,
                "precision": "fp32",
                "logging_steps": 1,
                "sample_steps": 3,
                "num_probe_prompts": 2,
                "max_new_tokens": 6,
            },
        }
    )


def served(server, **extra) -> dict:
    return {"url": server.url, "model": "teacher", **extra}


def test_a_served_teacher_is_not_loaded_into_the_run(tiny_pair, tiny_data, served_teacher):
    config = make_config(tiny_pair, tiny_data, served(served_teacher, path=str(tiny_pair[0])))
    assert not methods.loads_teacher(config)
    config.validate_for_run()  # teacher.url stands for teacher.path
    config.teacher.path = ""
    config.validate_for_run()


@pytest.mark.slow
def test_kd_from_a_served_teacher_trains_and_its_cache_equals_the_local_teachers(
    tiny_pair, tiny_data, nameable_teacher, served_teacher, tmp_path
):
    local = train(make_config(tiny_pair, tiny_data, {"path": str(nameable_teacher)}), runs_root=tmp_path / "local")
    events = []
    remote = train(make_config(tiny_pair, tiny_data, served(served_teacher)), runs_root=tmp_path / "served", on_event=events.append)
    assert local.state == remote.state == "finished" and remote.step == 3
    assert not any("loading teacher" in getattr(e, "text", "") for e in events)
    assert any("fill the teacher cache" in getattr(e, "text", "") for e in events)

    a = TeacherCache.load(local.run.path / DEFAULT_FILE_NAME)
    b = TeacherCache.load(remote.run.path / DEFAULT_FILE_NAME)
    assert a.positions == b.positions > 0 and torch.equal(a.offsets, b.offsets) and b.top_k == 8
    assert torch.equal(a.ids, b.ids)
    try:  # a compact cache keeps each log-prob within this of the teacher's (both caches are stored the same way)
        from distill_gui.core.teacher_cache_encoding import LOG_PROB_TOLERANCE as tolerance
    except ImportError:  # only the exact encoding
        tolerance = 1e-4
    torch.testing.assert_close(b.log_probs, a.log_probs, atol=tolerance, rtol=0)

    def losses(run):
        return [m["metrics"]["kd"] for m in run.metrics() if m["event"] == "StepLogged"]

    assert losses(remote.run) == pytest.approx(losses(local.run), rel=1e-3)
    # The server answers the probe prompts for the side-by-side samples, as the local teacher did.
    for s_local, s_remote in zip(local.run.samples()[-1]["samples"], remote.run.samples()[-1]["samples"]):
        assert s_remote["teacher"] and s_remote["teacher"] == s_local["teacher"]


def test_a_server_without_logprobs_is_refused_before_the_run_folder(tiny_pair, tiny_data, served_teacher, tmp_path):
    served_teacher.logprobs = False
    with pytest.raises(ServedTeacherError, match="gave no log-probs .* cannot fill a teacher cache; it can still write text"):
        train(make_config(tiny_pair, tiny_data, served(served_teacher)), runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_served_model_with_another_tokenizer_is_refused_before_the_run_folder(tiny_pair, tiny_data, tmp_path):
    other = tiny_models.build_tokenizer(420, digits=False)
    with ModelServer(tiny_models.build_llama(other, seed=3), other, name="other") as server:
        config = make_config(tiny_pair, tiny_data, {"url": server.url, "model": "other"})
        with pytest.raises(IncompatibleTokenizers, match="other tokens than the student's .* soft-label KD is refused.*generate-data"):
            train(config, runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_server_that_is_down_or_lacks_the_model_is_refused_before_the_run_folder(tiny_pair, tiny_data, served_teacher, tmp_path):
    with pytest.raises(ServedTeacherError, match="has no model 'llama-70b'; it serves: teacher"):
        train(make_config(tiny_pair, tiny_data, {"url": served_teacher.url, "model": "llama-70b"}), runs_root=tmp_path)
    with pytest.raises(ServedTeacherError, match="nothing answers"):
        train(make_config(tiny_pair, tiny_data, {"url": "http://127.0.0.1:9/v1"}), runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "kd, message",
    [
        ({"cache_teacher": False}, "method.kd.cache_teacher: a served teacher"),
        ({"top_k": 0}, "method.kd.cache_teacher: a served teacher"),
        ({"temperature": 2.0}, "method.kd.temperature: 2; a served teacher"),
        ({"cache_teacher": False, "on_policy": 0.5}, "method.kd.on_policy: on-policy KD needs"),
    ],
)
def test_settings_a_served_teacher_cannot_give_are_config_errors(tiny_pair, tiny_data, kd, message):
    config = make_config(tiny_pair, tiny_data, {"url": "http://127.0.0.1:9/v1"}, **kd)
    with pytest.raises(ConfigError, match=message):
        config.validate_for_run()


def test_an_sft_run_gets_its_probe_answers_from_the_served_teacher(tiny_pair, tiny_data, served_teacher, tmp_path):
    config = make_config(tiny_pair, tiny_data, served(served_teacher))
    config.method.kind = "sft"
    outcome = train(config, runs_root=tmp_path)
    assert outcome.state == "finished"
    assert all(s["teacher"] for s in outcome.run.samples()[-1]["samples"])


def test_probe_answers_from_a_failing_server_are_a_warning(tiny_pair, tiny_data, tmp_path):
    config = make_config(tiny_pair, tiny_data, {"url": "http://127.0.0.1:9/v1"})
    config.method.kind = "sft"
    events = []
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished"
    assert any(getattr(e, "level", "") == "warning" and "without the teacher: teacher.url" in e.text for e in events)
    assert all(s["teacher"] is None for s in outcome.run.samples()[-1]["samples"])


def test_a_run_resumes_from_its_teacher_cache_when_the_server_is_gone(tiny_pair, tiny_data, nameable_teacher, tmp_path):
    """The server's own model name is kept in the run folder; stopped, then resumed with the server down, the run
    finishes from its teacher cache (a warning says so) instead of failing; a new run with the server down is
    still refused."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill_gui.core.events import StepLogged
    from distill_gui.core.training import RunControl

    model = AutoModelForCausalLM.from_pretrained(nameable_teacher, dtype=torch.float32)
    control = RunControl()

    def stop_at_step_2(event):
        if isinstance(event, StepLogged) and event.step >= 2:
            control.request_stop()

    with ModelServer(model, AutoTokenizer.from_pretrained(nameable_teacher), name="teacher") as server:
        config = make_config(tiny_pair, tiny_data, {"url": server.url})  # no model named: the server's first
        config.training.max_steps, config.training.save_steps = 5, 2
        first = train(config, runs_root=tmp_path, on_event=stop_at_step_2, control=control)
        url = server.url
    assert first.state == "stopped" and first.run.load_config().teacher.model == "teacher"
    events = []
    resumed = train(None, run=first.run, resume=True, on_event=events.append)
    assert resumed.state == "finished" and resumed.step == 5
    warnings = [e.text for e in events if getattr(e, "level", "") == "warning"]
    assert any("does not answer" in w and "resumes from its teacher cache" in w for w in warnings), warnings
    with pytest.raises(ServedTeacherError, match="nothing answers"):
        train(make_config(tiny_pair, tiny_data, {"url": url, "model": "teacher"}), runs_root=tmp_path / "new")


def test_a_missing_key_variable_for_the_sample_answers_alone_is_a_warning(tiny_pair, tiny_data, served_teacher, tmp_path, monkeypatch):
    """The served teacher only answers the side-by-side samples of an SFT run: an unset key variable is a warning
    there, as a server that does not answer is; the run trains."""
    monkeypatch.delenv("DG_UNSET_KEY", raising=False)
    config = make_config(tiny_pair, tiny_data, served(served_teacher, api_key_env="DG_UNSET_KEY"))
    config.method.kind = "sft"
    events = []
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished"
    assert any(getattr(e, "level", "") == "warning" and "DG_UNSET_KEY is not set" in e.text for e in events)
