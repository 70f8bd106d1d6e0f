"""Export: merged hf folders, GGUF round trips checked against the merged model, Modelfiles, and bad input."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import tiny_models
import torch

from distill_gui.core.config import config_from_dict
from distill_gui.core.export import export_model
from distill_gui.core.export_source import ExportError
from distill_gui.core.training import train

DEMO_TEACHER = Path(__file__).parents[2] / "distill_gui" / "assets" / "demo" / "teacher"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_tokenizer, tiny_data):
    """A LoRA run trained for two steps, with a checkpoint at each step (the student holds a chat template)."""
    root = tmp_path_factory.mktemp("lora")
    student = tiny_models.save_pair_member(root / "student", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=3))
    config = config_from_dict({
        "name": "lora-export", "student": {"path": str(student), "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(tiny_data)}, "method": {"kind": "sft"},
        "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 5e-2, "save_steps": 1, "precision": "fp32", "sample_steps": 2,
                     "max_new_tokens": 16},
    })
    outcome = train(config, runs_root=root / "runs")
    assert outcome.state == "finished"
    return outcome.run


def _copy_run(run, tmp_path: Path):
    from distill_gui.core.runs import RunDir

    copy = tmp_path / run.path.name
    shutil.copytree(run.path, copy, ignore=shutil.ignore_patterns("exports", "run.lock"))
    return RunDir(copy)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_a_lora_run_exports_merged_weights_equal_to_the_adapter_applied_model(lora_run, tmp_path):
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    result = export_model(str(lora_run.path), "hf", out=tmp_path / "hf")
    folder = Path(result.folder)
    assert result.files == sorted(p.name for p in folder.iterdir())
    assert {"model.safetensors", "tokenizer.json", "chat_template.jinja", "README.md", "config.json"} <= set(result.files)
    assert not [p for p in folder.iterdir() if p.suffix in (".bin", ".pt")] and not (folder / "adapter_config.json").exists()
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert not any("lora" in key for key in f.keys())
    config = lora_run.load_config()
    base = AutoModelForCausalLM.from_pretrained(config.student.path, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(lora_run.final_dir / "adapter")).eval()
    exported = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ids = torch.tensor([[1, 20, 30, 40, 50, 60, 7]])
    assert torch.allclose(_logits(exported, ids), _logits(adapted, ids), atol=1e-5)
    untouched = AutoModelForCausalLM.from_pretrained(config.student.path, dtype=torch.float32)  # (peft wrapped `base` in place)
    assert not torch.allclose(_logits(exported, ids), _logits(untouched, ids), atol=1e-3)  # the adapter did change it


def test_an_unfinished_lora_run_exports_its_latest_checkpoint_merged_and_says_so(lora_run, tmp_path):
    run = _copy_run(lora_run, tmp_path)
    shutil.rmtree(run.final_dir)  # as if the run had stopped after step 2 (a step checkpoint holds the adapter alone)
    assert (run.checkpoints_dir / "step-000002" / "adapter_config.json").is_file()
    progress = []
    result = export_model(str(run.path), "hf", out=tmp_path / "out", on_progress=progress.append)
    assert any("has not finished" in n and "step-000002" in n for n in result.notes)
    assert any("step-000002" in p.message for p in progress)
    assert "step-000002" in (tmp_path / "out" / "README.md").read_text()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))  # standalone: no adapter, no base needed


def test_a_run_whose_base_model_moved_is_refused_naming_the_missing_path(lora_run, tmp_path):
    run = _copy_run(lora_run, tmp_path)
    shutil.rmtree(run.final_dir)
    base = Path(run.load_config().student.path)
    moved = base.with_name(base.name + "-moved")
    base.rename(moved)
    try:
        with pytest.raises(ExportError, match=f"{base}: the base model .* is missing"):
            export_model(str(run.path), "hf", out=tmp_path / "out")
    finally:
        moved.rename(base)
    assert not (tmp_path / "out").exists()


def test_tied_weights_stay_tied(tmp_path, tiny_tokenizer):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    model = tiny_models.build_llama(tiny_tokenizer, seed=4)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    source = tiny_models.save_pair_member(tmp_path / "tied", tiny_tokenizer, model)
    export_model(str(source), "hf", out=tmp_path / "hf")
    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in set(f.keys())
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"))
    assert back.get_output_embeddings().weight is back.get_input_embeddings().weight
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["tie_word_embeddings"] is True


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_gguf_round_trip_of_a_lora_run_answers_as_the_merged_model(lora_run, tmp_path, quant):
    result = export_model(str(lora_run.path), "gguf", quant, out=tmp_path / quant)
    folder = Path(result.folder)
    gguf_file = folder / f"lora-export-{quant}.gguf"
    assert gguf_file.is_file() and result.verified is True
    report = json.loads((folder / f"{gguf_file.name}.verify.json").read_text())
    prompts = [s["prompt"] for s in lora_run.samples()[-1]["samples"]]
    assert [c["prompt"] for c in report["checks"]] == prompts  # the run's own probe prompts
    assert report["passed"] and all(c["same_tokenization"] for c in report["checks"])
    assert all(c["same_answer"] or c["tie_margin"] <= {"f16": 0.05, "q8_0": 0.25}[quant] for c in report["checks"])
    if quant == "f16":
        assert all(c["max_logit_diff"] < 0.05 for c in report["checks"])
    assert not list(folder.glob(".merged-hf*")) and not list(tmp_path.glob(".*partial*"))
    card = (folder / "README.md").read_text()
    assert "GGUF verification" in card and "verified" in card


@pytest.mark.slow
def test_gguf_round_trip_of_the_demo_teacher(tmp_path):
    result = export_model(str(DEMO_TEACHER), "gguf", "f16", out=tmp_path / "demo")
    report = json.loads(next((tmp_path / "demo").glob("*.verify.json")).read_text())
    assert result.verified is True and report["passed"], report
    assert all(c["same_answer"] for c in report["checks"]), report  # f16 of a trained model: identical answers


def test_ollama_export_writes_a_modelfile_with_the_chat_template_and_stop_tokens(lora_run, tmp_path):
    result = export_model(str(lora_run.path), "ollama", "q8_0", out=tmp_path / "ollama")
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    lines = modelfile.splitlines()
    assert "FROM ./lora-export-q8_0.gguf" in lines
    template = next(line for line in lines if line.startswith('TEMPLATE """'))
    assert '{{ if eq .Role "system" }}<|system|>{{ .Content }}</s>{{ else if eq .Role "user" }}<|user|>{{ .Content }}</s>' in template
    assert '{{ else if eq .Role "assistant" }}<|assistant|>{{ .Content }}</s>' in template
    assert template.endswith('{{ end }}{{ end }}<|assistant|>"""')
    assert 'PARAMETER stop "</s>"' in lines and 'PARAMETER stop "<|user|>"' in lines
    assert result.command.endswith("ollama create lora-export -f Modelfile")
    assert result.command in (tmp_path / "ollama" / "README.md").read_text()


