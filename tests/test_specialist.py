"""The specialist beside FaceInsight: same CLI, loss, metrics and report; a timm backbone as FaceInsight's E_i."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import yaml
from test_training import ROOT, fit
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from faceinsight.cli import run
from faceinsight.model.encoders import ImageEncoder, ImageEncoderConfig
from faceinsight.train.faceinsight_module import FaceInsightModule
from faceinsight.train.losses import masked_bce
from faceinsight.train.specialist import Specialist, SpecialistModule
from faceinsight.vocab import SCHEMAS

TINY32 = "[{kind: synthface, options: {num_train: 48, num_val: 16, num_test: 16, size: 32}}]"
PX32 = ["--data.datasets", TINY32, "--data.image_size", "32"]
SEG32 = ["--model.seg_encoder.arch", "{img_size: 32, patch_size: 8, embed_dim: 48, depth: 1, num_heads: 3}"]
NAMES = ["Bald", "Bangs", "Male", "Smiling"]


def overlay(name: str) -> list[str]:
    return ["-c", str(ROOT / f"configs/{name}.yaml")]


@pytest.fixture(scope="module")
def specialist(tmp_path_factory):
    """``faceinsight fit -c configs/synthface.yaml -c configs/specialist.yaml`` on tiny 32 px SynthFace."""
    tmp = tmp_path_factory.mktemp("specialist")
    return fit(tmp, *PX32, *overlay("specialist")), tmp


@pytest.fixture(scope="module")
def faceinsight_resnet(tmp_path_factory):
    """FaceInsight with the specialist's ResNet-18 as E_i (``configs/specialist_backbone.yaml``)."""
    tmp = tmp_path_factory.mktemp("faceinsight_resnet")
    return fit(tmp, *PX32, *SEG32, *overlay("specialist_backbone")), tmp


def batch_of(cli) -> dict:
    return next(iter(cli.datamodule.test_dataloader()[0]))


def test_specialist_trains_through_the_cli_with_faceinsights_metrics(specialist, faceinsight_resnet):
    cli, tmp = specialist
    assert type(cli.model) is SpecialistModule and isinstance(cli.model.model, Specialist)
    assert cli.model.logic_loss is None and len(cli.model.rules) > 0  # the preset's rules carried over, logic off
    assert cli.datamodule.with_segmaps is False and "segmap" not in batch_of(cli)  # no parsing maps computed
    assert cli.model.model.stats.is_set and cli.trainer.global_step == 3  # 48 faces, batches of 16
    report = json.loads((tmp / "metrics.json").read_text())
    theirs = json.loads((faceinsight_resnet[1] / "metrics.json").read_text())
    assert set(report) == set(theirs) and set(report["run"]) == set(theirs["run"])
    synth = report["model"]["synthface"]
    assert set(synth) == set(theirs["model"]["synthface"]) == set(report["majority_baseline"]["synthface"])
    assert {"attributes/mAP", "age/mae", "gender/f1", "expression/accuracy", "consistency"} <= set(synth)
    assert report["run"]["graph"] is None
    assert report["run"]["encoders"] == {"backbone": {"frozen": False, "source": "arch"}}
    assert report["run"]["loss"] == {
        "bce_reduction": "sum", "logic_weight": None, "logic_semantics": None, "caption_weight": 0.0,
        "image_head_weight": 0.0, "answers_train_image_encoder": True, "head_distill_weight": 0.0,
    }  # fmt: skip
    assert report["modules"] == {"use_seg": False, "use_correlation": False, "use_logic": False}
    assert Path(cli.trainer.log_dir).parent.name == "specialist"  # the overlay's run folder


