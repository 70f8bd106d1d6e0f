"""Model discovery finds the models already on the machine, from their small files only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distill_gui.core import model_discovery as md


def write_gguf(path: Path, arch: str = "llama", licence: str = "apache-2.0", file_type: int = 15) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.license", licence)
    writer.add_uint32("general.file_type", file_type)
    writer.add_string("general.size_label", "135M")
    writer.add_tensor("token_embd.weight", np.zeros((4, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def make_hf_cache(root: Path, repo: str, commit: str = "a" * 40) -> Path:
    folder = root / f"models--{repo.replace('/', '--')}"
    blobs, snapshot = folder / "blobs", folder / "snapshots" / commit
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    files = {
        "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16"}),
        "README.md": "---\nlicense: apache-2.0\n---\n# A model\n",
    }
    for i, (name, text) in enumerate(files.items()):
        blob = blobs / f"{i:040d}"
        blob.write_text(text)
        os.symlink(blob, snapshot / name)
    header = json.dumps({"w": {"dtype": "BF16", "shape": [1000, 135], "data_offsets": [0, 270000]}}).encode()
    (blobs / "weights").write_bytes(len(header).to_bytes(8, "little") + header + bytes(270000))
    os.symlink(blobs / "weights", snapshot / "model.safetensors")
    return snapshot


def test_hub_cache_models_are_listed_with_revision_size_and_licence(tmp_path):
    snapshot = make_hf_cache(tmp_path / "hub", "HuggingFaceTB/SmolLM2-135M")
    found = md.hf_cache_models(tmp_path / "hub")
    assert len(found) == 1
    model = found[0]
    assert model.name == "HuggingFaceTB/SmolLM2-135M" and model.where == md.HF_CACHE
    assert Path(model.path) == snapshot and model.revision == "main"
    assert model.architecture == "LlamaForCausalLM" and model.licence == "apache-2.0"
    assert model.parameters == "135 K" and model.size_bytes > 270000
    assert model.matches("smollm llama") and not model.matches("qwen")


def test_ollama_and_lm_studio_gguf_files_are_read_from_their_headers(tmp_path):
    base = tmp_path / "ollama"
    (base / "blobs").mkdir(parents=True)
    write_gguf(base / "blobs" / "sha256-abc", arch="qwen2", licence="apache-2.0", file_type=15)
    manifest = base / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5" / "0.5b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:abc"}]}))
    (found,) = md.ollama_models(base)
    assert found.name == "qwen2.5:0.5b" and found.where == md.OLLAMA
    assert found.gguf_file == "sha256-abc" and Path(found.path) == base / "blobs"
    assert (found.architecture, found.quantization, found.licence, found.parameters) == ("qwen2", "Q4_K_M", "apache-2.0", "135 M")

    studio = tmp_path / "lmstudio"
    (studio / "bartowski" / "SmolLM2-GGUF").mkdir(parents=True)
    write_gguf(studio / "bartowski" / "SmolLM2-GGUF" / "SmolLM2-135M-Q8_0.gguf", file_type=7)
    (found,) = md.lm_studio_models([studio])
    assert found.where == md.LM_STUDIO and found.quantization == "Q8_0" and found.gguf_file == "SmolLM2-135M-Q8_0.gguf"


def test_recent_folders_and_finished_runs_are_listed(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    final = tmp_path / "runs" / "20260101-000000-demo" / "checkpoints" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (tmp_path / "runs" / "20260102-000000-unfinished" / "checkpoints").mkdir(parents=True)
    found = md.discover_models([str(model), str(tmp_path / "gone")], tmp_path / "runs")
    mine = [m for m in found if m.where in (md.RECENT, md.RUN)]
    assert [(m.name, m.where) for m in mine] == [("my-model", md.RECENT), ("20260101-000000-demo", md.RUN)]
    assert mine[0].architecture == "Qwen2ForCausalLM"