def test_the_go_template_renders_conversations_as_the_jinja_template(tiny_tokenizer):
    from distill_gui.core.export_ollama import chat_turns, render_go_like, template_is_faithful

    turns = chat_turns(tiny_tokenizer)
    assert turns is not None and template_is_faithful(tiny_tokenizer, turns)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]
    expected = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert render_go_like(turns, tiny_tokenizer.bos_token, messages) == expected


def test_unsupported_architecture_is_named_before_anything_loads(tmp_path, tiny_tokenizer):
    source = tiny_models.save_pair_member(tmp_path / "odd", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer))
    config = json.loads((source / "config.json").read_text())
    config["architectures"] = ["TotallyNewForCausalLM"]
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="architecture TotallyNewForCausalLM is not supported by llama.cpp's converter"):
        export_model(str(source), "gguf", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_tokenizer_file_is_named_before_anything_loads(tmp_path, tiny_tokenizer, monkeypatch):
    from distill_gui.core import export_source

    source = tiny_models.save_pair_member(tmp_path / "bare", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer))
    (source / "tokenizer.json").unlink()
    monkeypatch.setattr(export_source, "load_merged", lambda *_: pytest.fail("loaded before the checks"))
    with pytest.raises(ExportError, match="missing tokenizer file"):
        export_model(str(source), "gguf", out=tmp_path / "out")


def test_q4_k_m_without_llama_quantize_is_refused_with_what_to_do(tmp_path, tiny_pair, monkeypatch):
    from distill_gui.core import export_gguf

    monkeypatch.setattr(export_gguf, "quantize_program", lambda: None)
    with pytest.raises(ExportError, match="needs llama.cpp's llama-quantize"):
        export_model(str(tiny_pair[1]), "gguf", "q4_k_m", out=tmp_path / "out")