def test_specialist_loss_is_the_masked_bce_of_its_logits():
    module = SpecialistModule(NAMES)
    image = torch.rand(3, 3, 32, 32)
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]])
    mask = torch.tensor([[1.0, 1, 0, 1], [1, 1, 1, 1], [0, 0, 1, 0]])
    loss, parts, logits = module.losses({"image": image, "labels": labels, "label_mask": mask})
    assert torch.equal(logits, module.model(image)) and logits.shape == (3, 4)
    assert torch.equal(module.model(image, torch.zeros(3, 32, 32, dtype=torch.long)), logits)  # maps unused
    p = torch.sigmoid(logits)
    by_hand = (-(labels * p.log() + (1 - labels) * (1 - p).log()) * mask).sum(1).mean()  # eq. 3
    torch.testing.assert_close(loss, by_hand)
    assert list(parts) == ["bce"]
    # The same network's logits, fed through FaceInsight's loss with the logic term on.
    logic = SpecialistModule(NAMES, rules=[str(ROOT / "rules/celeba.rules")], use_logic=True, logic_weight=0.5)
    logic.model.load_state_dict(module.model.state_dict())
    total, parts, _ = logic.losses({"image": image, "labels": labels, "label_mask": mask})
    torch.testing.assert_close(total, by_hand + 0.5 * parts["logic"])
    assert parts["logic"] > 0


def test_specialist_checkpoint_round_trip_predicts_identically(specialist, tmp_path):
    cli, tmp = specialist
    path = cli.trainer.checkpoint_callback.best_model_path
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["_class_path"] == "faceinsight.train.specialist.SpecialistModule"
    assert "decoding" not in saved["hyper_parameters"]
    restored = SpecialistModule.load_from_checkpoint(path, map_location="cpu").eval()
    assert restored.rules.to_text() == cli.model.rules.to_text()
    assert torch.equal(restored.model.stats.m, cli.model.model.stats.m)
    batch = batch_of(cli)
    with torch.no_grad():
        before, after = cli.model.eval().predict_step(batch, 0), restored.predict_step(batch, 0)
    assert torch.equal(before["probs"], after["probs"]) and torch.equal(before["preds"], after["preds"])
    # `faceinsight test` on the dataset preset alone: the checkpoint's class comes back with its hyper-parameters.
    out = tmp_path / "test.json"
    tested = run(
        [
            "test", "-c", str(ROOT / "configs/synthface.yaml"), "--data.datasets", TINY32, "--data.image_size", "32",
            "--data.num_workers", "0", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", path, "--model.metrics_file", str(out),
        ]
    )  # fmt: skip
    assert type(tested.model) is SpecialistModule and tested.datamodule.with_segmaps is False
    fitted = json.loads((tmp / "metrics.json").read_text())
    assert json.loads(out.read_text())["model"] == fitted["model"]


def test_frozen_specialist_backbone_loads_from_its_file_and_is_left_out_of_checkpoints(tmp_path):
    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(1)
    source = timm.create_model("resnet18", num_classes=0)
    torch.save(source.state_dict(), weights)
    module = SpecialistModule(NAMES, checkpoint=str(weights), trainable=False)
    for name, value in source.state_dict().items():
        assert torch.equal(module.model.backbone.state_dict()[name], value), name
    assert module.frozen_pretrained() == {"model.backbone.": str(weights)}
    assert module.encoder_report() == {"backbone": {"frozen": True, "source": str(weights)}}
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    stats = [k for k in module.state_dict() if k.startswith("model.stats.")]
    assert sorted(checkpoint["state_dict"]) == sorted(["model.head.bias", "model.head.weight", *stats])
    assert module.model.trainable_parameters()["backbone"] == 0


@pytest.mark.parametrize(("stage", "tokens", "width"), [(-1, 2 * 2, 512), (-2, 4 * 4, 256)])
def test_timm_image_encoder_reads_the_feature_map_as_tokens(stage, tokens, width):
    encoder = ImageEncoder(ImageEncoderConfig(timm_model="resnet18", arch={}, timm_stage=stage, trainable=True))
    image = torch.rand(2, 3, 64, 64)
    out = encoder(image)
    assert out.shape == (2, tokens, width) and encoder.dim == width
    # Token i is position i of the [B, C, H, W] map of the same ResNet-18, row-major, on ImageNet-normalised pixels.
    reference = timm.create_model("resnet18", num_classes=0)
    reference.load_state_dict(encoder.features.state_dict(), strict=False)
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
    pixels = (image - mean) / std
    maps = reference.forward_intermediates(pixels, indices=[stage], intermediates_only=True)[0]
    torch.testing.assert_close(out, maps.flatten(2).transpose(1, 2))
    torch.testing.assert_close(out[:, 1], maps[:, :, 0, 1])
    # pooled_token: one more token, the map's mean over positions (what the specialist's linear head reads).
    encoder.config.pooled_token = True
    pooled = encoder(image)
    assert pooled.shape == (2, tokens + 1, width)
    torch.testing.assert_close(pooled[:, :tokens], out)
    torch.testing.assert_close(pooled[:, -1], maps.mean((2, 3)))


