"""The method registry: one file per method, found by name; config sections, metrics and the compat checks."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from distill_gui.core import methods
from distill_gui.core.config import ConfigError, config_from_dict, dump_config, load_config

REPO = Path(__file__).resolve().parents[2]


def test_registry_lists_the_methods_with_documented_settings():
    assert {"kd", "sft"} <= set(methods.names())
    for method in methods.all_methods():
        assert method.title and method.summary and method.teacher in methods.base.TEACHER_NEEDS
        assert dataclasses.is_dataclass(method.Config)
        for f in dataclasses.fields(method.Config):
            assert f.metadata.get("doc"), f"method.{method.name}.{f.name} has no doc"
        keys = [spec.key for spec in method.metrics]
        assert len(keys) == len(set(keys)) and not set(keys) & {s.key for s in methods.STANDARD_METRICS}
    assert methods.get("kd").needs_teacher(config_from_dict({})) and not methods.get("sft").needs_teacher(config_from_dict({}))
    with pytest.raises(ConfigError, match="method.kind: 'nope' is not a method; choose one of ") as refused:
        methods.get("nope")
    assert all(name in str(refused.value) for name in methods.names())


def test_teacher_is_loaded_for_the_method_or_for_samples():
    sft = config_from_dict({"method": {"kind": "sft"}, "teacher": {"path": "t"}})
    assert not methods.loads_teacher(sft)
    sft.training.sample_steps = 5
    assert methods.loads_teacher(sft)
    assert methods.loads_teacher(config_from_dict({"method": {"kind": "kd"}}))


def test_version_1_configs_are_migrated(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("method: {kind: kd, loss: jsd, beta: 0.3, alpha: 0.7, top_k: 8}\ntraining: {max_steps: 5}\n")
    config = load_config(old, ["method.temperature=2.0"])  # an override under the old name is renamed too
    assert (config.method.kd.loss, config.method.kd.beta, config.method.kd.alpha, config.method.kd.top_k) == ("jsd", 0.3, 0.7, 8)
    assert config.method.kd.temperature == 2.0 and config.config_version == 2
    assert "config_version: 2" in dump_config(config) and "  kd:\n    loss: jsd" in dump_config(config)
    newer = tmp_path / "newer.yaml"
    newer.write_text("config_version: 99\n")
    with pytest.raises(ConfigError, match="newer distill-gui"):
        load_config(newer)


def test_compat_checks_fail_loudly_when_transformers_changes(monkeypatch):
    from transformers import Trainer

    from distill_gui.core.training.compat import IncompatibleTransformers, check_trainer_api

    check_trainer_api()  # the installed version is one we support
    monkeypatch.delattr(Trainer, "loss_is_scaled_for_ga")
    with pytest.raises(IncompatibleTransformers, match="loss_is_scaled_for_ga"):
        check_trainer_api()


NEW_METHOD = '''
"""A method added as one file: SFT with label smoothing (for the registry test)."""
from dataclasses import dataclass

from distill_gui.core.methods.base import LossResult, Method, MetricSpec
from distill_gui.core.schema import option


@dataclass
class SmoothConfig:
    """Label-smoothed SFT."""

    smoothing: float = option(0.1, "Share of probability spread over the vocabulary.", min=0.0, max=1.0)


class Smooth(Method):
    name = "smooth_sft"
    title = "Label-smoothed SFT"
    summary = "SFT with label smoothing."
    Config = SmoothConfig
    metrics = (MetricSpec("smoothed_ce", "smoothed CE", "Loss", "nats/token"), MetricSpec("accuracy", "top-1", "Accuracy", "%"))

    def loss(self, ctx, model, inputs):
        import torch.nn.functional as F

        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[:, :-1].float()
        labels = inputs["labels"][:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                               label_smoothing=self.section(ctx.config).smoothing)
        mask = labels != -100
        accuracy = (logits.argmax(-1)[mask] == labels[mask]).float().mean() * 100
        return LossResult(total=loss, metrics={"smoothed_ce": loss.detach(), "accuracy": accuracy})
'''


@pytest.mark.slow
def test_a_new_method_is_one_file(tmp_path, tiny_pair, tiny_data):
    """Drop a module into the methods package path: config, CLI help, training, metrics and plots take it up."""
    extra = tmp_path / "extra_methods"
    extra.mkdir()
    (extra / "smooth_sft.py").write_text(NEW_METHOD)
    teacher, student = tiny_pair
    script = textwrap.dedent(f"""
        import json, os
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        import distill_gui.core.methods as m
        m.__path__.append({str(extra)!r})
        from distill_gui.core.config import config_from_dict
        from distill_gui.core.training import train
        config = config_from_dict({{"student": {{"path": {str(student)!r}}}, "data": {{"train": {str(tiny_data)!r}}},
            "method": {{"kind": "smooth_sft", "smooth_sft": {{"smoothing": 0.2}}}},
            "training": {{"max_steps": 2, "batch_size": 4, "save_steps": 0, "precision": "fp32"}}}})
        outcome = train(config, runs_root={str(tmp_path / "runs")!r})
        steps = [r for r in outcome.run.metrics() if r["event"] == "StepLogged"]
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from distill_gui.gui.plots import MetricsPlots
        from distill_gui.gui.method_page import MethodPage
        from distill_gui.gui.fields import ConfigBinder
        plots = MetricsPlots()
        for record in steps:
            plots.add_record(record)
        plots.refresh()
        page = MethodPage(ConfigBinder())
        print(json.dumps({{"state": outcome.state, "metrics": sorted(steps[-1]["metrics"]),
                          "groups": list(plots.plots), "points": plots.point_count("accuracy"),
                          "field": page.findChild(object, "method.smooth_sft.smoothing") is not None}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["state"] == "finished"
    assert report["metrics"] == ["accuracy", "smoothed_ce"]
    assert "Accuracy" in report["groups"] and report["points"] == 2
    assert report["field"], "the Method page shows the new method's settings"
