"""configs/paper.yaml builds the paper's exact architecture (on the meta device: no weights offline)."""

from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from faceinsight.model import FaceInsight, FaceInsightConfig
from faceinsight.vocab import SCHEMAS, union

ROOT = Path(__file__).resolve().parents[1]


def adapter_params(d_in: int, d_out: int) -> int:
    return d_in * d_out + d_out + d_out * d_out + d_out  # Linear-GELU-Linear


@pytest.fixture(scope="module")
def paper_model() -> FaceInsight:
    model_cfg = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())["model"]
    # Parse the model section with the same typed signature the CLI uses.
    parser = ArgumentParser()
    parser.add_class_arguments(FaceInsightConfig, "config")
    keys = {"image_encoder", "seg_encoder", "text_encoder", "llm", "correlation", "use_seg", "use_correlation"}
    cfg = parser.parse_object({"config": {k: v for k, v in model_cfg.items() if k in keys}})
    config = parser.instantiate_classes(cfg).config
    names = union(
        [SCHEMAS[d["kind"]] for d in yaml.safe_load((ROOT / "configs/paper.yaml").read_text())["data"]["datasets"]]
    )
    with torch.device("meta"):
        return FaceInsight(config, names, load_weights=False)


def test_paper_architecture_parameter_counts(paper_model):
    counts = {n: sum(p.numel() for p in c.parameters()) for n, c in paper_model.named_children()}
    assert counts["image_encoder"] == 303_179_776  # CLIP ViT-L/14 vision tower
    assert counts["llm"] == 6_738_415_616  # Vicuna-7B (Llama-2-7B architecture)
    # timm ViT-B/16 without head: 85,798,656 with 3 input channels; 19 channels add 16 * 768 * 16 * 16.
    assert counts["seg_encoder"] == 85_798_656 + 16 * 768 * 16 * 16
    assert paper_model.llm.dtype == torch.bfloat16


def test_paper_only_adapters_and_gcn_train(paper_model):
    trainable = paper_model.trainable_parameters()
    d = 4096
    assert trainable["image_adapter"] == adapter_params(1024, d)
    assert trainable["seg_adapter"] == adapter_params(768, d)
    assert trainable["prompt_adapter"] == adapter_params(768, d)
    assert trainable["gcn"] == 2 * 768 * 768  # two bias-free GCN layers (eq. 8)
    for frozen in ("image_encoder", "seg_encoder", "llm", "stats"):
        assert trainable[frozen] == 0