def test_faceinsight_trains_with_a_timm_image_encoder(faceinsight_resnet):
    cli, tmp = faceinsight_resnet
    assert type(cli.model) is FaceInsightModule  # an overlay without class_path stays FaceInsight
    model = cli.model.model
    assert model.image_encoder.dim == 512 and model.image_adapter[0].in_features == 512
    assert cli.datamodule.with_segmaps is True and cli.trainer.global_step == 3
    batch = batch_of(cli)
    assert model.image_encoder(batch["image"]).shape == (16, 1, 512)  # 32 px: a 1x1 map at stride 32
    report = json.loads((tmp / "metrics.json").read_text())
    assert report["run"]["encoders"]["image_encoder"] == {"frozen": False, "source": "arch"}
    assert report["run"]["graph"]["nodes"] == len(model.characteristics)
    assert report["run"]["trainable_parameters"]["image_encoder"] == sum(
        p.numel() for p in model.image_encoder.parameters()
    )
    hparams = torch.load(cli.trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=False)[
        "hyper_parameters"
    ]
    assert "_class_path" not in hparams and hparams["image_encoder"]["timm_model"] == "resnet18"  # flat, as before
    # Gradients reach E_i through the adapter and the LLM.
    cli.model.train()
    loss, _, _ = cli.model.losses(batch)
    loss.backward()
    grads = [p.grad for p in model.image_encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def print_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "-c", str(ROOT / "configs/synthface.yaml"), *args, "--print_config"])
    assert exit_info.value.code in (None, 0)
    return yaml.safe_load(capsys.readouterr().out)["model"]


def test_model_class_switches_from_the_command_line(capsys):
    plain = print_config(capsys, "--model.use_seg", "false")
    assert "class_path" not in plain and plain["use_seg"] is False  # presets' plain init args: FaceInsight
    for switch in (overlay("specialist"), ["--model", "SpecialistModule"]):
        model = print_config(capsys, *switch)
        assert model["class_path"] == "faceinsight.train.specialist.SpecialistModule"
        args = model["init_args"]
        assert "image_encoder" not in args and "use_seg" not in args  # FaceInsight-only keys dropped
        assert args["rules"] == plain["rules"] and args["lr"] == plain["lr"]  # shared ones carried over
        overlaid = switch[0] == "-c"
        assert args["use_logic"] is not overlaid  # the overlay makes it plain; `--model` keeps the preset's
    with pytest.raises(SystemExit) as exit_info:  # a FaceInsight-only key given to the specialist is an error
        run(["fit", "-c", str(ROOT / "configs/synthface.yaml"), *overlay("specialist"), "--model.use_seg", "true",
             "--print_config"])  # fmt: skip
    assert exit_info.value.code == 2


def test_lr_scale_gives_each_named_part_its_own_learning_rate():
    module = SpecialistModule(NAMES, lr=0.002, lr_scale={"head": 5.0})
    groups = {g["name"]: g for g in module.make_optimizer().param_groups}
    assert groups["head"]["lr"] == pytest.approx(0.01) and groups["backbone"]["lr"] == pytest.approx(0.002)
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in module.model.head.parameters()}
    assert sum(len(g["params"]) for g in groups.values()) == len(list(module.parameters()))  # each parameter once
    assert len(SpecialistModule(NAMES).make_optimizer().param_groups) == 1  # unset: one group, as before the option
    with pytest.raises(ValueError, match=r"lr_scale names \['adapter'\].*'backbone', 'head'"):
        SpecialistModule(NAMES, lr_scale={"adapter": 2.0}).make_optimizer()