def test_an_existing_folder_is_never_replaced_without_force(tmp_path, tiny_pair):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists; .* --force"):
        export_model(str(tiny_pair[1]), "hf", out=out)
    assert (out / "keep.txt").read_text() == "mine"
    export_model(str(tiny_pair[1]), "hf", out=out, force=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or replaced folder left behind


def test_a_full_disk_leaves_nothing_under_the_final_name(tmp_path, tiny_pair, monkeypatch):
    from distill_gui.core import export_hf

    def full(model, tokenizer, folder, dtype="fp32"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_hf, "write_hf_folder", full)
    with pytest.raises(ExportError, match="no space left on device: .* nothing was left under out"):
        export_model(str(tiny_pair[1]), "hf", out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_the_cli_exports_and_reports_json_lines(lora_run, tmp_path, capsys):
    from distill_gui.cli import main

    assert main(["export", str(lora_run.path), "--to", "hf", "--out", str(tmp_path / "cli"), "--events", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "ExportProgress" and lines[-1]["event"] == "ExportFinished"
    assert lines[-1]["folder"] == str(tmp_path / "cli")
    assert main(["export", str(lora_run.path), "--to", "hf", "--out", str(tmp_path / "cli")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_a_qlora_run_is_merged_into_its_dequantized_base(tmp_path, tiny_tokenizer, tiny_data):
    """The adapter was trained against the 4-bit weights: merged into them (de-quantized), not into the original ones."""
    pytest.importorskip("bitsandbytes")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import load_model

    student = tiny_models.save_pair_member(tmp_path / "student", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, hidden=64, seed=6))
    config = config_from_dict({
        "name": "qlora", "student": {"path": str(student), "quantization": "4bit",
                                     "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(tiny_data)}, "method": {"kind": "sft"},
        "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 5e-2, "save_steps": 0, "precision": "fp32"},
    })
    run = train(config, runs_root=tmp_path / "runs").run
    assert not (run.final_dir / "config.json").exists()  # a QLoRA run's final checkpoint is the adapter alone
    result = export_model(str(run.path), "hf", out=tmp_path / "hf")
    assert any("de-quantized" in n for n in result.notes)
    assert "quantization_config" not in json.loads((tmp_path / "hf" / "config.json").read_text())
    ids = torch.tensor([[1, 20, 30, 40, 50, 60, 7]])
    quantized = load_model(ModelConfig(path=str(student), quantization="4bit", device="cpu"), "student").model
    trained = _logits(PeftModel.from_pretrained(quantized, str(run.final_dir)).eval(), ids).float()
    exported = _logits(AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval(), ids)
    full_base = AutoModelForCausalLM.from_pretrained(str(student), dtype=torch.float32)
    naive = _logits(PeftModel.from_pretrained(full_base, str(run.final_dir)).merge_and_unload().eval(), ids)
    assert (exported - trained).abs().max() < 1e-2  # bnb computes in its compute dtype
    assert (exported - trained).abs().max() < (naive - trained).abs().max() / 5


def test_the_model_card_records_data_settings_curve_recovery_and_the_teachers_licence(lora_run, tmp_path):
    import yaml

    root = tmp_path / "runs"
    root.mkdir()
    run = _copy_run(lora_run, root)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "README.md").write_text("---\nlicense: llama3.1\n---\n", encoding="utf-8")
    data = yaml.safe_load(run.config_path.read_text())
    data["teacher"]["path"] = str(teacher)
    run.config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    comparison = root / "comparisons" / "20260101-000000-test"
    comparison.mkdir(parents=True)
    (comparison / "results.json").write_text(json.dumps({"data": "test.jsonl", "rows": 40, "reference": "teacher", "models": [
        {"label": "teacher", "run": None, "accuracy": 0.8, "reference": True},
        {"label": "lora-export", "run": str(run.path), "accuracy": 0.5, "recovery_pct": 62.5, "perplexity": 3.2, "perplexity_ratio": 1.4},
    ]}))
    export_model(str(run.path), "hf", out=tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    final = [m for m in run.metrics() if m["event"] == "StepLogged"][-1]
    assert card.startswith("---\nlicense: other\n")  # the student's own licence: none found for the tiny base
    assert f"`{data['data']['train']}` (40 rows)" in card
    assert f"| Teacher | `{teacher}` |" in card and "max_steps: 2" in card
    assert f"step 2 of 2: loss {final['loss']:.4g}" in card
    assert "answer accuracy: 50.0%" in card and "recovery (accuracy relative to the reference): 62.5%" in card
    assert "Teacher: Llama 3.1 Community License (from README.md front matter)" in card
    assert '"Llama" at the start of its name' in card


LLAMA3_LIKE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n\n{{ m['content'] | trim }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n\n{% endif %}"
)
CHATML_WITH_DEFAULT_SYSTEM = (
    "{% if messages[0]['role'] != 'system' %}<|system|>\nYou are helpful.</s>\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.mark.parametrize("template", [LLAMA3_LIKE, CHATML_WITH_DEFAULT_SYSTEM], ids=["bos-head", "default-system"])
def test_go_templates_of_other_chat_template_shapes(template):
    from distill_gui.core.export_ollama import chat_turns, go_template, render_go_like, template_is_faithful

    tokenizer = tiny_models.build_tokenizer()
    tokenizer.chat_template = template
    turns = chat_turns(tokenizer)
    assert turns is not None and template_is_faithful(tokenizer, turns)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "2+2?"}]
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    rendered = render_go_like(turns, tokenizer.bos_token, messages)
    assert rendered == (expected[len("<s>"):] if template is LLAMA3_LIKE else expected)  # llama.cpp adds the BOS itself
    assert "<s>" not in go_template(turns, tokenizer.bos_token)


def test_a_bpe_pre_tokenizer_llama_cpp_does_not_know_is_refused_before_anything_loads(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # no byte-level step: llama.cpp has no such BPE pre-tokenizer
    tok.train_from_iterator(tiny_models.CORPUS, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>")
    source = tiny_models.save_pair_member(tmp_path / "ws", tokenizer, tiny_models.build_llama(tokenizer))
    with pytest.raises(ExportError, match="BPE pre-tokenizer is not one llama.cpp knows"):
        export_model(str(source), "gguf", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
