"""A two-stage pipeline on tiny data: stage 2 starts from stage 1's result, a finished pipeline is
skipped on re-run, a failing stage stops it with the earlier stage kept, and the forgetting table
is written."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import make_records, write_jsonl
from tunelab.errors import UserError
from tunelab.pipeline.runner import run_pipeline
from tunelab.pipeline.spec import load_pipeline


@pytest.fixture()
def pipeline_file(tiny_llama, tmp_path):
    first = write_jsonl(tmp_path / "general.jsonl", make_records(40, seed=1))
    second = write_jsonl(tmp_path / "domain.jsonl", [{"text": f"the fox {i} and the dog " * 4} for i in range(30)])
    spec = {
        "output_dir": str(tmp_path / "pipe"),
        "defaults": {"train": {"max_steps": 4, "batch_size": 4, "lr": 3e-3}},
        "stages": [
            {
                "name": "general",
                "model": str(tiny_llama),
                "method": {"name": "full"},
                "data": {"train": str(first), "eval_split": 0.2},
            },
            {"name": "domain", "method": {"name": "lora", "r": 4}, "data": {"train": str(second), "eval_split": 0.2}},
        ],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_stage_two_starts_from_stage_one_and_reruns_skip(pipeline_file, tiny_llama, tmp_path):
    report = run_pipeline(load_pipeline(pipeline_file))
    general, domain = (tmp_path / "pipe" / "01-general"), (tmp_path / "pipe" / "02-domain")
    assert [s["status"] for s in report.stages] == ["trained", "trained"]
    assert yaml.safe_load((domain / "config.yaml").read_text())["model"] == str(general)
    # stage 2's frozen base is stage 1's trained weights, not the original model's
    from tunelab.methods.loading import load_causal_lm

    stage_two = load_causal_lm(str(domain)).unload()
    stage_one = load_file(general / "model.safetensors")
    original = load_file(tiny_llama / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(stage_two.state_dict()[name], stage_one[name])
    assert not torch.equal(stage_one[name], original[name])

    saved = json.loads((tmp_path / "pipe" / "pipeline.json").read_text())
    assert set(saved["start"]) == {"general", "domain"}
    assert set(saved["stages"][0]["eval"]) == {"general", "domain"}  # domain: its perplexity before stage 2
    assert set(saved["stages"][1]["eval"]) == {"general", "domain"}  # general: what stage 2 kept of stage 1
    table = report.table()
    assert "ppl on general" in table and "after domain" in table

    again = run_pipeline(load_pipeline(pipeline_file))
    assert [s["status"] for s in again.stages] == ["skipped", "skipped"]


def test_a_failing_stage_stops_the_pipeline_and_keeps_the_earlier_ones(pipeline_file, tmp_path):
    spec = yaml.safe_load(pipeline_file.read_text())
    spec["stages"][1]["method"] = {"name": "lora", "target_modules": ["nope"]}
    pipeline_file.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match="stage 'domain' failed"):
        run_pipeline(load_pipeline(pipeline_file))
    saved = json.loads((tmp_path / "pipe" / "pipeline.json").read_text())
    assert [s["status"] for s in saved["stages"]] == ["trained", "failed"]
    assert (tmp_path / "pipe" / "01-general" / "summary.json").is_file()


def test_bad_pipeline_files_are_clear_errors(tmp_path, pipeline_file):
    spec = yaml.safe_load(pipeline_file.read_text())
    spec["stages"][1]["train"] = {"batchsize": 3}
    pipeline_file.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match="stage 'domain': config error: train.batchsize: unknown key"):
        load_pipeline(pipeline_file)
    (tmp_path / "empty.yaml").write_text("stages: []\n")
    with pytest.raises(UserError, match="non-empty list"):
        load_pipeline(tmp_path / "empty.yaml")
