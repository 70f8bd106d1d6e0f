"""``distill-gui doctor``: the report on this machine, and how problems are reported."""

from __future__ import annotations

import json

import torch

from distill_gui.cli import main
from distill_gui.core.diagnostics import collect, format_diagnostics


def test_doctor_json_describes_this_installation(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_GUI_RUNS_DIR", str(tmp_path / "runs"))
    code = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == (1 if data["problems"] else 0)
    assert data["torch_build"]["version"] == torch.__version__
    assert data["torch_build"]["cuda"] == torch.version.cuda
    assert data["driver"]["torch_matches"] is True
    assert data["paths"]["runs"] == str(tmp_path / "runs")
    assert data["disk"]["path"] == str(tmp_path)  # the nearest folder that exists
    assert data["disk"]["free"] > 0
    assert data["environment"]["versions"]["transformers"] != "not installed"


def test_doctor_text_names_problems_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_GUI_RUNS_DIR", str(tmp_path / "runs"))
    data = collect()
    data["torch_build"] = {"version": "2.13.0+cu130", "cuda": "13.0", "hip": None}
    data["driver"].update(torch_matches=False, detail="driver 535.183.01 is older than 580.65.06, which CUDA 13.0 needs: update the driver or reinstall with --torch cu126")
    data["problems"] = [data["driver"]["detail"]]
    text = format_diagnostics(data)
    assert "torch build         2.13.0+cu130 (CUDA 13.0 build)" in text
    assert "torch vs driver     MISMATCH: driver 535.183.01" in text
    assert text.splitlines()[-2:] == ["problems:", f"  - {data['problems'][0]}"]
    assert f"runs                {tmp_path / 'runs'}" in text
