"""Licence detection on sample model cards, config.json, GGUF metadata and LICENSE files; the teacher notice."""

from __future__ import annotations

import json

from distill_gui.core.licences import KNOWN_LICENCES, detect_licence, teacher_notice


def _card(folder, front_matter: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(f"---\n{front_matter}\n---\n# A model\n", encoding="utf-8")
    return folder


def test_licences_are_read_from_model_cards(tmp_path):
    assert detect_licence(_card(tmp_path / "a", "license: mit\ntags: [x]")).key == "mit"
    llama = detect_licence(_card(tmp_path / "b", "license: llama3.1\nlibrary_name: transformers"))
    assert llama.key == "llama3.1" and llama.source == "README.md front matter"
    other = detect_licence(_card(tmp_path / "c", "license: other\nlicense_name: acme-model-licence"))
    assert other.key == "other" and other.link == "acme-model-licence" and other.terms is None
    assert detect_licence(_card(tmp_path / "d", "license: Apache 2.0")).key == "apache-2.0"


def test_config_json_license_files_and_nothing(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps({"model_type": "llama", "license": "gemma"}))
    assert detect_licence(tmp_path / "cfg").key == "gemma"
    (tmp_path / "lic").mkdir()
    (tmp_path / "lic" / "LICENSE").write_text("LLAMA 2 COMMUNITY LICENSE AGREEMENT\nLlama 2 Version Release Date: July 18, 2023\n")
    assert detect_licence(tmp_path / "lic").key == "llama2"
    (tmp_path / "none").mkdir()
    assert not detect_licence(tmp_path / "none").known


def test_gguf_general_license_is_read(tmp_path):
    import gguf

    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    writer.add_license("cc-by-nc-4.0")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    found = detect_licence(tmp_path / "m.gguf")
    assert found.key == "cc-by-nc-4.0" and found.source == "GGUF general.license"


def test_the_teacher_notice_says_the_terms_in_plain_words():
    from distill_gui.core.licences import DetectedLicence

    assert teacher_notice(DetectedLicence("mit", "README.md front matter")) is None  # permissive: nothing to say
    llama = teacher_notice(DetectedLicence("llama3.1", "README.md front matter"))
    assert '"Llama" at the start of its name' in llama
    assert "forbids using the model or its outputs to train" in teacher_notice(DetectedLicence("llama2", "LICENSE"))
    assert "no commercial use" in teacher_notice(DetectedLicence("cc-by-nc-4.0", "config.json"))
    assert "names no licence" in teacher_notice(DetectedLicence("unknown", ""))
    assert "read it" in teacher_notice(DetectedLicence("acme", "README.md front matter"))
    assert all(t.key == k for k, t in KNOWN_LICENCES.items())