def labelled_batch(names: list[str], n: int = 4) -> dict[str, torch.Tensor]:
    """``n`` random 64 px images with random labels, about a fifth of them unlabelled."""
    labels = (torch.rand(n, len(names)) > 0.5).float()
    return {"image": torch.rand(n, 3, 64, 64), "labels": labels, "label_mask": torch.rand(n, len(names)) > 0.2}


def parts_reached(model: torch.nn.Module) -> set[str]:
    """The top-level parts of ``model`` with a nonzero gradient."""
    return {name for name, part in model.named_children()
            if any(q.grad is not None and q.grad.abs().sum() > 0 for q in part.parameters())}  # fmt: skip


def resnet_ei_arguments() -> tuple[list[str], dict]:
    """SynthFace's characteristic names, and ``FaceInsightModule`` arguments for them with a trainable ResNet-18 E_i
    and no parsing maps."""
    names = list(SCHEMAS["synthface"].characteristics)
    encoder = ImageEncoderConfig(timm_model="resnet18", arch={}, trainable=True)
    rules = [str(ROOT / "rules/celeba.rules")]
    return names, {"characteristics": names, "rules": rules, "use_seg": False, "image_encoder": encoder}


def test_image_head_adds_its_weighted_bce_and_teaches_only_the_image_encoder():
    """``image_head_weight``: eq. 4 plus w times the masked BCE of a linear classifier on E_i's mean-pooled tokens,
    computed here by hand; the answers are the model's own, the head's biases start at the priors, and its loss
    reaches E_i and the head alone."""
    names, common = resnet_ei_arguments()
    with pytest.raises(ValueError, match="E_i is frozen"):
        FaceInsightModule(**common | {"image_encoder": ImageEncoderConfig()}, image_head_weight=0.5)  # the frozen ViT
    torch.manual_seed(0)
    module = FaceInsightModule(**common, image_head_weight=0.5)
    labels = (torch.rand(200, len(names)) > 0.7).float()
    module.model.stats.update(labels, torch.ones_like(labels, dtype=torch.bool))
    module.statistics_set()
    rate = labels.mean(0).clamp(1e-4, 1 - 1e-4)
    torch.testing.assert_close(module.model.image_head.bias.detach(), torch.log(rate / (1 - rate)))

    batch = labelled_batch(names)
    y, mask = batch["labels"], batch["label_mask"]
    module.train()
    loss, parts, logits = module.losses(batch)
    assert set(parts) == {"bce", "logic", "image_head"}
    with torch.no_grad():
        torch.testing.assert_close(logits, module.model(batch["image"]))  # the answers do not read the head
        pooled = module.model.image_encoder(batch["image"]).mean(1)
        p = torch.sigmoid(pooled @ module.model.image_head.weight.T + module.model.image_head.bias)
        by_hand = (-(y * p.log() + (1 - y) * (1 - p).log()) * mask).sum(1).mean()
        eq4 = masked_bce(logits, y, mask) + module.logic_loss(logits)
    torch.testing.assert_close(parts["image_head"], by_hand)
    torch.testing.assert_close(loss, eq4 + 0.5 * by_hand)

    parts["image_head"].backward()
    reached = parts_reached(module.model)
    assert reached == {"image_encoder", "image_head"}


