"""configs/paper.yaml builds the paper's exact architecture (on the meta device: no weights offline)."""

from pathlib import Path

import pytest
import torch

from faceinsight.model.faceinsight import FaceInsight, preset_architecture

ROOT = Path(__file__).resolve().parents[1]


def adapter_params(d_in: int, d_out: int) -> int:
    return d_in * d_out + d_out + d_out * d_out + d_out  # Linear-GELU-Linear


@pytest.fixture(scope="module")
def paper_model() -> FaceInsight:
    config, names = preset_architecture(ROOT / "configs/paper.yaml")  # the CLI's typed signature
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


def test_paper_checkpoint_leaves_out_every_frozen_pretrained_backbone(paper_model):
    assert paper_model.frozen_pretrained() == {
        "image_encoder.": "FLIP-dataset/FLIP-large-14",
        "seg_encoder.": "checkpoints/vit_base_patch16_224.safetensors",
        "llm.": "lmsys/vicuna-7b-v1.5",
    }


def test_paper_trainer_is_ddp_in_bf16_and_parses_with_the_cli_signature():
    """The trainer section, parsed as ``faceinsight fit`` parses it (LightningCLI's typed Trainer arguments: an unknown
    key or a misspelled strategy argument fails here), then the strategy built; no model is built."""
    import yaml
    from lightning.pytorch import Trainer
    from lightning.pytorch.cli import LightningArgumentParser
    from lightning.pytorch.strategies import DDPStrategy

    preset = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())
    parser = LightningArgumentParser()
    parser.add_lightning_class_args(Trainer, "trainer")
    trainer = parser.parse_object({"trainer": preset["trainer"]}).trainer
    assert trainer.strategy.class_path == "lightning.pytorch.strategies.DDPStrategy"
    assert trainer.strategy.init_args.find_unused_parameters is False  # every trainable weight is used
    assert trainer.precision == "bf16-mixed"
    assert (trainer.accelerator, trainer.devices, trainer.num_nodes) == ("auto", "auto", 1)

    strategy = parser.instantiate(parser.parse_object({"trainer": preset["trainer"]})).trainer.strategy
    assert isinstance(strategy, DDPStrategy)  # the rest of its DistributedDataParallel arguments are torch's defaults
    assert strategy._ddp_kwargs["find_unused_parameters"] is False
    assert strategy._ddp_kwargs["gradient_as_bucket_view"] is True
    # The global batch the comments promise: 128 faces per optimizer step and GPU.
    assert preset["data"]["batch_size"] * trainer.accumulate_grad_batches == 128