def test_head_distillation_adds_the_answers_bce_against_the_detached_image_head():
    """``head_distill_weight``: w times the masked BCE of the answers against the image head's probabilities, by
    hand; it reaches the path and E_i through the answers, never the image head (the teacher is detached)."""
    names, common = resnet_ei_arguments()
    with pytest.raises(ValueError, match="needs the image head"):
        FaceInsightModule(**common, head_distill_weight=1.0)
    torch.manual_seed(0)
    module = FaceInsightModule(**common, image_head_weight=0.5, head_distill_weight=2.0)
    batch = labelled_batch(names)
    mask = batch["label_mask"]
    module.train()
    loss, parts, logits = module.losses(batch)
    assert set(parts) == {"bce", "logic", "image_head", "head_distill"}
    with torch.no_grad():
        t = torch.sigmoid(module.model.image_head_logits(module.model.encode(batch["image"])))
        q = torch.sigmoid(logits)
        by_hand = (-(t * q.log() + (1 - t) * (1 - q).log()) * mask).sum(1).mean()
    torch.testing.assert_close(parts["head_distill"], by_hand)
    torch.testing.assert_close(loss, parts["bce"] + parts["logic"] + 0.5 * parts["image_head"] + 2.0 * by_hand)
    parts["head_distill"].backward()
    reached = parts_reached(module.model)
    assert "image_head" not in reached and {"image_encoder", "image_adapter", "gcn"} <= reached


def test_image_head_in_answers_averages_the_two_readers_in_evaluation_only():
    """``image_head_in_answers``: in evaluation the answers are the mean of the LLM's logits and the image head's,
    computed here from a copy without the option; in training they are the LLM's alone, so the losses are
    unchanged; the one-question-per-pass forward gives the same answers."""
    names, common = resnet_ei_arguments()
    with pytest.raises(ValueError, match="needs the image head"):
        FaceInsightModule(**common, image_head_in_answers=True)
    torch.manual_seed(0)
    fused = FaceInsightModule(**common, image_head_weight=0.5, image_head_in_answers=True)
    plain = FaceInsightModule(**common, image_head_weight=0.5)
    plain.load_state_dict(fused.state_dict())
    batch = labelled_batch(names)
    image = batch["image"]
    with torch.no_grad():
        for m in (fused, plain):
            m.model.image_head.weight.mul_(20)  # so that the head's share cannot hide in the tolerance
        fused.eval(), plain.eval()
        llm, head = plain.model(image), plain.model.image_head_logits(plain.model.encode(image))
        assert (head - llm).abs().min() > 1e-3
        torch.testing.assert_close(fused.model(image), (llm + head) / 2)
        torch.testing.assert_close(fused.model.forward_per_characteristic(image), (llm + head) / 2, rtol=1e-4,
                                   atol=1e-5)  # fmt: skip
        _, parts, logits = fused.losses(batch)  # validation and test read the averaged answers
        torch.testing.assert_close(logits, (llm + head) / 2)
        fused.train(), plain.train()
        loss, parts, logits = fused.losses(batch)
        loss_plain, parts_plain, logits_plain = plain.losses(batch)
    torch.testing.assert_close(logits, logits_plain)  # training: the LLM's answers, eq. 4 as without the option
    torch.testing.assert_close(loss, loss_plain)
    assert parts.keys() == parts_plain.keys() == {"bce", "logic", "image_head"}


def test_answers_stop_at_the_image_encoder_when_told():
    """``answers_train_image_encoder false``: the answers' loss reaches every trainable part but E_i, the image head's
    reaches E_i, and the answers are the same numbers as with the gradient on."""
    _, common = resnet_ei_arguments()
    with pytest.raises(ValueError, match="nothing would train E_i"):
        FaceInsightModule(**common, answers_train_image_encoder=False)
    torch.manual_seed(0)
    module = FaceInsightModule(**common, image_head_weight=1.0, answers_train_image_encoder=False)
    torch.manual_seed(0)
    joined = FaceInsightModule(**common, image_head_weight=1.0)
    joined.load_state_dict(module.state_dict())
    image = torch.rand(2, 3, 64, 64)
    module.train()
    joined.train()
    logits = module.model(image)
    torch.testing.assert_close(logits, joined.model(image))

    logits.sum().backward()
    assert "image_encoder" not in parts_reached(module.model)
    assert {"image_adapter", "gcn"} <= parts_reached(module.model)
    joined.model(image).sum().backward()
    assert "image_encoder" in parts_reached(joined.model)  # the same loss reaches E_i when the gradient is on
    module.zero_grad()
    module.model.image_head_logits(module.model.encode(image)).sum().backward()
    assert parts_reached(module.model) == {"image_encoder", "image_head"}
